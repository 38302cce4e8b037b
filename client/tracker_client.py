"""The tracker announce loop for one torrent (BEP 3, 12, 15, 23, 48).

:class:`TrackerClient` is a thin asyncio driver around ``client.core.announce``:
it announces ``started``, then re-announces every ``interval`` the tracker
asks for, walks the BEP 12 tiers when a tracker fails, and backs off with
growing delays when every tracker fails. :meth:`TrackerClient.run` is meant to
be a task in the torrent's TaskGroup: tracker trouble is logged and retried,
never raised, so the download carries on with whatever other peer sources it
has. ``http://`` (through the small GET of ``client/http_get.py``),
``https://`` (through aiohttp, imported only then) and ``udp://`` (BEP 15,
through ``client/udp_tracker_client.py``) trackers mix freely within and
across tiers; other schemes (``wss://``) are skipped with one warning.
:func:`http_scrape` asks an HTTP tracker about torrents (BEP 48).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from client.core.announce import (
    DEFAULT_BACKOFF_BASE_S,
    DEFAULT_BACKOFF_CAP_S,
    AnnounceEvent,
    AnnounceResponse,
    RetryBackoff,
    ScrapeStats,
    TierList,
    announce_url,
    build_announce_query,
    build_scrape_query,
    is_supported_tracker_url,
    is_udp_tracker_url,
    next_announce_delay,
    parse_announce_response,
    parse_scrape_response,
    scrape_url,
)
from client.core.http_response import MAX_REDIRECTS
from client.core.udp_tracker import DEFAULT_RETRANSMIT_BASE_S, ConnectionCache
from client.errors import TrackerFailure
from client.http_get import http_get
from client.udp_tracker_client import UdpTrackerConfig, udp_announce

if TYPE_CHECKING:
    import aiohttp
from dht import PeerAddr

__all__ = [
    "TrackerClient",
    "TrackerClientConfig",
    "TrackerClientStatistics",
    "TransferStats",
    "http_scrape",
]

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 1 << 20  # cap on a tracker's answer; 200 dict peers are ~15 KiB
DEFAULT_TIMEOUT_S = 30.0  # one announce or scrape, redirects included, seconds
READ_CHUNK_BYTES = 64 * 1024  # response read granularity (https), bytes

EventSink = Callable[[str, dict[str, Any]], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferStats:
    """Byte counters sent with each announce (BEP 3)."""

    uploaded: int
    downloaded: int
    left: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerClientConfig:
    """Timing of tracker announces.

    ``min_announce_interval_s`` is a floor under the tracker's ``interval``
    so a misconfigured tracker cannot make us hammer it; tests lower it.
    A UDP announce resends after ``udp_retransmit_base_s * 2**n`` seconds
    (BEP 15) within the same ``timeout_s``.
    """

    timeout_s: float = DEFAULT_TIMEOUT_S  # one announce: connect to last byte
    udp_retransmit_base_s: float = DEFAULT_RETRANSMIT_BASE_S
    numwant: int = 50  # peers asked for (BEP 3 default)
    backoff_base_s: float = DEFAULT_BACKOFF_BASE_S
    backoff_cap_s: float = DEFAULT_BACKOFF_CAP_S
    min_announce_interval_s: float = 30.0
    stopped_timeout_s: float = 5.0  # budget for the best-effort 'stopped'


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerClientStatistics:
    """A snapshot of one torrent's tracker announcing."""

    #: the tracker that answered last, if any did
    tracker_url: str | None
    #: loop time of the last successful announce
    last_announce_time: float | None
    last_error: str | None
    last_error_url: str | None
    #: failed requests since the last success
    failures_in_row: int
    #: delay scheduled after the last announce round (interval or backoff)
    next_announce_delay_s: float | None
    announces: int
    peers_received: int
    complete: int | None
    incomplete: int | None
    skipped_urls: tuple[str, ...]


