"""One torrent's swarm: peers, piece buffers, verification, choking, upload.

The session is the driver that joins the cores (picker, choker, pipeline,
rate limiter, wire) to sockets, threads and timers. Decisions stay in the
cores; what is here is plumbing and bookkeeping:

- messages arrive synchronously from :class:`~client.peer.PeerConnection`;
- per peer, a *requester* task keeps the request pipeline full (it is the
  one place that waits on the download rate limit) and an *uploader* task
  serves the peer's requests from a small piece cache (it waits on the upload
  rate limit and on the socket's write buffer);
- a ticker runs once a second: keep-alives, idle and snub checks, rechoke;
- a completed piece crosses to a thread once to be hashed and written.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import itertools
import logging
import queue
import random
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from client.core import wire
from client.core.bitfield import Bitfield
from client.core.choker import ChokeCandidate, Choker
from client.core.extensions import (
    UT_METADATA,
    UT_METADATA_ID,
    UT_PEX,
    UT_PEX_ID,
    ExtensionState,
    ext_handshake_message,
)
from client.core.metadata import (
    MetadataRequest,
    MetadataServer,
    parse_metadata_message,
)
from client.core.metainfo import Metainfo
from client.core.mse import EncryptionPolicy
from client.core.peerpool import PeerPool
from client.core.pex import PexState, parse_pex
from client.core.picker import BlockRequest, PiecePicker
from client.core.pipeline import RequestPipeline
from client.core.ratelimit import RateLimiter, TokenBucket
from client.errors import RemotePeerProtocolError, StorageError
from client.peer import PeerConnection, dial, start_in
from client.storage import Storage
from dht import PeerAddr

__all__ = ["PeerInfo", "SessionConfig", "SessionStats", "TorrentSession"]

log = logging.getLogger(__name__)

BLOCK_SIZE = 16384  # bytes per request (BEP 3 practice; every client uses it)
# Requests we queue per peer before treating more as a flood (BEP 10 'reqq').
MAX_PEER_REQUESTS = 500
# Pieces kept in the seeding cache (each piece_length bytes): enough for
# every unchoked peer to be served from its own pieces without evicting
# another's half-sent one. PIECE_CACHE_BYTES bounds it for large pieces.
PIECE_CACHE_PIECES = 32
PIECE_CACHE_BYTES = 8 * 1024 * 1024
# Queued requests looked at when reading ahead for a peer, and the most
# pieces read in one thread hop (a share of the cache, so one peer's
# read-ahead does not evict the pieces others are being sent).
READ_AHEAD_REQUESTS = 256
READ_AHEAD_SHARE = 4
# Most block bytes sent in one write when uploading without a rate limit.
UPLOAD_BATCH_BYTES = 256 * 1024
# Hash-and-write jobs at once: one per core.
VERIFY_CONCURRENCY = 2
# Complete pieces waiting for their hash before requesting stops: bounds the
# memory held in piece buffers when the disk or the hashing threads fall
# behind the network (each waiting piece holds piece_length bytes).
VERIFY_BACKLOG_PIECES = 8
# Addresses handed to dial tasks per connector round; how many connect at
# once is bounded by SessionConfig.max_half_open.
MAX_DIALS_PER_ROUND = 200
# The request pipeline is topped up once a 1/REFILL_FRACTION of it is free.
REFILL_FRACTION = 4
# A peer that sends this many blocks we never asked for is dropped.
MAX_UNREQUESTED_BLOCKS = 64
# Piece buffers kept for reuse once their piece is verified.
SPARE_BUFFERS = 4
# Seconds verified pieces wait to be announced together (batched ``have``s).
HAVE_BATCH_S = 0.05
# Seconds between keep-alives (BEP 3: connections time out after 2 minutes).
KEEPALIVE_INTERVAL_S = 90.0


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionConfig:
    max_peers: int = 50
    max_half_open: int = 8
    connect_timeout_s: float = 10.0
    handshake_timeout_s: float = 10.0
    idle_timeout_s: float = 150.0
    snub_timeout_s: float = 30.0
    rechoke_interval_s: float = 10.0
    optimistic_interval_s: float = 30.0
    unchoke_slots: int = 4
    upload_rate: float | None = None  # bytes/s for this torrent
    download_rate: float | None = None
    seed_after_complete: bool = True
    retry_peer_after_s: float = 10.0
    random_first_pieces: int = 4
    pex_interval_s: float = 60.0  # BEP 11: at most one message a minute
    #: exchange peers by ut_pex (always off for private torrents, BEP 27)
    pex: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerInfo:
    addr: str
    peer_id: str
    source: str
    download_rate: float
    upload_rate: float
    downloaded: int
    uploaded: int
    choked: bool
    interested: bool
    pieces: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStats:
    name: str
    info_hash: str
    state: str
    total_length: int
    pieces: int
    pieces_have: int
    resumed_pieces: int
    downloaded: int
    uploaded: int
    download_rate: float
    upload_rate: float
    peers: int
    seeds: int
    eta_s: float | None
    piece_map: str
    downloaded_from: dict[str, int] = field(default_factory=dict)
    peers_by_source: dict[str, int] = field(default_factory=dict)
    bans: int = 0
    hash_failures: int = 0


class _RateMeter:
    """Bytes per second over a sliding window of one-second buckets."""

    WINDOW_S = 5

    def __init__(self) -> None:
        self._buckets: collections.deque[list[float]] = collections.deque()
        self.total = 0

    def add(self, n: int, now: float) -> None:
        self.total += n
        second = float(int(now))
        if self._buckets and self._buckets[-1][0] == second:
            self._buckets[-1][1] += n
        else:
            self._buckets.append([second, float(n)])
        while self._buckets and self._buckets[0][0] <= second - self.WINDOW_S:
            self._buckets.popleft()

    def rate(self, now: float) -> float:
        cutoff = now - self.WINDOW_S
        total = sum(n for t, n in self._buckets if t > cutoff)
        return total / self.WINDOW_S


class _PeerState:
    """What the session tracks per connection."""

    def __init__(
        self, conn: PeerConnection, num_pieces: int, cfg: SessionConfig
    ) -> None:
        self.conn = conn
        self.bitfield = Bitfield(num_pieces)
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.pipeline = RequestPipeline(snub_timeout_s=cfg.snub_timeout_s)
        self.up = _RateMeter()
        self.requests: collections.deque[wire.Request] = collections.deque()
        self.wake_requester = asyncio.Event()
        self.wake_uploader = asyncio.Event()
        self.unrequested = 0
        # blocks to receive before the requester is worth waking
        self.blocks_to_wake = 1
        # blocks accepted in the current read, accounted once per read
        self.rx_blocks = 0
        self.rx_bytes = 0
        self.strikes = 0
        self.ext = ExtensionState()
        self.pex: PexState | None = None
        # Where the peer accepts connections: the dialled address, or the
        # connection's host with the BEP 10 'p' port for incoming ones.
        self.listen_addr: PeerAddr | None = conn.addr if conn.outgoing else None


class _PeerDone(Exception):
    pass


def _packed_ip(addr: PeerAddr | None) -> bytes | None:
    """BEP 10 'yourip': the peer's address as we see it, packed."""
    if addr is None:
        return None
    try:
        return ipaddress.ip_address(addr.host).packed
    except ValueError:
        return None


