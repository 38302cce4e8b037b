"""The asyncio UDP driver for the Mainline DHT core (BEP 5).

``DhtNode`` runs a :class:`DhtCore` on one UDP socket through
:class:`~dht.udp.UdpDriver` (datagrams straight to the core, one timer
task driving ``tick`` at ``next_deadline``). Lookups,
announces and bootstrap are awaitable methods that wait for the core's
events. The routing table is saved as JSON on exit and loaded on entry when
``state_path`` is given.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

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
)
from dht.core.kademlia.routing import NodeInfo
from dht.core.mainline import DhtCore, DhtStatistics
from dht.errors import DhtError
from dht.udp import UdpDriver, Waiter

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


class DhtNode(UdpDriver[DhtCore, Output, LookupDone]):
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
        super().__init__(host=host, port=port)
        self._wanted_id = None if node_id is None else local_node_id(node_id)
        self._config = config or DhtConfig()
        self._state_path = None if state_path is None else Path(state_path)
        self._rng = rng or random.SystemRandom()
        self._announces: dict[int, Waiter[AnnounceDone]] = {}
        self._table_waiters: list[tuple[int, asyncio.Future[None]]] = []

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> DhtNode:
        saved_id, saved_nodes = self._load_state()
        nid = self._wanted_id or saved_id or NodeId(secrets.token_bytes(ID_BYTES))
        core = await self._open(lambda _: DhtCore(nid, self._rng, self._config))
        if saved_nodes:
            now = self._now()
            self._process(core.restore_nodes(saved_nodes, now))
            _, outs = core.bootstrap([n.addr for n in saved_nodes[:16]], now)
            self._process(outs)
        log.info("dht: node %s listening on %s", nid.hex()[:8], self._address)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if self._state_path is not None and self._core is not None:
                self.save_state()
        finally:
            await self._close()
            for waiter in self._announces.values():
                if not waiter.done.done():
                    waiter.done.cancel()

    # -- properties ------------------------------------------------------------------

    @property
    def node_id(self) -> NodeId:
        return self._running().node_id

    def statistics(self) -> DhtStatistics:
        """A frozen snapshot of the node's counters and table size."""
        return self._running().statistics(self._now())

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
        waiter = self._new_waiter(on_peers)
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
        waiter = Waiter[AnnounceDone](done=loop.create_future())
        return await self._wait_in(self._announces, lookup_id, outs, waiter, timeout_s)

    async def _wait_lookup(
        self,
        lookup_id: int,
        outs: list[Output],
        on_peers: Callable[[list[PeerAddr]], None] | None,
        timeout_s: float,
    ) -> Waiter[LookupDone]:
        waiter = self._new_waiter(on_peers)
        try:
            await self._wait(lookup_id, outs, waiter, timeout_s)
        except TimeoutError:
            log.info("dht: lookup %d timed out after %.1fs", lookup_id, timeout_s)
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

    # -- the core's events ----------------------------------------------------------

    def _on_event(self, event: Output) -> None:
        match event:
            case PeersFound(lookup_id=lid, peers=peers):
                self._peers_arrived(lid, peers)
            case LookupDone(lookup_id=lid):
                self._finish(self._waiters, lid, event)
            case AnnounceDone(lookup_id=lid):
                self._finish(self._announces, lid, event)
            case PeerAnnounced(info_hash=ih, peer=peer):
                log.debug("dht: %s announced for %s", peer, ih.hex()[:8])
            case QueryTimedOut(addr=addr, method=method):
                log.debug("dht: %s to %s timed out", method, addr)

    def _after_outputs(self) -> None:
        if self._table_waiters and self._core is not None:
            size = len(self._core.routing_table)
            for n, waiting in self._table_waiters:
                if size >= n and not waiting.done():
                    waiting.set_result(None)

    def _cancel_op(self, op_id: int) -> None:
        self._running().cancel_lookup(op_id)

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
