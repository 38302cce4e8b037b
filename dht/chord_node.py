"""The asyncio UDP driver for the Chord ring core.

``ChordNode`` binds one UDP socket, feeds every datagram to a
:class:`~dht.core.chord.node.ChordCore` straight from ``datagram_received``
(no task per datagram) and runs one timer task that calls ``tick`` at the
core's ``next_deadline``. Joining, lookups, announces and leaving are
awaitable methods that wait for the core's events. ``lookup_peers`` and
``announce`` have the same shape as :class:`~dht.node.DhtNode`'s, so the
client can use either overlay as a peer source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

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
from dht.core.chord.messages import ChordPeer
from dht.core.chord.node import ChordCore, ChordStatistics
from dht.core.chord.ring import key_id, peer_id_for
from dht.core.compact import PeerAddr
from dht.errors import LocalKrpcError, LookupFailed

__all__ = ["ChordNode"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0  # seconds a join, lookup or announce may take
LEAVE_TIMEOUT_S = 3.0  # seconds a graceful leave may take (also on exit)

_Done = ChordLookupDone | ChordAnnounceDone | ChordJoined | ChordLeft


@dataclass(slots=True)
class _Waiter:
    done: asyncio.Future[_Done]
    on_peers: Callable[[list[PeerAddr]], None] | None = None
    peers: list[PeerAddr] = field(default_factory=list)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, node: ChordNode) -> None:
        self._node = node

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._node._datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the query will time out.
        log.debug("chord: UDP error %s", exc)


class ChordNode:
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
        self._host = host
        self._port = port
        self._wanted_id = node_id
        self._config = config or ChordConfig()
        self._rng = rng or random.SystemRandom()
        self._leave_on_exit = leave_on_exit
        self._core: ChordCore | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._address: PeerAddr | None = None
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._sleep_until: float | None = None
        self._waiters: dict[int, _Waiter] = {}
        self._left = False
        self._activity = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> ChordNode:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self._host, self._port)
        )
        self._transport = transport
        sock = transport.get_extra_info("sockname")
        self._address = PeerAddr(str(sock[0]), int(sock[1]))
        m = self._config.m
        nid = self._wanted_id
        if nid is None:
            nid = peer_id_for(str(self._address), m)
        try:
            self._core = ChordCore(nid, self._address, self._rng, self._config)
        except BaseException:
            transport.close()
            raise
        self._timer = asyncio.create_task(self._run_timer())
        log.info("chord: peer %s listening on %s", _short(nid, m), self._address)
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
            if self._timer is not None:
                self._timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._timer
            if self._transport is not None:
                self._transport.close()
            for waiter in self._waiters.values():
                if not waiter.done.done():
                    waiter.done.cancel()

    # -- properties ------------------------------------------------------------------

    @property
    def address(self) -> PeerAddr:
        if self._address is None:
            raise LocalKrpcError("chord: peer is not running")
        return self._address

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

    def _running(self) -> ChordCore:
        if self._core is None:
            raise LocalKrpcError("chord: peer is not running")
        return self._core

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
        done = await self._wait(op_id, outs, None, timeout_s)
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
        done = await self._wait(op_id, outs, None, timeout_s)
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
        waiter = _Waiter(
            done=asyncio.get_running_loop().create_future(), on_peers=on_peers
        )
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
        done = await self._wait(op_id, outs, None, timeout_s)
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
        done = await self._wait(op_id, outs, None, timeout_s)
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

    async def _wait(
        self,
        op_id: int,
        outs: list[ChordOutput],
        waiter: _Waiter | None,
        timeout_s: float,
    ) -> _Done:
        if waiter is None:
            waiter = _Waiter(done=asyncio.get_running_loop().create_future())
        self._waiters[op_id] = waiter
        self._process(outs)
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(waiter.done)
        finally:
            self._waiters.pop(op_id, None)
            if self._core is not None:
                self._core.cancel(op_id)

    # -- the core's plumbing ---------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        core = self._core
        if core is None:
            return
        peer = PeerAddr(str(addr[0]), int(addr[1]))
        self._process(core.handle_datagram(data, peer, self._now()))

    def _process(self, outputs: list[ChordOutput]) -> None:
        transport = self._transport
        for out in outputs:
            match out:
                case SendDatagram(addr=addr, payload=payload):
                    if transport is not None and not transport.is_closing():
                        transport.sendto(payload, (addr.host, addr.port))
                case ChordPeersFound(op_id=op_id, peers=peers):
                    waiter = self._waiters.get(op_id)
                    if waiter is not None:
                        waiter.peers.extend(peers)
                        if waiter.on_peers is not None:
                            waiter.on_peers(list(peers))
                case (
                    ChordLookupDone(op_id=op_id)
                    | ChordAnnounceDone(op_id=op_id)
                    | ChordJoined(op_id=op_id)
                    | ChordLeft(op_id=op_id)
                ):
                    waiter = self._waiters.get(op_id)
                    if waiter is not None and not waiter.done.done():
                        waiter.done.set_result(out)
        self._activity.set()
        core = self._core
        deadline = core.next_deadline() if core is not None else None
        if deadline is not None and (
            self._sleep_until is None or deadline < self._sleep_until
        ):
            self._wake.set()

    async def _run_timer(self) -> None:
        loop = asyncio.get_running_loop()
        core = self._running()
        while True:
            deadline = core.next_deadline()
            self._sleep_until = deadline
            self._wake.clear()
            delay = None if deadline is None else max(0.0, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            self._sleep_until = None
            self._process(core.tick(loop.time()))


def _short(node_id: int, m: int) -> str:
    return f"{node_id:0{(m + 3) // 4}x}"[:8]
