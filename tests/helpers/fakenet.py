"""A virtual-clock datagram network for running many sans-I/O DHT cores.

Deliveries and timer ticks sit in one heap of ``(when, seq, ...)``; latency
is drawn uniformly from a seeded range and a seeded fraction of datagrams is
lost. ``run_until(pred, max_virtual_s)`` advances virtual time event by event
until ``pred()`` holds. No asyncio, no sockets: hundreds of nodes run in one
process in seconds.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Protocol

from dht.core.compact import PeerAddr
from dht.core.events import Output, SendDatagram


class DatagramCore(Protocol):
    def handle_datagram(
        self, data: bytes, addr: PeerAddr, now: float
    ) -> list[Output]: ...

    def tick(self, now: float) -> list[Output]: ...

    def next_deadline(self) -> float | None: ...


_DELIVER = 0
_TICK = 1


class FakeNetwork:
    def __init__(
        self,
        rng: random.Random,
        *,
        latency_s: tuple[float, float] = (0.010, 0.100),
        loss: float = 0.05,
    ) -> None:
        self.rng = rng
        self.latency_s = latency_s
        self.loss = loss
        self.now = 0.0
        self.nodes: dict[PeerAddr, DatagramCore] = {}
        self.events: dict[PeerAddr, list[Output]] = {}
        self.delivered = 0
        self.lost = 0
        self._heap: list[tuple[float, int, int, PeerAddr, PeerAddr, bytes]] = []
        self._seq = 0
        self._tick_at: dict[PeerAddr, float] = {}

    def add(self, addr: PeerAddr, core: DatagramCore) -> None:
        self.nodes[addr] = core
        self.events[addr] = []
        self._schedule_tick(addr)

    def remove(self, addr: PeerAddr) -> None:
        """The node vanishes: datagrams to it are lost, its timers stop."""
        self.nodes.pop(addr, None)
        self._tick_at.pop(addr, None)

    def feed(self, addr: PeerAddr, outputs: list[Output]) -> None:
        """Act on a core's outputs (also for outputs of starters called by tests)."""
        for out in outputs:
            if isinstance(out, SendDatagram):
                self._send(addr, out.addr, out.payload)
            else:
                self.events[addr].append(out)
        self._schedule_tick(addr)

    def _push(
        self, when: float, kind: int, src: PeerAddr, dst: PeerAddr, data: bytes
    ) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, kind, src, dst, data))

    def _send(self, src: PeerAddr, dst: PeerAddr, payload: bytes) -> None:
        if self.rng.random() < self.loss:
            self.lost += 1
            return
        lo, hi = self.latency_s
        self._push(self.now + self.rng.uniform(lo, hi), _DELIVER, src, dst, payload)

    def _schedule_tick(self, addr: PeerAddr) -> None:
        core = self.nodes.get(addr)
        if core is None:
            return
        deadline = core.next_deadline()
        if deadline is None:
            return
        deadline = max(deadline, self.now)
        current = self._tick_at.get(addr)
        if current is not None and current <= deadline:
            return
        self._tick_at[addr] = deadline
        self._push(deadline, _TICK, addr, addr, b"")

    def step(self) -> bool:
        """Process one event; False when nothing is left."""
        if not self._heap:
            return False
        when, _, kind, src, dst, data = heapq.heappop(self._heap)
        self.now = max(self.now, when)
        if kind == _TICK:
            if self._tick_at.get(dst) != when:
                return True
            del self._tick_at[dst]
            core = self.nodes.get(dst)
            if core is not None:
                self.feed(dst, core.tick(self.now))
            return True
        core = self.nodes.get(dst)
        if core is None:
            self.lost += 1
            return True
        self.delivered += 1
        self.feed(dst, core.handle_datagram(data, src, self.now))
        return True

    def run_until(self, pred: Callable[[], bool], max_virtual_s: float) -> bool:
        """Advance until ``pred()`` holds (True) or ``max_virtual_s`` of virtual
        time has passed or nothing is left to do (False)."""
        end = self.now + max_virtual_s
        while not pred():
            if not self._heap or self._heap[0][0] > end:
                return pred()
            self.step()
        return True

    def run_for(self, virtual_s: float) -> None:
        end = self.now + virtual_s
        while self._heap and self._heap[0][0] <= end:
            self.step()
        self.now = max(self.now, end)
