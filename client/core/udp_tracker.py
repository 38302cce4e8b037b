"""The UDP tracker protocol, client side (BEP 15).

Pure pieces the asyncio driver (``client/udp_tracker_client.py``) runs:
the packet codec (connect, announce and scrape requests; connect, announce,
scrape and error responses), a per-tracker cache of connection ids, and
:class:`UdpTrackerTransaction`, the state of one announce or scrape
including its connect step and retransmissions.

Theory of operation (one transaction):

- CONNECTING: a ``connect request`` with a fresh transaction id is out. On
  the matching ``connect response`` we keep the connection id, send the
  announce/scrape with a new transaction id and go to REQUESTING. A usable
  cached connection id (younger than :data:`CONNECTION_ID_LIFETIME_S`)
  skips this state.
- REQUESTING: on the matching response the transaction is done.
- A matching ``error response`` fails the transaction with its message,
  except once in REQUESTING with a cached connection id: the tracker may
  have restarted and forgotten it, so we reconnect instead.
- Retransmission (BEP 15 "Time outs"): with no answer ``base_s * 2**n``
  seconds after a send, the packet is sent again and ``n`` grows, up to 8;
  ``n`` is reset by every response. A retransmission in REQUESTING whose
  connection id has outlived :data:`CONNECTION_ID_LIFETIME_S` goes back to
  CONNECTING instead. After ``max_retransmits`` retransmissions go
  unanswered the transaction fails.

Datagrams with another transaction id (late answers to an earlier send) or
shorter than 8 bytes are ignored; a matching answer that is malformed fails
the transaction. Every failure is a :class:`TrackerFailure`.
"""

from __future__ import annotations

import random
import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import assert_never
from urllib.parse import urlsplit

from client.core.announce import AnnounceEvent, AnnounceResponse, ScrapeStats
from client.errors import TrackerFailure
from dht import PeerAddr, decode_peers, decode_peers6

__all__ = [
    "CONNECTION_ID_LIFETIME_S",
    "DEFAULT_MAX_RETRANSMITS",
    "DEFAULT_RETRANSMIT_BASE_S",
    "MAX_SCRAPE_HASHES",
    "PROTOCOL_ID",
    "Action",
    "AnnounceDone",
    "Connection",
    "ConnectionCache",
    "ScrapeDone",
    "SendPacket",
    "UdpAnnounceParams",
    "UdpAnnounceReply",
    "UdpConnectReply",
    "UdpErrorReply",
    "UdpOutput",
    "UdpReply",
    "UdpScrapeParams",
    "UdpScrapeReply",
    "UdpTrackerTransaction",
    "encode_announce_request",
    "encode_connect_request",
    "encode_scrape_request",
    "parse_reply",
    "parse_udp_tracker_url",
    "retransmit_timeout",
]

PROTOCOL_ID = 0x41727101980  # BEP 15 magic constant of a connect request
DEFAULT_RETRANSMIT_BASE_S = 15.0  # BEP 15: retransmit after 15 * 2**n seconds
MAX_RETRANSMIT_EXPONENT = 8  # BEP 15: n grows up to 8 (3840 s)
DEFAULT_MAX_RETRANSMITS = 8  # retransmissions before a transaction fails
CONNECTION_ID_LIFETIME_S = 60.0  # BEP 15: a client may use an id for one minute
MAX_SCRAPE_HASHES = 74  # BEP 15: "up to about 74 torrents can be scraped at once"
MAX_CACHED_CONNECTIONS = 256  # trackers whose connection id we remember
MAX_MESSAGE_CHARS = 200  # how much of a tracker's error text we keep
ID_BYTES = 20  # info_hash and peer_id length in bytes

_HEADER = struct.Struct(">QII")  # connection_id, action, transaction_id
_ANNOUNCE = struct.Struct(">QII20s20sqqqIIIiH")  # the 98-byte announce request
_REPLY_HEADER = struct.Struct(">II")  # action, transaction_id
_CONNECT_REPLY = struct.Struct(">IIQ")  # action, transaction_id, connection_id
_ANNOUNCE_REPLY = struct.Struct(">IIIII")  # action, tid, interval, leechers, seeders
_SCRAPE_ENTRY = struct.Struct(">III")  # seeders, completed, leechers


