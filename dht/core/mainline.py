"""The Mainline DHT node as a sans-I/O datagram core (BEP 5; BEP 43 ``ro``).

Theory of operation. ``handle_datagram`` parses one KRPC message and returns
what to send and what happened; ``tick`` fires timers (query slowness,
retransmits, timeouts, token rotation, bucket refresh, peer expiry) and
``next_deadline`` says when to tick next. Starters (``start_lookup``,
``start_announce``, ``bootstrap``, ``ping``) return their first datagrams.

Queries are answered from the routing table, the token manager and the peer
store. Every answered query enters the transaction table (tid -> address,
method, expected id, owner, timers). Unknown transaction ids, answers from
the wrong address, and datagrams that don't parse are dropped; a query whose
method is unknown gets error 204, malformed arguments or a bad token 203.

Nodes enter the routing table only by answering us. An unknown node that
queries us is pinged (when the table could use it); its answer adds it. A
querier that says ``ro = 1`` (BEP 43, read-only) is answered but never added.

Deliberately left out: BEP 32 (IPv6 'nodes6'), BEP 42 id checks, BEP 44
storage, BEP 51 sampling.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum
from typing import assert_never

from dht.core.compact import PeerAddr
from dht.core.config import DhtConfig
from dht.core.distance import NodeId, local_node_id
from dht.core.events import (
    AnnounceDone,
    LookupDone,
    LookupKind,
    Output,
    PeerAnnounced,
    PeersFound,
    QueryTimedOut,
    SendDatagram,
)
from dht.core.kademlia.limits import SourceRateLimiter
from dht.core.kademlia.lookup import Lookup
from dht.core.kademlia.routing import NodeInfo, RoutingTable
from dht.core.kademlia.tokens import TokenManager
from dht.core.krpc import (
    MAX_DATAGRAM_BYTES,
    AnnouncePeer,
    ErrorCode,
    ErrorMessage,
    FindNode,
    GetPeers,
    KrpcMessage,
    Ping,
    Query,
    Response,
    decode_message,
    encode_message,
)
from dht.core.peerstore import PeerStore
from dht.core.transactions import TransactionTable
from dht.errors import BadQuery, LocalKrpcError, RemoteKrpcError

__all__ = ["DhtCore", "DhtStatistics"]

VERIFY_MEMORY = 2048  # unknown queriers remembered as "already pinged"
VERIFY_INTERVAL_S = 60.0  # seconds before the same unknown querier is pinged again


class _Purpose(Enum):
    LOOKUP = "lookup"  #: find_node / get_peers for a lookup
    PAGE = "page"  #: find_node for the next page past a lookup's dead entries
    PING = "ping"  #: verify a querier, a restored node, or a questionable entry
    ANNOUNCE = "announce"  #: announce_peer after a get_peers lookup


class _Timer(Enum):
    SLOW = 0
    RETRANSMIT = 1
    TIMEOUT = 2


@dataclass(slots=True)
class _Transaction:
    tid: bytes
    addr: PeerAddr
    method: str
    payload: bytes
    expected_id: NodeId | None
    purpose: _Purpose
    owner: int  # lookup id (LOOKUP / ANNOUNCE), else 0


@dataclass(slots=True)
class _LookupState:
    lookup: Lookup
    kind: LookupKind
    started: float
    announce_port: int | None = None
    implied_port: bool = False
    announce_sent: tuple[NodeInfo, ...] = ()
    announce_acked: list[NodeInfo] | None = None
    announce_pending: int = 0
    refresh_when_done: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DhtStatistics:
    """A snapshot of one node's counters."""

    node_id: bytes
    routing_table_size: int
    good_nodes: int
    buckets: int
    queries_in: int
    queries_out: int
    responses_in: int
    responses_out: int
    errors_out: int
    timeouts: int
    dropped_in: int
    bytes_in: int
    bytes_out: int
    datagrams_in: int
    datagrams_out: int
    peers_stored: int
    swarms_stored: int
    lookups_active: int
    lookups_done: int
    transactions_pending: int


