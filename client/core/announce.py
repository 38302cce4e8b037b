"""HTTP tracker announce and scrape, client side (BEP 3, 7, 12, 23, 48).

(UDP trackers, BEP 15, have their codec in ``client/core/udp_tracker.py``;
the tier order, backoff and :class:`AnnounceResponse` here serve both.)

Pure pieces the asyncio driver (``client/tracker_client.py``) puts together:
building announce and scrape URLs with raw bytes percent-encoded, parsing the
bencoded answers into frozen values, the BEP 12 tier order, and the retry
backoff schedule. Nothing here does I/O or reads a clock.

Every malformed tracker answer raises :class:`TrackerFailure` naming what was
wrong; a ``failure reason`` from the tracker raises it with that reason.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import cast
from urllib.parse import urlsplit

import bencodepy

from client.core import bencode_span
from client.errors import MetainfoError, TrackerFailure
from dht import CompactFormatError, PeerAddr, decode_peers, decode_peers6

__all__ = [
    "DEFAULT_BACKOFF_BASE_S",
    "DEFAULT_BACKOFF_CAP_S",
    "ID_BYTES",
    "MAX_ANNOUNCE_INTERVAL_S",
    "AnnounceEvent",
    "AnnounceResponse",
    "RetryBackoff",
    "ScrapeStats",
    "TierList",
    "announce_url",
    "build_announce_query",
    "build_scrape_query",
    "is_supported_tracker_url",
    "is_udp_tracker_url",
    "next_announce_delay",
    "parse_announce_response",
    "parse_scrape_response",
    "percent_encode",
    "scrape_url",
]

ID_BYTES = 20  # info_hash and peer_id length in bytes (BEP 3)
DEFAULT_BACKOFF_BASE_S = 15.0  # first retry delay after a failed announce, seconds
DEFAULT_BACKOFF_CAP_S = 1800.0  # longest retry delay, seconds (a usual 'interval')
MAX_ANNOUNCE_INTERVAL_S = 4 * 3600.0  # cap on a tracker's 'interval', seconds
MAX_SHOWN_CHARS = 64  # how much of a bad value an error message quotes

# RFC 3986 section 2.3: the unreserved characters go unescaped
_UNRESERVED = frozenset(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)
_SUPPORTED_SCHEMES = ("http", "https")


class AnnounceEvent(Enum):
    """The announce ``event`` parameter (BEP 3)."""

    #: the first announce of a download
    STARTED = "started"
    #: the download just finished (never sent when starting complete)
    COMPLETED = "completed"
    #: leaving the swarm
    STOPPED = "stopped"
    #: a regular, periodic announce
    EMPTY = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceResponse:
    """A tracker's successful answer to an announce."""

    interval: int
    min_interval: int | None
    peers: tuple[PeerAddr, ...]
    complete: int | None
    incomplete: int | None
    warning: str | None
    tracker_id: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeStats:
    """One torrent's numbers from a scrape (BEP 48)."""

    complete: int
    downloaded: int
    incomplete: int


def percent_encode(data: bytes) -> str:
    """Escape every byte outside the RFC 3986 unreserved set as ``%XX``."""
    return "".join(chr(b) if b in _UNRESERVED else f"%{b:02X}" for b in data)


def build_announce_query(
    info_hash: bytes,
    peer_id: bytes,
    port: int,
    uploaded: int,
    downloaded: int,
    left: int,
    event: AnnounceEvent,
    numwant: int,
    compact: bool = True,
    key: str | None = None,
    tracker_id: bytes | None = None,
) -> str:
    """The announce query string (without ``?``), raw bytes percent-encoded.

    Raises:
        TrackerFailure: if an id is not 20 bytes or a number is out of range
            (a caller bug, reported in the package's own terms).
    """
    for name, value in (("info_hash", info_hash), ("peer_id", peer_id)):
        if len(value) != ID_BYTES:
            raise TrackerFailure(f"announce: {name} is {len(value)} bytes, not 20")
    if not 1 <= port <= 0xFFFF:
        raise TrackerFailure(f"announce: port {port} is out of range")
    counters = (("uploaded", uploaded), ("downloaded", downloaded), ("left", left))
    for name, number in counters:
        if number < 0:
            raise TrackerFailure(f"announce: {name} {number} is negative")
    parts = [
        f"info_hash={percent_encode(info_hash)}",
        f"peer_id={percent_encode(peer_id)}",
        f"port={port}",
        f"uploaded={uploaded}",
        f"downloaded={downloaded}",
        f"left={left}",
        f"compact={int(compact)}",
    ]
    if event is not AnnounceEvent.EMPTY:
        parts.append(f"event={event.value}")
    parts.append(f"numwant={max(numwant, 0)}")
    if key is not None:
        parts.append(f"key={percent_encode(key.encode('utf-8'))}")
    if tracker_id is not None:
        parts.append(f"trackerid={percent_encode(tracker_id)}")
    return "&".join(parts)


def build_scrape_query(info_hashes: Sequence[bytes]) -> str:
    """``info_hash=...&info_hash=...`` for a scrape (BEP 48)."""
    return "&".join(f"info_hash={percent_encode(h)}" for h in info_hashes)


