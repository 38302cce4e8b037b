"""The tracker's aiohttp application: announce, scrape and stats (BEP 3, 23, 48).

A thin driver: it hands the raw query string to the core parser, the parsed
request and ``now`` to the :class:`SwarmRegistry`, and encodes the result.
A malformed request gets a bencoded ``failure reason`` with HTTP 200, as
BEP 3 prescribes, never a 500.
"""

from __future__ import annotations

import html
import logging
import random
import time
from collections.abc import Callable

from aiohttp import web

from tracker.config import TrackerConfig
from tracker.core.addr import PeerAddr, normalize_host
from tracker.core.registry import SwarmRegistry
from tracker.core.request import parse_announce, parse_scrape
from tracker.core.response import encode_announce, encode_failure, encode_scrape
from tracker.errors import AnnounceRequestError
from tracker.memory import MemoryTrimmer

__all__ = ["CLOCK_KEY", "CONFIG_KEY", "REGISTRY_KEY", "TRIMMER_KEY", "make_app"]

log = logging.getLogger(__name__)

STATS_PAGE_TORRENTS = 50  # swarms listed on the stats page
BENCODE_CONTENT_TYPE = "text/plain"  # what BitTorrent trackers customarily send

Clock = Callable[[], float]

CONFIG_KEY = web.AppKey("config", TrackerConfig)
REGISTRY_KEY = web.AppKey("registry", SwarmRegistry)
CLOCK_KEY: web.AppKey[Clock] = web.AppKey("clock")
STARTED_KEY = web.AppKey("started", float)
TRIMMER_KEY = web.AppKey("trimmer", MemoryTrimmer)


def make_app(
    cfg: TrackerConfig,
    *,
    clock: Clock | None = None,
    rng: random.Random | None = None,
) -> web.Application:
    """Build the tracker application.

    Args:
        cfg: the tracker's configuration.
        clock: seconds, monotonic; tests inject a fake to drive peer expiry.
        rng: picks the peers handed out; tests inject a seeded one.
    """
    now = clock or time.monotonic
    app = web.Application()
    app[CONFIG_KEY] = cfg
    app[CLOCK_KEY] = now
    app[STARTED_KEY] = now()
    app[REGISTRY_KEY] = SwarmRegistry(
        peer_timeout_s=cfg.peer_timeout_s, rng=rng or random.Random()
    )
    app[TRIMMER_KEY] = MemoryTrimmer()
    app.router.add_get("/announce", _announce)
    app.router.add_get("/scrape", _scrape)
    app.router.add_get("/stats.json", _stats_json)
    app.router.add_get("/", _stats_page)
    return app


def _bencoded(body: bytes) -> web.Response:
    return web.Response(
        body=body,
        content_type=BENCODE_CONTENT_TYPE,
        headers={"Cache-Control": "no-cache"},
    )


def _peer_host(request: web.Request, announced_ip: str | None) -> str:
    if announced_ip is not None:
        return announced_ip
    remote = request.remote
    if remote is None:
        raise AnnounceRequestError("cannot tell your IP address")
    try:
        return normalize_host(remote)
    except ValueError:
        raise AnnounceRequestError(f"your address {remote!r} is not an IP") from None


async def _announce(request: web.Request) -> web.Response:
    app = request.app
    cfg = app[CONFIG_KEY]
    try:
        req = parse_announce(
            request.rel_url.raw_query_string,
            default_numwant=cfg.default_numwant,
            max_numwant=cfg.max_numwant,
            trust_ip=cfg.trust_ip,
        )
        addr = PeerAddr(_peer_host(request, req.ip), req.port)
        registry = app[REGISTRY_KEY]
        result = registry.announce(req, addr, app[CLOCK_KEY]())
    except AnnounceRequestError as exc:
        log.debug("announce from %s refused: %s", request.remote, exc.reason)
        return _bencoded(encode_failure(exc.reason))
    log.debug(
        "announce %s from %s event=%s: %d peers",
        req.info_hash.hex()[:8],
        addr,
        req.event.value or "-",
        len(result.peers),
    )
    app[TRIMMER_KEY].observe(registry.peers)
    return _bencoded(
        encode_announce(
            result,
            compact=req.compact,
            no_peer_id=req.no_peer_id,
            interval_s=cfg.interval_s,
            min_interval_s=cfg.min_interval_s,
        )
    )


async def _scrape(request: web.Request) -> web.Response:
    app = request.app
    try:
        req = parse_scrape(request.rel_url.raw_query_string)
    except AnnounceRequestError as exc:
        return _bencoded(encode_failure(exc.reason))
    files = app[REGISTRY_KEY].scrape(req.info_hashes, app[CLOCK_KEY]())
    return _bencoded(encode_scrape(files))


def _stats(app: web.Application) -> dict[str, int | float]:
    now = app[CLOCK_KEY]()
    stats = app[REGISTRY_KEY].statistics(now)
    app[TRIMMER_KEY].observe(app[REGISTRY_KEY].peers)
    return {
        "torrents": stats.torrents,
        "seeders": stats.seeders,
        "leechers": stats.leechers,
        "peers": stats.seeders + stats.leechers,
        "downloaded": stats.downloaded,
        "announces": stats.announces,
        "scrapes": stats.scrapes,
        "uptime_s": round(now - app[STARTED_KEY], 3),
    }


async def _stats_json(request: web.Request) -> web.Response:
    return web.json_response(_stats(request.app))


async def _stats_page(request: web.Request) -> web.Response:
    app = request.app
    stats = _stats(app)
    rows = "".join(
        f"<tr><td><code>{info_hash.hex()}</code></td><td>{c.complete}</td>"
        f"<td>{c.incomplete}</td><td>{c.downloaded}</td></tr>"
        for info_hash, c in app[REGISTRY_KEY].swarms(
            app[CLOCK_KEY](), STATS_PAGE_TORRENTS
        )
    )
    summary = "".join(
        f"<li>{html.escape(name)}: {value}</li>" for name, value in stats.items()
    )
    page = (
        "<!doctype html><html><head><title>bitswarm tracker</title></head><body>"
        "<h1>bitswarm tracker</h1>"
        f"<ul>{summary}</ul>"
        "<table><tr><th>info_hash</th><th>seeders</th><th>leechers</th>"
        f"<th>downloaded</th></tr>{rows}</table>"
        "</body></html>"
    )
    return web.Response(text=page, content_type="text/html")
