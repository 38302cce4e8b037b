"""Parsing of HTTP tracker announce and scrape requests (BEP 3, BEP 23, BEP 48).

The query string is parsed from its raw form and percent-decoded to bytes
here, because a decoded-as-text query (aiohttp's ``request.query``) corrupts
the binary ``info_hash`` and ``peer_id``. Every malformed request raises
:class:`AnnounceRequestError` whose ``reason`` is sent back to the client as
the bencoded ``failure reason``; nothing else escapes these functions.

Speed (issue 7): :func:`parse_announce` first tries a fast path over the
query's bytes that handles only the well-formed common case (no repeated
key, every escape well formed, plain decimal numbers) with a few C-level
calls per parameter. Anything else falls back to the reference parser
(:func:`_parse_announce_slow`), which names the first thing wrong, so both
paths answer every query identically.

Decision: ``+`` is kept as a literal byte, not read as a space. Clients
percent-encode everything outside the RFC 3986 unreserved set, so a raw ``+``
in an ``info_hash`` is far more likely byte 0x2B than form-encoded 0x20.
"""

from __future__ import annotations

import binascii
import ipaddress
import operator
import re
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
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")


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
    return _percent_decode(text.encode("utf-8", "surrogatepass"), what)


def _percent_decode(raw: bytes, what: str) -> bytes:
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


def parse_query(raw_query: str | bytes) -> dict[str, list[bytes]]:
    """Split a raw query string into keys and percent-decoded byte values.

    Keys are decoded as Latin-1 text (only ASCII keys mean anything here);
    repeated keys keep every value in order. Text is taken as UTF-8 (bytes
    as they are).

    Raises:
        AnnounceRequestError: if the query is too long or an escape is malformed.
    """
    if len(raw_query) > MAX_QUERY_CHARS:
        raise AnnounceRequestError(
            f"query string is {len(raw_query)} characters; the cap is {MAX_QUERY_CHARS}"
        )
    if isinstance(raw_query, str):
        raw_query = raw_query.encode("utf-8", "surrogatepass")
    params: dict[str, list[bytes]] = {}
    for part in raw_query.split(b"&"):
        if not part:
            continue
        raw_key, _, raw_value = part.partition(b"=")
        key = _percent_decode(raw_key, "a parameter name").decode("latin-1")
        params.setdefault(key, []).append(_percent_decode(raw_value, key))
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


_EVENTS = {event.value.encode("ascii"): event for event in Event}
_FLAGS = {b"": -1, b"0": 0, b"1": 1}  # -1: the default
_SPLIT_PAIR = operator.methodcaller("split", b"=", 1)  # b"k=v" -> [b"k", b"v"]
_FAST_KEYS = frozenset(
    (b"info_hash", b"peer_id", b"port", b"uploaded", b"downloaded", b"left")
)


def _fast_decode(raw: bytes) -> bytes:
    """Percent-decode a value whose escapes are known to be well formed.

    ``%XX`` is quoted-printable's ``=XX``, so once ``%`` becomes ``=``
    :func:`binascii.a2b_qp` decodes it in C; a value holding a raw ``=``,
    CR or LF (which that codec would read as its own syntax) goes the long
    way.
    """
    if b"%" not in raw:
        return raw
    if b"=" in raw or b"\r" in raw or b"\n" in raw:
        return _percent_decode(raw, "a value")
    return binascii.a2b_qp(raw.replace(b"%", b"="))


def _fast_number(raw: bytes | None) -> int | None:
    if raw is None or not raw.isdigit() or len(raw) > MAX_NUMBER_DIGITS:
        return None
    return int(raw)


def _parse_announce_fast(
    raw: bytes, default_numwant: int, max_numwant: int, trust_ip: bool
) -> AnnounceRequest | None:
    """The announce, or None when the query is anything but a well-formed
    common case (then the reference parser decides)."""
    if len(raw) > MAX_QUERY_CHARS or (b"%" in raw and _BAD_ESCAPE.search(raw)):
        return None
    parts = raw.split(b"&")
    try:
        params: dict[bytes, bytes] = dict(map(_SPLIT_PAIR, parts))
    except ValueError:  # an empty part or one without "="
        return None
    if len(params) != len(parts) or not _FAST_KEYS.issubset(params):
        return None  # a repeated key, or a required one missing
    if b"%" in b"".join(params):  # an escaped parameter name
        return None
    info_hash = _fast_decode(params[b"info_hash"])
    peer_id = _fast_decode(params[b"peer_id"])
    port = _fast_number(params[b"port"])
    uploaded = _fast_number(params[b"uploaded"])
    downloaded = _fast_number(params[b"downloaded"])
    left = _fast_number(params[b"left"])
    get = params.get
    event = _EVENTS.get(get(b"event", b""))
    compact = _FLAGS.get(get(b"compact", b""))
    no_peer_id = _FLAGS.get(get(b"no_peer_id", b""))
    numwant_raw = get(b"numwant", b"")
    numwant = _fast_number(numwant_raw) if numwant_raw else default_numwant
    if (
        len(info_hash) != ID_BYTES
        or len(peer_id) != ID_BYTES
        or port is None
        or not 1 <= port <= 0xFFFF
        or uploaded is None
        or downloaded is None
        or left is None
        or event is None
        or compact is None
        or no_peer_id is None
        or numwant is None
        or (trust_ip and get(b"ip"))
    ):
        return None
    raw_key = get(b"key")
    tracker_id = get(b"trackerid")
    return AnnounceRequest(
        info_hash=InfoHash(info_hash),
        peer_id=PeerId(peer_id),
        port=port,
        uploaded=uploaded,
        downloaded=downloaded,
        left=left,
        event=event,
        numwant=min(numwant, max_numwant),
        compact=compact != 0,  # BEP 23: compact unless told not to
        no_peer_id=no_peer_id == 1,
        ip=None,
        key=None if raw_key is None else _fast_decode(raw_key),
        tracker_id=None if tracker_id is None else _fast_decode(tracker_id),
    )


def parse_announce(
    raw_query: str | bytes,
    *,
    default_numwant: int,
    max_numwant: int,
    trust_ip: bool,
) -> AnnounceRequest:
    """Parse and validate the raw query string of ``GET /announce``.

    Args:
        raw_query: the query exactly as sent, still percent-encoded (text,
            or the bytes off the wire).
        default_numwant: peers to return when ``numwant`` is absent.
        max_numwant: the cap on ``numwant``.
        trust_ip: honour the ``ip`` parameter (otherwise it is ignored unread).

    Raises:
        AnnounceRequestError: naming the first thing wrong with the request.
    """
    if isinstance(raw_query, str):
        raw = raw_query.encode("utf-8", "surrogatepass")
    else:
        raw = raw_query
    fast = _parse_announce_fast(raw, default_numwant, max_numwant, trust_ip)
    if fast is not None:
        return fast
    return _parse_announce_slow(
        raw_query,
        default_numwant=default_numwant,
        max_numwant=max_numwant,
        trust_ip=trust_ip,
    )


def _parse_announce_slow(
    raw_query: str | bytes, *, default_numwant: int, max_numwant: int, trust_ip: bool
) -> AnnounceRequest:
    """The reference parser: :func:`parse_announce` for any query."""
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


def parse_scrape(raw_query: str | bytes) -> ScrapeRequest:
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
