"""The asyncio UDP driver for the Mainline DHT core (BEP 5).

``DhtNode`` binds one UDP socket, feeds every datagram to a :class:`DhtCore`
straight from ``datagram_received`` (no task per datagram), and runs one
timer task that calls ``tick`` at the core's ``next_deadline``. Lookups,
announces and bootstrap are awaitable methods that wait for the core's
events. The routing table is saved as JSON on exit and loaded on entry when
``state_path`` is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dht.core.compact import PeerAddr
from dht.core.config import DhtConfig
from dht.core.distance import ID_BYTES, NodeId, local_node_id
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
from dht.core.kademlia.routing import NodeInfo
from dht.core.mainline import DhtCore, DhtStatistics
from dht.errors import DhtError, LocalKrpcError

__all__ = ["DEFAULT_BOOTSTRAP_NODES", "DhtNode"]

log = logging.getLogger(__name__)

# Public routers for real users, by host name only; never used by tests, and
# never used unless a caller passes them explicitly.
DEFAULT_BOOTSTRAP_NODES = (
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "router.utorrent.com:6881",
)
STATE_FORMAT_VERSION = 1
MAX_SAVED_NODES = 2000  # routing-table entries written to / read from state_path
DEFAULT_LOOKUP_TIMEOUT_S = 30.0  # seconds a get_peers / announce / bootstrap may take
RESOLVE_TIMEOUT_S = 10.0  # seconds to resolve one bootstrap host name


@dataclass(slots=True)
class _Waiter:
    done: asyncio.Future[LookupDone]
    on_peers: Callable[[list[PeerAddr]], None] | None = None
    peers: list[PeerAddr] = field(default_factory=list)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, node: DhtNode) -> None:
        self._node = node

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self._node._datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the query will time out.
        log.debug("dht: UDP error %s", exc)


class DhtNode:
    """A Mainline DHT node on one UDP socket; use as ``async with``.

    Args:
        host: address to bind (loopback by default).
        port: UDP port; 0 picks a free one.
        node_id: our 20-byte id; default: the saved one, else random.
        config: protocol parameters.
        state_path: JSON file the routing table is loaded from and saved to.
        rng: randomness for the core (default: ``random.SystemRandom()``, as
            token secrets come from it).
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        node_id: bytes | None = None,
        config: DhtConfig | None = None,
        state_path: str | os.PathLike[str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._wanted_id = None if node_id is None else local_node_id(node_id)
        self._config = config or DhtConfig()
        self._state_path = None if state_path is None else Path(state_path)
        self._rng = rng or random.SystemRandom()
        self._core: DhtCore | None = None
        self._transport: asyncio.DatagramTransport | None = None
        self._address: PeerAddr | None = None
        self._tasks: asyncio.TaskGroup | None = None
        self._timer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._sleep_until: float | None = None
        self._waiters: dict[int, _Waiter] = {}
        self._announces: dict[int, asyncio.Future[AnnounceDone]] = {}
        self._table_waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> DhtNode:
        loop = asyncio.get_running_loop()
        saved_id, saved_nodes = self._load_state()
        nid = self._wanted_id or saved_id or NodeId(secrets.token_bytes(ID_BYTES))
        self._core = DhtCore(nid, self._rng, self._config)
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), local_addr=(self._host, self._port)
        )
        self._transport = transport
        sock = transport.get_extra_info("sockname")
        self._address = PeerAddr(sock[0], sock[1])
        self._tasks = asyncio.TaskGroup()
        await self._tasks.__aenter__()
        self._timer = self._tasks.create_task(self._run_timer())
        if saved_nodes:
            now = loop.time()
            self._process(self._core.restore_nodes(saved_nodes, now))
            _, outs = self._core.bootstrap([n.addr for n in saved_nodes[:16]], now)
            self._process(outs)
        log.info("dht: node %s listening on %s", nid.hex()[:8], self._address)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self._state_path is not None and self._core is not None:
                self.save_state()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            if self._tasks is not None:
                await self._tasks.__aexit__(None, None, None)
            if self._transport is not None:
                self._transport.close()
            for waiter in self._waiters.values():
                if not waiter.done.done():
                    waiter.done.cancel()
            for fut in self._announces.values():
                if not fut.done():
                    fut.cancel()

    # -- properties ------------------------------------------------------------------

    @property
    def address(self) -> PeerAddr:
        if self._address is None:
            raise LocalKrpcError("dht: node is not running")
        return self._address

    @property
    def node_id(self) -> NodeId:
        return self._running().node_id

    def statistics(self) -> DhtStatistics:
        """A frozen snapshot of the node's counters and table size."""
        return self._running().statistics(asyncio.get_running_loop().time())

    def routing_nodes(self) -> list[NodeInfo]:
        return self._running().routing_nodes()

    async def wait_table_size(self, size: int) -> None:
        """Wait until the routing table holds at least ``size`` nodes."""
        core = self._running()
        if len(core.routing_table) >= size:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._table_waiters.append((size, fut))
        try:
            await fut
        finally:
            self._table_waiters = [
                (n, f) for n, f in self._table_waiters if f is not fut
            ]

    def _running(self) -> DhtCore:
        if self._core is None:
            raise LocalKrpcError("dht: node is not running")
        return self._core

    # -- operations ------------------------------------------------------------------

    async def bootstrap(
        self,
        addrs: Iterable[PeerAddr | str],
        timeout_s: float = DEFAULT_LOOKUP_TIMEOUT_S,
    ) -> int:
        """Join the DHT through ``addrs`` (``PeerAddr`` or ``"HOST:PORT"``;
        host names are resolved): find_node on our own id, then a refresh of
        every bucket. Returns the routing table size afterwards.

        Raises:
            CompactFormatError: if an address is not ``HOST:PORT``.
        """
        core = self._running()
        resolved = await self._resolve(addrs)
        loop = asyncio.get_running_loop()
        lookup_id, outs = core.bootstrap(resolved, loop.time())
        await self._wait_lookup(lookup_id, outs, None, timeout_s)
        return len(core.routing_table)

    async def get_peers(
        self, info_hash: bytes, timeout_s: float = DEFAULT_LOOKUP_TIMEOUT_S
    ) -> list[PeerAddr]:
        """get_peers lookup; returns every peer found (possibly none).

        Raises:
            LocalKrpcError: if ``info_hash`` is not 20 bytes.
        """
        return await self.lookup_peers(info_hash, None, timeout_s)

    async def lookup_peers(
        self,
        info_hash: bytes,
        on_peers: Callable[[list[PeerAddr]], None] | None,
        timeout_s: float = DEFAULT_LOOKUP_TIMEOUT_S,
    ) -> list[PeerAddr]:
        """Like :meth:`get_peers`, calling ``on_peers(batch)`` as replies with
        new peers arrive (from the event loop, synchronously)."""
        core = self._running()
        loop = asyncio.get_running_loop()
        lookup_id, outs = core.start_lookup(
            info_hash, loop.time(), LookupKind.GET_PEERS
        )
        waiter = await self._wait_lookup(lookup_id, outs, on_peers, timeout_s)
        return list(waiter.peers)

    async def iter_peers(
        self, info_hash: bytes, timeout_s: float = DEFAULT_LOOKUP_TIMEOUT_S
    ) -> AsyncIterator[list[PeerAddr]]:
        """Yield batches of new peers as a get_peers lookup finds them; ends
        with the lookup (or at ``timeout_s``)."""
        core = self._running()
        loop = asyncio.get_running_loop()
        batches: list[list[PeerAddr]] = []
        arrived = asyncio.Event()

        def on_peers(batch: list[PeerAddr]) -> None:
            batches.append(batch)
            arrived.set()

        lookup_id, outs = core.start_lookup(
            info_hash, loop.time(), LookupKind.GET_PEERS
        )
        waiter = _Waiter(done=loop.create_future(), on_peers=on_peers)
        waiter.done.add_done_callback(lambda _: arrived.set())
        self._waiters[lookup_id] = waiter
        self._process(outs)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    while batches:
                        yield batches.pop(0)
                    if waiter.done.done():
                        return
                    arrived.clear()
                    await arrived.wait()
        except TimeoutError:
            return
        finally:
            self._waiters.pop(lookup_id, None)
            core.cancel_lookup(lookup_id)

    async def find_node(
        self, target: bytes, timeout_s: float = DEFAULT_LOOKUP_TIMEOUT_S
    ) -> list[NodeInfo]:
        """Iterative find_node; returns the closest nodes that answered."""
        core = self._running()
        loop = asyncio.get_running_loop()
        lookup_id, outs = core.start_lookup(target, loop.time(), LookupKind.FIND_NODE)
        waiter = await self._wait_lookup(lookup_id, outs, None, timeout_s)
        return list(waiter.done.result().nodes) if waiter.done.done() else []

    async def announce(
        self,
        info_hash: bytes,
        port: int,
        implied_port: bool = False,
        timeout_s: float = DEFAULT_LOOKUP_TIMEOUT_S,
    ) -> AnnounceDone:
        """get_peers lookup, then announce_peer to the closest nodes.

        Raises:
            LocalKrpcError: bad ``info_hash`` or ``port``.
            TimeoutError: if it takes longer than ``timeout_s``.
        """
        core = self._running()
        loop = asyncio.get_running_loop()
        lookup_id, outs = core.start_announce(
            info_hash, port, loop.time(), implied_port
        )
        fut: asyncio.Future[AnnounceDone] = loop.create_future()
        self._announces[lookup_id] = fut
        self._process(outs)
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        finally:
            self._announces.pop(lookup_id, None)
            core.cancel_lookup(lookup_id)

    async def _wait_lookup(
        self,
        lookup_id: int,
        outs: list[Output],
        on_peers: Callable[[list[PeerAddr]], None] | None,
        timeout_s: float,
    ) -> _Waiter:
        waiter = _Waiter(
            done=asyncio.get_running_loop().create_future(), on_peers=on_peers
        )
        self._waiters[lookup_id] = waiter
        self._process(outs)
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(waiter.done)
        except TimeoutError:
            log.info("dht: lookup %d timed out after %.1fs", lookup_id, timeout_s)
        finally:
            self._waiters.pop(lookup_id, None)
            self._running().cancel_lookup(lookup_id)
        return waiter

    async def _resolve(self, addrs: Iterable[PeerAddr | str]) -> list[PeerAddr]:
        loop = asyncio.get_running_loop()
        out: list[PeerAddr] = []
        for a in addrs:
            addr = a if isinstance(a, PeerAddr) else PeerAddr.parse(a)
            try:
                async with asyncio.timeout(RESOLVE_TIMEOUT_S):
                    infos = await loop.getaddrinfo(
                        addr.host,
                        addr.port,
                        family=_family(self._host),
                        type=socket.SOCK_DGRAM,
                    )
            except (OSError, TimeoutError) as exc:
                log.warning("dht: cannot resolve bootstrap node %s: %s", addr, exc)
                continue
            for info in infos[:1]:
                out.append(PeerAddr(str(info[4][0]), int(info[4][1])))
        return out

    # -- the core's plumbing ---------------------------------------------------------

    def _datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        core = self._core
        if core is None:
            return
        peer = PeerAddr(str(addr[0]), int(addr[1]))
        self._process(
            core.handle_datagram(data, peer, asyncio.get_running_loop().time())
        )

    def _process(self, outputs: list[Output]) -> None:
        transport = self._transport
        for out in outputs:
            match out:
                case SendDatagram(addr=addr, payload=payload):
                    if transport is not None and not transport.is_closing():
                        transport.sendto(payload, (addr.host, addr.port))
                case PeersFound(lookup_id=lid, peers=peers):
                    waiter = self._waiters.get(lid)
                    if waiter is not None:
                        waiter.peers.extend(peers)
                        if waiter.on_peers is not None:
                            waiter.on_peers(list(peers))
                case LookupDone(lookup_id=lid):
                    waiter = self._waiters.get(lid)
                    if waiter is not None and not waiter.done.done():
                        waiter.done.set_result(out)
                case AnnounceDone(lookup_id=lid):
                    fut = self._announces.get(lid)
                    if fut is not None and not fut.done():
                        fut.set_result(out)
                case PeerAnnounced(info_hash=ih, peer=peer):
                    log.debug("dht: %s announced for %s", peer, ih.hex()[:8])
                case QueryTimedOut(addr=addr, method=method):
                    log.debug("dht: %s to %s timed out", method, addr)
        if self._table_waiters and self._core is not None:
            size = len(self._core.routing_table)
            for n, waiting in self._table_waiters:
                if size >= n and not waiting.done():
                    waiting.set_result(None)
        deadline = self._core.next_deadline() if self._core is not None else None
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

    # -- persistence -----------------------------------------------------------------

    def save_state(self) -> None:
        """Write node id and routing table to ``state_path`` as JSON."""
        if self._state_path is None:
            return
        core = self._running()
        state = {
            "version": STATE_FORMAT_VERSION,
            "node_id": core.node_id.hex(),
            "nodes": [
                {"id": n.id.hex(), "host": n.addr.host, "port": n.addr.port}
                for n in core.routing_nodes()[:MAX_SAVED_NODES]
            ],
        }
        tmp = self._state_path.with_name(self._state_path.name + ".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self._state_path)

    def _load_state(self) -> tuple[NodeId | None, list[NodeInfo]]:
        path = self._state_path
        if path is None or not path.exists():
            return None, []
        try:
            state = json.loads(path.read_text())
            nid = local_node_id(bytes.fromhex(state["node_id"]))
            nodes = [
                NodeInfo(
                    id=local_node_id(bytes.fromhex(n["id"])),
                    addr=PeerAddr(str(n["host"]), int(n["port"])),
                )
                for n in state["nodes"][:MAX_SAVED_NODES]
            ]
        except (OSError, ValueError, KeyError, TypeError, DhtError) as exc:
            log.warning("dht: ignoring unreadable state file %s: %s", path, exc)
            return None, []
        return nid, nodes


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
