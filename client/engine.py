"""The running client: one listening socket, one peer id, many torrents.

:class:`Engine` is an async context manager (shared STYLE.md 6): it binds on
enter (port 0 works; bind errors reach the caller), exposes ``.address``,
owns a task group with every torrent's session and tracker loop, and stops
them all on exit. Incoming connections are routed to a torrent by the
info_hash in their handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from client.core import wire
from client.core.metainfo import Metainfo
from client.core.ratelimit import TokenBucket
from client.peer import PeerConnection
from client.session import SessionConfig, TorrentSession
from client.tracker_client import TrackerClient, TrackerClientConfig, TransferStats
from dht import PeerAddr

__all__ = ["Engine", "EngineConfig", "make_peer_id"]

log = logging.getLogger(__name__)

PEER_ID_PREFIX = b"-BS0100-"  # Azureus-style: client 'BS', version 0.1.0.0
# Incoming connections waiting for their handshake; past this they are closed
# at once (shared STYLE.md 6, bounded accept).
MAX_PENDING_INCOMING = 64


def make_peer_id() -> bytes:
    return PEER_ID_PREFIX + secrets.token_bytes(20 - len(PEER_ID_PREFIX))


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    host: str = "0.0.0.0"
    port: int = 6881
    max_upload_rate: float | None = None  # bytes/s, all torrents together
    max_download_rate: float | None = None
    handshake_timeout_s: float = 10.0
    tracker: TrackerClientConfig = field(default_factory=TrackerClientConfig)

    @classmethod
    def testing(cls, **overrides: Any) -> EngineConfig:
        """Loopback, port 0, short timeouts (shared STYLE.md 7)."""
        base: dict[str, Any] = {"host": "127.0.0.1", "port": 0}
        base.update(overrides)
        return cls(**base)


class _Stop(Exception):
    pass


class Engine:
    """Owns the listener and the torrents.

    Args:
        config: listen address and global limits.
        on_event: receives (name, fields) from every torrent, for the UI.
    """

    def __init__(
        self,
        config: EngineConfig = EngineConfig(),
        *,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        peer_id: bytes | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.peer_id = peer_id or make_peer_id()
        self._on_event = on_event
        self._rng = rng or random.Random(secrets.randbits(64))
        self.sessions: dict[bytes, TorrentSession] = {}
        self.trackers: dict[bytes, TrackerClient] = {}
        self._server: asyncio.Server | None = None
        self._tg: asyncio.TaskGroup | None = None
        self._pending: set[PeerConnection] = set()
        self.address = PeerAddr("127.0.0.1", 0)
        self.global_up: TokenBucket | None = None
        self.global_down: TokenBucket | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- context manager -------------------------------------------------------
    async def __aenter__(self) -> Engine:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.global_up = TokenBucket(self.config.max_upload_rate, now=now)
        self.global_down = TokenBucket(self.config.max_download_rate, now=now)
        self._server = await loop.create_server(
            self._incoming, self.config.host, self.config.port
        )
        sockname = self._server.sockets[0].getsockname()
        host = (
            self.config.host
            if self.config.host not in ("0.0.0.0", "::")
            else "127.0.0.1"
        )
        self.address = PeerAddr(host, int(sockname[1]))
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        assert self._server is not None
        self._server.close()
        for conn in list(self._pending):
            conn.abort("engine stopped")
        # Stop every torrent (each sends 'stopped' to its trackers on the way).
        if exc is None:
            for task in list(self._tasks):
                task.cancel()
        try:
            await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._tg = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await self._server.wait_closed()

    # -- torrents --------------------------------------------------------------
    def add_torrent(
        self,
        meta: Metainfo,
        save_dir: Path,
        *,
        config: SessionConfig | None = None,
        peers: list[PeerAddr] | None = None,
        use_trackers: bool = True,
    ) -> TorrentSession:
        """Start downloading (or seeding) ``meta`` into ``save_dir``."""
        if self._tg is None:
            raise RuntimeError("engine is not running")
        if meta.info_hash in self.sessions:
            return self.sessions[meta.info_hash]
        session = TorrentSession(
            meta,
            save_dir,
            peer_id=self.peer_id,
            listen_port=self.address.port,
            config=config or SessionConfig(),
            global_up=self.global_up,
            global_down=self.global_down,
            on_event=self._on_event,
            rng=random.Random(self._rng.getrandbits(64)),
            reserved=wire.make_reserved(extension=False),
        )
        session.add_own_address(self.address)
        self.sessions[meta.info_hash] = session
        tracker = None
        if use_trackers and meta.announce_tiers:
            tracker = TrackerClient(
                info_hash=meta.info_hash,
                peer_id=self.peer_id,
                port=self.address.port,
                announce_tiers=meta.announce_tiers,
                stats=lambda: _transfer_stats(session),
                on_peers=lambda addrs: session.add_peers(addrs, "tracker"),
                config=self.config.tracker,
                rng=random.Random(self._rng.getrandbits(64)),
                on_event=self._on_event,
            )
            self.trackers[meta.info_hash] = tracker
        if peers:
            session.add_peers(peers, "manual")
        task = self._tg.create_task(self._torrent_main(session, tracker))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return session

    async def _torrent_main(
        self, session: TorrentSession, tracker: TrackerClient | None
    ) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                if tracker is not None:
                    tg.create_task(tracker.run())
                    tg.create_task(self._announce_completed(session, tracker))
                await session.run()
                raise _Stop
        except* _Stop:
            pass
        finally:
            self.sessions.pop(session.info_hash, None)
            if tracker is not None:
                # BEP 3: tell the tracker we are leaving, even when cancelled.
                await asyncio.shield(tracker.announce_stopped())

    async def _announce_completed(
        self, session: TorrentSession, tracker: TrackerClient
    ) -> None:
        was_complete = session.is_complete
        await session.wait_complete()
        if not was_complete:
            await tracker.announce_completed()

    # -- incoming connections --------------------------------------------------
    def _incoming(self) -> PeerConnection:
        loop = asyncio.get_running_loop()
        conn = PeerConnection(self, outgoing=False, clock=loop.time)
        if len(self._pending) >= MAX_PENDING_INCOMING:
            loop.call_soon(conn.abort, "too many pending connections")
        else:
            self._pending.add(conn)
            if self._tg is not None:
                self._tg.create_task(self._handshake_deadline(conn))
        return conn

    async def _handshake_deadline(self, conn: PeerConnection) -> None:
        try:
            async with asyncio.timeout(self.config.handshake_timeout_s):
                attached = await conn.wait_attached()
            if not attached:
                conn.abort("closed before the handshake")
        except TimeoutError:
            conn.abort("no handshake in time")
        finally:
            self._pending.discard(conn)

    def on_handshake(self, conn: PeerConnection, hs: wire.HandshakeReceived) -> None:
        session = self.sessions.get(hs.info_hash)
        if session is None:
            conn.close("handshake for a torrent we don't have")
            return
        if not session.accept(conn, hs):
            conn.close("refused by the torrent")

    def on_message(self, conn: PeerConnection, msg: wire.PeerMessage) -> None:
        conn.close("message before handshake")


def _transfer_stats(session: TorrentSession) -> TransferStats:
    stats = session.statistics()
    return TransferStats(
        uploaded=stats.uploaded, downloaded=stats.downloaded, left=session.bytes_left()
    )