class TrackerClient:
    """Announces one torrent to its trackers.

    Args:
        info_hash: the torrent's 20-byte infohash.
        peer_id: our 20-byte peer id.
        port: the TCP port we accept peers on.
        announce_tiers: BEP 12 tiers of announce URLs.
        stats: returns the current byte counters.
        on_peers: receives the peers each announce returns.
        config: timeouts, numwant and backoff.
        rng: shuffles the tiers and makes the announce ``key``.
        on_event: receives ("tracker_announce" | "tracker_error", fields).
    """

    def __init__(
        self,
        info_hash: bytes,
        peer_id: bytes,
        port: int,
        announce_tiers: Sequence[Sequence[str]],
        stats: Callable[[], TransferStats],
        on_peers: Callable[[list[PeerAddr]], None],
        config: TrackerClientConfig = TrackerClientConfig(),
        rng: random.Random | None = None,
        *,
        on_event: EventSink | None = None,
    ) -> None:
        if len(info_hash) != 20 or len(peer_id) != 20:
            raise TrackerFailure(
                "tracker client: info_hash and peer_id must be 20 bytes"
            )
        rng = rng or random.Random()
        self._info_hash = info_hash
        self._peer_id = peer_id
        self._port = port
        self._stats = stats
        self._on_peers = on_peers
        self._on_event = on_event
        self._cfg = config
        self._key = f"{rng.getrandbits(32):08X}"  # BEP 7 'key': same for our lifetime
        urls = [url for tier in announce_tiers for url in tier]
        self._skipped = tuple(
            u for u in dict.fromkeys(urls) if not is_supported_tracker_url(u)
        )
        usable = [
            [u for u in tier if is_supported_tracker_url(u)] for tier in announce_tiers
        ]
        self._tiers = TierList(usable, rng)
        self._backoff = RetryBackoff(config.backoff_base_s, config.backoff_cap_s)
        self._lock = asyncio.Lock()  # one announce round at a time
        self._wake = asyncio.Event()  # the schedule changed
        # https:// only, made on first use; the run loop keeps and closes it
        self._https: aiohttp.ClientSession | None = None
        self._running = False
        self._pending_event = AnnounceEvent.STARTED
        self._deadline = 0.0
        self._tracker_ids: dict[str, bytes] = {}
        self._udp_connections = ConnectionCache()  # BEP 15 ids, a minute each
        self._last_url: str | None = None
        self._last_time: float | None = None
        self._last_error: str | None = None
        self._last_error_url: str | None = None
        self._failures = 0
        self._next_delay: float | None = None
        self._announces = 0
        self._peers_received = 0
        self._last_response: AnnounceResponse | None = None
        if self._skipped:
            log.warning(
                "torrent %s: skipping trackers this client cannot use "
                "(only http, https and udp): %s",
                self._short_hash,
                ", ".join(self._skipped),
            )

    @property
    def _short_hash(self) -> str:
        return self._info_hash.hex()[:8]

    async def run(self) -> None:
        """Announce ``started`` and then periodically, until cancelled.

        Never raises :class:`TrackerFailure`: failures are logged, reported
        as ``tracker_error`` events and retried with a growing backoff.
        """
        if not len(self._tiers):
            log.info("torrent %s: no usable tracker; not announcing", self._short_hash)
            return
        self._running = True
        try:
            while True:
                async with self._lock:
                    await self._announce_round(self._pending_event)
                await self._sleep_until_deadline()
        finally:
            self._running = False
            https, self._https = self._https, None
            if https is not None:
                await https.close()

    async def announce_completed(self) -> None:
        """Tell the trackers the download finished (BEP 3 ``completed``).

        If no tracker answers, the event is sent with the next announce.
        """
        self._pending_event = AnnounceEvent.COMPLETED
        if not len(self._tiers):
            return
        async with self._lock:
            await self._announce_round(self._pending_event)
        self._wake.set()

    async def announce_stopped(self, timeout_s: float | None = None) -> None:
        """Best effort: tell the last tracker that answered that we leave."""
        url = self._last_url
        if url is None:
            return
        budget = self._cfg.stopped_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(budget):
                response = await self._announce_one(url, AnnounceEvent.STOPPED)
        except TimeoutError:
            log.info("tracker %s: 'stopped' got no answer within %g s", url, budget)
            return
        except TrackerFailure as exc:
            log.info("tracker %s: 'stopped' failed: %s", url, exc.reason)
            return
        log.info("tracker %s: announced 'stopped' for %s", url, self._short_hash)
        self._emit_announce(url, AnnounceEvent.STOPPED, response, None)

    def statistics(self) -> TrackerClientStatistics:
        last = self._last_response
        return TrackerClientStatistics(
            tracker_url=self._last_url,
            last_announce_time=self._last_time,
            last_error=self._last_error,
            last_error_url=self._last_error_url,
            failures_in_row=self._failures,
            next_announce_delay_s=self._next_delay,
            announces=self._announces,
            peers_received=self._peers_received,
            complete=last.complete if last else None,
            incomplete=last.incomplete if last else None,
            skipped_urls=self._skipped,
        )

    # -- internals ------------------------------------------------------------

    async def _https_get(self, url: str) -> bytes:
        """GET an ``https://`` URL with aiohttp: in the run loop's session
        (made on first use), or in a short-lived one outside it."""
        if self._https is not None and not self._https.closed:
            return await _aiohttp_get(self._https, url)
        if self._running:
            self._https = _new_session()
            return await _aiohttp_get(self._https, url)
        async with _new_session() as https:
            return await _aiohttp_get(https, url)

    async def _announce_round(self, event: AnnounceEvent) -> None:
        """Try each tracker in BEP 12 order until one answers; schedule the
        next round from its ``interval``, or from the backoff if none did."""
        candidates = self._tiers.candidates()
        for index, url in enumerate(candidates):
            try:
                response = await self._announce_one(url, event)
            except TrackerFailure as exc:
                self._record_failure(
                    url, event, exc.reason, index == len(candidates) - 1
                )
                continue
            self._record_success(url, event, response)
            return

    async def _announce_one(self, url: str, event: AnnounceEvent) -> AnnounceResponse:
        stats = self._stats()
        numwant = 0 if event is AnnounceEvent.STOPPED else self._cfg.numwant
        if is_udp_tracker_url(url):
            return await udp_announce(
                url,
                self._info_hash,
                self._peer_id,
                self._port,
                stats.uploaded,
                stats.downloaded,
                stats.left,
                event,
                numwant,
                int(self._key, 16),
                config=UdpTrackerConfig(
                    retransmit_base_s=self._cfg.udp_retransmit_base_s,
                    timeout_s=self._cfg.timeout_s,
                ),
                cache=self._udp_connections,
            )
        query = build_announce_query(
            self._info_hash,
            self._peer_id,
            self._port,
            stats.uploaded,
            stats.downloaded,
            stats.left,
            event,
            numwant,
            key=self._key,
            tracker_id=self._tracker_ids.get(url),
        )
        body = await _get(
            announce_url(url, query), self._cfg.timeout_s, self._https_get
        )
        return parse_announce_response(body)

    def _record_success(
        self, url: str, event: AnnounceEvent, response: AnnounceResponse
    ) -> None:
        loop = asyncio.get_running_loop()
        self._tiers.mark_success(url)
        self._backoff.reset()
        self._failures = 0
        self._last_url = url
        self._last_time = loop.time()
        self._last_response = response
        self._announces += 1
        self._peers_received += len(response.peers)
        if response.tracker_id is not None:
            self._tracker_ids[url] = response.tracker_id
        if event is self._pending_event:
            self._pending_event = AnnounceEvent.EMPTY
        delay = next_announce_delay(response, self._cfg.min_announce_interval_s)
        self._schedule(delay)
        level = logging.DEBUG if event is AnnounceEvent.EMPTY else logging.INFO
        log.log(
            level,
            "tracker %s: announced %s for %s, %d peers, next in %g s",
            url,
            event.value or "update",
            self._short_hash,
            len(response.peers),
            delay,
        )
        if response.warning:
            log.info("tracker %s: warning: %.200s", url, response.warning)
        self._emit_announce(url, event, response, delay)
        if response.peers:
            self._on_peers(list(response.peers))

    def _record_failure(
        self, url: str, event: AnnounceEvent, reason: str, round_over: bool
    ) -> None:
        self._failures += 1
        self._last_error = reason
        self._last_error_url = url
        retry_in_s = None
        if round_over:
            retry_in_s = self._backoff.next_delay()
            self._schedule(retry_in_s)
        level = logging.WARNING if self._failures == 1 else logging.INFO
        log.log(
            level,
            "tracker %s: announce for %s failed: %.200s%s",
            url,
            self._short_hash,
            reason,
            f"; retrying in {retry_in_s:g} s" if retry_in_s is not None else "",
        )
        self._emit(
            "tracker_error",
            url=url,
            event=event.value or "update",
            reason=reason,
            failures=self._failures,
            retry_in_s=retry_in_s,
        )

    def _schedule(self, delay_s: float) -> None:
        self._next_delay = delay_s
        self._deadline = asyncio.get_running_loop().time() + delay_s
        self._wake.set()

    async def _sleep_until_deadline(self) -> None:
        """Sleep until ``_deadline``, which may move while we sleep."""
        loop = asyncio.get_running_loop()
        while (remaining := self._deadline - loop.time()) > 0:
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wake.wait()

    def _emit_announce(
        self,
        url: str,
        event: AnnounceEvent,
        response: AnnounceResponse,
        next_in_s: float | None,
    ) -> None:
        self._emit(
            "tracker_announce",
            url=url,
            event=event.value or "update",
            peers=len(response.peers),
            complete=response.complete,
            incomplete=response.incomplete,
            next_announce_s=next_in_s,
        )

    def _emit(self, name: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(name, {"info_hash": self._info_hash.hex(), **fields})


async def http_scrape(
    announce: str,
    info_hashes: Sequence[bytes],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> dict[bytes, ScrapeStats]:
    """Scrape an ``http://`` or ``https://`` tracker (BEP 48).

    Args:
        announce: the tracker's announce URL; its scrape URL is derived.
        info_hashes: the 20-byte infohashes asked about.
        timeout_s: budget of the whole request, redirects included.

    Returns:
        Stats per infohash the tracker knows.

    Raises:
        TrackerFailure: the tracker has no scrape URL, cannot be reached,
            or answered with an error or junk.
    """
    url = scrape_url(announce)
    if url is None:
        raise TrackerFailure("no scrape URL for this announce URL", url=announce)

    async def https_get(target: str) -> bytes:
        async with _new_session() as https:
            return await _aiohttp_get(https, target)

    body = await _get(
        announce_url(url, build_scrape_query(info_hashes)), timeout_s, https_get
    )
    return parse_scrape_response(body)


async def _get(
    url: str, timeout_s: float, https_get: Callable[[str], Awaitable[bytes]]
) -> bytes:
    """The body of a tracker's 200 answer to ``url``, within ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            return await http_get(
                url, max_body_bytes=MAX_RESPONSE_BYTES, https_get=https_get
            )
    except TimeoutError:
        raise TrackerFailure(f"no answer within {timeout_s:g} s") from None


def _new_session() -> aiohttp.ClientSession:
    import aiohttp  # only for https:// trackers: ~0.12 CPU-s

    # trust_env=False: no proxy from the environment; we talk to the
    # tracker URL we were given and nothing else.
    return aiohttp.ClientSession(trust_env=False)


async def _aiohttp_get(http: aiohttp.ClientSession, url: str) -> bytes:
    """GET over aiohttp, with the failure reasons of the plain-HTTP path."""
    import aiohttp
    from yarl import URL

    try:
        # encoded=True: the query is already percent-encoded; yarl must
        # not re-quote (or decode) the binary info_hash.
        target = URL(url, encoded=True)
        async with http.get(target, max_redirects=MAX_REDIRECTS) as resp:
            if resp.status != 200:
                raise TrackerFailure(f"HTTP {resp.status} {resp.reason or ''}".rstrip())
            return await _read_capped(resp)
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        raise TrackerFailure(f"{type(exc).__name__}: {exc}") from None


async def _read_capped(resp: aiohttp.ClientResponse) -> bytes:
    if resp.content_length is not None and resp.content_length > MAX_RESPONSE_BYTES:
        raise TrackerFailure(
            f"response of {resp.content_length} bytes exceeds the "
            f"{MAX_RESPONSE_BYTES}-byte cap"
        )
    body = bytearray()
    async for chunk in resp.content.iter_chunked(READ_CHUNK_BYTES):
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise TrackerFailure(f"response exceeds the {MAX_RESPONSE_BYTES}-byte cap")
    return bytes(body)
