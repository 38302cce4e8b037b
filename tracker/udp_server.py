"""The UDP tracker endpoint (BEP 15): an asyncio datagram driver.

It binds one non-blocking UDP socket and, each time the loop says it is
readable, reads up to :data:`READ_BATCH` datagrams and answers each
straight away through the :class:`UdpTracker` core (no task per datagram;
asyncio's datagram transport would cost an event-loop turn per datagram).
A reply that does not fit the socket's send buffer is dropped, as UDP may.
The core works on the same :class:`SwarmRegistry` as the HTTP server, so
peers announced over either transport see each other.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any

from tracker.config import TrackerConfig
from tracker.core.addr import PeerAddr, normalize_host
from tracker.core.registry import SwarmRegistry, pack_ip
from tracker.core.udp import UdpTracker, UdpTrackerStats
from tracker.endpoint import AnnounceEndpoint
from tracker.errors import TrackerError
from tracker.memory import MemoryTrimmer

__all__ = ["UdpTrackerServer"]

log = logging.getLogger(__name__)

SECRET_BYTES = 32  # HMAC key for connection ids, fresh per start
MAX_CACHED_SOURCES = 4096  # source hosts whose parsed address is remembered
READ_BATCH = 64  # datagrams read per readiness event
MAX_DATAGRAM_BYTES = 2048  # longer requests are cut here (a scrape of 74 is 1496)


class UdpTrackerServer(AnnounceEndpoint):
    """A BEP 15 tracker on ``cfg.host:cfg.udp_port``; use as ``async with``.

    Args:
        cfg: the tracker's configuration; ``udp_port`` must be set.
        registry: the swarm state, the same instance the HTTP app uses.
        clock: seconds, monotonic (the HTTP app's clock).
        trimmer: gives memory back once peers expire (the HTTP app's).
    """

    SCHEME = "udp"
    NAME = "udp tracker"

    def __init__(
        self,
        cfg: TrackerConfig,
        registry: SwarmRegistry,
        clock: Callable[[], float],
        *,
        trimmer: MemoryTrimmer | None = None,
    ) -> None:
        if cfg.udp_port is None:
            raise TrackerError("udp tracker: config has no udp_port")
        self._cfg = cfg
        self._port = cfg.udp_port
        self._clock = clock
        self._registry = registry
        self._trimmer = trimmer or MemoryTrimmer()
        self._core = UdpTracker(
            registry,
            secret=secrets.token_bytes(SECRET_BYTES),
            interval_s=cfg.interval_s,
            default_numwant=cfg.default_numwant,
            max_numwant=cfg.max_numwant,
            trust_ip=cfg.trust_ip,
        )
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # source host -> (canonical text, packed IP): parsing an IP literal
        # per datagram costs as much as the announce; dropped whole when full
        self._sources: dict[str, tuple[str, bytes]] = {}

    async def __aenter__(self) -> UdpTrackerServer:
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._cfg.host, self._port, type=socket.SOCK_DGRAM
        )
        family, kind, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.bind(sockaddr)
            loop.add_reader(sock.fileno(), self._read_ready)
        except BaseException:
            sock.close()
            raise
        self._sock, self._loop = sock, loop
        host, port = sock.getsockname()[:2]
        self._address = PeerAddr(str(host), int(port))
        log.info("udp tracker listening on %s", self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
            log.info("udp tracker on %s stopped", self._address)

    def statistics(self) -> UdpTrackerStats:
        return self._core.statistics()

    def _read_ready(self) -> None:
        sock = self._sock
        for _ in range(READ_BATCH):
            if sock is None:
                return
            try:
                data, addr = sock.recvfrom(MAX_DATAGRAM_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error for a reply we sent
                log.debug("udp tracker: socket error %s", exc)
                continue
            self._datagram_received(sock, data, addr)

    def _datagram_received(
        self, sock: socket.socket, data: bytes, addr: tuple[Any, ...]
    ) -> None:
        source = self._sources.get(addr[0])
        if source is None:
            try:
                host = normalize_host(str(addr[0]))
                source = (host, pack_ip(host))
            except ValueError:
                return  # not an IP source (cannot happen on an inet socket)
            if len(self._sources) >= MAX_CACHED_SOURCES:
                self._sources.clear()
            self._sources[addr[0]] = source
        peer = PeerAddr(source[0], int(addr[1]))
        reply = self._core.handle_datagram(data, peer, self._clock(), source[1])
        self._trimmer.observe(self._registry.peers)
        if reply is None:
            log.debug("udp tracker: dropped %d-byte packet from %s", len(data), peer)
            return
        try:
            sock.sendto(reply, addr)
        except OSError as exc:  # the send buffer is full, or the route went
            log.debug("udp tracker: reply to %s dropped: %s", peer, exc)
