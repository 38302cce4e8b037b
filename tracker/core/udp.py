"""The UDP tracker protocol, tracker side (BEP 15).

Packets are fixed binary structures in network byte order. This module parses
requests (connect, announce, scrape), encodes responses (connect, announce,
scrape, error), issues and checks connection ids, and answers one datagram
at a time against the shared :class:`SwarmRegistry`.

Theory of operation: a connection id is a syn-cookie, not a table entry.
It is the first 8 bytes of HMAC-SHA256(secret, time bucket || client IP),
with buckets of :data:`CONNECTION_BUCKET_S` seconds; an id is accepted in
its own bucket and the :data:`ACCEPTED_PAST_BUCKETS` after it, so it lives
between two and three minutes (BEP 15: trackers accept an id until two
minutes after sending it) and the tracker keeps no state per client. The
bucket number in the MAC is what rotates the key. The id binds the client's
IP but not its port, so a NAT that remaps the port between connect and
announce does not break the exchange; spoofing protection rests on the IP.

Bad input never raises out of :meth:`UdpTracker.handle_datagram`: a packet
too short to carry a transaction id is dropped, anything else malformed gets
an error packet naming the problem. Deliberately left out: BEP 41 options
after the announce request (ignored, as BEP 15 says sizes may grow).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from tracker.core.addr import PeerAddr, compact_peer
from tracker.core.registry import AnnounceResult, SwarmCounts, SwarmRegistry, pack_ip
from tracker.core.request import (
    AnnounceRequest,
    Event,
    InfoHash,
    PeerId,
)
from tracker.errors import AnnounceRequestError

__all__ = [
    "ACCEPTED_PAST_BUCKETS",
    "CONNECTION_BUCKET_S",
    "MAX_SCRAPE_HASHES",
    "PROTOCOL_ID",
    "Action",
    "ConnectionIds",
    "UdpAnnounceRequest",
    "UdpConnectRequest",
    "UdpRequest",
    "UdpScrapeRequest",
    "UdpTracker",
    "UdpTrackerStats",
    "encode_announce_response",
    "encode_connect_response",
    "encode_error",
    "encode_scrape_response",
    "parse_request",
]

PROTOCOL_ID = 0x41727101980  # BEP 15 magic constant of a connect request
CONNECTION_BUCKET_S = 60.0  # seconds per connection-id time bucket
MAX_CACHED_IDS = 65536  # connection ids remembered (host, bucket) before a reset
ACCEPTED_PAST_BUCKETS = 2  # an id stays valid this many buckets after its own
CONNECTION_ID_BYTES = 8  # BEP 15: 64-bit connection_id
SECRET_MIN_BYTES = 16  # shortest HMAC key we accept
HEADER_BYTES = 16  # connection_id, action, transaction_id
ANNOUNCE_REQUEST_BYTES = 98  # BEP 15 IPv4 announce request, options excluded
MAX_SCRAPE_HASHES = 74  # BEP 15: "up to about 74 torrents can be scraped at once"
MAX_ERROR_MESSAGE_BYTES = 200  # error text cap: keeps replies small
INT32_MAX = 0x7FFFFFFF  # counts are sent as 32-bit integers; larger ones are clamped
NUM_WANT_DEFAULT = -1  # BEP 15: num_want -1 asks for the tracker's default

_HEADER = struct.Struct(">QII")  # connection_id, action, transaction_id
_ANNOUNCE_BODY = struct.Struct(">20s20sqqqIIIiH")  # from offset 16 to 98
_REPLY_HEADER = struct.Struct(">II")  # action, transaction_id
_ANNOUNCE_REPLY = struct.Struct(">IIIII")  # action, tid, interval, leechers, seeders
_CONNECT_REPLY = struct.Struct(">IIQ")
_SCRAPE_ENTRY = struct.Struct(">III")  # seeders, completed, leechers


class Action(IntEnum):
    """The ``action`` field (BEP 15)."""

    CONNECT = 0
    ANNOUNCE = 1
    SCRAPE = 2
    ERROR = 3


# BEP 15 event codes: 0 none, 1 completed, 2 started, 3 stopped
_EVENTS = (Event.EMPTY, Event.COMPLETED, Event.STARTED, Event.STOPPED)


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpConnectRequest:
    """``connect request``: asks for a connection id."""

    transaction_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpAnnounceRequest:
    """``announce request``; ``ip`` is the raw IPv4 field (0 = the sender's)."""

    connection_id: int
    transaction_id: int
    info_hash: InfoHash
    peer_id: PeerId
    downloaded: int
    left: int
    uploaded: int
    event: Event
    ip: int
    key: int
    num_want: int
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpScrapeRequest:
    """``scrape request`` for one to :data:`MAX_SCRAPE_HASHES` infohashes."""

    connection_id: int
    transaction_id: int
    info_hashes: tuple[InfoHash, ...]


UdpRequest = UdpConnectRequest | UdpAnnounceRequest | UdpScrapeRequest


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpTrackerStats:
    """Counters of one UDP endpoint."""

    connects: int
    announces: int
    scrapes: int
    errors: int
    dropped: int


def parse_request(data: bytes) -> UdpRequest:
    """Parse one datagram sent to the tracker.

    Raises:
        AnnounceRequestError: naming the first thing wrong with the packet.
    """
    if len(data) < HEADER_BYTES:
        raise AnnounceRequestError(f"packet of {len(data)} bytes is too short")
    connection_id, action, tid = _HEADER.unpack_from(data)
    if action == Action.CONNECT:
        if connection_id != PROTOCOL_ID:
            raise AnnounceRequestError("connect request lacks the BEP 15 protocol id")
        return UdpConnectRequest(transaction_id=tid)
    if action == Action.ANNOUNCE:
        return _parse_announce(data, connection_id, tid)
    if action == Action.SCRAPE:
        return _parse_scrape(data, connection_id, tid)
    raise AnnounceRequestError(f"unknown action {action}")


def _parse_announce(data: bytes, connection_id: int, tid: int) -> UdpAnnounceRequest:
    if len(data) < ANNOUNCE_REQUEST_BYTES:
        raise AnnounceRequestError(
            f"announce request is {len(data)} bytes, not {ANNOUNCE_REQUEST_BYTES}"
        )
    (info_hash, peer_id, downloaded, left, uploaded, event, ip, key, num_want, port) = (
        _ANNOUNCE_BODY.unpack_from(data, HEADER_BYTES)
    )
    for name, value in (
        ("downloaded", downloaded),
        ("left", left),
        ("uploaded", uploaded),
    ):
        if value < 0:
            raise AnnounceRequestError(f"{name} {value} is negative")
    if not 0 <= event < len(_EVENTS):
        raise AnnounceRequestError(f"event {event} is not 0, 1, 2 or 3")
    if port == 0:
        raise AnnounceRequestError("port 0 is out of range")
    return UdpAnnounceRequest(
        connection_id=connection_id,
        transaction_id=tid,
        info_hash=InfoHash(info_hash),
        peer_id=PeerId(peer_id),
        downloaded=downloaded,
        left=left,
        uploaded=uploaded,
        event=_EVENTS[event],
        ip=ip,
        key=key,
        num_want=num_want,
        port=port,
    )


def _parse_scrape(data: bytes, connection_id: int, tid: int) -> UdpScrapeRequest:
    body = len(data) - HEADER_BYTES
    if body % 20:
        raise AnnounceRequestError(f"scrape request has {body % 20} stray bytes")
    count = body // 20
    if count == 0:
        raise AnnounceRequestError("scrape request names no info_hash")
    if count > MAX_SCRAPE_HASHES:
        raise AnnounceRequestError(
            f"scrape names {count} info_hash values; the cap is {MAX_SCRAPE_HASHES}"
        )
    hashes = tuple(
        InfoHash(data[offset : offset + 20])
        for offset in range(HEADER_BYTES, len(data), 20)
    )
    return UdpScrapeRequest(
        connection_id=connection_id, transaction_id=tid, info_hashes=hashes
    )


def encode_connect_response(transaction_id: int, connection_id: int) -> bytes:
    """``connect response``: action 0, the transaction id, the connection id."""
    return _CONNECT_REPLY.pack(Action.CONNECT, transaction_id, connection_id)


def _clamp(count: int) -> int:
    return min(count, INT32_MAX)


def encode_announce_response(
    transaction_id: int, *, interval_s: float, result: AnnounceResult, ipv6: bool
) -> bytes:
    """``announce response``: interval (whole seconds), leechers, seeders, then
    the peers of the requester's address family, 6 bytes each for IPv4 or 18
    for IPv6 (BEP 15 "IPv6")."""
    header = _ANNOUNCE_REPLY.pack(
        Action.ANNOUNCE,
        transaction_id,
        _clamp(max(round(interval_s), 0)),
        _clamp(result.incomplete),
        _clamp(result.complete),
    )
    peers = b"".join(
        compact_peer(p.addr) for p in result.peers if p.addr.is_ipv6 == ipv6
    )
    return header + peers


def encode_scrape_response(transaction_id: int, counts: Sequence[SwarmCounts]) -> bytes:
    """``scrape response``: seeders, completed, leechers per infohash, in the
    order they were asked for."""
    entries = b"".join(
        _SCRAPE_ENTRY.pack(
            _clamp(c.complete), _clamp(c.downloaded), _clamp(c.incomplete)
        )
        for c in counts
    )
    return _REPLY_HEADER.pack(Action.SCRAPE, transaction_id) + entries


def encode_error(transaction_id: int, message: str) -> bytes:
    """``error response``: action 3, the transaction id, a UTF-8 message."""
    text = message.encode("utf-8")[:MAX_ERROR_MESSAGE_BYTES]
    return _REPLY_HEADER.pack(Action.ERROR, transaction_id) + text


class ConnectionIds:
    """Issues and checks connection ids without per-client state."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < SECRET_MIN_BYTES:
            raise AnnounceRequestError(
                f"connection-id secret is {len(secret)} bytes; at least "
                f"{SECRET_MIN_BYTES} are needed"
            )
        self._secret = secret
        # (host, bucket) -> id: an HMAC per announce costs more than the
        # announce; the cache is dropped whole when full (ids are recomputed)
        self._cache: dict[tuple[str, int], int] = {}

    def _make(self, host: str, bucket: int) -> int:
        cached = self._cache.get((host, bucket))
        if cached is not None:
            return cached
        message = bucket.to_bytes(8, "big", signed=True) + host.encode("ascii")
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        made = int.from_bytes(digest[:CONNECTION_ID_BYTES], "big")
        if len(self._cache) >= MAX_CACHED_IDS:
            self._cache.clear()
        self._cache[host, bucket] = made
        return made

    def issue(self, host: str, now: float) -> int:
        """The connection id for a client at ``host`` (an IP literal)."""
        return self._make(host, int(now // CONNECTION_BUCKET_S))

    def is_valid(self, connection_id: int, host: str, now: float) -> bool:
        """Whether ``connection_id`` was issued to ``host`` recently enough."""
        bucket = int(now // CONNECTION_BUCKET_S)
        return any(
            hmac.compare_digest(
                self._make(host, bucket - age).to_bytes(8, "big"),
                connection_id.to_bytes(8, "big"),
            )
            for age in range(ACCEPTED_PAST_BUCKETS + 1)
        )


class UdpTracker:
    """Answers BEP 15 datagrams against a :class:`SwarmRegistry`.

    Args:
        registry: the swarm state, shared with the HTTP tracker.
        secret: HMAC key for connection ids (from ``secrets.token_bytes``).
        interval_s: the announce ``interval`` sent back.
        default_numwant: peers returned for ``num_want`` -1 (or negative).
        max_numwant: the cap on ``num_want``.
        trust_ip: honour the request's ``IP address`` field.
    """

    def __init__(
        self,
        registry: SwarmRegistry,
        *,
        secret: bytes,
        interval_s: float,
        default_numwant: int,
        max_numwant: int,
        trust_ip: bool = False,
    ) -> None:
        self._registry = registry
        self._ids = ConnectionIds(secret)
        self._interval_s = interval_s
        self._default_numwant = default_numwant
        self._max_numwant = max_numwant
        self._trust_ip = trust_ip
        self._connects = 0
        self._announces = 0
        self._scrapes = 0
        self._errors = 0
        self._dropped = 0

    def statistics(self) -> UdpTrackerStats:
        return UdpTrackerStats(
            connects=self._connects,
            announces=self._announces,
            scrapes=self._scrapes,
            errors=self._errors,
            dropped=self._dropped,
        )

    def handle_datagram(
        self, data: bytes, addr: PeerAddr, now: float, ip: bytes | None = None
    ) -> bytes | None:
        """The reply to send back to ``addr``, or None to drop the packet.

        ``addr.host`` must be a canonical IP literal (IPv4-mapped IPv6
        already turned into IPv4); ``ip`` is its packed form when the caller
        has it (it is computed otherwise). Never raises on bad input.
        """
        if len(data) < HEADER_BYTES:  # no transaction id to answer to
            self._dropped += 1
            return None
        try:
            request = parse_request(data)
        except AnnounceRequestError as exc:
            self._errors += 1
            return encode_error(_HEADER.unpack_from(data)[2], exc.reason)
        if isinstance(request, UdpConnectRequest):
            self._connects += 1
            return encode_connect_response(
                request.transaction_id, self._ids.issue(addr.host, now)
            )
        if not self._ids.is_valid(request.connection_id, addr.host, now):
            self._errors += 1
            return encode_error(
                request.transaction_id, "connection id is invalid or expired"
            )
        try:
            if isinstance(request, UdpAnnounceRequest):
                return self._announce(request, addr, now, ip)
            return self._scrape(request, now)
        except AnnounceRequestError as exc:
            self._errors += 1
            return encode_error(request.transaction_id, exc.reason)

    def _announce(
        self,
        request: UdpAnnounceRequest,
        addr: PeerAddr,
        now: float,
        ip: bytes | None,
    ) -> bytes:
        numwant = request.num_want
        if numwant < 0:
            numwant = self._default_numwant
        if self._trust_ip and request.ip != 0:
            ip = request.ip.to_bytes(4, "big")
        elif ip is None:
            try:
                ip = pack_ip(addr.host)
            except ValueError:
                raise AnnounceRequestError(
                    f"{addr.host!r} is not an IP address"
                ) from None
        result = self._registry.announce_compact(
            AnnounceRequest(
                info_hash=request.info_hash,
                peer_id=request.peer_id,
                port=request.port,
                uploaded=request.uploaded,
                downloaded=request.downloaded,
                left=request.left,
                event=request.event,
                numwant=min(numwant, self._max_numwant),
                compact=True,
                no_peer_id=True,
                ip=None,
                key=request.key.to_bytes(4, "big"),
                tracker_id=None,
            ),
            ip,
            request.port,
            now,
        )
        self._announces += 1
        # BEP 15 "IPv6": the peers of the asker's own address family
        return _ANNOUNCE_REPLY.pack(
            Action.ANNOUNCE,
            request.transaction_id,
            _clamp(max(round(self._interval_s), 0)),
            _clamp(result.incomplete),
            _clamp(result.complete),
        ) + (result.peers6 if addr.is_ipv6 else result.peers)

    def _scrape(self, request: UdpScrapeRequest, now: float) -> bytes:
        files = self._registry.scrape(request.info_hashes, now)
        empty = SwarmCounts(complete=0, incomplete=0, downloaded=0)
        self._scrapes += 1
        return encode_scrape_response(
            request.transaction_id, [files.get(h, empty) for h in request.info_hashes]
        )
