"""The Chord ring peer as a sans-I/O datagram core.

Theory of operation. ``handle_datagram`` parses one message (see
``messages.py``) and returns datagrams to send and events; ``tick`` fires
timers and the periodic maintenance; ``next_deadline`` says when to tick.
Starters (``start_join``, ``start_lookup``, ``start_get_peers``,
``start_announce``, ``start_leave``) return an operation id and the first
datagrams.

Lookups are iterative (the asker sends every query, as in Chord paper 4.3's
iterative style): starting from our own pointers, ask the known peer that
most closely precedes the key for ``find_successor``; it answers ``found``
with its successor list when the key is in (it, its successor], else with
its closest preceding peers. The peers that answered form the lookup path,
ending at the key's predecessor; its length is the paper's path length. A
peer that does not answer is dropped from our pointers and the next-closest
candidate is asked.

Maintenance (Chord paper figure 6 with Zave's corrections):

- stabilize: ask the successor for its predecessor p and successor list;
  adopt the list; if p lies between us and the successor, ask p too and
  switch to p only once p has answered; then ``notify`` the successor. A
  successor that does not answer is dropped, the next one is promoted and
  asked at once, which refills the list from it.
- notify: a peer that notifies us (so it is alive) becomes our predecessor
  when it is closer than the current one, and receives the keys it now owns
  (``store``); we drop them when it acknowledges.
- check_predecessor: ping it; forget it when it does not answer.
- fix_fingers: walk the finger table in turn; fingers whose start falls in
  (us, successor] are the successor, the next one needing a lookup gets
  one, and its result is pinged before it is adopted.
- leave: hand every key to the successor, then tell predecessor and
  successor (who confirm any hinted replacement before adopting it).

Deliberately left out: replication of keys on the successor list (a key
whose owner dies silently is gone until re-announced), tokens on
announce_peer, IPv6.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from enum import Enum
from typing import assert_never

from dht.core.chord.config import ChordConfig
from dht.core.chord.events import (
    ChordAnnounceDone,
    ChordJoined,
    ChordLeft,
    ChordLookupDone,
    ChordOutput,
    ChordPeersFound,
    SendDatagram,
)
from dht.core.chord.messages import (
    MAX_DATAGRAM_BYTES,
    MAX_TTL_S,
    AnnouncePeer,
    ChordMessage,
    ChordPeer,
    ErrorMessage,
    FindSuccessor,
    GetNeighbors,
    GetPeers,
    Leave,
    Notify,
    Ping,
    Query,
    Response,
    Store,
    StoredItem,
    decode_message,
    encode_message,
)
from dht.core.chord.ring import between as _between
from dht.core.chord.ring import between_right, key_id
from dht.core.chord.table import ChordTable
from dht.core.compact import PeerAddr
from dht.core.peerstore import PeerStore
from dht.core.transactions import TransactionTable
from dht.errors import BadQuery, LocalKrpcError, RemoteKrpcError

__all__ = ["ChordCore", "ChordStatistics"]

ITEMS_PER_STORE = 32  # stored items per handoff datagram (~1.3 KiB, under the cap)


class _Purpose(Enum):
    FIND = "find"  #: find_successor step of a lookup
    NEIGHBORS = "neighbors"  #: stabilize: the successor's predecessor and list
    CANDIDATE = "candidate"  #: confirm a would-be successor before adopting it
    NOTIFY = "notify"  #: tell the successor about us
    CHECK_PREDECESSOR = "check_predecessor"  #: ping the predecessor
    FINGER = "finger"  #: ping a finger's new peer before adopting it
    GET_PEERS = "get_peers"  #: ask the owner for a swarm's peers
    ANNOUNCE = "announce"  #: store our address at the owner
    HANDOFF = "handoff"  #: keys to a new predecessor or (leaving) the successor
    LEAVE = "leave"  #: tell a neighbour we leave


class _Kind(Enum):
    LOOKUP = "lookup"  #: find the owner, report it
    GET_PEERS = "get_peers"  #: find the owner, ask it for peers
    ANNOUNCE = "announce"  #: find the owner, store our address there
    FINGER = "finger"  #: find a finger's peer
    JOIN = "join"  #: find our successor through a bootstrap peer
    LEAVE = "leave"  #: hand off keys and say goodbye


class _Timer(Enum):
    RETRANSMIT = 0
    TIMEOUT = 1


@dataclass(slots=True)
class _Txn:
    tid: bytes
    addr: PeerAddr
    expected_id: int | None
    purpose: _Purpose
    payload: bytes
    op_id: int = 0
    items: tuple[StoredItem, ...] = ()


@dataclass(slots=True)
class _Op:
    op_id: int
    kind: _Kind
    key: int
    started: float
    info_hash: bytes = b""
    port: int = 0
    finger: int = 0
    candidates: dict[int, ChordPeer] = field(default_factory=dict)
    tried: set[int] = field(default_factory=set)
    path: list[ChordPeer] = field(default_factory=list)
    owners: list[ChordPeer] = field(default_factory=list)
    found: tuple[ChordPeer, ...] = ()
    queries: int = 0
    pending: int = 0
    handed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChordStatistics:
    """A snapshot of one ring peer's pointers and counters."""

    node_id: int
    m: int
    predecessor: ChordPeer | None
    successors: tuple[ChordPeer, ...]
    distinct_fingers: int
    keys_stored: int
    swarms_stored: int
    queries_in: int
    queries_out: int
    responses_in: int
    responses_out: int
    errors_out: int
    timeouts: int
    dropped_in: int
    bytes_in: int
    bytes_out: int
    lookups_done: int
    lookups_failed: int
    lookup_hops: int
    transactions_pending: int