class Action(IntEnum):
    """The ``action`` field (BEP 15)."""

    CONNECT = 0
    ANNOUNCE = 1
    SCRAPE = 2
    ERROR = 3


# BEP 15 event codes: 0 none, 1 completed, 2 started, 3 stopped
_EVENT_CODES = {
    AnnounceEvent.EMPTY: 0,
    AnnounceEvent.COMPLETED: 1,
    AnnounceEvent.STARTED: 2,
    AnnounceEvent.STOPPED: 3,
}


def parse_udp_tracker_url(url: str) -> tuple[str, int]:
    """Host and port of a ``udp://host:port[/path]`` tracker URL.

    Raises:
        TrackerFailure: if ``url`` is not a udp URL with a host and a port.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise TrackerFailure(f"{url!r} is not a valid URL", url=url) from None
    if parts.scheme.lower() != "udp" or not parts.hostname or not port:
        raise TrackerFailure(f"{url!r} is not a udp://HOST:PORT tracker URL", url=url)
    return parts.hostname, port


def retransmit_timeout(retransmits: int, base_s: float) -> float:
    """Seconds to wait for an answer after the ``retransmits``-th resend
    (0 for the first send): ``base_s * 2**n`` with n capped at 8 (BEP 15)."""
    return base_s * float(1 << min(retransmits, MAX_RETRANSMIT_EXPONENT))


# -- requests ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpAnnounceParams:
    """What an announce tells the tracker; ``num_want`` -1 means its default."""

    info_hash: bytes
    peer_id: bytes
    downloaded: int
    left: int
    uploaded: int
    event: AnnounceEvent
    key: int
    num_want: int
    port: int

    def __post_init__(self) -> None:
        for name, value in (("info_hash", self.info_hash), ("peer_id", self.peer_id)):
            if len(value) != ID_BYTES:
                raise TrackerFailure(f"announce: {name} is {len(value)} bytes, not 20")
        if not 1 <= self.port <= 0xFFFF:
            raise TrackerFailure(f"announce: port {self.port} is out of range")
        for name, number in (
            ("downloaded", self.downloaded),
            ("left", self.left),
            ("uploaded", self.uploaded),
        ):
            if not 0 <= number < 1 << 63:
                raise TrackerFailure(f"announce: {name} {number} is out of range")
        if not 0 <= self.key < 1 << 32:
            raise TrackerFailure(f"announce: key {self.key} is not a 32-bit number")
        if not -1 <= self.num_want < 1 << 31:
            raise TrackerFailure(f"announce: num_want {self.num_want} is out of range")


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpScrapeParams:
    """The infohashes a scrape asks about (1 to :data:`MAX_SCRAPE_HASHES`)."""

    info_hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.info_hashes) <= MAX_SCRAPE_HASHES:
            raise TrackerFailure(
                f"scrape: {len(self.info_hashes)} info_hashes; a UDP scrape takes "
                f"1 to {MAX_SCRAPE_HASHES}"
            )
        for info_hash in self.info_hashes:
            if len(info_hash) != ID_BYTES:
                raise TrackerFailure(
                    f"scrape: info_hash is {len(info_hash)} bytes, not 20"
                )


def encode_connect_request(transaction_id: int) -> bytes:
    """``connect request``: the protocol id, action 0, the transaction id."""
    return _HEADER.pack(PROTOCOL_ID, Action.CONNECT, transaction_id)


def encode_announce_request(
    connection_id: int, transaction_id: int, params: UdpAnnounceParams
) -> bytes:
    """The 98-byte IPv4 ``announce request``; the IP address field is 0 (the
    tracker uses the packet's source address)."""
    return _ANNOUNCE.pack(
        connection_id,
        Action.ANNOUNCE,
        transaction_id,
        params.info_hash,
        params.peer_id,
        params.downloaded,
        params.left,
        params.uploaded,
        _EVENT_CODES[params.event],
        0,
        params.key,
        params.num_want,
        params.port,
    )


def encode_scrape_request(
    connection_id: int, transaction_id: int, info_hashes: Sequence[bytes]
) -> bytes:
    """``scrape request``: the header, then the 20-byte infohashes."""
    return _HEADER.pack(connection_id, Action.SCRAPE, transaction_id) + b"".join(
        info_hashes
    )


# -- replies -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpConnectReply:
    """``connect response``."""

    transaction_id: int
    connection_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpAnnounceReply:
    """``announce response``."""

    transaction_id: int
    interval: int
    leechers: int
    seeders: int
    peers: tuple[PeerAddr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpScrapeReply:
    """``scrape response``: one entry per infohash asked, in order."""

    transaction_id: int
    entries: tuple[ScrapeStats, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class UdpErrorReply:
    """``error response``."""

    transaction_id: int
    message: str


UdpReply = UdpConnectReply | UdpAnnounceReply | UdpScrapeReply | UdpErrorReply


def parse_reply(data: bytes, *, ipv6: bool = False) -> UdpReply:
    """Parse a datagram from a UDP tracker.

    Args:
        data: the datagram.
        ipv6: the tracker was reached over IPv6, so announce peers are 18
            bytes each instead of 6 (BEP 15 "IPv6").

    Raises:
        TrackerFailure: if the packet is too short for its action or the
            action is unknown.
    """
    if len(data) < _REPLY_HEADER.size:
        raise TrackerFailure(f"UDP tracker reply of {len(data)} bytes is too short")
    action, tid = _REPLY_HEADER.unpack_from(data)
    if action == Action.CONNECT:
        if len(data) < _CONNECT_REPLY.size:
            raise TrackerFailure(f"connect response is {len(data)} bytes, not 16")
        return UdpConnectReply(
            transaction_id=tid, connection_id=_CONNECT_REPLY.unpack_from(data)[2]
        )
    if action == Action.ANNOUNCE:
        if len(data) < _ANNOUNCE_REPLY.size:
            raise TrackerFailure(f"announce response is {len(data)} bytes, not 20+")
        _, _, interval, leechers, seeders = _ANNOUNCE_REPLY.unpack_from(data)
        return UdpAnnounceReply(
            transaction_id=tid,
            interval=interval,
            leechers=leechers,
            seeders=seeders,
            peers=_peers(data[_ANNOUNCE_REPLY.size :], ipv6),
        )
    if action == Action.SCRAPE:
        body = data[_REPLY_HEADER.size :]
        count = len(body) // _SCRAPE_ENTRY.size
        entries = []
        for index in range(count):
            seeders, completed, leechers = _SCRAPE_ENTRY.unpack_from(
                body, index * _SCRAPE_ENTRY.size
            )
            entries.append(
                ScrapeStats(complete=seeders, downloaded=completed, incomplete=leechers)
            )
        return UdpScrapeReply(transaction_id=tid, entries=tuple(entries))
    if action == Action.ERROR:
        text = data[_REPLY_HEADER.size :].decode("utf-8", "replace")
        return UdpErrorReply(
            transaction_id=tid, message=text[:MAX_MESSAGE_CHARS] or "(no message)"
        )
    raise TrackerFailure(f"UDP tracker reply has unknown action {action}")


def _peers(data: bytes, ipv6: bool) -> tuple[PeerAddr, ...]:
    stride = 18 if ipv6 else 6
    whole = data[: len(data) - len(data) % stride]  # sizes may grow (BEP 15)
    found = decode_peers6(whole) if ipv6 else decode_peers(whole)
    # port 0 cannot be connected to; some trackers hand such entries out anyway
    return tuple(dict.fromkeys(a for a in found if a.port != 0))


# -- connection ids --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Connection:
    """A connection id and when (``now``) we received it."""

    connection_id: int
    obtained_at: float

    def usable(self, now: float) -> bool:
        """BEP 15: a client may use a connection id for one minute."""
        return 0 <= now - self.obtained_at < CONNECTION_ID_LIFETIME_S


class ConnectionCache:
    """The last connection id per tracker, dropped once too old to use."""

    def __init__(self, max_entries: int = MAX_CACHED_CONNECTIONS) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[str, Connection] = OrderedDict()

    def get(self, tracker: str, now: float) -> Connection | None:
        """A still-usable connection id for ``tracker`` ("host:port")."""
        connection = self._entries.get(tracker)
        if connection is None:
            return None
        if not connection.usable(now):
            del self._entries[tracker]
            return None
        return connection

    def put(self, tracker: str, connection: Connection) -> None:
        self._entries.pop(tracker, None)
        self._entries[tracker] = connection
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def forget(self, tracker: str) -> None:
        self._entries.pop(tracker, None)


# -- one transaction -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SendPacket:
    """Send ``payload`` to the tracker."""

    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceDone:
    """The announce was answered."""

    response: AnnounceResponse


@dataclass(frozen=True, slots=True, kw_only=True)
class ScrapeDone:
    """The scrape was answered: stats per infohash asked."""

    stats: dict[bytes, ScrapeStats]


UdpOutput = SendPacket | AnnounceDone | ScrapeDone


class _State(Enum):
    #: waiting for a connect response
    CONNECTING = "connecting"
    #: waiting for the announce or scrape response
    REQUESTING = "requesting"
    #: answered; nothing more to do
    DONE = "done"


class UdpTrackerTransaction:
    """One announce or scrape against one UDP tracker, connect step included.

    Args:
        request: what to ask.
        rng: makes transaction ids (use ``random.SystemRandom()`` for real
            trackers: the ids are what stops forged answers).
        connection: a cached connection id, if one is usable.
        ipv6: the tracker is reached over IPv6 (18-byte peers).
        retransmit_base_s: the BEP 15 base, 15 s; tests make it small.
        max_retransmits: unanswered resends before failing.
    """

    def __init__(
        self,
        request: UdpAnnounceParams | UdpScrapeParams,
        *,
        rng: random.Random,
        connection: Connection | None = None,
        ipv6: bool = False,
        retransmit_base_s: float = DEFAULT_RETRANSMIT_BASE_S,
        max_retransmits: int = DEFAULT_MAX_RETRANSMITS,
    ) -> None:
        self._request = request
        self._rng = rng
        self._connection = connection
        self._cached = connection is not None
        self._ipv6 = ipv6
        self._base_s = retransmit_base_s
        self._max_retransmits = max_retransmits
        self._state = _State.CONNECTING
        self._transaction_id = 0
        self._packet = b""
        self._retransmits = 0  # BEP 15's n
        self._sends = 0
        self._deadline = 0.0

    @property
    def connection(self) -> Connection | None:
        """The connection id in use, for the caller's cache."""
        return self._connection

    @property
    def done(self) -> bool:
        return self._state is _State.DONE

    @property
    def sends(self) -> int:
        """Packets sent so far, retransmissions included."""
        return self._sends

    def next_deadline(self) -> float:
        """When :meth:`tick` must run next (``inf`` once done)."""
        return float("inf") if self._state is _State.DONE else self._deadline

    def start(self, now: float) -> list[UdpOutput]:
        """The first packet: the request itself with a usable cached
        connection id, else a connect request."""
        if self._connection is not None and self._connection.usable(now):
            return self._send_request(now)
        self._connection = None
        self._cached = False
        return self._send_connect(now)

    def handle_datagram(self, data: bytes, now: float) -> list[UdpOutput]:
        """Feed one datagram from the tracker.

        Raises:
            TrackerFailure: on the tracker's error response or a malformed
                answer to our current request.
        """
        if self._state is _State.DONE or len(data) < _REPLY_HEADER.size:
            return []
        if _REPLY_HEADER.unpack_from(data)[1] != self._transaction_id:
            return []  # an answer to an earlier send, or not for us
        reply = parse_reply(data, ipv6=self._ipv6)
        self._retransmits = 0  # BEP 15: a response resets n
        match reply:
            case UdpErrorReply(message=message):
                if self._state is _State.REQUESTING and self._cached:
                    # the tracker may have restarted and dropped our cached id
                    self._connection = None
                    self._cached = False
                    return self._send_connect(now)
                raise TrackerFailure(message)
            case UdpConnectReply(connection_id=connection_id):
                if self._state is not _State.CONNECTING:
                    raise TrackerFailure("UDP tracker sent a connect response late")
                self._connection = Connection(
                    connection_id=connection_id, obtained_at=now
                )
                return self._send_request(now)
            case UdpAnnounceReply() | UdpScrapeReply():
                if self._state is not _State.REQUESTING:
                    raise TrackerFailure("UDP tracker answered before connecting")
                return [self._finish(reply)]
            case _:
                assert_never(reply)

    def tick(self, now: float) -> list[UdpOutput]:
        """Retransmit if the deadline passed.

        Raises:
            TrackerFailure: once ``max_retransmits`` resends went unanswered.
        """
        if self._state is _State.DONE or now < self._deadline:
            return []
        if self._retransmits >= self._max_retransmits:
            raise TrackerFailure(
                f"no answer from the UDP tracker after {self._sends} packets"
            )
        self._retransmits += 1
        if self._state is _State.REQUESTING and not (
            self._connection is not None and self._connection.usable(now)
        ):
            self._connection = None  # BEP 15: rerequest an expired id
            self._cached = False
            return self._send_connect(now)
        return self._send(self._packet, now)

    # -- internals --------------------------------------------------------------

    def _send_connect(self, now: float) -> list[UdpOutput]:
        self._state = _State.CONNECTING
        self._transaction_id = self._rng.getrandbits(32)
        return self._send(encode_connect_request(self._transaction_id), now)

    def _send_request(self, now: float) -> list[UdpOutput]:
        assert self._connection is not None  # set before any request is sent
        self._state = _State.REQUESTING
        self._transaction_id = self._rng.getrandbits(32)
        connection_id = self._connection.connection_id
        match self._request:
            case UdpAnnounceParams():
                packet = encode_announce_request(
                    connection_id, self._transaction_id, self._request
                )
            case UdpScrapeParams(info_hashes=info_hashes):
                packet = encode_scrape_request(
                    connection_id, self._transaction_id, info_hashes
                )
            case _:
                assert_never(self._request)
        return self._send(packet, now)

    def _send(self, packet: bytes, now: float) -> list[UdpOutput]:
        self._packet = packet
        self._sends += 1
        self._deadline = now + retransmit_timeout(self._retransmits, self._base_s)
        return [SendPacket(payload=packet)]

    def _finish(self, reply: UdpAnnounceReply | UdpScrapeReply) -> UdpOutput:
        self._state = _State.DONE
        if isinstance(reply, UdpAnnounceReply):
            if not isinstance(self._request, UdpAnnounceParams):
                raise TrackerFailure("UDP tracker answered a scrape as an announce")
            return AnnounceDone(
                response=AnnounceResponse(
                    interval=reply.interval,
                    min_interval=None,
                    peers=reply.peers,
                    complete=reply.seeders,
                    incomplete=reply.leechers,
                    warning=None,
                    tracker_id=None,
                )
            )
        if not isinstance(self._request, UdpScrapeParams):
            raise TrackerFailure("UDP tracker answered an announce as a scrape")
        asked = self._request.info_hashes
        if len(reply.entries) < len(asked):
            raise TrackerFailure(
                f"scrape response has {len(reply.entries)} entries for "
                f"{len(asked)} info_hashes"
            )
        return ScrapeDone(stats=dict(zip(asked, reply.entries, strict=False)))
