"""The asyncio UDP driver for the Chord ring core.

``ChordNode`` runs a :class:`~dht.core.chord.node.ChordCore` on one UDP
socket through :class:`~dht.udp.UdpDriver` (datagrams straight to the core,
one timer task driving ``tick`` at ``next_deadline``). Joining, lookups,
announces and leaving are awaitable methods that wait for the core's
events. ``lookup_peers`` and ``announce`` have the same shape as
:class:`~dht.node.DhtNode`'s, so the client can use either overlay as a
peer source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable

from dht.core.chord.config import ChordConfig
from dht.core.chord.events import (
    ChordAnnounceDone,
    ChordJoined,
    ChordLeft,
    ChordLookupDone,
    ChordOutput,
    ChordPeersFound,
)
from dht.core.chord.messages import ChordPeer
from dht.core.chord.node import ChordCore, ChordStatistics
from dht.core.chord.ring import key_id, peer_id_for
from dht.core.compact import PeerAddr
from dht.errors import LocalKrpcError, LookupFailed
from dht.udp import UdpDriver

__all__ = ["ChordNode"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0  # seconds a join, lookup or announce may take
LEAVE_TIMEOUT_S = 3.0  # seconds a graceful leave may take (also on exit)

_Done = ChordLookupDone | ChordAnnounceDone | ChordJoined | ChordLeft


class ChordNode(UdpDriver[ChordCore, ChordOutput, _Done]):
    """A Chord ring peer on one UDP socket; use as ``async with``.

    Args:
        host: address to bind (loopback by default).
        port: UDP port; 0 picks a free one.
        node_id: our id on the 2^m circle; default: SHA-1 of "host:port"
            (Chord paper 4.2), taken modulo 2^m.
        config: protocol parameters (``m``, successor-list length r, ...).
        rng: randomness for the core (default: ``random.SystemRandom()``).
        leave_on_exit: leave gracefully (keys to the successor) on exit.
    """

    NAME = "chord"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        node_id: int | None = None,
        config: ChordConfig | None = None,
        rng: random.Random | None = None,
        leave_on_exit: bool = True,
    ) -> None:
        super().__init__(host=host, port=port)
        self._wanted_id = node_id
        self._config = config or ChordConfig()
        self._rng = rng or random.SystemRandom()
        self._leave_on_exit = leave_on_exit
        self._left = False
        self._activity = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> ChordNode:
        m = self._config.m

        def make_core(addr: PeerAddr) -> ChordCore:
            nid = self._wanted_id
            if nid is None:
                nid = peer_id_for(str(addr), m)
            return ChordCore(nid, addr, self._rng, self._config)

        core = await self._open(make_core)
        log.info(
            "chord: peer %s listening on %s", _short(core.node_id, m), self._address
        )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            core = self._core
            if (
                self._leave_on_exit
                and not self._left
                and core is not None
                and core.table.successors
            ):
                with contextlib.suppress(TimeoutError, LocalKrpcError):
                    await self.leave(LEAVE_TIMEOUT_S)
        finally:
            await self._close()

    # -- properties ------------------------------------------------------------------

    @property
    def node_id(self) -> int:
        """Our id on the 2^m circle."""
        return self._running().node_id

    @property
    def core(self) -> ChordCore:
        """The sans-I/O core (read its ``table`` for pointers; don't feed it)."""
        return self._running()

    def statistics(self) -> ChordStatistics:
        """A frozen snapshot of pointers and counters."""
        return self._running().statistics()

    # -- operations ------------------------------------------------------------------

    async def join(
        self, bootstrap: PeerAddr | str, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> ChordPeer:
        """Join the ring through the peer at ``bootstrap`` (``HOST:PORT``, an
        IP literal). Returns our successor.

        Raises:
            CompactFormatError: ``bootstrap`` is not ``HOST:PORT``.
            LookupFailed: no successor answered.
            TimeoutError: it took longer than ``timeout_s``.
        """
        addr = (
            bootstrap if isinstance(bootstrap, PeerAddr) else PeerAddr.parse(bootstrap)
        )
        core = self._running()
        op_id, outs = core.start_join(addr, self._now())
        done = await self._wait(op_id, outs, self._new_waiter(), timeout_s)
        assert isinstance(done, ChordJoined)
        if done.successor is None:
            raise LookupFailed(f"chord: could not join the ring through {addr}")
        log.info("chord: joined through %s, successor %s", addr, done.successor.addr)
        return done.successor

    async def bootstrap(
        self, addrs: Iterable[PeerAddr | str], timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> int:
        """:class:`~dht.node.DhtNode`-shaped join: try each address in turn
        until one works. Returns how many successors we know (0: none
        answered)."""
        for addr in addrs:
            try:
                await self.join(addr, timeout_s)
            except (LookupFailed, TimeoutError) as exc:
                log.info("chord: join through %s failed: %s", addr, exc)
                continue
            return len(self._running().table.successors)
        return 0

    async def lookup(
        self, key: int | bytes, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> ChordLookupDone:
        """Find successor(key); ``key`` is an id or a 20-byte hash.

        Raises:
            LocalKrpcError: ``key`` is outside the circle.
            TimeoutError: it took longer than ``timeout_s``.
        """
        core = self._running()
        k = key if isinstance(key, int) else key_id(key, self._config.m)
        op_id, outs = core.start_lookup(k, self._now())
        done = await self._wait(op_id, outs, self._new_waiter(), timeout_s)
        assert isinstance(done, ChordLookupDone)
        return done

    async def lookup_peers(
        self,
        info_hash: bytes,
        on_peers: Callable[[list[PeerAddr]], None] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> list[PeerAddr]:
        """Ask the owner of ``info_hash`` for its peers; ``on_peers(batch)``
        is called (synchronously, from the loop) as they arrive. Returns
        every peer found, possibly none (also when the owner cannot be
        reached or ``timeout_s`` passes).

        Raises:
            LocalKrpcError: ``info_hash`` is not 20 bytes.
        """
        core = self._running()
        op_id, outs = core.start_get_peers(info_hash, self._now())
        waiter = self._new_waiter(on_peers)
        try:
            await self._wait(op_id, outs, waiter, timeout_s)
        except TimeoutError:
            log.info("chord: get_peers %s timed out", info_hash.hex()[:8])
        return list(waiter.peers)

    async def get_peers(
        self, info_hash: bytes, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> list[PeerAddr]:
        """:meth:`lookup_peers` without a callback."""
        return await self.lookup_peers(info_hash, None, timeout_s)

    async def announce(
        self, info_hash: bytes, port: int, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> ChordAnnounceDone:
        """Store (our host, ``port``) under ``info_hash`` at its owner, to
        expire after ``config.peer_ttl_s`` unless announced again.

        Raises:
            LocalKrpcError: bad ``info_hash`` or ``port``.
            LookupFailed: no owner could be reached.
            TimeoutError: it took longer than ``timeout_s``.
        """
        core = self._running()
        op_id, outs = core.start_announce(info_hash, port, self._now())
        done = await self._wait(op_id, outs, self._new_waiter(), timeout_s)
        assert isinstance(done, ChordAnnounceDone)
        if done.stored_at is None:
            raise LookupFailed(f"chord: no owner of {info_hash.hex()[:8]} answered")
        return done

    async def leave(self, timeout_s: float = LEAVE_TIMEOUT_S) -> ChordLeft:
        """Leave gracefully: hand every key to the successor and tell the
        neighbours. The peer answers no queries afterwards.

        Raises:
            TimeoutError: it took longer than ``timeout_s``.
        """
        core = self._running()
        self._left = True
        op_id, outs = core.start_leave(self._now())
        done = await self._wait(op_id, outs, self._new_waiter(), timeout_s)
        assert isinstance(done, ChordLeft)
        log.info("chord: left the ring, %d entries handed over", done.handed)
        return done

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until ``condition()`` holds, checking it each time this peer
        has handled a datagram or a timer (e.g. until its pointers are
        right). Bound it with ``asyncio.timeout``."""
        while not condition():
            self._activity.clear()
            await self._activity.wait()

    # -- the core's events ----------------------------------------------------------

    def _on_event(self, event: ChordOutput) -> None:
        match event:
            case ChordPeersFound(op_id=op_id, peers=peers):
                self._peers_arrived(op_id, peers)
            case (
                ChordLookupDone(op_id=op_id)
                | ChordAnnounceDone(op_id=op_id)
                | ChordJoined(op_id=op_id)
                | ChordLeft(op_id=op_id)
            ):
                self._finish(self._waiters, op_id, event)

    def _after_outputs(self) -> None:
        self._activity.set()

    def _cancel_op(self, op_id: int) -> None:
        self._running().cancel(op_id)


def _short(node_id: int, m: int) -> str:
    return f"{node_id:0{(m + 3) // 4}x}"[:8]
