"""bitswarm's side of the interop tests: sample data, our tracker with a log
of who asked what, bitswarm engines with fast timings, magnets, scrapes."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import unquote_to_bytes

import aiohttp
from aiohttp import web
from yarl import URL

from client.core.announce import (
    ScrapeStats,
    build_scrape_query,
    parse_scrape_response,
    scrape_url,
)
from client.core.magnet import Magnet
from client.core.metainfo import Metainfo, parse_metainfo
from client.engine import Engine
from client.maketorrent import create_torrent
from client.session import TorrentSession
from dht import PeerAddr
from tests.helpers.swarm import engine_config, fast_session
from tracker import TrackerServer
from tracker import testing_config as tracker_testing_config

# The multi-file sample: nested folders, unicode names, an empty file, and
# sizes that are not multiples of any piece size.
ALBUM_FILES: dict[str, int] = {
    "01 \u2013 intro.bin": 200_001,  # an en dash
    "ディスク 2/トラック.bin": 300_000,
    "ディスク 2/deep/nested/über.txt": 50_003,
    "empty.txt": 0,
}
PIECE = 32 * 1024  # bytes; small pieces so a few hundred KiB make many

# Azureus-style peer-id prefixes of the clients under test.
PEER_ID_PREFIX = {
    "bitswarm": b"-BS",
    "libtorrent": b"-LT",
    "transmission": b"-TR",
    "aria2": b"A2-",
}


def write_album(root: Path, seed: int = 7) -> Path:
    """Write the multi-file sample under ``root/album``; returns that folder."""
    rng = random.Random(seed)
    album = root / "album"
    for rel, size in ALBUM_FILES.items():
        path = album / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(size)
        if size > 10:
            data = data[:5] + b"\x00" + data[6:]  # a NUL inside, like greeting
        path.write_bytes(data)
    return album


def write_blob(path: Path, size: int, seed: int = 1) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def make_torrent(
    path: Path, trackers: list[str] | None = None, piece_length: int = PIECE
) -> tuple[bytes, Metainfo]:
    """A bitswarm-made torrent of ``path``: its bytes and parsed metainfo."""
    torrent = create_torrent(path, trackers=trackers or [], piece_length=piece_length)
    return torrent, parse_metainfo(torrent)


def magnet(
    meta: Metainfo,
    *,
    trackers: tuple[str, ...] = (),
    peers: tuple[PeerAddr, ...] = (),
    name: bool = True,
) -> Magnet:
    """A magnet link for ``meta`` with exactly these ``tr`` and ``x.pe``."""
    return Magnet(
        info_hash=meta.info_hash,
        display_name=meta.name if name else None,
        trackers=trackers,
        peers=peers,
        exact_length=None,
    )


@asynccontextmanager
async def bitswarm(
    events: list[tuple[str, dict[str, Any]]] | None = None, **overrides: Any
) -> AsyncIterator[Engine]:
    """A bitswarm engine on 127.0.0.1:0 with fast timings."""
    sink = None if events is None else (lambda n, f: events.append((n, f)))
    async with Engine(engine_config(**overrides), on_event=sink) as eng:
        yield eng


async def wait_complete(session: TorrentSession, timeout_s: float = 30.0) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await session.wait_complete()
    except TimeoutError:
        stats = session.statistics()
        raise AssertionError(
            f"bitswarm did not complete in {timeout_s:.0f} s: "
            f"{stats.pieces_have}/{stats.pieces} pieces, {stats.peers} peers, "
            f"by source {stats.peers_by_source}"
        ) from None


async def open_magnet(
    eng: Engine, link: Magnet, out: Path, timeout_s: float = 30.0
) -> TorrentSession:
    """Fetch the metadata and download the whole torrent."""
    async with asyncio.timeout(timeout_s):
        session = await eng.open_magnet(link, out, config=fast_session())
    await wait_complete(session, timeout_s)
    return session


def connected_sources(events: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
    """addr -> source of every ``peer_connected`` event."""
    return {f["addr"]: f["source"] for n, f in events if n == "peer_connected"}


def found_only_through(
    events: list[tuple[str, dict[str, Any]]], peer: PeerAddr, source: str
) -> None:
    """We dialled ``peer`` after learning it from ``source``, and every other
    connection was one the other side opened (``incoming``)."""
    sources = connected_sources(events)
    assert sources.get(str(peer)) == source, sources
    assert set(sources.values()) <= {source, "incoming"}, sources


# --- our tracker with a request log ---------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerHit:
    """One HTTP request to our tracker and how it was answered."""

    path: str
    user_agent: str
    peer_id: bytes | None
    status: int
    failure: bool


class OurTracker:
    """bitswarm's tracker (HTTP and UDP, 1 s interval) logging every HTTP
    request: who (peer id, User-Agent) asked for what, and the answer."""

    def __init__(self) -> None:
        self.server = TrackerServer(tracker_testing_config(udp_port=0))
        self.hits: list[TrackerHit] = []
        # The app freezes when the server starts: hook it before that.
        self.server.app.on_response_prepare.append(self._record)

    async def _record(self, request: web.Request, response: web.StreamResponse) -> None:
        peer_id = None
        for part in request.rel_url.raw_query_string.split("&"):
            key, _, value = part.partition("=")
            if key == "peer_id":
                peer_id = unquote_to_bytes(value)
        body = response.body if isinstance(response, web.Response) else b""
        failure = isinstance(body, bytes) and b"failure reason" in body
        self.hits.append(
            TrackerHit(
                path=request.path,
                user_agent=request.headers.get("User-Agent", ""),
                peer_id=peer_id,
                status=response.status,
                failure=failure,
            )
        )

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def udp_url(self) -> str:
        return self.server.udp_url

    def answered_announces(self, client: str) -> list[TrackerHit]:
        """HTTP announces from ``client`` (by peer-id prefix) answered 200."""
        prefix = PEER_ID_PREFIX[client]
        return [
            h
            for h in self.hits
            if h.path.endswith("/announce")
            and h.peer_id is not None
            and h.peer_id.startswith(prefix)
            and h.status == 200
            and not h.failure
        ]

    def answered_scrapes(self, user_agent: str) -> list[TrackerHit]:
        """HTTP scrapes whose User-Agent contains ``user_agent``, answered 200."""
        return [
            h
            for h in self.hits
            if h.path.endswith("/scrape")
            and user_agent.lower() in h.user_agent.lower()
            and h.status == 200
            and not h.failure
        ]

    async def __aenter__(self) -> OurTracker:
        await self.server.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.server.__aexit__(exc_type, exc, tb)


async def http_scrape(announce: str, info_hash: bytes) -> ScrapeStats:
    """Scrape one torrent over HTTP with bitswarm's scrape codec (BEP 48)."""
    url = scrape_url(announce)
    assert url is not None
    full = f"{url}?{build_scrape_query([info_hash])}"
    async with (
        aiohttp.ClientSession() as http,
        http.get(URL(full, encoded=True), timeout=aiohttp.ClientTimeout(total=5)) as r,
    ):
        body = await r.read()
    return parse_scrape_response(body)[info_hash]


__all__ = [
    "ALBUM_FILES",
    "PIECE",
    "OurTracker",
    "TrackerHit",
    "bitswarm",
    "connected_sources",
    "fast_session",
    "found_only_through",
    "http_scrape",
    "magnet",
    "make_torrent",
    "open_magnet",
    "wait_complete",
    "write_album",
    "write_blob",
]
