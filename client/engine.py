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
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from client.core import wire
from client.core.magnet import Magnet
from client.core.metainfo import Metainfo, parse_info
from client.core.mse import EncryptionPolicy
from client.core.ratelimit import TokenBucket
from client.errors import ClientError
from client.metadata_fetch import MetadataFetcher
from client.peer import PeerConnection, start_in
from client.session import SessionConfig, TorrentSession
from dht import DhtError, PeerAddr

if TYPE_CHECKING:
    # Loaded when used: the DHT nodes when a DHT is on, the tracker client
    # (and with it aiohttp) when a torrent names a tracker, so that
    # ``download MAGNET --no-dht`` with ``x.pe`` peers (issue 7's magnet
    # benchmark) starts without them.
    from client.tracker_client import TrackerClient, TrackerClientConfig, TransferStats
    from dht import ChordConfig, ChordNode, DhtConfig, DhtNode

__all__ = ["Engine", "EngineConfig", "make_peer_id"]

log = logging.getLogger(__name__)

PEER_ID_PREFIX = b"-BS0100-"  # Azureus-style: client 'BS', version digits 0100
# Routing-table entries after which torrents may start DHT lookups while the
# bootstrap goes on (an iterative lookup finds the rest from a couple).
DHT_READY_NODES = 2
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
    #: announce timing; None: TrackerClientConfig's defaults
    tracker: TrackerClientConfig | None = None
    #: run a Mainline DHT node (BEP 5) on this UDP port (0 = any); None = off
    dht_port: int | None = None
    #: nodes to join the DHT through (``HOST:PORT``)
    dht_bootstrap: tuple[str, ...] = ()
    dht_state_path: str | None = None
    dht_config: DhtConfig | None = None
    #: seconds between DHT re-announces of a torrent (BEP 5 peers expire
    #: after 30 minutes); lookups repeat sooner while a torrent has no peers
    dht_announce_interval_s: float = 900.0
    dht_retry_s: float = 5.0
    #: which DHT the node runs: "mainline" (BEP 5; talks to other clients)
    #: or "chord" (a Chord ring among bitswarm peers)
    overlay: str = "mainline"
    chord_config: ChordConfig | None = None
    #: MSE/PE: "prefer" (encrypt when possible, accept plain peers),
    #: "require" (RC4 only) or "off" (plain BitTorrent only)
    encryption: str = "prefer"

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
        self._stopping = False
        self.address = PeerAddr("127.0.0.1", 0)
        self.global_up: TokenBucket | None = None
        self.global_down: TokenBucket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.fetchers: dict[bytes, MetadataFetcher] = {}
        self.dht: DhtNode | ChordNode | None = None
        self._dht_ready = asyncio.Event()
        try:
            self.encryption = EncryptionPolicy(config.encryption)
        except ValueError:
            raise ClientError(
                f"encryption {config.encryption!r} is not prefer, require or off"
            ) from None

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
        if self.config.dht_port is not None:
            from dht import ChordNode, DhtNode

            if self.config.overlay == "chord":
                self.dht = ChordNode(
                    host=host,
                    port=self.config.dht_port,
                    config=self.config.chord_config,
                )
            else:
                self.dht = DhtNode(
                    host=host,
                    port=self.config.dht_port,
                    config=self.config.dht_config,
                    state_path=self.config.dht_state_path,
                )
            await self.dht.__aenter__()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        if self.dht is not None:
            self._tg.create_task(self._dht_bootstrap(self.dht))
        return self

    @property
    def reserved(self) -> bytes:
        """Our handshake's reserved bits: BEP 10, and BEP 5 with a DHT."""
        return wire.make_reserved(extension=True, dht=self._mainline_port is not None)

    @property
    def _mainline_port(self) -> int | None:
        """Our BEP 5 node's port, for the 'port' message (not for Chord)."""
        if self.dht is None:
            return None
        from dht import DhtNode

        if isinstance(self.dht, DhtNode):
            return self.dht.address.port
        return None

    async def _dht_bootstrap(self, dht: DhtNode | ChordNode) -> None:
        """Join the DHT. Torrents may start looking up peers as soon as the
        routing table holds a few nodes: the bootstrap's own lookup can sit
        for seconds on dead nodes' timeouts (measured: a bare magnet waited
        4-9 s for it on a network with dead entries, ~10 ms without)."""
        from dht import DhtNode

        async with asyncio.TaskGroup() as tg:
            early = None
            if isinstance(dht, DhtNode):
                early = tg.create_task(self._ready_at(dht, DHT_READY_NODES))
            try:
                if self.config.dht_bootstrap:
                    size = await dht.bootstrap(list(self.config.dht_bootstrap))
                    log.info(
                        "dht: joined through %s, %d nodes",
                        ", ".join(self.config.dht_bootstrap),
                        size,
                    )
            except (DhtError, OSError) as exc:
                log.warning("dht: bootstrap failed: %s", exc)
            finally:
                self._dht_ready.set()
                if early is not None:
                    early.cancel()

    async def _ready_at(self, dht: DhtNode, nodes: int) -> None:
        await dht.wait_table_size(nodes)
        self._dht_ready.set()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tg is not None
        assert self._server is not None
        self._stopping = True
        self._stop_listening()
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
            if self.dht is not None:
                await self.dht.__aexit__(None, None, None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await self._server.wait_closed()
            # A socket accepted just before the listener closed reaches
            # _incoming late (asyncio hands it over in a task of its own).
            for conn in list(self._pending):
                conn.abort("engine stopped")

    def _stop_listening(self) -> None:
        """Accept no more connections, and let those already accepted reach
        :meth:`_incoming` (which refuses them) before the server closes.

        asyncio hands each accepted socket to a task of its own; if
        ``Server.close()`` runs before that task's first step, the
        transport's constructor fails (``Server._attach`` asserts the server
        is open, CPython gh-109564) holding the socket but before
        ``connection_made``: nobody can close it, and it is garbage
        collected open (``unclosed transport ... read=idle``; CI saw it in
        the 50-leecher load test). So: stop watching the listening sockets
        now (no new accept tasks), and close the server one loop turn later,
        after the first steps of the accept tasks already scheduled (FIFO).
        """
        assert self._server is not None
        loop = asyncio.get_running_loop()
        for sock in self._server.sockets:
            with contextlib.suppress(NotImplementedError):  # not a selector loop
                loop.remove_reader(sock.fileno())
        loop.call_soon(self._server.close)

    # -- torrents --------------------------------------------------------------
    def add_torrent(
        self,
        meta: Metainfo,
        save_dir: Path,
        *,
        config: SessionConfig | None = None,
        peers: list[PeerAddr] | None = None,
        use_trackers: bool = True,
        known: dict[PeerAddr, str] | None = None,
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
            reserved=self.reserved,
            dht_port=self._mainline_port,
            encryption=self.encryption,
        )
        session.add_own_address(self.address)
        self.sessions[meta.info_hash] = session
        tracker = None
        if use_trackers and meta.announce_tiers:
            from client.tracker_client import TrackerClient

            tracker = TrackerClient(
                info_hash=meta.info_hash,
                peer_id=self.peer_id,
                port=self.address.port,
                announce_tiers=meta.announce_tiers,
                stats=lambda: _transfer_stats(session),
                on_peers=lambda addrs: session.add_peers(addrs, "tracker"),
                config=self._tracker_config(),
                rng=random.Random(self._rng.getrandbits(64)),
                on_event=self._on_event,
            )
            self.trackers[meta.info_hash] = tracker
        if peers:
            session.add_peers(peers, "manual")
        for addr, source in (known or {}).items():
            session.add_peers([addr], source)
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
                if self.dht is not None and not session.meta.private:
                    tg.create_task(self._dht_loop(session.info_hash, session))
                await session.run()
                raise _Stop
        except* _Stop:
            pass
        finally:
            self.sessions.pop(session.info_hash, None)
            if tracker is not None:
                # BEP 3: tell the tracker we are leaving, even when cancelled.
                await asyncio.shield(tracker.announce_stopped())

    async def _dht_loop(
        self, info_hash: bytes, session: TorrentSession | MetadataFetcher
    ) -> None:
        """Look the torrent up in the DHT and announce it, again and again:
        soon while it has no peers, every ``dht_announce_interval_s`` after."""
        from dht import ChordNode

        dht = self.dht
        assert dht is not None
        await self._dht_ready.wait()
        source = "chord" if isinstance(dht, ChordNode) else "dht"
        while True:
            found = 0

            def on_peers(batch: list[PeerAddr]) -> None:
                nonlocal found
                found += len(batch)
                session.add_peers(batch, source)

            try:
                await dht.lookup_peers(info_hash, on_peers)
                await dht.announce(info_hash, self.address.port)
            except (DhtError, OSError, TimeoutError) as exc:
                log.info("dht: %s: %s", info_hash.hex()[:8], exc)
            self._emit("dht_lookup", info_hash=info_hash.hex(), peers=found)
            if found and isinstance(session, TorrentSession) and session.peers:
                delay = self.config.dht_announce_interval_s
            else:
                delay = self.config.dht_retry_s
            await asyncio.sleep(delay)

    def _emit(self, name: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(name, fields)

    async def open_magnet(
        self,
        magnet: Magnet,
        save_dir: Path,
        *,
        config: SessionConfig | None = None,
        peers: list[PeerAddr] | None = None,
    ) -> TorrentSession:
        """Fetch the magnet's metadata from the swarm, then start its torrent.

        Peers come from ``x.pe``, ``peers``, the magnet's trackers and the DHT.
        """
        if self._tg is None:
            raise RuntimeError("engine is not running")
        existing = self.sessions.get(magnet.info_hash)
        if existing is not None:
            return existing
        fetcher = MetadataFetcher(
            magnet.info_hash,
            peer_id=self.peer_id,
            listen_port=self.address.port,
            reserved=self.reserved,
            rng=random.Random(self._rng.getrandbits(64)),
            on_event=self._on_event,
            encryption=self.encryption,
        )
        fetcher.own_addrs.add(self.address)
        fetcher.add_peers(list(magnet.peers), "magnet")
        if peers:
            fetcher.add_peers(peers, "manual")
        self.fetchers[magnet.info_hash] = fetcher
        tiers = tuple((url,) for url in magnet.trackers)
        try:
            async with asyncio.TaskGroup() as tg:
                if tiers:
                    from client.tracker_client import TrackerClient, TransferStats

                    tracker = TrackerClient(
                        info_hash=magnet.info_hash,
                        peer_id=self.peer_id,
                        port=self.address.port,
                        announce_tiers=tiers,
                        # size unknown until the metadata arrives: not a seed
                        stats=lambda: TransferStats(uploaded=0, downloaded=0, left=1),
                        on_peers=lambda addrs: fetcher.add_peers(addrs, "tracker"),
                        config=self._tracker_config(),
                        rng=random.Random(self._rng.getrandbits(64)),
                        on_event=self._on_event,
                    )
                    tg.create_task(tracker.run())
                if self.dht is not None:
                    tg.create_task(self._dht_loop(magnet.info_hash, fetcher))
                info = await fetcher.run()
                raise _Stop
        except* _Stop:
            pass
        finally:
            self.fetchers.pop(magnet.info_hash, None)
        meta = parse_info(info, announce_tiers=tiers)
        return self.add_torrent(meta, save_dir, config=config, known=fetcher.known)

    def _tracker_config(self) -> TrackerClientConfig:
        from client.tracker_client import TrackerClientConfig

        return self.config.tracker or TrackerClientConfig()

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
        conn = PeerConnection(
            self,
            outgoing=False,
            clock=loop.time,
            encryption=self.encryption,
            skeys=self._known_infohashes,
        )
        if self._stopping or self._tg is None:
            conn.abort("engine stopped")
        elif len(self._pending) >= MAX_PENDING_INCOMING:
            conn.abort("too many pending connections")
        elif start_in(self._tg, self._handshake_deadline(conn)) is None:
            conn.abort("engine stopping")  # the task group is shutting down
        else:
            self._pending.add(conn)
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

    def _known_infohashes(self) -> list[bytes]:
        return [*self.sessions, *self.fetchers]

    def on_handshake(self, conn: PeerConnection, hs: wire.HandshakeReceived) -> None:
        if conn.mse_skey is not None and conn.mse_skey != hs.info_hash:
            conn.close("handshake names another torrent than MSE did")
            return
        target = self.sessions.get(hs.info_hash) or self.fetchers.get(hs.info_hash)
        if target is None:
            conn.close("handshake for a torrent we don't have")
            return
        if not target.accept(conn, hs):
            conn.close("refused by the torrent")

    def on_message(self, conn: PeerConnection, msg: wire.PeerMessage) -> None:
        conn.close("message before handshake")


def _transfer_stats(session: TorrentSession) -> TransferStats:
    from client.tracker_client import TransferStats

    stats = session.statistics()
    return TransferStats(
        uploaded=stats.uploaded, downloaded=stats.downloaded, left=session.bytes_left()
    )
