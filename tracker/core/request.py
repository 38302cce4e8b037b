"""Parsing of HTTP tracker announce and scrape requests (BEP 3, BEP 23, BEP 48).

The query string is parsed from its raw form and percent-decoded to bytes
here, because a decoded-as-text query (aiohttp's ``request.query``) corrupts
the binary ``info_hash`` and ``peer_id``. Every malformed request raises
:class:`AnnounceRequestError` whose ``reason`` is sent back to the client as
the bencoded ``failure reason``; nothing else escapes these functions.

Decision: ``+`` is kept as a literal byte, not read as a space. Clients
percent-encode everything outside the RFC 3986 unreserved set, so a raw ``+``
in an ``info_hash`` is far more likely byte 0x2B than form-encoded 0x20.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum
from typing import NewType

from tracker.errors import AnnounceRequestError

__all__ = [
    "ID_BYTES",
    "MAX_QUERY_CHARS",
    "MAX_SCRAPE_HASHES",
    "AnnounceRequest",
    "Event",
    "InfoHash",
    "PeerId",
    "ScrapeRequest",
    "make_info_hash",
    "make_peer_id",
    "parse_announce",
    "parse_query",
    "parse_scrape",
    "percent_decode",
]

ID_BYTES = 20  # info_hash and peer_id length in bytes (BEP 3)
MAX_QUERY_CHARS = 16384  # longest raw query we parse; aiohttp caps the line at ~8 KiB
MAX_SCRAPE_HASHES = 128  # info_hash values one scrape may name (BEP 48 sets no cap)
MAX_NUMBER_DIGITS = 20  # decimal digits in a counter; 2**64 has 20
MAX_SHOWN_CHARS = 32  # how much of a bad value an error message quotes

InfoHash = NewType("InfoHash", bytes)
PeerId = NewType("PeerId", bytes)

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


class Event(Enum):
    """The announce ``event`` parameter (BEP 3)."""

    #: the first announce of a download
    STARTED = "started"
    #: the download finished (not sent by a peer that starts complete)
    COMPLETED = "completed"
    #: the peer is leaving the swarm
    STOPPED = "stopped"
    #: a regular announce (``event`` empty or absent)
    EMPTY = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceRequest:
    """A validated announce request."""

    info_hash: InfoHash
    peer_id: PeerId
    port: int
    uploaded: int
    downloaded: int
    left: int
    event: Event
    numwant: int
    compact: bool
    no_peer_id: bool
    #: the ``ip`` parameter, canonical, only when the tracker trusts it
    ip: str | None
    key: bytes | None
    tracker_id: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeRequest:
    """A validated scrape request; no hashes means "every torrent"."""

    info_hashes: tuple[InfoHash, ...]


def make_info_hash(data: bytes) -> InfoHash:
    """Length-check an infohash.

    Raises:
        AnnounceRequestError: if ``data`` is not 20 bytes.
    """
    if len(data) != ID_BYTES:
        raise AnnounceRequestError(f"info_hash is {len(data)} bytes, not {ID_BYTES}")
    return InfoHash(data)


def make_peer_id(data: bytes) -> PeerId:
    """Length-check a peer id.

    Raises:
        AnnounceRequestError: if ``data`` is not 20 bytes.
    """
    if len(data) != ID_BYTES:
        raise AnnounceRequestError(f"peer_id is {len(data)} bytes, not {ID_BYTES}")
    return PeerId(data)


def _show(value: bytes) -> str:
    text = value.decode("latin-1")
    if len(text) > MAX_SHOWN_CHARS:
        return repr(text[:MAX_SHOWN_CHARS]) + "..."
    return repr(text)


def percent_decode(text: str, what: str) -> bytes:
    """Decode ``%XX`` escapes in one raw query component to bytes.

    Raises:
        AnnounceRequestError: on a ``%`` not followed by two hex digits.
    """
    raw = text.encode("utf-8", "surrogatepass")
    first, *rest = raw.split(b"%")
    out = bytearray(first)
    for chunk in rest:
        pair = chunk[:2]
        if len(pair) != 2 or not _HEX_DIGITS.issuperset(pair):
            raise AnnounceRequestError(
                f"{what} has a malformed percent-escape: {_show(b'%' + pair)}"
            )
        out.append(int(pair, 16))
        out += chunk[2:]
    return bytes(out)


def parse_query(raw_query: str) -> dict[str, list[bytes]]:
    """Split a raw query string into keys and percent-decoded byte values.

    Keys are decoded as Latin-1 text (only ASCII keys mean anything here);
    repeated keys keep every value in order.

    Raises:
        AnnounceRequestError: if the query is too long or an escape is malformed.
    """
    if len(raw_query) > MAX_QUERY_CHARS:
        raise AnnounceRequestError(
            f"query string is {len(raw_query)} characters; the cap is {MAX_QUERY_CHARS}"
        )
    params: dict[str, list[bytes]] = {}
    for part in raw_query.split("&"):
        if not part:
            continue
        raw_key, _, raw_value = part.partition("=")
        key = percent_decode(raw_key, "a parameter name").decode("latin-1")
        params.setdefault(key, []).append(percent_decode(raw_value, key))
    return params


def _single(params: dict[str, list[bytes]], key: str) -> bytes | None:
    values = params.get(key)
    if values is None:
        return None
    if len(values) > 1:
        raise AnnounceRequestError(f"{key} is given {len(values)} times, not once")
    return values[0]


def _required(params: dict[str, list[bytes]], key: str) -> bytes:
    value = _single(params, key)
    if value is None:
        raise AnnounceRequestError(f"{key} is missing")
    return value


def _number(key: str, value: bytes) -> int:
    """A decimal integer, sign allowed; range checks are the caller's."""
    digits = value[1:] if value.startswith(b"-") else value
    if not digits.isdigit():
        raise AnnounceRequestError(f"{key} is not a number: {_show(value)}")
    if len(digits) > MAX_NUMBER_DIGITS:
        raise AnnounceRequestError(
            f"{key} has {len(digits)} digits; the cap is {MAX_NUMBER_DIGITS}"
        )
    return int(value)