class ChordCore:
    """One Chord ring peer, without sockets or clocks.

    Args:
        node_id: our id on the 2^m circle.
        addr: our UDP address, as others reach us (it goes into replies).
        rng: randomness (transaction ids, reply sampling).
        config: protocol parameters.

    Raises:
        LocalKrpcError: ``node_id`` is outside the circle.
    """

    def __init__(
        self,
        node_id: int,
        addr: PeerAddr,
        rng: random.Random,
        config: ChordConfig | None = None,
    ) -> None:
        self._cfg = config or ChordConfig()
        if not 0 <= node_id < 1 << self._cfg.m:
            raise LocalKrpcError(f"chord: id {node_id} is outside 2^{self._cfg.m}")
        self._me = ChordPeer(id=node_id, addr=addr)
        self._rng = rng
        self._table = ChordTable(self._me, m=self._cfg.m, r=self._cfg.successors)
        self._store = PeerStore(
            ttl_s=self._cfg.peer_ttl_s,
            max_per_swarm=self._cfg.max_peers_per_swarm,
            max_total=self._cfg.max_peers_total,
        )
        self._txns = TransactionTable[_Txn](
            tid_bytes=4,
            first_tid=rng.getrandbits(32),
            max_pending=self._cfg.max_transactions,
        )
        self._ops: dict[int, _Op] = {}
        self._next_op = 0
        self._started = False
        self._left = False
        self._stabilizing = False
        self._finger_op: int | None = None
        self._next_finger = 0
        self._stabilize_at = 0.0
        self._fix_at = 0.0
        self._check_at = 0.0
        self._maintain_at = 0.0
        self._counts = dict.fromkeys(
            (
                "queries_in",
                "queries_out",
                "responses_in",
                "responses_out",
                "errors_out",
                "timeouts",
                "dropped_in",
                "bytes_in",
                "bytes_out",
                "lookups_done",
                "lookups_failed",
                "lookup_hops",
            ),
            0,
        )

    # -- reading -------------------------------------------------------------------

    @property
    def me(self) -> ChordPeer:
        return self._me

    @property
    def node_id(self) -> int:
        return self._me.id

    @property
    def config(self) -> ChordConfig:
        return self._cfg

    @property
    def table(self) -> ChordTable:
        return self._table

    @property
    def store(self) -> PeerStore:
        return self._store

    def statistics(self) -> ChordStatistics:
        t = self._table
        return ChordStatistics(
            node_id=self._me.id,
            m=self._cfg.m,
            predecessor=t.predecessor,
            successors=t.successors,
            distinct_fingers=len({f.id for f in t.fingers if f is not None}),
            keys_stored=len(self._store),
            swarms_stored=self._store.swarm_count,
            transactions_pending=len(self._txns),
            **self._counts,
        )

    # -- input ---------------------------------------------------------------------

    def handle_datagram(
        self, data: bytes, addr: PeerAddr, now: float
    ) -> list[ChordOutput]:
        """Feed one received datagram. Never raises on remote input: junk is
        dropped or answered with an error (203 malformed, 204 unknown)."""
        self._start(now)
        self._counts["bytes_in"] += len(data)
        out: list[ChordOutput] = []
        if len(data) > MAX_DATAGRAM_BYTES:
            self._counts["dropped_in"] += 1
            return out
        try:
            msg: ChordMessage = decode_message(data, self._cfg.m)
        except BadQuery as exc:
            self._counts["dropped_in"] += 1
            if not self._left:
                err = ErrorMessage(
                    transaction_id=exc.transaction_id, code=exc.code, message=str(exc)
                )
                self._counts["errors_out"] += 1
                self._send(out, addr, encode_message(err, self._cfg.version))
            return out
        except RemoteKrpcError:
            self._counts["dropped_in"] += 1
            return out
        match msg:
            case Response():
                self._on_response(out, msg, addr, now)
            case ErrorMessage():
                txn = self._txns.get_from(msg.transaction_id, addr)
                if txn is None:
                    self._counts["dropped_in"] += 1
                else:
                    self._end_txn(txn)
                    self._on_failure(out, txn, now, alive=True)
            case _:
                if self._left:
                    self._counts["dropped_in"] += 1
                else:
                    self._counts["queries_in"] += 1
                    self._on_query(out, msg, addr, now)
        return out

    def tick(self, now: float) -> list[ChordOutput]:
        """Fire every timer due at ``now``, and the periodic maintenance."""
        self._start(now)
        out: list[ChordOutput] = []
        for txn, kind in self._txns.due(now):
            if kind == _Timer.RETRANSMIT.value:
                self._send(out, txn.addr, txn.payload)
            else:
                self._counts["timeouts"] += 1
                self._end_txn(txn)
                self._on_failure(out, txn, now, alive=False)
        if self._left:
            return out
        cfg = self._cfg
        if now >= self._stabilize_at:
            self._stabilize_at = now + cfg.stabilize_interval_s
            self._stabilize(out, now)
        if now >= self._check_at:
            self._check_at = now + cfg.check_predecessor_interval_s
            pred = self._table.predecessor
            if pred is not None:
                self._query(out, pred, Ping, _Purpose.CHECK_PREDECESSOR, now)
        if now >= self._fix_at:
            self._fix_at = now + cfg.fix_fingers_interval_s
            self._fix_fingers(out, now)
        if now >= self._maintain_at:
            self._maintain_at = now + cfg.maintenance_interval_s
            self._store.expire(now)
        return out

    def next_deadline(self) -> float | None:
        """When ``tick`` should next be called (None: only on new input).
        Before the first call with a time, at once: maintenance starts then."""
        if not self._started:
            return 0.0
        first = self._txns.next_deadline()
        times = [] if first is None else [first]
        if self._started and not self._left:
            times += [
                self._stabilize_at,
                self._fix_at,
                self._check_at,
                self._maintain_at,
            ]
        return min(times, default=None)

    # -- starters ------------------------------------------------------------------

    def start_join(
        self, bootstrap: PeerAddr, now: float
    ) -> tuple[int, list[ChordOutput]]:
        """Join the ring through the peer at ``bootstrap``: look up our own
        id's successor, confirm it alive, adopt it, notify it. Ends with
        ``ChordJoined``."""
        self._start(now)
        op = self._new_op(_Kind.JOIN, self._me.id, now)
        out: list[ChordOutput] = []
        self._query_find(out, op, None, bootstrap, now)
        return op.op_id, out

    def start_lookup(self, key: int, now: float) -> tuple[int, list[ChordOutput]]:
        """Find successor(key); ends with ``ChordLookupDone``.

        Raises:
            LocalKrpcError: ``key`` is outside the circle.
        """
        self._check_key(key)
        return self._begin(_Kind.LOOKUP, key, now)

    def start_get_peers(
        self, info_hash: bytes, now: float
    ) -> tuple[int, list[ChordOutput]]:
        """Find the owner of ``info_hash`` and ask it for peers: a
        ``ChordPeersFound`` per non-empty answer, then ``ChordLookupDone``.

        Raises:
            LocalKrpcError: ``info_hash`` is not 20 bytes.
        """
        self._check_hash(info_hash)
        return self._begin(
            _Kind.GET_PEERS, key_id(info_hash, self._cfg.m), now, info_hash=info_hash
        )

    def start_announce(
        self, info_hash: bytes, port: int, now: float
    ) -> tuple[int, list[ChordOutput]]:
        """Store (our host, ``port``) under ``info_hash`` at its owner; ends
        with ``ChordAnnounceDone``.

        Raises:
            LocalKrpcError: bad ``info_hash`` or ``port``.
        """
        self._check_hash(info_hash)
        if not 1 <= port <= 0xFFFF:
            raise LocalKrpcError(f"chord: port {port} is not in 1..65535")
        return self._begin(
            _Kind.ANNOUNCE,
            key_id(info_hash, self._cfg.m),
            now,
            info_hash=info_hash,
            port=port,
        )

    def start_leave(self, now: float) -> tuple[int, list[ChordOutput]]:
        """Leave gracefully: every key to the successor, then ``leave`` to
        predecessor and successor. Afterwards queries are ignored and no
        maintenance runs. Ends with ``ChordLeft``."""
        self._start(now)
        op = self._new_op(_Kind.LEAVE, self._me.id, now)
        out: list[ChordOutput] = []
        self._left = True
        succ = self._table.successors[0] if self._table.successors else None
        if succ is not None:
            items = [
                StoredItem(info_hash=ih, peer=p, ttl_s=_ttl(exp, now))
                for ih, p, exp in self._store.items(now)
            ]
            for i in range(0, len(items), ITEMS_PER_STORE):
                chunk = tuple(items[i : i + ITEMS_PER_STORE])
                self._query_store(out, succ, chunk, _Purpose.HANDOFF, op.op_id, now)
                op.pending += 1
            neighbours = {succ.id: succ}
            pred = self._table.predecessor
            if pred is not None:
                neighbours[pred.id] = pred
            for peer in neighbours.values():
                msg = Leave(
                    transaction_id=b"",
                    sender_id=self._me.id,
                    predecessor=pred,
                    successors=self._table.successors,
                )
                self._query_msg(out, peer, msg, _Purpose.LEAVE, now, op.op_id)
                op.pending += 1
        if not op.pending:
            self._finish_leave(out, op, succ)
        return op.op_id, out

    def cancel(self, op_id: int) -> None:
        """Forget an operation (its late answers are then ignored)."""
        self._ops.pop(op_id, None)

    def preset(
        self,
        *,
        predecessor: ChordPeer | None,
        successors: list[ChordPeer],
        fingers: list[ChordPeer | None],
    ) -> None:
        """Install converged pointers (simulations starting from a stable ring)."""
        self._table.preset(
            predecessor=predecessor, successors=successors, fingers=fingers
        )

    def store_local(self, info_hash: bytes, peer: PeerAddr, now: float) -> None:
        """Put an entry straight into our store (simulations and tests)."""
        self._store.add(info_hash, peer, now)

    # -- queries we answer -----------------------------------------------------------

    def _on_query(
        self, out: list[ChordOutput], msg: Query, addr: PeerAddr, now: float
    ) -> None:
        t = self._table
        reply = Response(transaction_id=msg.transaction_id, sender_id=self._me.id)
        sender = ChordPeer(id=msg.sender_id, addr=addr)
        match msg:
            case Ping():
                pass
            case GetNeighbors():
                reply = Response(
                    transaction_id=msg.transaction_id,
                    sender_id=self._me.id,
                    predecessor=t.predecessor,
                    successors=t.successors,
                )
            case Notify():
                self._on_notify(out, sender, now)
            case FindSuccessor(target=target):
                reply = self._find_reply(msg.transaction_id, target)
            case GetPeers(info_hash=ih):
                values = self._store.get(
                    ih, now, self._cfg.max_values_per_reply, self._rng
                )
                reply = Response(
                    transaction_id=msg.transaction_id,
                    sender_id=self._me.id,
                    values=tuple(values),
                )
            case AnnouncePeer(info_hash=ih, port=port):
                self._store.add(ih, PeerAddr(addr.host, port), now)
            case Store(items=items):
                for item in items:
                    self._store.add(item.info_hash, item.peer, now, ttl_s=item.ttl_s)
            case Leave():
                self._on_leave(out, msg, now)
            case _:
                assert_never(msg)
        self._counts["responses_out"] += 1
        self._send(out, addr, encode_message(reply, self._cfg.version))

    def _find_reply(self, tid: bytes, target: int) -> Response:
        t = self._table
        me = self._me.id
        if t.owns(target):
            return Response(
                transaction_id=tid,
                sender_id=me,
                found=True,
                successors=(self._me, *t.successors),
            )
        if t.successor_owns(target):
            return Response(
                transaction_id=tid, sender_id=me, found=True, successors=t.successors
            )
        nodes = t.closest_preceding(target, self._cfg.max_next_nodes)
        return Response(transaction_id=tid, sender_id=me, nodes=tuple(nodes))

    def _on_notify(self, out: list[ChordOutput], sender: ChordPeer, now: float) -> None:
        t = self._table
        if sender.id == self._me.id:
            return
        pred = t.predecessor
        if pred is None or _between(sender.id, pred.id, self._me.id):
            # The notifier is alive (it just spoke): Zave's rule holds.
            t.set_predecessor(sender)
            self._hand_off(out, sender, now)
        if not t.successors and not self._stabilizing:
            # Alone until now: the notifier may be our successor; stabilize
            # confirms it (or a closer finger) before adopting it.
            self._stabilize(out, now)

    def _hand_off(self, out: list[ChordOutput], pred: ChordPeer, now: float) -> None:
        """Keys outside (pred, me] now belong to ``pred``."""
        items = [
            StoredItem(info_hash=ih, peer=p, ttl_s=_ttl(exp, now))
            for ih, p, exp in self._store.items(now)
            if not between_right(key_id(ih, self._cfg.m), pred.id, self._me.id)
        ]
        for i in range(0, len(items), ITEMS_PER_STORE):
            chunk = tuple(items[i : i + ITEMS_PER_STORE])
            self._query_store(out, pred, chunk, _Purpose.HANDOFF, 0, now)

    def _on_leave(self, out: list[ChordOutput], msg: Leave, now: float) -> None:
        t = self._table
        leaver = msg.sender_id
        was_successor = any(p.id == leaver for p in t.successors)
        t.forget(leaver)
        if was_successor:
            if t.successors:
                self._stabilize(out, now, force=True)
            else:
                hints = [p for p in msg.successors if p.id not in (leaver, self._me.id)]
                if hints:
                    self._stabilizing = True
                    self._query(out, hints[0], GetNeighbors, _Purpose.CANDIDATE, now)

    # -- maintenance -----------------------------------------------------------------

    def _stabilize(
        self, out: list[ChordOutput], now: float, force: bool = False
    ) -> None:
        if self._stabilizing and not force:
            return
        t = self._table
        if t.successors:
            self._stabilizing = True
            self._query(out, t.successor, GetNeighbors, _Purpose.NEIGHBORS, now)
            return
        # Every successor failed: the closest finger may be our successor. A
        # peer alone has only its predecessor (whoever joined through it).
        # Never the predecessor otherwise: that would point backwards and
        # could split the ring into loops (Zave). It must answer first.
        pool = list(t.known()) or [p for p in (t.predecessor,) if p is not None]
        if pool:
            best = min(pool, key=lambda p: (p.id - self._me.id) % t.modulus)
            self._stabilizing = True
            self._query(out, best, GetNeighbors, _Purpose.CANDIDATE, now)
        else:
            self._stabilizing = False

    def _fix_fingers(self, out: list[ChordOutput], now: float) -> None:
        if self._finger_op is not None:
            return
        t = self._table
        if not t.successors:
            return
        for _ in range(t.m):
            i = self._next_finger
            self._next_finger = (i + 1) % t.m
            start = t.finger_start(i)
            if t.successor_owns(start):
                if t.finger(i) != t.successor:
                    t.set_finger(i, t.successor)
                continue
            if t.owns(start):
                t.set_finger(i, None)
                continue
            op = self._new_op(_Kind.FINGER, start, now, finger=i)
            self._finger_op = op.op_id
            self._route(out, op, now)
            return

    # -- lookups ---------------------------------------------------------------------

    def _begin(
        self,
        kind: _Kind,
        key: int,
        now: float,
        *,
        info_hash: bytes = b"",
        port: int = 0,
    ) -> tuple[int, list[ChordOutput]]:
        self._start(now)
        op = self._new_op(kind, key, now, info_hash=info_hash, port=port)
        out: list[ChordOutput] = []
        self._route(out, op, now)
        return op.op_id, out

    def _route(self, out: list[ChordOutput], op: _Op, now: float) -> None:
        """First step of a lookup, from our own pointers."""
        t = self._table
        if t.owns(op.key):
            self._found(out, op, (self._me, *t.successors), now)
        elif t.successor_owns(op.key):
            self._found(out, op, t.successors, now)
        else:
            for p in t.closest_preceding(op.key, self._cfg.max_next_nodes):
                op.candidates[p.id] = p
            self._next_candidate(out, op, now)

    def _next_candidate(self, out: list[ChordOutput], op: _Op, now: float) -> None:
        pool = [p for p in op.candidates.values() if p.id not in op.tried]
        if not pool or len(op.path) >= self._cfg.max_lookup_hops:
            self._found(out, op, (), now)
            return
        best = min(pool, key=lambda p: self._table.closeness(p.id, op.key))
        self._query_find(out, op, best, best.addr, now)

    def _query_find(
        self,
        out: list[ChordOutput],
        op: _Op,
        peer: ChordPeer | None,
        addr: PeerAddr,
        now: float,
    ) -> None:
        if peer is not None:
            op.tried.add(peer.id)
        op.queries += 1
        msg = FindSuccessor(transaction_id=b"", sender_id=self._me.id, target=op.key)
        self._query_msg(
            out,
            peer or ChordPeer(id=-1, addr=addr),
            msg,
            _Purpose.FIND,
            now,
            op.op_id,
        )

    def _on_find_reply(
        self,
        out: list[ChordOutput],
        op: _Op,
        peer: ChordPeer,
        msg: Response,
        now: float,
    ) -> None:
        op.tried.add(peer.id)
        op.path.append(peer)
        if msg.found and msg.successors:
            self._found(out, op, msg.successors, now)
            return
        for p in msg.nodes:
            if p.id != self._me.id and _between(p.id, peer.id, op.key):
                op.candidates.setdefault(p.id, p)
        self._next_candidate(out, op, now)

    def _found(
        self,
        out: list[ChordOutput],
        op: _Op,
        owners: tuple[ChordPeer, ...],
        now: float,
    ) -> None:
        """The lookup part ended; ``owners`` (owner first) is empty on failure."""
        op.found = owners
        op.owners = list(owners)
        match op.kind:
            case _Kind.LOOKUP:
                self._finish_lookup(out, op, now)
            case _Kind.GET_PEERS | _Kind.ANNOUNCE | _Kind.JOIN:
                self._ask_owner(out, op, now)
            case _Kind.FINGER:
                if owners and owners[0].id != self._me.id:
                    self._query(
                        out, owners[0], Ping, _Purpose.FINGER, now, op_id=op.op_id
                    )
                else:
                    if not owners:
                        self._table.set_finger(op.finger, None)
                    self._ops.pop(op.op_id, None)
                    self._finger_op = None
            case _Kind.LEAVE:
                pass
            case _:
                assert_never(op.kind)

    def _ask_owner(self, out: list[ChordOutput], op: _Op, now: float) -> None:
        """Second stage: the owner (or, if it is dead, the next successor)."""
        while op.owners:
            owner = op.owners.pop(0)
            if owner.id == self._me.id:
                if op.kind is _Kind.JOIN:
                    continue
                if op.kind is _Kind.GET_PEERS:
                    peers = self._store.get(
                        op.info_hash, now, self._cfg.max_values_per_reply, self._rng
                    )
                    self._peers_found(out, op, tuple(peers))
                    self._finish_lookup(out, op, now, owner)
                else:
                    mine = PeerAddr(self._me.addr.host, op.port)
                    self._store.add(op.info_hash, mine, now)
                    self._finish_announce(out, op, owner)
                return
            if op.kind is _Kind.GET_PEERS:
                msg: Query = GetPeers(
                    transaction_id=b"", sender_id=self._me.id, info_hash=op.info_hash
                )
                purpose = _Purpose.GET_PEERS
            elif op.kind is _Kind.ANNOUNCE:
                msg = AnnouncePeer(
                    transaction_id=b"",
                    sender_id=self._me.id,
                    info_hash=op.info_hash,
                    port=op.port,
                )
                purpose = _Purpose.ANNOUNCE
            else:
                msg = GetNeighbors(transaction_id=b"", sender_id=self._me.id)
                purpose = _Purpose.CANDIDATE
            self._query_msg(out, owner, msg, purpose, now, op.op_id)
            return
        # nobody left to ask
        if op.kind is _Kind.GET_PEERS:
            self._finish_lookup(out, op, now, None)
        elif op.kind is _Kind.ANNOUNCE:
            self._finish_announce(out, op, None)
        else:
            self._ops.pop(op.op_id, None)
            out.append(ChordJoined(op_id=op.op_id, successor=None))

    def _peers_found(
        self, out: list[ChordOutput], op: _Op, peers: tuple[PeerAddr, ...]
    ) -> None:
        if peers:
            out.append(
                ChordPeersFound(op_id=op.op_id, info_hash=op.info_hash, peers=peers)
            )

    def _finish_lookup(
        self,
        out: list[ChordOutput],
        op: _Op,
        now: float,
        owner: ChordPeer | None = None,
    ) -> None:
        self._ops.pop(op.op_id, None)
        if op.kind is _Kind.LOOKUP:
            owner = op.found[0] if op.found else None
        if owner is None:
            self._counts["lookups_failed"] += 1
        else:
            self._counts["lookups_done"] += 1
            self._counts["lookup_hops"] += len(op.path)
        out.append(
            ChordLookupDone(
                op_id=op.op_id,
                key=op.key,
                owner=owner,
                successors=op.found,
                path=tuple(op.path),
                queries=op.queries,
                duration_s=now - op.started,
            )
        )

    def _finish_announce(
        self, out: list[ChordOutput], op: _Op, owner: ChordPeer | None
    ) -> None:
        self._ops.pop(op.op_id, None)
        out.append(
            ChordAnnounceDone(op_id=op.op_id, info_hash=op.info_hash, stored_at=owner)
        )

    def _finish_leave(
        self, out: list[ChordOutput], op: _Op, succ: ChordPeer | None
    ) -> None:
        self._ops.pop(op.op_id, None)
        out.append(ChordLeft(op_id=op.op_id, successor=succ, handed=op.handed))

    # -- answers and failures --------------------------------------------------------

    def _on_response(
        self, out: list[ChordOutput], msg: Response, addr: PeerAddr, now: float
    ) -> None:
        txn = self._txns.get_from(msg.transaction_id, addr)
        if txn is None:
            self._counts["dropped_in"] += 1
            return
        if txn.expected_id is not None and msg.sender_id != txn.expected_id:
            self._counts["dropped_in"] += 1
            return
        self._counts["responses_in"] += 1
        self._end_txn(txn)
        peer = ChordPeer(id=msg.sender_id, addr=addr)
        t = self._table
        op = self._ops.get(txn.op_id) if txn.op_id else None
        match txn.purpose:
            case _Purpose.FIND:
                if op is not None:
                    self._on_find_reply(out, op, peer, msg, now)
            case _Purpose.NEIGHBORS:
                t.adopt_successor(peer, msg.successors)
                p = msg.predecessor
                if p is not None and _between(p.id, self._me.id, peer.id):
                    self._query(out, p, GetNeighbors, _Purpose.CANDIDATE, now)
                else:
                    self._stabilizing = False
                    self._query(out, peer, Notify, _Purpose.NOTIFY, now)
            case _Purpose.CANDIDATE:
                # It answered, so it may become our successor (Zave's rule).
                if op is not None and op.kind is _Kind.JOIN:
                    t.adopt_successor(peer, msg.successors)
                    self._ops.pop(op.op_id, None)
                    out.append(ChordJoined(op_id=op.op_id, successor=peer))
                elif not t.successors or _between(peer.id, self._me.id, t.successor.id):
                    t.adopt_successor(peer, msg.successors)
                    self._stabilizing = False
                else:
                    self._stabilizing = False
                self._query(out, t.successor, Notify, _Purpose.NOTIFY, now)
            case _Purpose.FINGER:
                if op is not None:
                    t.set_finger(op.finger, peer)
                    self._ops.pop(op.op_id, None)
                self._finger_op = None
            case _Purpose.GET_PEERS:
                if op is not None:
                    self._peers_found(out, op, msg.values)
                    self._finish_lookup(out, op, now, peer)
            case _Purpose.ANNOUNCE:
                if op is not None:
                    self._finish_announce(out, op, peer)
            case _Purpose.HANDOFF:
                for item in txn.items:
                    self._store.remove(item.info_hash, item.peer)
                if op is not None:
                    op.handed += len(txn.items)
                    self._leave_step(out, op)
            case _Purpose.LEAVE:
                if op is not None:
                    self._leave_step(out, op)
            case _Purpose.NOTIFY | _Purpose.CHECK_PREDECESSOR:
                pass
            case _:
                assert_never(txn.purpose)

    def _on_failure(
        self, out: list[ChordOutput], txn: _Txn, now: float, alive: bool
    ) -> None:
        """A query timed out (``alive`` False: the peer is gone) or was
        answered with an error."""
        t = self._table
        lost_successor = False
        if not alive and txn.expected_id is not None and txn.expected_id >= 0:
            lost_successor = t.forget(txn.expected_id)
        op = self._ops.get(txn.op_id) if txn.op_id else None
        match txn.purpose:
            case _Purpose.FIND:
                if op is not None:
                    self._next_candidate(out, op, now)
            case _Purpose.NEIGHBORS:
                # Promote the next successor and ask it at once.
                self._stabilizing = False
                self._stabilize(out, now)
            case _Purpose.CANDIDATE:
                if op is not None and op.kind is _Kind.JOIN:
                    self._ask_owner(out, op, now)
                else:
                    self._stabilizing = False
                    if t.successors:
                        self._query(out, t.successor, Notify, _Purpose.NOTIFY, now)
            case _Purpose.FINGER:
                if op is not None:
                    self._ops.pop(op.op_id, None)
                self._finger_op = None
            case _Purpose.GET_PEERS | _Purpose.ANNOUNCE:
                if op is not None:
                    self._ask_owner(out, op, now)
            case _Purpose.HANDOFF | _Purpose.LEAVE:
                if op is not None:
                    self._leave_step(out, op)
            case _Purpose.NOTIFY | _Purpose.CHECK_PREDECESSOR:
                pass
            case _:
                assert_never(txn.purpose)
        if lost_successor and not self._stabilizing and not self._left:
            self._stabilize(out, now)

    def _leave_step(self, out: list[ChordOutput], op: _Op) -> None:
        op.pending -= 1
        if op.pending <= 0:
            succ = self._table.successors[0] if self._table.successors else None
            self._finish_leave(out, op, succ)

    # -- plumbing --------------------------------------------------------------------

    def _start(self, now: float) -> None:
        if self._started:
            return
        self._started = True
        # Spread the first rounds so peers started together don't march in step.
        cfg = self._cfg
        self._stabilize_at = now + self._rng.uniform(0, cfg.stabilize_interval_s)
        self._fix_at = now + self._rng.uniform(0, cfg.fix_fingers_interval_s)
        self._check_at = now + self._rng.uniform(0, cfg.check_predecessor_interval_s)
        self._maintain_at = now + cfg.maintenance_interval_s

    def _new_op(self, kind: _Kind, key: int, now: float, **kw: object) -> _Op:
        self._next_op += 1
        op = _Op(op_id=self._next_op, kind=kind, key=key, started=now)
        for name, value in kw.items():
            setattr(op, name, value)
        self._ops[op.op_id] = op
        return op

    def _check_key(self, key: int) -> None:
        if not 0 <= key < 1 << self._cfg.m:
            raise LocalKrpcError(f"chord: key {key} is outside 2^{self._cfg.m}")

    def _check_hash(self, info_hash: bytes) -> None:
        if len(info_hash) != 20:
            raise LocalKrpcError(f"chord: info_hash is {len(info_hash)} bytes, not 20")

    def _query(
        self,
        out: list[ChordOutput],
        peer: ChordPeer,
        cls: type[Ping] | type[GetNeighbors] | type[Notify],
        purpose: _Purpose,
        now: float,
        op_id: int = 0,
    ) -> None:
        msg = cls(transaction_id=b"", sender_id=self._me.id)
        self._query_msg(out, peer, msg, purpose, now, op_id)

    def _query_store(
        self,
        out: list[ChordOutput],
        peer: ChordPeer,
        items: tuple[StoredItem, ...],
        purpose: _Purpose,
        op_id: int,
        now: float,
    ) -> None:
        msg = Store(transaction_id=b"", sender_id=self._me.id, items=items)
        self._query_msg(out, peer, msg, purpose, now, op_id, items)

    def _query_msg(
        self,
        out: list[ChordOutput],
        peer: ChordPeer,
        msg: Query,
        purpose: _Purpose,
        now: float,
        op_id: int,
        items: tuple[StoredItem, ...] = (),
    ) -> None:
        """Send ``msg`` (its transaction id is filled in here) and remember it.
        ``peer.id`` of -1 means "id unknown" (a bootstrap address)."""
        tid = self._txns.new_tid()
        if tid is None:
            txn = _Txn(
                tid=b"",
                addr=peer.addr,
                expected_id=peer.id,
                purpose=purpose,
                payload=b"",
                op_id=op_id,
            )
            self._on_failure(out, txn, now, alive=True)
            return
        msg = _with_tid(msg, tid)
        payload = encode_message(msg, self._cfg.version)
        txns = self._txns
        txns.add(
            tid,
            _Txn(
                tid=tid,
                addr=peer.addr,
                expected_id=None if peer.id < 0 else peer.id,
                purpose=purpose,
                payload=payload,
                op_id=op_id,
                items=items,
            ),
        )
        cfg = self._cfg
        if cfg.retransmit_after_s > 0:
            for k in range(1, cfg.retransmits + 1):
                when = now + k * cfg.retransmit_after_s
                if when < now + cfg.query_timeout_s:
                    txns.schedule(tid, when, _Timer.RETRANSMIT.value)
        txns.schedule(tid, now + cfg.query_timeout_s, _Timer.TIMEOUT.value)
        self._counts["queries_out"] += 1
        self._send(out, peer.addr, payload)

    def _end_txn(self, txn: _Txn) -> None:
        self._txns.close(txn.tid)

    def _send(self, out: list[ChordOutput], addr: PeerAddr, payload: bytes) -> None:
        self._counts["bytes_out"] += len(payload)
        out.append(SendDatagram(addr=addr, payload=payload))


def _ttl(expires_at: float, now: float) -> int:
    return max(1, min(MAX_TTL_S, int(expires_at - now)))


def _with_tid(msg: Query, tid: bytes) -> Query:
    return dataclasses.replace(msg, transaction_id=tid)
