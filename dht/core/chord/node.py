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
  From then on the peer is no ring member: it answers no queries, runs no
  maintenance (not even the rest of a stabilize round already in flight,
  whose notify would make the successor take it back as predecessor), and
  owns no key; its own lookups still work, through its old pointers, and
  end at the successor for the keys it handed over.

The code follows those seams: ``base.py`` holds the state and sends
queries, ``lookup.py`` the lookups, ``maintenance.py`` stabilize, notify,
fix_fingers and key handoff; this module is the public core, which answers
queries and routes answers and failures to the part that asked.

Deliberately left out: replication of keys on the successor list (a key
whose owner dies silently is gone until re-announced), tokens on
announce_peer, IPv6.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from dht.core.chord.base import (
    ITEMS_PER_STORE,
    Kind,
    Purpose,
    Timer,
    Txn,
    remaining_ttl,
)
from dht.core.chord.events import ChordJoined, ChordOutput
from dht.core.chord.maintenance import ChordMaintenance
from dht.core.chord.messages import (
    MAX_DATAGRAM_BYTES,
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
from dht.core.chord.ring import key_id
from dht.core.compact import PeerAddr
from dht.errors import BadQuery, LocalKrpcError, RemoteKrpcError

__all__ = ["ChordCore", "ChordStatistics"]


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


class ChordCore(ChordMaintenance):
    """One Chord ring peer, without sockets or clocks.

    Args:
        node_id: our id on the 2^m circle.
        addr: our UDP address, as others reach us (it goes into replies).
        rng: randomness (transaction ids, reply sampling).
        config: protocol parameters.

    Raises:
        LocalKrpcError: ``node_id`` is outside the circle.
    """

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
                txn = self._txns.take_from(msg.transaction_id, addr)
                if txn is None:
                    self._counts["dropped_in"] += 1
                else:
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
            if kind == Timer.RETRANSMIT.value:
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
                self._query(out, pred, Ping, Purpose.CHECK_PREDECESSOR, now)
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
        op = self._new_op(Kind.JOIN, self._me.id, now)
        out: list[ChordOutput] = []
        self._query_find(out, op, None, bootstrap, now)
        return op.op_id, out

    def start_lookup(self, key: int, now: float) -> tuple[int, list[ChordOutput]]:
        """Find successor(key); ends with ``ChordLookupDone``.

        Raises:
            LocalKrpcError: ``key`` is outside the circle.
        """
        self._check_key(key)
        return self._begin(Kind.LOOKUP, key, now)

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
            Kind.GET_PEERS, key_id(info_hash, self._cfg.m), now, info_hash=info_hash
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
            Kind.ANNOUNCE,
            key_id(info_hash, self._cfg.m),
            now,
            info_hash=info_hash,
            port=port,
        )

    def start_leave(self, now: float) -> tuple[int, list[ChordOutput]]:
        """Leave gracefully: every key to the successor, then ``leave`` to
        predecessor and successor. Afterwards queries are ignored, no
        maintenance runs and we own no key (our lookups go to the ring).
        Ends with ``ChordLeft``."""
        self._start(now)
        op = self._new_op(Kind.LEAVE, self._me.id, now)
        out: list[ChordOutput] = []
        self._left = True
        succ = self._table.successors[0] if self._table.successors else None
        if succ is not None:
            items = [
                StoredItem(info_hash=ih, peer=p, ttl_s=remaining_ttl(exp, now))
                for ih, p, exp in self._store.items(now)
            ]
            for i in range(0, len(items), ITEMS_PER_STORE):
                chunk = tuple(items[i : i + ITEMS_PER_STORE])
                self._query_store(out, succ, chunk, Purpose.HANDOFF, op.op_id, now)
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
                self._query_msg(out, peer, msg, Purpose.LEAVE, now, op.op_id)
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
            case Purpose.FIND:
                if op is not None:
                    self._on_find_reply(out, op, peer, msg, now)
            case Purpose.NEIGHBORS if self._left:
                # A stabilize round that outlived our leave: a notify now
                # would make the successor take us back as its predecessor
                # (and hand us the keys we just gave it).
                self._stabilizing = False
            case Purpose.NEIGHBORS:
                t.adopt_successor(peer, msg.successors)
                p = msg.predecessor
                if p is not None and _between(p.id, self._me.id, peer.id):
                    self._query(out, p, GetNeighbors, Purpose.CANDIDATE, now)
                else:
                    self._stabilizing = False
                    self._query(out, peer, Notify, Purpose.NOTIFY, now)
            case Purpose.CANDIDATE:
                # It answered, so it may become our successor (Zave's rule).
                if op is not None and op.kind is Kind.JOIN:
                    t.adopt_successor(peer, msg.successors)
                    self._ops.pop(op.op_id, None)
                    out.append(ChordJoined(op_id=op.op_id, successor=peer))
                elif self._left:
                    self._stabilizing = False
                    return
                elif not t.successors or _between(peer.id, self._me.id, t.successor.id):
                    t.adopt_successor(peer, msg.successors)
                    self._stabilizing = False
                else:
                    self._stabilizing = False
                self._query(out, t.successor, Notify, Purpose.NOTIFY, now)
            case Purpose.FINGER:
                if op is not None:
                    t.set_finger(op.finger, peer)
                    self._ops.pop(op.op_id, None)
                self._finger_op = None
            case Purpose.GET_PEERS:
                if op is not None:
                    self._peers_found(out, op, msg.values)
                    self._finish_lookup(out, op, now, peer)
            case Purpose.ANNOUNCE:
                if op is not None:
                    self._finish_announce(out, op, peer)
            case Purpose.HANDOFF:
                for item in txn.items:
                    self._store.remove(item.info_hash, item.peer)
                if op is not None:
                    op.handed += len(txn.items)
                    self._leave_step(out, op)
            case Purpose.LEAVE:
                if op is not None:
                    self._leave_step(out, op)
            case Purpose.NOTIFY | Purpose.CHECK_PREDECESSOR:
                pass
            case _:
                assert_never(txn.purpose)

    def _on_failure(
        self, out: list[ChordOutput], txn: Txn, now: float, alive: bool
    ) -> None:
        """A query timed out (``alive`` False: the peer is gone) or was
        answered with an error."""
        t = self._table
        lost_successor = False
        if not alive and txn.expected_id is not None and txn.expected_id >= 0:
            lost_successor = t.forget(txn.expected_id)
        op = self._ops.get(txn.op_id) if txn.op_id else None
        match txn.purpose:
            case Purpose.FIND:
                if op is not None:
                    self._next_candidate(out, op, now)
            case Purpose.NEIGHBORS:
                # Promote the next successor and ask it at once.
                self._stabilizing = False
                self._stabilize(out, now)
            case Purpose.CANDIDATE:
                if op is not None and op.kind is Kind.JOIN:
                    self._ask_owner(out, op, now)
                else:
                    self._stabilizing = False
                    if t.successors and not self._left:
                        self._query(out, t.successor, Notify, Purpose.NOTIFY, now)
            case Purpose.FINGER:
                if op is not None:
                    self._ops.pop(op.op_id, None)
                self._finger_op = None
            case Purpose.GET_PEERS | Purpose.ANNOUNCE:
                if op is not None:
                    self._ask_owner(out, op, now)
            case Purpose.HANDOFF | Purpose.LEAVE:
                if op is not None:
                    self._leave_step(out, op)
            case Purpose.NOTIFY | Purpose.CHECK_PREDECESSOR:
                pass
            case _:
                assert_never(txn.purpose)
        if lost_successor and not self._stabilizing and not self._left:
            self._stabilize(out, now)