class DhtCore:
    """One Mainline DHT node, without sockets or clocks."""

    def __init__(
        self, node_id: bytes, rng: random.Random, config: DhtConfig | None = None
    ) -> None:
        self._id = local_node_id(node_id)
        self._rng = rng
        self._cfg = config or DhtConfig()
        cfg = self._cfg
        self._table = RoutingTable(
            self._id,
            k=cfg.k,
            good_window_s=cfg.good_window_s,
            bad_after_failures=cfg.bad_after_failures,
            refresh_after_s=cfg.bucket_refresh_s,
        )
        self._tokens = TokenManager(rng, cfg.token_rotate_s)
        self._peers = PeerStore(
            ttl_s=cfg.peer_ttl_s,
            max_per_swarm=cfg.max_peers_per_swarm,
            max_total=cfg.max_peers_total,
        )
        self._limiter = SourceRateLimiter(cfg.rate_limit_per_s, cfg.rate_limit_burst)
        self._txns = TransactionTable[_Transaction](
            tid_bytes=2,
            first_tid=rng.getrandbits(16),
            max_pending=cfg.max_transactions,
        )
        self._lookups: dict[int, _LookupState] = {}
        self._next_lookup = 1
        self._verified: dict[PeerAddr, float] = {}
        self._maintenance_at: float | None = None
        self._bootstrap_seeds: list[PeerAddr] = []
        self._upkeep_at: float | None = None
        self._started = False
        self._counts: dict[str, int] = dict.fromkeys(
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
                "datagrams_in",
                "datagrams_out",
                "lookups_done",
            ),
            0,
        )

    # -- public surface -------------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self._id

    @property
    def config(self) -> DhtConfig:
        return self._cfg

    @property
    def routing_table(self) -> RoutingTable:
        return self._table

    def routing_nodes(self) -> list[NodeInfo]:
        """Every routing-table entry, for saving the table."""
        return self._table.nodes()

    def statistics(self, now: float) -> DhtStatistics:
        c = self._counts
        return DhtStatistics(
            node_id=self._id,
            routing_table_size=len(self._table),
            good_nodes=self._table.good_count(now),
            buckets=self._table.bucket_count,
            queries_in=c["queries_in"],
            queries_out=c["queries_out"],
            responses_in=c["responses_in"],
            responses_out=c["responses_out"],
            errors_out=c["errors_out"],
            timeouts=c["timeouts"],
            dropped_in=c["dropped_in"],
            bytes_in=c["bytes_in"],
            bytes_out=c["bytes_out"],
            datagrams_in=c["datagrams_in"],
            datagrams_out=c["datagrams_out"],
            peers_stored=len(self._peers),
            swarms_stored=self._peers.swarm_count,
            lookups_active=len(self._lookups),
            lookups_done=c["lookups_done"],
            transactions_pending=len(self._txns),
        )

    def handle_datagram(self, data: bytes, addr: PeerAddr, now: float) -> list[Output]:
        """Feed one received datagram; returns datagrams to send and events.

        Never raises on remote input: junk is dropped or answered with a
        KRPC error.
        """
        self._start(now)
        self._counts["datagrams_in"] += 1
        self._counts["bytes_in"] += len(data)
        out: list[Output] = []
        if len(data) > MAX_DATAGRAM_BYTES:
            self._counts["dropped_in"] += 1
            return out
        try:
            msg: KrpcMessage = decode_message(data)
        except BadQuery as exc:
            self._counts["dropped_in"] += 1
            if self._limiter.allow(addr.host, now):
                self._send_error(out, addr, exc.transaction_id, exc.code, str(exc))
            return out
        except RemoteKrpcError:
            self._counts["dropped_in"] += 1
            return out
        match msg:
            case Ping() | FindNode() | GetPeers() | AnnouncePeer():
                self._on_query(out, msg, addr, now)
            case Response():
                self._on_response(out, msg, addr, now)
            case ErrorMessage():
                self._on_error(out, msg, addr, now)
            case _:
                assert_never(msg)
        return out

    def tick(self, now: float) -> list[Output]:
        """Fire every timer due at ``now``."""
        self._start(now)
        out: list[Output] = []
        for txn, kind in self._txns.due(now):
            self._on_timer(out, txn, _Timer(kind), now)
        if self._upkeep_at is not None and now >= self._upkeep_at:
            self._upkeep_at = now + self._cfg.upkeep_interval_s
            stale = self._table.stalest(now, self._cfg.upkeep_after_s)
            if stale is not None:
                self._send_query(
                    out, stale.addr, "ping", stale.id, _Purpose.PING, 0, now, None
                )
        if self._maintenance_at is not None and now >= self._maintenance_at:
            self._maintenance_at = now + self._cfg.maintenance_interval_s
            self._peers.expire(now)
            self._tokens.make("0.0.0.0", now)  # rotates the secret when due
            if not len(self._table) and self._bootstrap_seeds:
                # BEP 5: an empty table means we are not in the DHT; retry the
                # last bootstrap nodes once per maintenance interval.
                _, more = self.bootstrap(self._bootstrap_seeds, now)
                out.extend(more)
            for target in self._table.refresh_targets(now, self._rng):
                self._begin_lookup(out, target, LookupKind.FIND_NODE, now, [], None)
            self._verified = {a: t for a, t in self._verified.items() if t > now}
        return out

    def next_deadline(self) -> float | None:
        """When ``tick`` should next be called (None: only on new input)."""
        times = (self._maintenance_at, self._upkeep_at, self._txns.next_deadline())
        return min((t for t in times if t is not None), default=None)

    def start_lookup(
        self,
        target: bytes,
        now: float,
        kind: LookupKind = LookupKind.FIND_NODE,
        seeds: list[PeerAddr] | None = None,
    ) -> tuple[int, list[Output]]:
        """Begin an iterative lookup from the routing table's closest nodes
        (plus bare ``seeds`` addresses). Ends with a ``LookupDone``; a
        get_peers lookup also reports ``PeersFound`` as replies arrive.

        Raises:
            LocalKrpcError: if ``target`` is not 20 bytes.
        """
        self._start(now)
        out: list[Output] = []
        lookup_id = self._begin_lookup(
            out, local_node_id(target), kind, now, list(seeds or []), None
        )
        return lookup_id, out

    def start_announce(
        self, info_hash: bytes, port: int, now: float, implied_port: bool = False
    ) -> tuple[int, list[Output]]:
        """get_peers lookup for ``info_hash``, then announce_peer (with each
        node's token) to the k closest nodes that answered. Ends with a
        ``LookupDone`` and then an ``AnnounceDone``.

        Raises:
            LocalKrpcError: if ``info_hash`` is not 20 bytes or ``port`` is
                out of range.
        """
        if not 0 <= port <= 0xFFFF or (port == 0 and not implied_port):
            raise LocalKrpcError(f"dht: announce port {port} is not in 1..65535")
        self._start(now)
        out: list[Output] = []
        lookup_id = self._begin_lookup(
            out,
            local_node_id(info_hash),
            LookupKind.GET_PEERS,
            now,
            [],
            (port, implied_port),
        )
        return lookup_id, out

    def bootstrap(self, addrs: list[PeerAddr], now: float) -> tuple[int, list[Output]]:
        """find_node on our own id, asking ``addrs`` (and the table) first
        (BEP 5); when it ends, every bucket is refreshed once so the table
        also learns the far parts of the id space."""
        lookup_id, out = self.start_lookup(
            self._id, now, LookupKind.FIND_NODE, seeds=addrs
        )
        state = self._lookups.get(lookup_id)
        if state is not None:
            state.refresh_when_done = True
        elif len(self._table):
            self._refresh_all(out, now)
        return lookup_id, out

    def _refresh_all(self, out: list[Output], now: float) -> None:
        for target in self._table.refresh_targets(now, self._rng, force=True):
            if target != self._id:
                self._begin_lookup(out, target, LookupKind.FIND_NODE, now, [], None)

    def ping(
        self, addr: PeerAddr, now: float, expected_id: NodeId | None = None
    ) -> list[Output]:
        """Ping a node; its answer adds it to the table."""
        self._start(now)
        out: list[Output] = []
        self._send_query(out, addr, "ping", expected_id, _Purpose.PING, 0, now, None)
        return out

    def restore_nodes(self, nodes: list[NodeInfo], now: float) -> list[Output]:
        """Ping nodes from a saved table; those that answer are re-added."""
        out: list[Output] = []
        for n in nodes:
            out.extend(self.ping(n.addr, now, n.id))
        return out

    def cancel_lookup(self, lookup_id: int) -> None:
        """Forget a lookup; its late answers are still used for the table."""
        self._lookups.pop(lookup_id, None)

    # -- incoming -------------------------------------------------------------------

    def _start(self, now: float) -> None:
        if not self._started:
            self._started = True
            self._maintenance_at = now + self._cfg.maintenance_interval_s
            self._upkeep_at = now + self._cfg.upkeep_interval_s
            self._tokens.make("0.0.0.0", now)

    def _on_query(
        self, out: list[Output], q: Query, addr: PeerAddr, now: float
    ) -> None:
        if not self._limiter.allow(addr.host, now):
            self._counts["dropped_in"] += 1
            return
        self._counts["queries_in"] += 1
        if not q.read_only and q.sender_id != self._id:
            known = self._table.heard_query(q.sender_id, addr, now)
            if not known and self._should_verify(q.sender_id, addr, now):
                self._send_query(
                    out, addr, "ping", q.sender_id, _Purpose.PING, 0, now, None
                )
        k = self._cfg.k
        reply: Response | ErrorMessage
        match q:
            case Ping():
                reply = Response(transaction_id=q.transaction_id, sender_id=self._id)
            case FindNode():
                nodes = self._table.closest(q.target, k, include_failing=False)
                reply = Response(
                    transaction_id=q.transaction_id,
                    sender_id=self._id,
                    nodes=tuple((n.id, n.addr) for n in nodes),
                )
            case GetPeers():
                values = self._peers.get(
                    q.info_hash, now, self._cfg.max_values_per_reply, self._rng
                )
                nodes = self._table.closest(q.info_hash, k, include_failing=False)
                reply = Response(
                    transaction_id=q.transaction_id,
                    sender_id=self._id,
                    nodes=tuple((n.id, n.addr) for n in nodes),
                    values=tuple(values),
                    token=self._tokens.make(addr.host, now),
                )
            case AnnouncePeer():
                if not self._tokens.check(q.token, addr.host, now):
                    self._send_error(
                        out, addr, q.transaction_id, ErrorCode.PROTOCOL, "bad token"
                    )
                    return
                peer = PeerAddr(addr.host, addr.port if q.implied_port else q.port)
                if self._peers.add(q.info_hash, peer, now):
                    out.append(PeerAnnounced(info_hash=q.info_hash, peer=peer))
                reply = Response(transaction_id=q.transaction_id, sender_id=self._id)
            case _:
                assert_never(q)
        self._counts["responses_out"] += 1
        self._emit(out, addr, self._with_version(reply))

    def _should_verify(self, sender_id: NodeId, addr: PeerAddr, now: float) -> bool:
        if self._verified.get(addr, 0.0) > now:
            return False
        if not self._table.would_accept(sender_id, addr, now):
            return False
        if len(self._verified) >= VERIFY_MEMORY:
            self._verified = {a: t for a, t in self._verified.items() if t > now}
            if len(self._verified) >= VERIFY_MEMORY:
                return False
        self._verified[addr] = now + VERIFY_INTERVAL_S
        return True

    def _on_response(
        self, out: list[Output], r: Response, addr: PeerAddr, now: float
    ) -> None:
        txn = self._txns.take_from(r.transaction_id, addr)
        if txn is None:
            self._counts["dropped_in"] += 1
            return
        self._counts["responses_in"] += 1
        id_ok = txn.expected_id is None or txn.expected_id == r.sender_id
        if id_ok:
            for stale in self._table.heard_response(r.sender_id, addr, now):
                self._send_query(
                    out, stale.addr, "ping", stale.id, _Purpose.PING, 0, now, None
                )
        state = self._lookups.get(txn.owner)
        if state is None:
            return
        if txn.purpose is _Purpose.LOOKUP:
            lk = state.lookup
            if not id_ok:
                lk.on_failure(addr)
            else:
                new = lk.on_response(addr, r.sender_id, r.nodes, r.values, r.token)
                if new and state.kind is LookupKind.GET_PEERS:
                    out.append(
                        PeersFound(
                            lookup_id=txn.owner, info_hash=lk.target, peers=tuple(new)
                        )
                    )
            self._advance(out, txn.owner, state, now)
        elif txn.purpose is _Purpose.PAGE:
            state.lookup.on_page_answer(addr, r.nodes, answered=id_ok)
            self._advance(out, txn.owner, state, now)
        elif txn.purpose is _Purpose.ANNOUNCE:
            self._announce_answered(out, txn, state, acked=id_ok)

    def _on_error(
        self, out: list[Output], e: ErrorMessage, addr: PeerAddr, now: float
    ) -> None:
        txn = self._txns.take_from(e.transaction_id, addr)
        if txn is None:
            self._counts["dropped_in"] += 1
            return
        self._query_failed(out, txn, now)

    def _query_failed(self, out: list[Output], txn: _Transaction, now: float) -> None:
        """An error reply or a timeout: the lookup or announce that sent
        ``txn`` (if any) counts it as failed."""
        state = self._lookups.get(txn.owner)
        if state is None:
            return
        if txn.purpose is _Purpose.LOOKUP:
            state.lookup.on_failure(txn.addr)
            self._advance(out, txn.owner, state, now)
        elif txn.purpose is _Purpose.PAGE:
            state.lookup.on_page_answer(txn.addr, (), answered=False)
            self._advance(out, txn.owner, state, now)
        elif txn.purpose is _Purpose.ANNOUNCE:
            self._announce_answered(out, txn, state, acked=False)

    def _on_timer(
        self, out: list[Output], txn: _Transaction, kind: _Timer, now: float
    ) -> None:
        state = self._lookups.get(txn.owner)
        if kind is _Timer.SLOW:
            if state is not None and txn.purpose is _Purpose.LOOKUP:
                state.lookup.on_slow(txn.addr)
                self._advance(out, txn.owner, state, now)
            return
        if kind is _Timer.RETRANSMIT:
            self._counts["queries_out"] += 1
            self._emit(out, txn.addr, txn.payload)
            return
        self._txns.close(txn.tid)
        self._counts["timeouts"] += 1
        self._table.failed(txn.addr, txn.expected_id, now)
        out.append(
            QueryTimedOut(addr=txn.addr, node_id=txn.expected_id, method=txn.method)
        )
        self._query_failed(out, txn, now)

    # -- lookups --------------------------------------------------------------------

    def _begin_lookup(
        self,
        out: list[Output],
        target: NodeId,
        kind: LookupKind,
        now: float,
        seeds: list[PeerAddr],
        announce: tuple[int, bool] | None,
    ) -> int:
        lookup_id = self._next_lookup
        self._next_lookup += 1
        cfg = self._cfg
        lk = Lookup(
            target=target,
            own_id=self._id,
            k=cfg.k,
            alpha=cfg.alpha,
            max_candidates=cfg.max_lookup_candidates,
        )
        lk.add_nodes(self._table.closest(target, cfg.k * 2), depth=0)
        lk.add_seed_addresses(seeds)
        state = _LookupState(lookup=lk, kind=kind, started=now)
        if announce is not None:
            state.announce_port, state.implied_port = announce
        self._lookups[lookup_id] = state
        self._advance(out, lookup_id, state, now)
        return lookup_id

    def _advance(
        self, out: list[Output], lookup_id: int, state: _LookupState, now: float
    ) -> None:
        if state.announce_acked is not None:
            return  # lookup finished; waiting for announce_peer answers
        lk = state.lookup
        method = "get_peers" if state.kind is LookupKind.GET_PEERS else "find_node"
        for c in lk.next_queries():
            if not self._send_query(
                out, c.addr, method, c.id, _Purpose.LOOKUP, lookup_id, now, lk.target
            ):
                lk.on_failure(c.addr)
        for c, page in lk.next_pages():
            if not self._send_query(
                out, c.addr, "find_node", c.id, _Purpose.PAGE, lookup_id, now, page
            ):
                lk.on_page_answer(c.addr, (), answered=False)
        if not lk.done:
            return
        closest = lk.closest()
        self._counts["lookups_done"] += 1
        out.append(
            LookupDone(
                lookup_id=lookup_id,
                target=lk.target,
                kind=state.kind,
                nodes=tuple(
                    NodeInfo(id=c.id, addr=c.addr) for c in closest if c.id is not None
                ),
                peers=tuple(lk.peers),
                hops=lk.hops,
                queries=lk.queries,
                duration_s=now - state.started,
            )
        )
        if state.announce_port is None:
            del self._lookups[lookup_id]
            if state.refresh_when_done:
                self._refresh_all(out, now)
            return
        targets = [c for c in closest if c.id is not None and c.token is not None]
        state.announce_acked = []
        state.announce_sent = tuple(
            NodeInfo(id=c.id, addr=c.addr) for c in targets if c.id
        )
        for c in targets:
            assert c.id is not None  # filtered just above
            assert c.token is not None  # filtered just above
            msg = AnnouncePeer(
                transaction_id=b"",
                sender_id=self._id,
                info_hash=lk.target,
                port=state.announce_port,
                token=c.token,
                implied_port=state.implied_port,
            )
            if self._send_query(
                out,
                c.addr,
                "announce_peer",
                c.id,
                _Purpose.ANNOUNCE,
                lookup_id,
                now,
                msg,
            ):
                state.announce_pending += 1
        if state.announce_pending == 0:
            self._finish_announce(out, lookup_id, state)

    def _announce_answered(
        self, out: list[Output], txn: _Transaction, state: _LookupState, *, acked: bool
    ) -> None:
        state.announce_pending -= 1
        if acked and state.announce_acked is not None and txn.expected_id is not None:
            state.announce_acked.append(NodeInfo(id=txn.expected_id, addr=txn.addr))
        if state.announce_pending <= 0:
            self._finish_announce(out, txn.owner, state)

    def _finish_announce(
        self, out: list[Output], lookup_id: int, state: _LookupState
    ) -> None:
        self._lookups.pop(lookup_id, None)
        out.append(
            AnnounceDone(
                lookup_id=lookup_id,
                info_hash=state.lookup.target,
                sent_to=state.announce_sent,
                stored_at=tuple(state.announce_acked or ()),
            )
        )

    # -- outgoing -------------------------------------------------------------------

    def _send_query(
        self,
        out: list[Output],
        addr: PeerAddr,
        method: str,
        expected_id: NodeId | None,
        purpose: _Purpose,
        owner: int,
        now: float,
        arg: NodeId | AnnouncePeer | None,
    ) -> bool:
        tid = self._txns.new_tid()
        if tid is None:
            return False
        v = self._cfg.version
        msg: Query
        if method == "ping":
            msg = Ping(transaction_id=tid, sender_id=self._id, version=v)
        elif method == "find_node":
            assert isinstance(arg, bytes)  # callers pass the target
            msg = FindNode(
                transaction_id=tid, sender_id=self._id, target=arg, version=v
            )
        elif method == "get_peers":
            assert isinstance(arg, bytes)  # callers pass the info-hash
            msg = GetPeers(
                transaction_id=tid, sender_id=self._id, info_hash=arg, version=v
            )
        else:
            assert isinstance(arg, AnnouncePeer)  # callers pass the prepared message
            msg = AnnouncePeer(
                transaction_id=tid,
                sender_id=self._id,
                info_hash=arg.info_hash,
                port=arg.port,
                token=arg.token,
                implied_port=arg.implied_port,
                version=v,
            )
        payload = encode_message(msg)
        txns = self._txns
        txns.add(
            tid,
            _Transaction(
                tid=tid,
                addr=addr,
                method=method,
                payload=payload,
                expected_id=expected_id,
                purpose=purpose,
                owner=owner,
            ),
        )
        cfg = self._cfg
        if purpose is _Purpose.LOOKUP and cfg.slow_after_s < cfg.query_timeout_s:
            txns.schedule(tid, now + cfg.slow_after_s, _Timer.SLOW.value)
        if cfg.retransmit_after_s > 0:
            at = now + cfg.retransmit_after_s
            while at < now + cfg.query_timeout_s - 1e-9:
                txns.schedule(tid, at, _Timer.RETRANSMIT.value)
                at += cfg.retransmit_after_s
        txns.schedule(tid, now + cfg.query_timeout_s, _Timer.TIMEOUT.value)
        self._counts["queries_out"] += 1
        self._emit(out, addr, payload)
        return True

    def _with_version(self, msg: Response | ErrorMessage) -> bytes:
        if isinstance(msg, Response):
            msg = Response(
                transaction_id=msg.transaction_id,
                sender_id=msg.sender_id,
                nodes=msg.nodes,
                values=msg.values,
                token=msg.token,
                version=self._cfg.version,
            )
        return encode_message(msg)

    def _send_error(
        self, out: list[Output], addr: PeerAddr, tid: bytes, code: int, text: str
    ) -> None:
        self._counts["errors_out"] += 1
        msg = ErrorMessage(
            transaction_id=tid, code=code, message=text, version=self._cfg.version
        )
        self._emit(out, addr, encode_message(msg))

    def _emit(self, out: list[Output], addr: PeerAddr, payload: bytes) -> None:
        self._counts["datagrams_out"] += 1
        self._counts["bytes_out"] += len(payload)
        out.append(SendDatagram(addr=addr, payload=payload))
