"""The HTTP tracker's request handling, apart from any HTTP server.

:class:`TrackerService` owns the swarm registry, the clock and the memory
trimmer, and turns a raw query string and the asker's address into the
bencoded reply (BEP 3, 23, 48). Two servers drive it: the aiohttp
application of :mod:`tracker.app` (what tests and embedders get from
``make_app``) and the lean HTTP/1.1 server of :mod:`tracker.http` that
:class:`tracker.server.TrackerServer` runs. A malformed request gets a
bencoded ``failure reason``, never an exception.

The announce hot path (issue 7) takes the asker's IP already packed (the
HTTP server packs it once per connection), answers compact requests from
:meth:`SwarmRegistry.announce_compact` (no object per peer) and writes the
reply with :func:`encode_compact_announce`.
"""

from __future__ import annotations

import html
import ipaddress
import json
import logging
import random
import time
from collections.abc import Callable

from tracker.config import TrackerConfig
from tracker.core.addr import PeerAddr, normalize_host
from tracker.core.registry import SwarmRegistry, pack_ip
from tracker.core.request import parse_announce, parse_scrape
from tracker.core.response import (
    encode_announce,
    encode_compact_announce,
    encode_failure,
    encode_scrape,
)
from tracker.errors import AnnounceRequestError
from tracker.memory import MemoryTrimmer

__all__ = ["STATS_PAGE_TORRENTS", "Clock", "TrackerService", "peer_ip"]

log = logging.getLogger(__name__)

STATS_PAGE_TORRENTS = 50  # swarms listed on the stats page

Clock = Callable[[], float]


def peer_ip(remote: str | None) -> tuple[bytes | None, str]:
    """The packed IP of a connection's remote address (IPv4-mapped IPv6 as
    IPv4, a zone id dropped), or None with the failure reason to send."""
    if remote is None:
        return None, "cannot tell your IP address"
    try:
        return pack_ip(normalize_host(remote)), ""
    except ValueError:
        return None, f"your address {remote!r} is not an IP"


class TrackerService:
    """Announce, scrape and statistics against one :class:`SwarmRegistry`.

    Args:
        cfg: the tracker's configuration.
        clock: seconds, monotonic; tests inject a fake to drive peer expiry.
        rng: picks the peers handed out; tests inject a seeded one.
    """

    def __init__(
        self,
        cfg: TrackerConfig,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.cfg = cfg
        self.clock: Clock = clock or time.monotonic
        self.started = self.clock()
        self.registry = SwarmRegistry(
            peer_timeout_s=cfg.peer_timeout_s, rng=rng or random.Random()
        )
        self.trimmer = MemoryTrimmer()

    def announce(
        self, raw_query: str | bytes, ip: bytes | None, refused: str = ""
    ) -> bytes:
        """The bencoded reply to ``GET /announce?<raw_query>``.

        Args:
            raw_query: the query as sent, still percent-encoded.
            ip: the asker's packed IP (4 or 16 bytes; see :func:`peer_ip`),
                or None when it is unknown.
            refused: why ``ip`` is None (the failure reason sent back).
        """
        cfg = self.cfg
        registry = self.registry
        try:
            req = parse_announce(
                raw_query,
                default_numwant=cfg.default_numwant,
                max_numwant=cfg.max_numwant,
                trust_ip=cfg.trust_ip,
            )
            if req.ip is not None:
                ip = pack_ip(req.ip)
            elif ip is None:
                raise AnnounceRequestError(refused or "cannot tell your IP address")
            now = self.clock()
            if req.compact:
                result = registry.announce_compact(req, ip, req.port, now)
                body = encode_compact_announce(
                    result,
                    interval_s=cfg.interval_s,
                    min_interval_s=cfg.min_interval_s,
                )
                peers = len(result.peers) // 6 + len(result.peers6) // 18
            else:
                addr = PeerAddr(str(ipaddress.ip_address(ip)), req.port)
                full = registry.announce(req, addr, now)
                body = encode_announce(
                    full,
                    compact=False,
                    no_peer_id=req.no_peer_id,
                    interval_s=cfg.interval_s,
                    min_interval_s=cfg.min_interval_s,
                )
                peers = len(full.peers)
        except AnnounceRequestError as exc:
            log.debug("announce refused: %s", exc.reason)
            return encode_failure(exc.reason)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "announce %s port %d event=%s: %d peers",
                req.info_hash.hex()[:8],
                req.port,
                req.event.value or "-",
                peers,
            )
        self.trimmer.observe(registry.peers)
        return body

    def scrape(self, raw_query: str | bytes) -> bytes:
        """The bencoded reply to ``GET /scrape?<raw_query>`` (BEP 48)."""
        try:
            req = parse_scrape(raw_query)
        except AnnounceRequestError as exc:
            return encode_failure(exc.reason)
        files = self.registry.scrape(req.info_hashes, self.clock())
        return encode_scrape(files)

    def stats(self) -> dict[str, int | float]:
        """The figures of ``/stats.json``, after dropping expired peers."""
        now = self.clock()
        stats = self.registry.statistics(now)
        self.trimmer.observe(self.registry.peers)
        return {
            "torrents": stats.torrents,
            "seeders": stats.seeders,
            "leechers": stats.leechers,
            "peers": stats.seeders + stats.leechers,
            "downloaded": stats.downloaded,
            "announces": stats.announces,
            "scrapes": stats.scrapes,
            "uptime_s": round(now - self.started, 3),
        }

    def stats_json(self) -> bytes:
        return json.dumps(self.stats()).encode("utf-8")

    def stats_page(self) -> str:
        """The HTML page served at ``/``: the figures and the largest swarms."""
        stats = self.stats()
        rows = "".join(
            f"<tr><td><code>{info_hash.hex()}</code></td><td>{c.complete}</td>"
            f"<td>{c.incomplete}</td><td>{c.downloaded}</td></tr>"
            for info_hash, c in self.registry.swarms(self.clock(), STATS_PAGE_TORRENTS)
        )
        summary = "".join(
            f"<li>{html.escape(name)}: {value}</li>" for name, value in stats.items()
        )
        return (
            "<!doctype html><html><head><title>bitswarm tracker</title></head><body>"
            "<h1>bitswarm tracker</h1>"
            f"<ul>{summary}</ul>"
            "<table><tr><th>info_hash</th><th>seeders</th><th>leechers</th>"
            f"<th>downloaded</th></tr>{rows}</table>"
            "</body></html>"
        )
