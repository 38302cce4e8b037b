"""The tracker's aiohttp application: announce, scrape and stats (BEP 3, 23, 48).

A thin driver over :class:`tracker.service.TrackerService`: it hands the
raw query string and the asker's address to the service and sends back what
it returns. A malformed request gets a bencoded ``failure reason`` with HTTP
200, as BEP 3 prescribes, never a 500. :class:`tracker.server.TrackerServer`
serves the same service through the leaner :mod:`tracker.http` server unless
this application has been customised (see there).
"""

from __future__ import annotations

import random

from aiohttp import web

from tracker.config import TrackerConfig
from tracker.core.registry import SwarmRegistry
from tracker.memory import MemoryTrimmer
from tracker.service import STATS_PAGE_TORRENTS, Clock, TrackerService, peer_ip

__all__ = [
    "CLOCK_KEY",
    "CONFIG_KEY",
    "REGISTRY_KEY",
    "SERVICE_KEY",
    "STATS_PAGE_TORRENTS",
    "TRIMMER_KEY",
    "Clock",
    "make_app",
]

BENCODE_CONTENT_TYPE = "text/plain"  # what BitTorrent trackers customarily send

CONFIG_KEY = web.AppKey("config", TrackerConfig)
REGISTRY_KEY = web.AppKey("registry", SwarmRegistry)
CLOCK_KEY: web.AppKey[Clock] = web.AppKey("clock")
STARTED_KEY = web.AppKey("started", float)
TRIMMER_KEY = web.AppKey("trimmer", MemoryTrimmer)
SERVICE_KEY = web.AppKey("service", TrackerService)


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
    service = TrackerService(cfg, clock=clock, rng=rng)
    app = web.Application()
    app[SERVICE_KEY] = service
    app[CONFIG_KEY] = cfg
    app[CLOCK_KEY] = service.clock
    app[STARTED_KEY] = service.started
    app[REGISTRY_KEY] = service.registry
    app[TRIMMER_KEY] = service.trimmer
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


async def _announce(request: web.Request) -> web.Response:
    ip, refused = peer_ip(request.remote)
    service = request.app[SERVICE_KEY]
    return _bencoded(service.announce(request.rel_url.raw_query_string, ip, refused))


async def _scrape(request: web.Request) -> web.Response:
    return _bencoded(request.app[SERVICE_KEY].scrape(request.rel_url.raw_query_string))


async def _stats_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE_KEY].stats())


async def _stats_page(request: web.Request) -> web.Response:
    page = request.app[SERVICE_KEY].stats_page()
    return web.Response(text=page, content_type="text/html")