def announce_url(base_url: str, query: str) -> str:
    """Append ``query`` to a tracker URL that may already carry a query."""
    base, hash_mark, fragment = base_url.partition("#")
    if "?" not in base:
        joined = f"{base}?{query}"
    elif base.endswith(("?", "&")):
        joined = base + query
    else:
        joined = f"{base}&{query}"
    return joined + hash_mark + fragment if hash_mark else joined


def scrape_url(announce: str) -> str | None:
    """The scrape URL of an announce URL, or None if it has none (BEP 48).

    The last path segment must start with ``announce``; that word becomes
    ``scrape`` (``/x/announce.php?k=1`` → ``/x/scrape.php?k=1``).
    """
    head, sep, query = announce.partition("?")
    slash = head.rfind("/")
    if slash < 0 or "://" not in head or slash < head.index("://") + 3:
        return None
    segment = head[slash + 1 :]
    if not segment.startswith("announce"):
        return None
    return head[: slash + 1] + "scrape" + segment[len("announce") :] + sep + query


def is_supported_tracker_url(url: str) -> bool:
    """Whether this client can announce to ``url``: http, https, or udp
    (BEP 15, which needs an explicit port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme == "udp":
        return bool(parts.hostname) and bool(port)
    return scheme in _SUPPORTED_SCHEMES and bool(parts.hostname)


def is_udp_tracker_url(url: str) -> bool:
    """Whether ``url`` names a UDP tracker (BEP 15), by its scheme."""
    return url[:6].lower() == "udp://"


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN_CHARS else text[:MAX_SHOWN_CHARS] + "..."


def _decode_dict(body: bytes, what: str) -> dict[bytes, object]:
    try:
        # The strict scanner first: bencode.py alone loops forever on a
        # dictionary key with a negative length (d1:a1:b-6:e; issue 8).
        bencode_span.check_bencode(body, what=what)
        decoded = bencodepy.decode(body)
    except (MetainfoError, bencodepy.BencodeDecodeError) as exc:
        raise TrackerFailure(
            f"{what} is not valid bencode ({exc}): {_show(body)}"
        ) from None
    if not isinstance(decoded, dict):
        raise TrackerFailure(
            f"{what} is a bencoded {type(decoded).__name__}, not a dictionary"
        )
    failure = decoded.get(b"failure reason")
    if failure is not None:
        if isinstance(failure, bytes):
            raise TrackerFailure(failure.decode("utf-8", "replace"))
        raise TrackerFailure(f"{what} has a 'failure reason' that is not a string")
    return cast(dict[bytes, object], decoded)  # bencode dict keys are bytes


def _int(body: dict[bytes, object], key: str) -> int | None:
    value = body.get(key.encode("ascii"))
    if value is None:
        return None
    if not isinstance(value, int) or value < 0:
        raise TrackerFailure(
            f"tracker response {key!r} is not a non-negative integer: {_show(value)}"
        )
    return value


def _required_int(body: dict[bytes, object], key: str) -> int:
    value = _int(body, key)
    if value is None:
        raise TrackerFailure(f"tracker response has no {key!r}")
    return value


def _text(body: dict[bytes, object], key: str) -> str | None:
    value = body.get(key.encode("ascii"))
    if value is None:
        return None
    if not isinstance(value, bytes):
        raise TrackerFailure(f"tracker response {key!r} is not a string")
    return value.decode("utf-8", "replace")


def _dict_peer(index: int, entry: object) -> PeerAddr:
    """One ``{'peer id', 'ip', 'port'}`` entry of the BEP 3 dictionary model.

    BEP 3 also allows a DNS name for ``ip``; those are refused, since
    resolving names a tracker hands out would send traffic wherever it says.
    """
    if not isinstance(entry, dict):
        raise TrackerFailure(f"tracker response peers[{index}] is not a dictionary")
    ip, port = entry.get(b"ip"), entry.get(b"port")
    if not isinstance(ip, bytes) or not isinstance(port, int):
        raise TrackerFailure(
            f"tracker response peers[{index}] lacks a string 'ip' and integer 'port'"
        )
    if not 0 <= port <= 0xFFFF:
        raise TrackerFailure(f"tracker response peers[{index}] port {port} is invalid")
    try:
        host = ipaddress.ip_address(ip.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise TrackerFailure(
            f"tracker response peers[{index}] ip {_show(ip)} is not an IP address"
        ) from None
    if isinstance(host, ipaddress.IPv6Address) and host.ipv4_mapped is not None:
        host = host.ipv4_mapped
    return PeerAddr(str(host), port)


def _peers(body: dict[bytes, object]) -> tuple[PeerAddr, ...]:
    found: list[PeerAddr] = []
    peers = body.get(b"peers", b"")
    try:
        if isinstance(peers, bytes):
            found += decode_peers(peers)
        elif isinstance(peers, list):
            found += (_dict_peer(i, entry) for i, entry in enumerate(peers))
        else:
            raise TrackerFailure("tracker response 'peers' is not a string or a list")
        peers6 = body.get(b"peers6", b"")
        if not isinstance(peers6, bytes):
            raise TrackerFailure("tracker response 'peers6' is not a string")
        found += decode_peers6(peers6)
    except CompactFormatError as exc:
        raise TrackerFailure(f"tracker response: {exc}") from None
    # port 0 cannot be connected to; some trackers hand such entries out anyway
    return tuple(dict.fromkeys(a for a in found if a.port != 0))


def parse_announce_response(body: bytes) -> AnnounceResponse:
    """Parse a bencoded announce response (BEP 3; BEP 23 compact; BEP 7 peers6).

    Raises:
        TrackerFailure: with the tracker's ``failure reason``, or saying what
            is wrong with a malformed body.
    """
    decoded = _decode_dict(body, "tracker response")
    interval = _required_int(decoded, "interval")
    tracker_id = decoded.get(b"tracker id")
    if tracker_id is not None and not isinstance(tracker_id, bytes):
        raise TrackerFailure("tracker response 'tracker id' is not a string")
    return AnnounceResponse(
        interval=interval,
        min_interval=_int(decoded, "min interval"),
        peers=_peers(decoded),
        complete=_int(decoded, "complete"),
        incomplete=_int(decoded, "incomplete"),
        warning=_text(decoded, "warning message"),
        tracker_id=tracker_id,
    )


def parse_scrape_response(body: bytes) -> dict[bytes, ScrapeStats]:
    """Parse a bencoded scrape response (BEP 48) into per-infohash stats.

    Raises:
        TrackerFailure: with the tracker's ``failure reason``, or saying what
            is wrong with a malformed body.
    """
    decoded = _decode_dict(body, "scrape response")
    files = decoded.get(b"files", {})
    if not isinstance(files, dict):
        raise TrackerFailure("scrape response 'files' is not a dictionary")
    result: dict[bytes, ScrapeStats] = {}
    for info_hash, stats in files.items():
        if len(info_hash) != ID_BYTES:
            raise TrackerFailure(
                f"scrape response key {_show(info_hash)} is {len(info_hash)} bytes, "
                "not 20"
            )
        if not isinstance(stats, dict):
            raise TrackerFailure(
                f"scrape response entry {info_hash.hex()[:8]} is not a dictionary"
            )
        numbers = {}
        for key in ("complete", "downloaded", "incomplete"):
            value = stats.get(key.encode("ascii"), 0)
            if not isinstance(value, int) or value < 0:
                raise TrackerFailure(
                    f"scrape response entry {info_hash.hex()[:8]} {key!r} is not a "
                    f"non-negative integer: {_show(value)}"
                )
            numbers[key] = value
        result[info_hash] = ScrapeStats(**numbers)
    return result


def next_announce_delay(response: AnnounceResponse, floor_s: float) -> float:
    """Seconds until the next regular announce: the tracker's ``interval``,
    never below its ``min interval`` or our ``floor_s``, and capped at
    :data:`MAX_ANNOUNCE_INTERVAL_S` so a hostile tracker cannot mute us."""
    delay = max(float(response.interval), float(response.min_interval or 0), floor_s)
    return min(delay, MAX_ANNOUNCE_INTERVAL_S)


class TierList:
    """BEP 12 tracker tiers: each tier shuffled once, tried in order, and a
    tracker that answers moves to the front of its tier."""

    def __init__(self, tiers: Sequence[Sequence[str]], rng: random.Random) -> None:
        self._tiers: list[list[str]] = []
        seen: set[str] = set()
        for tier in tiers:
            urls = [u for u in dict.fromkeys(tier) if u not in seen]
            seen.update(urls)
            if urls:
                rng.shuffle(urls)
                self._tiers.append(urls)

    @property
    def tiers(self) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(tier) for tier in self._tiers)

    def __len__(self) -> int:
        return sum(len(tier) for tier in self._tiers)

    def candidates(self) -> list[str]:
        """Every tracker in the order one announce tries them."""
        return [url for tier in self._tiers for url in tier]

    def mark_success(self, url: str) -> None:
        """Move ``url`` to the front of its tier."""
        for tier in self._tiers:
            if url in tier:
                tier.remove(url)
                tier.insert(0, url)
                return


class RetryBackoff:
    """Delays between failed announce rounds: ``base_s`` doubling up to
    ``cap_s`` (15, 30, 60 ... 1800 s by default); :meth:`reset` on success."""

    def __init__(
        self,
        base_s: float = DEFAULT_BACKOFF_BASE_S,
        cap_s: float = DEFAULT_BACKOFF_CAP_S,
        factor: float = 2.0,
    ) -> None:
        self._base_s = base_s
        self._cap_s = cap_s
        self._factor = factor
        self._failures = 0

    @property
    def failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def next_delay(self) -> float:
        """Record a failure and return how long to wait before retrying."""
        exponent = min(self._failures, 64)  # keeps factor**exponent finite
        self._failures += 1
        return min(self._base_s * self._factor**exponent, self._cap_s)

    def reset(self) -> None:
        self._failures = 0
