"""State and plumbing shared by the parts of the Chord core.

:class:`ChordBase` holds a ring peer's state (pointers, key store,
transactions, operations, counters) and sends queries: it fills in the
transaction id, records the transaction and schedules its retransmits and
timeout. The logic lives in the classes built on it: lookups
(``lookup.py``), maintenance (``maintenance.py``) and the public core that
answers and dispatches messages (``node.py``, whose docstring has the
theory of operation).
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from enum import Enum

from dht.core.chord.config import ChordConfig
from dht.core.chord.events import ChordOutput, SendDatagram
from dht.core.chord.messages import (
    MAX_TTL_S,
    ChordPeer,
    GetNeighbors,
    Notify,
    Ping,
    Query,
    Store,
    StoredItem,
    encode_message,
)
from dht.core.chord.table import ChordTable
from dht.core.compact import PeerAddr
from dht.core.peerstore import PeerStore
from dht.core.transactions import TransactionTable
from dht.errors import LocalKrpcError

__all__ = [
    "ITEMS_PER_STORE",
    "ChordBase",
    "Kind",
    "Op",
    "Purpose",
    "Timer",
    "Txn",
    "remaining_ttl",
    "with_tid",
]

ITEMS_PER_STORE = 32  # stored items per handoff datagram (~1.3 KiB, under the cap)


class Purpose(Enum):
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


class Kind(Enum):
    LOOKUP = "lookup"  #: find the owner, report it
    GET_PEERS = "get_peers"  #: find the owner, ask it for peers
    ANNOUNCE = "announce"  #: find the owner, store our address there
    FINGER = "finger"  #: find a finger's peer
    JOIN = "join"  #: find our successor through a bootstrap peer
    LEAVE = "leave"  #: hand off keys and say goodbye


class Timer(Enum):
    RETRANSMIT = 0
    TIMEOUT = 1


@dataclass(slots=True)
class Txn:
    tid: bytes
    addr: PeerAddr
    expected_id: int | None
    purpose: Purpose
    payload: bytes
    op_id: int = 0
    items: tuple[StoredItem, ...] = ()


@dataclass(slots=True)
class Op:
    op_id: int
    kind: Kind
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


class ChordBase:
    """A ring peer's state and the sending of queries (see the module doc).

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
        self._txns = TransactionTable[Txn](
            tid_bytes=4,
            first_tid=rng.getrandbits(32),
            max_pending=self._cfg.max_transactions,
        )
        self._ops: dict[int, Op] = {}
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

    def _new_op(self, kind: Kind, key: int, now: float, **kw: object) -> Op:
        self._next_op += 1
        op = Op(op_id=self._next_op, kind=kind, key=key, started=now)
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
        purpose: Purpose,
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
        purpose: Purpose,
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
        purpose: Purpose,
        now: float,
        op_id: int,
        items: tuple[StoredItem, ...] = (),
    ) -> None:
        """Send ``msg`` (its transaction id is filled in here) and remember it.
        ``peer.id`` of -1 means "id unknown" (a bootstrap address)."""
        tid = self._txns.new_tid()
        if tid is None:
            txn = Txn(
                tid=b"",
                addr=peer.addr,
                expected_id=peer.id,
                purpose=purpose,
                payload=b"",
                op_id=op_id,
            )
            self._on_failure(out, txn, now, alive=True)
            return
        msg = with_tid(msg, tid)
        payload = encode_message(msg, self._cfg.version)
        txns = self._txns
        txns.add(
            tid,
            Txn(
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
                    txns.schedule(tid, when, Timer.RETRANSMIT.value)
        txns.schedule(tid, now + cfg.query_timeout_s, Timer.TIMEOUT.value)
        self._counts["queries_out"] += 1
        self._send(out, peer.addr, payload)

    def _end_txn(self, txn: Txn) -> None:
        self._txns.close(txn.tid)

    def _send(self, out: list[ChordOutput], addr: PeerAddr, payload: bytes) -> None:
        self._counts["bytes_out"] += len(payload)
        out.append(SendDatagram(addr=addr, payload=payload))

    def _on_failure(
        self, out: list[ChordOutput], txn: Txn, now: float, alive: bool
    ) -> None:
        """A query failed; :class:`~dht.core.chord.node.ChordCore` decides
        what that means for the operation or pointer that sent it."""
        raise NotImplementedError


def remaining_ttl(expires_at: float, now: float) -> int:
    return max(1, min(MAX_TTL_S, int(expires_at - now)))


def with_tid(msg: Query, tid: bytes) -> Query:
    return dataclasses.replace(msg, transaction_id=tid)
