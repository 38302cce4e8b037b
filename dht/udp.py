"""The asyncio UDP plumbing shared by the DHT drivers (STYLE 6 "UDP").

:class:`UdpDriver` runs one sans-I/O datagram core (Mainline's
:class:`~dht.core.mainline.DhtCore`, :class:`~dht.core.chord.node.ChordCore`)
on one UDP socket: ``datagram_received`` feeds the core directly (no task
per datagram), one timer task calls ``tick`` at the core's
``next_deadline`` and is woken when a new output moves that deadline
earlier, and ``SendDatagram`` outputs go to the socket. Other outputs go to
the subclass's ``_on_event``. Operations wait on :class:`Waiter` futures
keyed by the core's operation id. :class:`~dht.node.DhtNode` and
:class:`~dht.chord_node.ChordNode` are built on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from dht.core.compact import PeerAddr
from dht.core.events import SendDatagram
from dht.errors import LocalKrpcError

__all__ = ["DatagramCore", "UdpDriver", "Waiter"]

log = logging.getLogger(__name__)

OutT = TypeVar("OutT")
DoneT = TypeVar("DoneT")
T = TypeVar("T")


class DatagramCore(Protocol[OutT]):
    """The datagram-core shape (STYLE 2) a driver needs."""

    def handle_datagram(
        self, data: bytes, addr: PeerAddr, now: float
    ) -> list[OutT]: ...

    def tick(self, now: float) -> list[OutT]: ...

    def next_deadline(self) -> float | None: ...


CoreT = TypeVar("CoreT", bound="DatagramCore[Any]")


@dataclass(slots=True)
class Waiter(Generic[DoneT]):
    """One awaited operation: its result, and the peers it found so far."""

    done: asyncio.Future[DoneT]
    on_peers: Callable[[list[PeerAddr]], None] | None = None
    peers: list[PeerAddr] = field(default_factory=list)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, driver: UdpDriver[Any, Any, Any]) -> None:
        self._driver = driver

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._driver._datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the query will time out.
        log.debug("%s: UDP error %s", self._driver.NAME, exc)


class UdpDriver(Generic[CoreT, OutT, DoneT]):
    """One UDP socket and one timer task around a datagram core.

    Subclasses call :meth:`_open` on enter and :meth:`_close` on exit, and
    handle the core's events in :meth:`_on_event`.
    """

    NAME: ClassVar[str] = "dht"  # prefix of log lines and error messages

    def __init__(self, *, host: str, port: int) -> None:
        self._host = host
        self._port = port
        self._core: CoreT | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._address: PeerAddr | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._sleep_until: float | None = None
        self._waiters: dict[int, Waiter[DoneT]] = {}

    # -- lifecycle -------------------------------------------------------------------

    async def _open(self, make_core: Callable[[PeerAddr], CoreT]) -> CoreT:
        """Bind, build the core for the bound address, start the timer."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self._host, self._port)
        )
        self._transport = transport
        sock = transport.get_extra_info("sockname")
        self._address = PeerAddr(str(sock[0]), int(sock[1]))
        try:
            core = make_core(self._address)
        except BaseException:
            transport.close()
            raise
        self._core = core
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._timer = self._tasks.create_task(self._run_timer())
        return core

    async def _close(self) -> None:
        """Stop the timer, close the socket, cancel every waiter."""
        if self._timer is not None:
            self._timer.cancel()
        if self._tasks is not None:
            await self._tasks.__aexit__(None, None, None)
        if self._transport is not None:
            self._transport.close()
        for waiter in self._waiters.values():
            if not waiter.done.done():
                waiter.done.cancel()

    # -- properties ------------------------------------------------------------------

    @property
    def address(self) -> PeerAddr:
        if self._address is None:
            raise LocalKrpcError(f"{self.NAME}: node is not running")
        return self._address

    def _running(self) -> CoreT:
        if self._core is None:
            raise LocalKrpcError(f"{self.NAME}: node is not running")
        return self._core

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- waiting for operations ------------------------------------------------------

    def _new_waiter(
        self, on_peers: Callable[[list[PeerAddr]], None] | None = None
    ) -> Waiter[DoneT]:
        return Waiter(
            done=asyncio.get_running_loop().create_future(), on_peers=on_peers
        )

    async def _wait(
        self, op_id: int, outs: list[OutT], waiter: Waiter[DoneT], timeout_s: float
    ) -> DoneT:
        """Send an operation's first outputs and wait for its result.

        Raises:
            TimeoutError: no result within ``timeout_s`` (the operation is
                cancelled in the core either way).
        """
        return await self._wait_in(self._waiters, op_id, outs, waiter, timeout_s)

    async def _wait_in(
        self,
        table: dict[int, Waiter[T]],
        op_id: int,
        outs: list[OutT],
        waiter: Waiter[T],
        timeout_s: float,
    ) -> T:
        table[op_id] = waiter
        self._process(outs)
        try:
            async with asyncio.timeout(timeout_s):
                return await asyncio.shield(waiter.done)
        finally:
            table.pop(op_id, None)
            if self._core is not None:
                self._cancel_op(op_id)

    def _peers_arrived(self, op_id: int, peers: tuple[PeerAddr, ...]) -> None:
        waiter = self._waiters.get(op_id)
        if waiter is not None:
            waiter.peers.extend(peers)
            if waiter.on_peers is not None:
                waiter.on_peers(list(peers))

    @staticmethod
    def _finish(table: dict[int, Waiter[T]], op_id: int, result: T) -> None:
        waiter = table.get(op_id)
        if waiter is not None and not waiter.done.done():
            waiter.done.set_result(result)

    # -- hooks -----------------------------------------------------------------------

    def _on_event(self, event: OutT) -> None:
        """A core output other than ``SendDatagram``."""

    def _after_outputs(self) -> None:
        """Called after each batch of outputs (wake waiters on conditions)."""

    def _cancel_op(self, op_id: int) -> None:
        """Forget a finished or abandoned operation in the core."""
        raise NotImplementedError

    # -- the core's plumbing ---------------------------------------------------------

    def _datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        core = self._core
        if core is None:
            return
        peer = PeerAddr(str(addr[0]), int(addr[1]))
        self._process(core.handle_datagram(data, peer, self._now()))

    def _process(self, outputs: list[OutT]) -> None:
        transport = self._transport
        for out in outputs:
            if isinstance(out, SendDatagram):
                if transport is not None and not transport.is_closing():
                    transport.sendto(out.payload, (out.addr.host, out.addr.port))
            else:
                self._on_event(out)
        self._after_outputs()
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
