"""The transaction table of a KRPC-style datagram core (BEP 5 "KRPC").

Every query we send gets a fresh transaction id ``t``; the table maps it to
what the core needs when the answer (or silence) comes back, and holds the
query's timers (retransmit, timeout, ...) in one heap ordered by time. A
timer names its transaction by id and by a serial number given when the
transaction was opened, so a timer whose transaction was answered, closed,
or replaced by a newer one with the same id is skipped, not fired.

Both overlays (Mainline's ``DhtCore``, ``ChordCore``) use it; what a
transaction records and what each timer kind means stay theirs.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from typing import Generic, Protocol, TypeVar

from dht.core.compact import PeerAddr

__all__ = ["TransactionTable"]


class _Addressed(Protocol):
    @property
    def addr(self) -> PeerAddr: ...


TxnT = TypeVar("TxnT", bound=_Addressed)


class TransactionTable(Generic[TxnT]):
    """tid -> outstanding query, with its timers.

    Args:
        tid_bytes: length of the transaction ids we make (BEP 5 suggests 2).
        first_tid: where the id counter starts (random, so a restarted node
            does not reuse its previous ids at once).
        max_pending: transactions open at once; ``new_tid`` refuses beyond it.
    """

    def __init__(self, *, tid_bytes: int, first_tid: int, max_pending: int) -> None:
        self._tid_bytes = tid_bytes
        self._mask = (1 << (8 * tid_bytes)) - 1
        self._next_tid = first_tid & self._mask
        self._max_pending = max_pending
        self._pending: dict[bytes, tuple[int, TxnT]] = {}  # tid -> (serial, txn)
        # (when, serial, kind, tid), a heap
        self._timers: list[tuple[float, int, int, bytes]] = []
        self._serial = 0

    def __len__(self) -> int:
        return len(self._pending)

    def new_tid(self) -> bytes | None:
        """A transaction id not in use, or None when the table is full."""
        if len(self._pending) >= self._max_pending:
            return None
        while True:
            self._next_tid = (self._next_tid + 1) & self._mask
            tid = self._next_tid.to_bytes(self._tid_bytes, "big")
            if tid not in self._pending:
                return tid

    def add(self, tid: bytes, txn: TxnT) -> None:
        """Record ``txn`` under ``tid`` (from :meth:`new_tid`)."""
        self._serial += 1
        self._pending[tid] = (self._serial, txn)

    def schedule(self, tid: bytes, when: float, kind: int) -> None:
        """Fire timer ``kind`` of the open transaction ``tid`` at ``when``."""
        serial, _ = self._pending[tid]
        heapq.heappush(self._timers, (when, serial, kind, tid))

    def get(self, tid: bytes) -> TxnT | None:
        entry = self._pending.get(tid)
        return None if entry is None else entry[1]

    def get_from(self, tid: bytes, addr: PeerAddr) -> TxnT | None:
        """The open transaction ``tid`` if ``addr`` is where it was sent
        (an answer from anywhere else is not one)."""
        txn = self.get(tid)
        return txn if txn is not None and txn.addr == addr else None

    def take_from(self, tid: bytes, addr: PeerAddr) -> TxnT | None:
        """Like :meth:`get_from`, and close the transaction when found."""
        txn = self.get_from(tid, addr)
        if txn is not None:
            self.close(tid)
        return txn

    def close(self, tid: bytes) -> None:
        """Forget ``tid``; its timers will be skipped."""
        self._pending.pop(tid, None)

    def due(self, now: float) -> Iterator[tuple[TxnT, int]]:
        """Pop every live timer due at ``now``, in time order, as (txn, kind).

        Lazy: a timer the caller's handling adds or cancels on the way is
        seen (or skipped) as if the loop were written out.
        """
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, serial, kind, tid = heapq.heappop(timers)
            entry = self._pending.get(tid)
            if entry is not None and entry[0] == serial:
                yield entry[1], kind

    def next_deadline(self) -> float | None:
        """When the earliest live timer fires (None: no timer)."""
        timers = self._timers
        while timers:
            _, serial, _, tid = timers[0]
            entry = self._pending.get(tid)
            if entry is not None and entry[0] == serial:
                return timers[0][0]
            heapq.heappop(timers)
        return None