class PieceCache:
    """Whole pieces read once from disk, serving their blocks (seeding).

    Several peers often ask for the same piece, and every peer asks for a
    piece block by block, so a piece is read whole (one ``preadv``) and kept
    while ``capacity`` newer pieces have not pushed it out. :meth:`load`
    reads every piece a batch of requests needs in one thread hop.
    """

    def __init__(self, storage: Storage, capacity: int = PIECE_CACHE_PIECES) -> None:
        self._storage = storage
        self._capacity = capacity
        self._pieces: collections.OrderedDict[int, bytearray] = (
            collections.OrderedDict()
        )
        # pieces being read: one future per read batch, shared by its pieces
        self._loading: dict[int, asyncio.Future[None]] = {}
        # evicted pieces' buffers, read into again: a new 256 KiB bytearray
        # is zeroed page by page in the reading thread, holding the GIL
        self._spare: list[bytearray] = []
        self._max_spare = max(1, capacity // READ_AHEAD_SHARE)

    @property
    def capacity(self) -> int:
        """Pieces kept."""
        return self._capacity

    def peek(self, index: int) -> bytearray | None:
        """The piece if it is cached (it becomes the most recently used)."""
        data = self._pieces.get(index)
        if data is not None:
            self._pieces.move_to_end(index)
        return data

    async def load(self, indices: list[int]) -> None:
        """Make the pieces cached: read those not cached in one thread hop
        (at most ``capacity``, so a batch never evicts itself) and wait for
        those another caller is reading.

        Raises:
            StorageError: a read failed or a piece is not on disk.
        """
        wanted = [i for i in dict.fromkeys(indices) if i not in self._pieces]
        waits = {self._loading[i] for i in wanted if i in self._loading}
        todo = [i for i in wanted if i not in self._loading][: self._capacity]
        if todo:
            fut = asyncio.get_running_loop().create_future()
            for i in todo:
                self._loading[i] = fut
            spare = self._spare
            into = [spare.pop() if spare else None for _ in todo]
            try:
                pieces = await asyncio.to_thread(self._read, todo, into)
            except asyncio.CancelledError:
                fut.cancel()
                raise
            except BaseException as exc:
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: other waiters get their own
                raise
            finally:
                for i in todo:
                    self._loading.pop(i, None)
            for i, data in zip(todo, pieces, strict=True):
                self._pieces[i] = data
            while len(self._pieces) > self._capacity:
                _, old = self._pieces.popitem(last=False)
                if len(self._spare) < self._max_spare:
                    self._spare.append(old)
            fut.set_result(None)
        for w in waits:
            await asyncio.shield(w)

    def _read(
        self, indices: list[int], into: list[bytearray | None]
    ) -> list[bytearray]:
        out = []
        for i, buf in zip(indices, into, strict=True):
            data = self._storage.read_piece(i, into=buf)
            if data is None:
                raise StorageError(f"storage: piece {i} is not on disk")
            out.append(data)
        return out

    async def get(self, index: int) -> bytearray:
        """One piece, read if it is not cached.

        Raises:
            StorageError: the read failed or the piece is not on disk.
        """
        while True:
            data = self.peek(index)
            if data is not None:
                return data
            await self.load([index])


class _Hasher:
    """Threads that hash and write complete pieces (hashlib and ``pwrite``
    release the GIL), fed by a plain queue; results come back to the event
    loop in batches, with one wakeup per batch rather than a future and a
    wakeup per piece (``asyncio.to_thread`` costs ~40 us of loop time each).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        work: Callable[[int, bytearray], bool],
        threads: int,
    ) -> None:
        self._loop = loop
        self._work = work
        self._jobs: queue.SimpleQueue[tuple[int, bytearray] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.Lock()
        self._done: list[tuple[int, bool | Exception]] = []
        self.ready = asyncio.Event()  # results are waiting in take()
        self.in_flight = 0
        self._threads = [
            threading.Thread(target=self._worker, name="bitswarm-hash", daemon=True)
            for _ in range(threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, index: int, buf: bytearray) -> None:
        self.in_flight += 1
        self._jobs.put((index, buf))

    def take(self) -> list[tuple[int, bool | Exception]]:
        """The results so far: ``(index, matched)`` or the error raised."""
        with self._lock:
            done, self._done = self._done, []
            self.ready.clear()
        self.in_flight -= len(done)
        return done

    def close(self) -> None:
        """Stop the threads; waits for a piece being written (so the
        storage can be closed after this)."""
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join()

    def _worker(self) -> None:
        while (job := self._jobs.get()) is not None:
            index, buf = job
            result: bool | Exception
            try:
                result = self._work(index, buf)
            except Exception as exc:  # handed to the loop, raised there
                result = exc
            with self._lock:
                first = not self._done
                self._done.append((index, result))
            if first:
                with contextlib.suppress(RuntimeError):  # the loop is closed
                    self._loop.call_soon_threadsafe(self.ready.set)


EventSink = Callable[[str, dict[str, Any]], None]


class TorrentSession:
    """Downloads and seeds one torrent.

    Args:
        meta: the torrent.
        save_dir: the folder the torrent's files go under.
        peer_id: our 20-byte peer id.
        listen_port: the port we accept peers on (for tracker announces).
        config: limits and timings.
        global_limits: buckets shared with other torrents (global rate caps).
        on_event: called with (name, fields) for UI and ``--json`` output.
    """

    def __init__(
        self,
        meta: Metainfo,
        save_dir: Path,
        *,
        peer_id: bytes,
        listen_port: int,
        config: SessionConfig = SessionConfig(),
        global_up: TokenBucket | None = None,
        global_down: TokenBucket | None = None,
        on_event: EventSink | None = None,
        rng: random.Random | None = None,
        reserved: bytes = wire.make_reserved(extension=True),
        dht_port: int | None = None,
        encryption: EncryptionPolicy = EncryptionPolicy.PREFER,
    ) -> None:
        self.meta = meta
        self.info_hash = meta.info_hash
        self.peer_id = peer_id
        self.listen_port = listen_port
        self.cfg = config
        self._rng = rng or random.Random(secrets.randbits(64))
        self._loop = asyncio.get_running_loop()
        self._reserved = reserved
        self.dht_port = dht_port
        self.encryption = encryption
        self._metadata_server = MetadataServer(meta.info_bytes)
        self.storage = Storage(save_dir, meta)
        n = meta.num_pieces
        self.picker = PiecePicker(
            n,
            meta.piece_length,
            meta.total_length,
            rng=self._rng,
            random_first_pieces=config.random_first_pieces,
            # BEP 47 pad files are zeros we never request (buffers start zeroed)
            pad_ranges=[(f.offset, f.length) for f in meta.files if f.is_pad],
        )
        self.choker = Choker(
            regular_slots=config.unchoke_slots,
            optimistic_interval_s=config.optimistic_interval_s,
            rechoke_interval_s=config.rechoke_interval_s,
            rng=self._rng,
        )
        now = self._now()
        up = [TokenBucket(config.upload_rate, now=now)]
        down = [TokenBucket(config.download_rate, now=now)]
        if global_up is not None:
            up.append(global_up)
        if global_down is not None:
            down.append(global_down)
        self.up_limit = RateLimiter(up)
        self.down_limit = RateLimiter(down)
        self._on_event = on_event
        self.peers: dict[PeerConnection, _PeerState] = {}
        self._buffers: dict[int, bytearray] = {}
        # Buffers of verified pieces, reused for new ones. Not with BEP 47
        # pad files: the picker counts their blocks as zeros never written.
        self._spare_buffers: list[bytearray] = []
        self._recycle_buffers = not any(f.is_pad for f in meta.files)
        # blocks being received straight into a piece's buffer, per piece
        self._sinking: dict[int, int] = {}
        self._cache = PieceCache(
            self.storage,
            max(4, min(PIECE_CACHE_PIECES, PIECE_CACHE_BYTES // meta.piece_length)),
        )
        # Completed pieces waiting to be hashed; a piece is queued at most
        # once at a time, so the torrent's piece count bounds it.
        self._hasher: _Hasher | None = None
        self._verify_caught_up = asyncio.Event()
        self._verify_caught_up.set()
        self._half_open = asyncio.Semaphore(config.max_half_open)
        self._pool = PeerPool(retry_s=config.retry_peer_after_s)
        self._banned_ids: set[bytes] = set()
        self._wake_connector = asyncio.Event()
        self._complete = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._started = asyncio.Event()
        self._down_meter = _RateMeter()
        self._up_meter = _RateMeter()
        # payload bytes per peer id (hex only when a snapshot is taken)
        self.downloaded_from: collections.Counter[bytes] = collections.Counter()
        self.peers_by_source: collections.Counter[str] = collections.Counter()
        self.resumed_pieces = 0
        self.hash_failures = 0
        self.bans = 0
        self.state = "starting"
        #: why the torrent stopped, if it failed (e.g. the disk is full)
        self.failure: str | None = None
        self._settled = asyncio.Event()  # complete, or stopped by a failure
        self._stopping = False
        #: called with a peer's DHT node address from a BEP 5 ``port`` message
        self.on_dht_port: Callable[[PeerAddr], None] | None = None
        self._last_rechoke_request = 0.0
        # verified pieces not yet announced, and the timer that will
        self._pending_haves: list[int] = []
        self._have_flush: asyncio.TimerHandle | None = None
        self._piece_chars = ""

    # -- lifecycle -------------------------------------------------------------
    def _now(self) -> float:
        return self._loop.time()

    def _emit(self, name: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(name, fields)

    @property
    def _pex_enabled(self) -> bool:
        """BEP 27: private torrents get peers from their tracker only."""
        return self.cfg.pex and not self.meta.private

    @property
    def is_complete(self) -> bool:
        return self.picker.is_complete

    async def wait_complete(self) -> None:
        await self._complete.wait()

    async def wait_started(self) -> None:
        await self._started.wait()

    def add_own_address(self, addr: PeerAddr) -> None:
        """An address that reaches us; never dialled."""
        self._pool.own(addr)

    async def run(self) -> None:
        """Check existing data, then trade with peers until cancelled (or,
        with ``seed_after_complete`` off, until complete).

        A storage failure (disk full, permissions) stops this torrent only:
        it is recorded in :attr:`failure`, reported as a ``torrent_error``
        event, and every piece verified so far stays on disk for a resume.
        """
        try:
            await self._run()
        except* StorageError as eg:
            self.failure = str(eg.exceptions[0])
            self.state = "error"
            log.warning("%s: stopped: %s", self._tag, self.failure)
            self._emit(
                "torrent_error", info_hash=self.meta.info_hash_hex, reason=self.failure
            )
        finally:
            self._settled.set()

    async def wait_settled(self) -> None:
        """Until the download is complete or the torrent failed (then
        :attr:`failure` says why)."""
        await self._settled.wait()

    async def _run(self) -> None:
        self.state = "checking"
        await asyncio.to_thread(self.storage.create_empty_files)
        verified = await asyncio.to_thread(self.storage.recheck)
        for index in verified:
            self.picker.mark_have(index)
        self.resumed_pieces = len(verified)
        self._emit(
            "checked",
            pieces=self.meta.num_pieces,
            have=len(verified),
            info_hash=self.meta.info_hash_hex,
        )
        self._update_state()
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                self._started.set()
                tg.create_task(self._ticker())
                tg.create_task(self._connector())
                self._hasher = _Hasher(
                    self._loop, self.storage.verify_and_write, VERIFY_CONCURRENCY
                )
                tg.create_task(self._verifier(self._hasher))
                try:
                    if self.is_complete and not self.cfg.seed_after_complete:
                        raise _PeerDone
                    if not self.cfg.seed_after_complete:
                        await self._complete.wait()
                        raise _PeerDone
                    await asyncio.Event().wait()  # until cancelled
                finally:
                    # The group is about to shut down: accept no new peers.
                    self._stopping = True
        except* _PeerDone:
            pass
        finally:
            self._tg = None
            if self._have_flush is not None:
                self._have_flush.cancel()
                self._have_flush = None
            for conn in list(self.peers):
                conn.close("session stopped")
            if self._hasher is not None:
                self._hasher.close()
                self._hasher = None
            self.storage.close()

    def _update_state(self) -> None:
        if self.is_complete:
            if not self._complete.is_set():
                self._complete.set()
                self._settled.set()
            self.state = "seeding"
        else:
            self.state = "downloading"

    # -- peers from discovery --------------------------------------------------
    def add_peers(self, addrs: list[PeerAddr], source: str) -> None:
        """Candidates from any source (tracker, DHT, PEX, the command line)."""
        added = self._pool.add(addrs, source)
        if added:
            self._emit("peers_found", source=source, count=added)
            self._wake_connector.set()

    async def _connector(self) -> None:
        while True:
            await self._wake_connector.wait()
            self._wake_connector.clear()
            assert self._tg is not None
            if len(self.peers) >= self.cfg.max_peers or (
                self.is_complete and not self.cfg.seed_after_complete
            ):
                continue
            for d in self._pool.to_dial(
                self._now(), MAX_DIALS_PER_ROUND, complete=self.is_complete
            ):
                log.debug("%s: dialling %s (%s)", self._tag, d.addr, d.source)
                self._tg.create_task(self._dial(d.addr, d.source))

    async def _dial(self, addr: PeerAddr, source: str) -> None:
        try:
            await dial(
                self,
                addr,
                source=source,
                policy=self.encryption,
                handshake=wire.encode_handshake(
                    self.info_hash, self.peer_id, self._reserved
                ),
                skey=self.info_hash,
                clock=self._now,
                connect_timeout_s=self.cfg.connect_timeout_s,
                serve=lambda conn: self._run_peer(conn, handshake_pending=True),
                half_open=self._half_open,
            )
        except (OSError, TimeoutError) as exc:
            log.debug("%s: connect to %s failed: %r", self._tag, addr, exc)
        finally:
            self._pool.dial_ended(addr, source, self._now())

    @property
    def _tag(self) -> str:
        return self.meta.info_hash_hex[:8]

    def accept(self, conn: PeerConnection, hs: wire.HandshakeReceived) -> bool:
        """An incoming connection whose handshake named this torrent."""
        if self._tg is None or self._stopping or len(self.peers) >= self.cfg.max_peers:
            return False
        if hs.peer_id == self.peer_id or hs.peer_id in self._banned_ids:
            return False
        if any(p.peer_id == hs.peer_id for p in self.peers):
            return False  # both dialled each other: keep the first connection
        if start_in(self._tg, self._run_peer(conn, handshake_pending=False)) is None:
            return False  # shutting down (a child failed): the engine closes it
        conn.handler = self
        conn.write(wire.encode_handshake(self.info_hash, self.peer_id, self._reserved))
        self._attach(conn)
        return True

    def _attach(self, conn: PeerConnection) -> None:
        state = _PeerState(conn, self.meta.num_pieces, self.cfg)
        self.peers[conn] = state
        conn.wire.set_num_pieces(self.meta.num_pieces)
        conn.wire.set_block_sink(lambda i, b, n: self._block_sink(state, i, b, n))
        conn.after_dispatch = lambda: self._account_received(state)
        self.peers_by_source[conn.source] += 1
        if conn.outgoing and conn.addr is not None:
            self._pool.attached(conn.addr)
        conn.mark_attached()
        have = self.picker.have_bitfield()
        if have.any():
            conn.send(wire.Bitfield(data=have.to_bytes()))
        hs = conn.handshake
        if hs is not None and hs.supports_extensions:
            conn.send(
                ext_handshake_message(
                    metadata_size=len(self.meta.info_bytes),
                    listen_port=self.listen_port or None,
                    yourip=_packed_ip(conn.addr),
                    ut_pex=self._pex_enabled,
                )
            )
        if hs is not None and hs.supports_dht and self.dht_port:
            conn.send(wire.Port(port=self.dht_port))  # BEP 5
        self._emit(
            "peer_connected",
            addr=str(conn.addr),
            source=conn.source,
            peer_id=conn.peer_id.hex(),
        )

    # -- MessageHandler --------------------------------------------------------
    def on_handshake(self, conn: PeerConnection, hs: wire.HandshakeReceived) -> None:
        # Only outgoing connections reach here (incoming ones go through accept).
        if hs.info_hash != self.info_hash:
            conn.close("handshake for another torrent")
        elif hs.peer_id == self.peer_id:
            if conn.addr is not None:
                self._pool.own(conn.addr)
            conn.close("connected to ourselves")
        elif hs.peer_id in self._banned_ids:
            conn.close("banned peer")
        elif any(p.peer_id == hs.peer_id for p in self.peers):
            conn.close("already connected to this peer")
        else:
            self._attach(conn)

    async def _run_peer(self, conn: PeerConnection, *, handshake_pending: bool) -> None:
        try:
            if handshake_pending:
                async with asyncio.timeout(self.cfg.handshake_timeout_s):
                    attached = await conn.wait_attached()
                if not attached:
                    await conn.wait_closed()  # re-raises a handler bug
                    return
            state = self.peers[conn]
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._requester(state))
                tg.create_task(self._uploader(state))
                tg.create_task(self._until_closed(conn))
        except* _PeerDone:
            pass
        except* (OSError, TimeoutError, RemotePeerProtocolError) as eg:
            conn.close(str(eg.exceptions[0]))
        finally:
            conn.abort(conn.close_reason or "done")
            self._detach(conn)

    async def _until_closed(self, conn: PeerConnection) -> None:
        await conn.wait_closed()
        raise _PeerDone

    def _detach(self, conn: PeerConnection) -> None:
        state = self.peers.pop(conn, None)
        if state is None:
            return
        self.picker.peer_gone(conn, state.bitfield)
        if state.bitfield.all() and state.listen_addr is not None:
            self._pool.seed(state.listen_addr)
        self._emit("peer_disconnected", addr=str(conn.addr), reason=conn.close_reason)
        if not state.am_choking and not self._stopping:
            self._request_rechoke()  # its slot is free: give it to a waiting peer
        self._wake_all_requesters()
        self._wake_connector.set()

    # -- incoming messages -----------------------------------------------------
    def on_message(self, conn: PeerConnection, msg: wire.PeerMessage) -> None:
        state = self.peers.get(conn)
        if state is None:
            return
        if type(msg) is wire.Piece:
            self._on_piece(state, msg)
            return
        if state.rx_blocks:
            self._account_received(state)  # in order with what follows
        match msg:
            case wire.Request():
                self._on_request(state, msg)
            case wire.Have(index=index):
                if not state.bitfield[index]:
                    state.bitfield.set(index)
                    self.picker.peer_have(conn, index)
                    if not self.picker.have(index):
                        self._set_interested(state, True)
                    self._drop_if_both_seeds(state)
            case wire.Bitfield(data=data):
                bf = Bitfield.from_bytes(data, self.meta.num_pieces)
                self.picker.peer_gone(conn, state.bitfield)
                state.bitfield = bf
                self.picker.peer_bitfield(conn, bf)
                self._set_interested(state, self.picker.is_interesting(bf))
                self._drop_if_both_seeds(state)
            case wire.Choke():
                state.peer_choking = True
                self._release_all(state)
            case wire.Unchoke():
                state.peer_choking = False
                state.wake_requester.set()
            case wire.Interested():
                state.peer_interested = True
                self._request_rechoke()
            case wire.NotInterested():
                state.peer_interested = False
                if not state.am_choking:
                    self._request_rechoke()  # a slot to give to a waiting peer
            case wire.Cancel(index=i, begin=b, length=n):
                with contextlib.suppress(ValueError):
                    state.requests.remove(wire.Request(index=i, begin=b, length=n))
            case wire.Extended(ext_id=ext_id, payload=payload):
                self._on_extended(state, ext_id, payload)
            case wire.Port(port=port):
                if self.on_dht_port is not None and conn.addr is not None:
                    self.on_dht_port(PeerAddr(conn.addr.host, port))
            case wire.KeepAlive():
                pass

    def _on_extended(self, state: _PeerState, ext_id: int, payload: bytes) -> None:
        conn = state.conn
        if ext_id == 0:
            hs = state.ext.receive_handshake(payload)
            if hs.p and conn.addr is not None and not conn.outgoing:
                state.listen_addr = PeerAddr(conn.addr.host, hs.p)
            if hs.reqq:
                state.pipeline.set_peer_limit(hs.reqq)
            if (
                state.ext.supports(UT_PEX)
                and self._pex_enabled
                and state.listen_addr is not None
                and state.pex is None
            ):
                state.pex = PexState(
                    state.listen_addr, interval_s=self.cfg.pex_interval_s
                )
            return
        if ext_id == UT_METADATA_ID:
            msg = parse_metadata_message(payload)
            their_id = state.ext.peer_id_for(UT_METADATA)
            if isinstance(msg, MetadataRequest) and their_id is not None:
                reply = self._metadata_server.handle_request(msg.piece)
                conn.send(wire.Extended(ext_id=their_id, payload=reply))
            return
        if ext_id == UT_PEX_ID and self._pex_enabled:
            pex = parse_pex(payload)
            if pex.added:
                self.add_peers(list(pex.added), "pex")

    def _release_all(self, state: _PeerState) -> None:
        """Give the peer's outstanding blocks back to the picker (choke,
        snub) so other peers can fetch them."""
        state.pipeline.requests_done(self.picker.outstanding_count(state.conn))
        self.picker.release(state.conn)

    def _drop_if_both_seeds(self, state: _PeerState) -> None:
        """Two seeds have nothing to trade (libtorrent closes these too)."""
        if self.is_complete and state.bitfield.all():
            state.conn.close("both are seeds")

    def _set_interested(self, state: _PeerState, interested: bool) -> None:
        if interested != state.am_interested:
            state.am_interested = interested
            state.conn.send(wire.Interested() if interested else wire.NotInterested())
            if interested:
                state.wake_requester.set()

    def _new_buffer(self, index: int) -> bytearray:
        """A buffer for piece ``index``: a verified piece's, when one is spare
        (a new 256 KiB bytearray is zeroed page by page: ~8% of a swarm
        leecher's loop samples), else a new one."""
        size = self.picker.piece_size(index)
        if self._spare_buffers and size == self.meta.piece_length:
            return self._spare_buffers.pop()
        return bytearray(size)

    def _block_sink(
        self, state: _PeerState, index: int, begin: int, length: int
    ) -> memoryview | None:
        buf = self._buffers.get(index)
        if buf is None or begin + length > len(buf):
            return None
        if not self.picker.is_outstanding(
            state.conn, BlockRequest(index, begin, length)
        ):
            return None
        # A writer outside the picker's bookkeeping until the block is in (it
        # may be released, fetched elsewhere and the piece verified first):
        # the buffer is not recycled while one is active.
        self._sinking[index] = self._sinking.get(index, 0) + 1
        return memoryview(buf)[begin : begin + length]

    def _on_piece(self, state: _PeerState, msg: wire.Piece) -> None:
        conn = state.conn
        length = len(msg.block)
        if msg.in_place:
            left = self._sinking.pop(msg.index, 0) - 1
            if left > 0:
                self._sinking[msg.index] = left
        outcome = self.picker.block_received(conn, msg.index, msg.begin, length)
        if not outcome.accepted:
            # Endgame copies arriving after their cancel are normal; blocks
            # nobody asked for (or released on a choke race) are counted.
            if outcome.duplicate:
                return
            state.unrequested += 1
            if state.unrequested > MAX_UNREQUESTED_BLOCKS:
                conn.close("too many blocks we did not request")
            return
        buf = self._buffers.get(msg.index)
        if buf is None:  # cannot happen: buffers live while blocks are wanted
            buf = self._buffers[msg.index] = self._new_buffer(msg.index)
        if not msg.in_place:
            buf[msg.begin : msg.begin + length] = msg.block
        state.rx_blocks += 1
        state.rx_bytes += length
        for other, req in outcome.cancels:
            if isinstance(other, PeerConnection):
                other.send(
                    wire.Cancel(index=req.index, begin=req.begin, length=req.length)
                )
        if outcome.piece_done:
            assert self._hasher is not None  # pieces complete while running
            self._hasher.submit(msg.index, buf)
            if self._hasher.in_flight >= VERIFY_CONCURRENCY + VERIFY_BACKLOG_PIECES:
                self._verify_caught_up.clear()
        # The requester refills in batches: wake it when one is free, not
        # once per block.
        state.blocks_to_wake -= 1
        if state.blocks_to_wake <= 0:
            state.blocks_to_wake = 1
            state.wake_requester.set()

    def _account_received(self, state: _PeerState) -> None:
        """The blocks of one read in the rate meters, at once (they arrived
        at the same instant; per block this was ~3% of the loop)."""
        blocks = state.rx_blocks
        if not blocks:
            return
        nbytes = state.rx_bytes
        state.rx_blocks = state.rx_bytes = 0
        now = self._now()
        state.pipeline.record_blocks(blocks, nbytes, now)
        self._down_meter.add(nbytes, now)
        self.downloaded_from[state.conn.peer_id] += nbytes

    async def _verifier(self, hasher: _Hasher) -> None:
        while True:
            await hasher.ready.wait()
            for index, result in hasher.take():
                if isinstance(result, Exception):
                    raise result  # a StorageError stops the torrent
                self._verified(index, result)
            if hasher.in_flight < VERIFY_CONCURRENCY + VERIFY_BACKLOG_PIECES:
                self._verify_caught_up.set()

    def _verified(self, index: int, ok: bool) -> None:
        """A piece was hashed (and, if it matched, written)."""
        buf = self._buffers.pop(index, None)
        if self._sinking.pop(index, 0) > 0:
            pass  # a block is still arriving into it: let it go
        elif (
            buf is not None
            and self._recycle_buffers
            and len(buf) == self.meta.piece_length
            and len(self._spare_buffers) < SPARE_BUFFERS
        ):
            self._spare_buffers.append(buf)
        if not ok:
            self.hash_failures += 1
            senders = self.picker.piece_failed(index)
            self._emit("hash_failed", piece=index, peers=len(senders))
            for peer in senders:
                if isinstance(peer, PeerConnection):
                    self._strike(peer, sole=len(senders) == 1)
            self._wake_all_requesters()
            return
        cancels = self.picker.piece_verified(index)
        for other, req in cancels:
            if isinstance(other, PeerConnection):
                other.send(
                    wire.Cancel(index=req.index, begin=req.begin, length=req.length)
                )
        self._pending_haves.append(index)
        if self._have_flush is None:
            self._have_flush = self._loop.call_later(HAVE_BATCH_S, self._flush_haves)
        for state in self.peers.values():
            if (
                state.am_interested
                and state.bitfield[index]
                and not self.picker.is_interesting(state.bitfield)
            ):
                self._set_interested(state, False)
        self._emit("piece_verified", piece=index, have=self.picker.have_count)
        if self.is_complete:
            self._flush_haves()
            self._update_state()
            self._emit("completed", info_hash=self.meta.info_hash_hex)
            for state in list(self.peers.values()):
                self._drop_if_both_seeds(state)

    def _flush_haves(self) -> None:
        """Announce the pieces verified since the last flush: one write per
        peer instead of one per piece and peer. A peer that already has a
        piece is not told (libtorrent's redundant haves): it cannot want it
        from us."""
        if self._have_flush is not None:
            self._have_flush.cancel()
            self._have_flush = None
        indices, self._pending_haves = self._pending_haves, []
        if not indices:
            return
        haves = [(i, wire.encode(wire.Have(index=i))) for i in indices]
        for conn, state in self.peers.items():
            bf = state.bitfield
            out = b"".join(msg for i, msg in haves if not bf[i])
            if out:
                conn.write(out)

    def _strike(self, conn: PeerConnection, *, sole: bool) -> None:
        """A peer contributed to a piece that failed its hash. The sole
        contributor is certainly guilty; with several, two strikes ban."""
        state = self.peers.get(conn)
        strikes = (state.strikes if state else 0) + (2 if sole else 1)
        if state is not None:
            state.strikes = strikes
        if strikes >= 2:
            self.bans += 1
            self._banned_ids.add(conn.peer_id)
            if conn.addr is not None:
                self._pool.ban(conn.addr)
            self._emit("peer_banned", addr=str(conn.addr), reason="sent corrupt data")
            log.info(
                "%s: banned %s: sent data that failed the hash", self._tag, conn.addr
            )
            conn.close("banned: sent corrupt data")

    def _on_request(self, state: _PeerState, msg: wire.Request) -> None:
        if state.am_choking:
            return  # BEP 3: requests from choked peers are ignored
        if msg.length > wire.BLOCK_SIZE_CAP or msg.length == 0:
            state.conn.close(f"request for {msg.length} bytes exceeds the block cap")
            return
        if not self.picker.have(msg.index):
            return  # we lack it: refuse (ignore)
        if msg.begin + msg.length > self.picker.piece_size(msg.index):
            state.conn.close("request beyond the end of the piece")
            return
        if len(state.requests) >= MAX_PEER_REQUESTS:
            state.conn.close("request flood")
            return
        state.requests.append(msg)
        state.wake_uploader.set()

    # -- per-peer tasks --------------------------------------------------------
    def _wake_all_requesters(self) -> None:
        for state in self.peers.values():
            state.wake_requester.set()

    async def _requester(self, state: _PeerState) -> None:
        conn = state.conn
        while True:
            await state.wake_requester.wait()
            state.wake_requester.clear()
            # Backpressure: no new requests while verification lags behind.
            await self._verify_caught_up.wait()
            if state.peer_choking or not state.am_interested or not conn.is_open:
                continue
            now = self._now()
            # A snubbed peer keeps one request, to prove itself with.
            depth = 1 if state.pipeline.snubbed else state.pipeline.depth(now)
            held = self.picker.outstanding_count(conn)
            room = depth - held
            # Refill in batches of a quarter of the pipeline: on loopback each
            # send() of a few requests costs ~100 us (the kernel delivers the
            # segment to the peer right there), so fewer, larger sends win.
            batch = max(1, depth // REFILL_FRACTION)
            if room <= 0 or (held and room < batch):
                # Wake again when enough blocks arrived to free a batch.
                state.blocks_to_wake = max(1, batch - max(0, room))
                continue
            state.blocks_to_wake = batch
            reqs = self.picker.pick(conn, state.bitfield, room)
            if not reqs:
                continue
            for req in reqs:
                if req.index not in self._buffers:
                    self._buffers[req.index] = self._new_buffer(req.index)
            if all(b.rate is None for b in self.down_limit.buckets):
                conn.write(wire.encode_requests(reqs))
            else:
                await self._send_limited(state, reqs)
            state.pipeline.requests_sent(len(reqs), self._now())

    async def _send_limited(self, state: _PeerState, reqs: list[BlockRequest]) -> None:
        """Send requests under a download rate limit: each waits its turn."""
        conn = state.conn
        out: list[BlockRequest] = []
        for req in reqs:
            wait = self.down_limit.reserve(req.length, self._now())
            if wait > 0:
                if out:
                    conn.write(wire.encode_requests(out))
                    out.clear()
                await asyncio.sleep(wait)
                if state.peer_choking or not conn.is_open:
                    return
            out.append(req)
        if out:
            conn.write(wire.encode_requests(out))

    async def _load_queued(self, state: _PeerState) -> None:
        """Read the pieces the peer's queued requests need next, in one
        thread hop; a piece that cannot be read loses its requests."""
        requests = state.requests
        first = requests[0].index
        ahead = list(
            dict.fromkeys(
                r.index for r in itertools.islice(requests, READ_AHEAD_REQUESTS)
            )
        )[: max(1, self._cache.capacity // READ_AHEAD_SHARE)]
        with contextlib.suppress(StorageError):
            await self._cache.load(ahead)
            return
        try:
            await self._cache.load([first])
        except StorageError as exc:
            log.warning("%s: cannot serve piece %d: %s", self._tag, first, exc)
            state.requests = collections.deque(r for r in requests if r.index != first)

    async def _uploader(self, state: _PeerState) -> None:
        conn = state.conn
        cache = self._cache
        while True:
            requests = state.requests
            if not requests:
                state.wake_uploader.clear()
                await state.wake_uploader.wait()
                continue
            await conn.wait_writable()
            if not requests or state.am_choking:
                continue
            if cache.peek(requests[0].index) is None:
                await self._load_queued(state)
                continue
            # One write for as many queued blocks as are cached (up to a
            # batch): a send per block costs a syscall and a wakeup of the
            # peer each. With a rate limit, one block at a time.
            limit = (
                UPLOAD_BATCH_BYTES
                if all(b.rate is None for b in self.up_limit.buckets)
                else 1
            )
            parts: list[bytes | memoryview] = []
            total = 0
            # Queued requests run through a piece block by block: look the
            # piece up (and touch its LRU slot) once per run, not per block.
            piece_index = -1
            view = memoryview(b"")
            header = wire.encode_piece_header
            while requests and total < limit:
                req = requests[0]
                index = req.index
                if index != piece_index:
                    piece = cache.peek(index)
                    if piece is None:
                        break
                    piece_index = index
                    view = memoryview(piece)
                requests.popleft()
                begin = req.begin
                length = req.length
                parts.append(header(index, begin, length))
                parts.append(view[begin : begin + length])
                total += length
            # Copied out before any wait: an evicted piece's buffer is read
            # into again (PieceCache).
            data = b"".join(parts)
            del parts, view
            wait = self.up_limit.reserve(total, self._now())
            if wait > 0:
                await asyncio.sleep(wait)
            if not conn.is_open:
                return
            if state.am_choking:
                continue  # BEP 3: a choke drops the peer's pending requests
            conn.write(data)
            now = self._now()
            state.up.add(total, now)
            self._up_meter.add(total, now)

    # -- timers ----------------------------------------------------------------
    def _request_rechoke(self) -> None:
        """A peer became interested, or an unchoked one left or lost
        interest: rechoke now if a slot may be free, so that a waiting peer
        does not wait for the 10-second round (at a swarm's end the peers
        that finished leave, and the rest would idle until it)."""
        unchoked = sum(
            1 for s in self.peers.values() if not s.am_choking and s.peer_interested
        )
        if unchoked < self.cfg.unchoke_slots + 1:
            self._rechoke(self._now())

    def _rechoke(self, now: float) -> None:
        candidates = [
            ChokeCandidate(
                peer=conn,
                interested=state.peer_interested,
                download_rate=state.pipeline.rate(now),
                upload_rate=state.up.rate(now),
                snubbed=state.pipeline.snubbed,
                connected_at=conn.connected_at,
            )
            for conn, state in self.peers.items()
        ]
        unchoked = self.choker.rechoke(candidates, seeding=self.is_complete, now=now)
        for conn, state in self.peers.items():
            choke = conn not in unchoked
            if choke != state.am_choking:
                state.am_choking = choke
                conn.send(wire.Choke() if choke else wire.Unchoke())
                if choke:
                    state.requests.clear()

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = self._now()
            for conn, state in list(self.peers.items()):
                if now - conn.last_received > self.cfg.idle_timeout_s:
                    conn.close("idle timeout")
                    continue
                if now - conn.last_sent > KEEPALIVE_INTERVAL_S:
                    conn.send(wire.KeepAlive())
                held = self.picker.outstanding_count(conn)
                if held and state.pipeline.is_snubbed(now, held):
                    # Reissue its blocks to others; it stays connected but
                    # loses its regular unchoke slot (choker excludes snubbed).
                    self._emit("peer_snubbed", addr=str(conn.addr))
                    self._release_all(state)
                    self._wake_all_requesters()
                state.wake_requester.set()
            self._send_pex(now)
            if self.choker.due(now):
                self._rechoke(now)
            if self._pool:
                self._wake_connector.set()

    def _send_pex(self, now: float) -> None:
        """BEP 11: tell each ut_pex peer which peers we are connected to
        (their listen addresses), at most once per interval."""
        if not self._pex_enabled:
            return
        current = {s.listen_addr for s in self.peers.values() if s.listen_addr}
        for state in self.peers.values():
            their_id = state.ext.peer_id_for(UT_PEX)
            if state.pex is None or their_id is None or not state.pex.due(now):
                continue
            payload = state.pex.build(current, now)
            if payload is not None:
                state.conn.send(wire.Extended(ext_id=their_id, payload=payload))

    # -- statistics ------------------------------------------------------------
    def bytes_left(self) -> int:
        """Bytes not yet verified (the tracker's ``left``)."""
        meta = self.meta
        have_bytes = self.picker.have_count * meta.piece_length
        last = meta.num_pieces - 1
        if last >= 0 and self.picker.have(last):
            have_bytes -= meta.piece_length - meta.piece_size(last)
        return meta.total_length - have_bytes

    def statistics(self) -> SessionStats:
        now = self._now()
        have = self.picker.have_count
        missing_bytes = self.bytes_left()
        rate = self._down_meter.rate(now)
        eta = None if self.is_complete or rate <= 0 else missing_bytes / rate
        return SessionStats(
            name=self.meta.name,
            info_hash=self.meta.info_hash_hex,
            state=self.state,
            total_length=self.meta.total_length,
            pieces=self.meta.num_pieces,
            pieces_have=have,
            resumed_pieces=self.resumed_pieces,
            downloaded=self._down_meter.total,
            uploaded=self._up_meter.total,
            download_rate=rate,
            upload_rate=self._up_meter.rate(now),
            peers=len(self.peers),
            seeds=sum(1 for s in self.peers.values() if s.bitfield.all()),
            eta_s=eta,
            piece_map=self.picker.have_bitfield().to_string(),
            downloaded_from={k.hex(): n for k, n in self.downloaded_from.items()},
            peers_by_source=dict(self.peers_by_source),
            bans=self.bans,
            hash_failures=self.hash_failures,
        )

    def peer_infos(self) -> list[PeerInfo]:
        now = self._now()
        return [
            PeerInfo(
                addr=str(conn.addr),
                peer_id=conn.peer_id.hex(),
                source=conn.source,
                download_rate=state.pipeline.rate(now),
                upload_rate=state.up.rate(now),
                downloaded=state.pipeline.total_bytes,
                uploaded=state.up.total,
                choked=state.am_choking,
                interested=state.peer_interested,
                pieces=state.bitfield.count(),
            )
            for conn, state in self.peers.items()
        ]