def _counter(params: dict[str, list[bytes]], key: str) -> int:
    number = _number(key, _required(params, key))
    if number < 0:
        raise AnnounceRequestError(f"{key} {number} is negative")
    return number


def _flag(params: dict[str, list[bytes]], key: str, default: bool) -> bool:
    value = _single(params, key)
    if value is None or value == b"":
        return default
    if value not in (b"0", b"1"):
        raise AnnounceRequestError(f"{key} must be 0 or 1, not {_show(value)}")
    return value == b"1"


def _event(params: dict[str, list[bytes]]) -> Event:
    value = _single(params, "event") or b""
    for event in Event:
        if value == event.value.encode("ascii"):
            return event
    raise AnnounceRequestError(
        f"event {_show(value)} is not one of started, completed, stopped or empty"
    )


def _numwant(params: dict[str, list[bytes]], default: int, cap: int) -> int:
    value = _single(params, "numwant")
    if value is None or value == b"":
        return min(default, cap)
    number = _number("numwant", value)
    if number < 0:  # some clients send -1 for "the tracker's default"
        return min(default, cap)
    return min(number, cap)


def _ip(params: dict[str, list[bytes]]) -> str | None:
    value = _single(params, "ip")
    if value is None or value == b"":
        return None
    try:
        ip = ipaddress.ip_address(value.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise AnnounceRequestError(f"ip {_show(value)} is not an IP address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def parse_announce(
    raw_query: str, *, default_numwant: int, max_numwant: int, trust_ip: bool
) -> AnnounceRequest:
    """Parse and validate the raw query string of ``GET /announce``.

    Args:
        raw_query: the query exactly as sent, still percent-encoded.
        default_numwant: peers to return when ``numwant`` is absent.
        max_numwant: the cap on ``numwant``.
        trust_ip: honour the ``ip`` parameter (otherwise it is ignored unread).

    Raises:
        AnnounceRequestError: naming the first thing wrong with the request.
    """
    params = parse_query(raw_query)
    info_hash = make_info_hash(_required(params, "info_hash"))
    peer_id = make_peer_id(_required(params, "peer_id"))
    port = _number("port", _required(params, "port"))
    if not 1 <= port <= 0xFFFF:
        raise AnnounceRequestError(f"port {port} is out of range")
    uploaded = _counter(params, "uploaded")
    downloaded = _counter(params, "downloaded")
    left = _counter(params, "left")
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=peer_id,
        port=port,
        uploaded=uploaded,
        downloaded=downloaded,
        left=left,
        event=_event(params),
        numwant=_numwant(params, default_numwant, max_numwant),
        compact=_flag(params, "compact", True),  # BEP 23: compact unless told not to
        no_peer_id=_flag(params, "no_peer_id", False),
        ip=_ip(params) if trust_ip else None,
        key=_single(params, "key"),
        tracker_id=_single(params, "trackerid"),
    )


def parse_scrape(raw_query: str) -> ScrapeRequest:
    """Parse the raw query string of ``GET /scrape`` (BEP 48).

    Raises:
        AnnounceRequestError: if an ``info_hash`` is not 20 bytes or there are
            more than :data:`MAX_SCRAPE_HASHES` of them.
    """
    values = parse_query(raw_query).get("info_hash", [])
    if len(values) > MAX_SCRAPE_HASHES:
        raise AnnounceRequestError(
            f"scrape names {len(values)} info_hash values; the cap is "
            f"{MAX_SCRAPE_HASHES}"
        )
    unique = dict.fromkeys(make_info_hash(v) for v in values)
    return ScrapeRequest(info_hashes=tuple(unique))
