"""Fetching and serving the info dictionary over ut_metadata (BEP 9).

A magnet link gives only the infohash; the info dictionary ("metadata") comes
from peers that advertise ``ut_metadata`` and ``metadata_size`` in their
extension handshake (BEP 10, :mod:`client.core.extensions`). The metadata is
cut into 16 KiB pieces, all full-size but the last, and three messages move
them, each a bencoded dictionary:

* request ``{msg_type: 0, piece}``;
* data ``{msg_type: 1, piece, total_size}`` followed, *after* the
  dictionary, by the piece's raw bytes;
* reject ``{msg_type: 2, piece}``.

BEP 9 says unrecognised ``msg_type`` values are ignored; they parse to
:class:`MetadataUnknown`.

Theory of operation (:class:`MetadataAssembler`)
------------------------------------------------
Peers join with :meth:`~MetadataAssembler.peer_ready` and the size they
advertised. The first size seen is *the* size; peers that advertise another
are kept aside and ignored, unless no peer with the chosen size remains, in
which case the assembler starts over with the oldest remaining size. The
driver asks :meth:`~MetadataAssembler.next_requests` what to send to a peer:
pieces nobody was asked for come first (so parallel peers get different
pieces), then pieces whose request timed out or was rejected elsewhere. A
peer that timed out on a piece is not asked for it again while another peer
could be; a peer that rejected a piece is never asked for it again. Data
from a timed-out request is still accepted if it turns up. When the last
piece lands the whole is hashed: a match ends the fetch, a mismatch names
every peer that contributed a piece (any one of them may have lied; the
caller drops them), excludes them for good, and starts over.

Deliberately left out: asking a peer again after a reject (libtorrent backs
off for a while); the driver's overall metadata timeout covers a swarm where
everyone rejects.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Hashable
from dataclasses import dataclass, field

import bencodepy

from client.core import bencode_span
from client.core.extensions import MAX_METADATA_BYTES, decode_ext_dict
from client.errors import (
    LocalPeerProtocolError,
    MetainfoError,
    RemotePeerProtocolError,
    TrailingDataError,
)

__all__ = [
    "MAX_METADATA_BYTES",
    "METADATA_PIECE_BYTES",
    "METADATA_REQUEST_TIMEOUT_S",
    "MetadataAssembler",
    "MetadataComplete",
    "MetadataCorrupt",
    "MetadataData",
    "MetadataMessage",
    "MetadataMsgType",
    "MetadataReject",
    "MetadataRequest",
    "MetadataResult",
    "MetadataServer",
    "MetadataUnknown",
    "encode_metadata_data",
    "encode_metadata_reject",
    "encode_metadata_request",
    "metadata_piece_count",
    "metadata_piece_length",
    "parse_metadata_message",
]

METADATA_PIECE_BYTES = 16384  # every piece but the last (BEP 9)
METADATA_REQUEST_TIMEOUT_S = 10.0  # re-ask another peer after this long
# Largest ut_metadata payload we look at: one piece plus room for the
# dictionary (ours is under 60 bytes; this allows a few extra keys).
MAX_METADATA_MESSAGE_BYTES = METADATA_PIECE_BYTES + 1024
INFO_HASH_BYTES = 20  # SHA-1 (BEP 3)
_WHAT = "ut_metadata message"


class MetadataMsgType(enum.IntEnum):
    """``msg_type`` values (BEP 9)."""

    REQUEST = 0
    DATA = 1
    REJECT = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRequest:
    piece: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataData:
    piece: int
    total_size: int
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataReject:
    piece: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataUnknown:
    """A ``msg_type`` this version of BEP 9 doesn't define; ignore it."""

    msg_type: int


MetadataMessage = MetadataRequest | MetadataData | MetadataReject | MetadataUnknown
_KNOWN_MSG_TYPES = frozenset(int(t) for t in MetadataMsgType)


def metadata_piece_count(total_size: int) -> int:
    """Number of 16 KiB pieces in metadata of ``total_size`` bytes."""
    return -(-total_size // METADATA_PIECE_BYTES)


def metadata_piece_length(total_size: int, piece: int) -> int:
    """Length of piece ``piece``: 16384, or the remainder for the last one."""
    return min(METADATA_PIECE_BYTES, total_size - piece * METADATA_PIECE_BYTES)


def _check_piece(piece: int) -> None:
    if piece < 0:
        raise LocalPeerProtocolError(f"ut_metadata: piece {piece} is negative")


def _encode(d: dict[bytes, int]) -> bytes:
    out: bytes = bencodepy.encode(d)
    return out


def encode_metadata_request(piece: int) -> bytes:
    """Payload asking for metadata piece ``piece``.

    Raises:
        LocalPeerProtocolError: ``piece`` is negative.
    """
    _check_piece(piece)
    return _encode({b"msg_type": int(MetadataMsgType.REQUEST), b"piece": piece})


def encode_metadata_reject(piece: int) -> bytes:
    """Payload refusing a request for piece ``piece``.

    Raises:
        LocalPeerProtocolError: ``piece`` is negative.
    """
    _check_piece(piece)
    return _encode({b"msg_type": int(MetadataMsgType.REJECT), b"piece": piece})


def encode_metadata_data(piece: int, total_size: int, data: bytes) -> bytes:
    """Payload carrying piece ``piece``: the dictionary, then the raw bytes.

    Raises:
        LocalPeerProtocolError: ``total_size`` is out of range, ``piece`` is
            not one of its pieces, or ``data`` has the wrong length for it.
    """
    if not 1 <= total_size <= MAX_METADATA_BYTES:
        raise LocalPeerProtocolError(
            f"ut_metadata: total_size {total_size} not in 1..{MAX_METADATA_BYTES}"
        )
    if not 0 <= piece < metadata_piece_count(total_size):
        raise LocalPeerProtocolError(
            f"ut_metadata: piece {piece} out of range for {total_size} bytes"
        )
    expected = metadata_piece_length(total_size, piece)
    if len(data) != expected:
        raise LocalPeerProtocolError(
            f"ut_metadata: piece {piece} is {len(data)} bytes, not {expected}"
        )
    header = _encode(
        {
            b"msg_type": int(MetadataMsgType.DATA),
            b"piece": piece,
            b"total_size": total_size,
        }
    )
    return header + bytes(data)


def _int_key(d: dict[bytes, object], key: bytes) -> int:
    value = d.get(key)
    if not isinstance(value, int):
        raise RemotePeerProtocolError(
            f"{_WHAT}: {key.decode()!r} is missing or not an integer"
        )
    return value


def parse_metadata_message(payload: bytes) -> MetadataMessage:
    """Parse a ut_metadata payload (the bytes after the extended message id).

    The dictionary's end is found exactly (a data message's piece follows
    it). Data pieces must have their exact length: 16384 bytes, or the
    remainder of ``total_size`` for the last piece.

    Raises:
        RemotePeerProtocolError: malformed bencode, a missing or wrong-typed
            key, a negative piece, bytes after a request or reject, a
            ``total_size`` outside 1..:data:`MAX_METADATA_BYTES`, or a data
            piece of the wrong length.
    """
    payload = bytes(payload)
    if len(payload) > MAX_METADATA_MESSAGE_BYTES:
        raise RemotePeerProtocolError(
            f"{_WHAT}: {len(payload)} bytes exceeds the "
            f"{MAX_METADATA_MESSAGE_BYTES}-byte cap"
        )
    end = len(payload)
    try:
        bencode_span.check_bencode(payload, what=_WHAT)
    except TrailingDataError as exc:
        end = exc.offset  # where a data message's raw piece starts
    except MetainfoError as exc:
        raise RemotePeerProtocolError(str(exc)) from exc
    d = decode_ext_dict(payload[:end], what=_WHAT)
    msg_type = _int_key(d, b"msg_type")
    if msg_type not in _KNOWN_MSG_TYPES:
        return MetadataUnknown(msg_type=msg_type)
    piece = _int_key(d, b"piece")
    if piece < 0:
        raise RemotePeerProtocolError(f"{_WHAT}: piece {piece} is negative")
    rest = payload[end:]
    if msg_type != MetadataMsgType.DATA:
        if rest:
            raise RemotePeerProtocolError(
                f"{_WHAT}: {len(rest)} unexpected bytes after a "
                f"msg_type {msg_type} dictionary"
            )
        if msg_type == MetadataMsgType.REQUEST:
            return MetadataRequest(piece=piece)
        return MetadataReject(piece=piece)
    total_size = _int_key(d, b"total_size")
    if not 1 <= total_size <= MAX_METADATA_BYTES:
        raise RemotePeerProtocolError(
            f"{_WHAT}: total_size {total_size} not in 1..{MAX_METADATA_BYTES}"
        )
    count = metadata_piece_count(total_size)
    if piece >= count:
        raise RemotePeerProtocolError(
            f"{_WHAT}: piece {piece} out of range: {total_size} bytes make "
            f"{count} pieces"
        )
    expected = metadata_piece_length(total_size, piece)
    if len(rest) != expected:
        raise RemotePeerProtocolError(
            f"{_WHAT}: piece {piece} carries {len(rest)} bytes, not {expected}"
        )
    return MetadataData(piece=piece, total_size=total_size, data=rest)


# --- Fetching -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataComplete:
    """All pieces arrived and their SHA-1 matches the infohash."""

    info_bytes: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class MetadataCorrupt:
    """All pieces arrived but the hash is wrong; ``peers`` contributed them.

    The assembler has excluded them and started over; the caller drops them.
    """

    peers: frozenset[Hashable]


MetadataResult = MetadataComplete | MetadataCorrupt


@dataclass(slots=True)
class _PeerState:
    size: int
    requested: dict[int, float] = field(default_factory=dict)  # piece → deadline
    late: set[int] = field(default_factory=set)  # timed out; data still welcome
    timed_out: set[int] = field(default_factory=set)  # ask others first
    rejected: set[int] = field(default_factory=set)  # never ask again

    def clear(self) -> None:
        self.requested.clear()
        self.late.clear()
        self.timed_out.clear()
        self.rejected.clear()


class MetadataAssembler:
    """Fetches the info dictionary from several peers in parallel (BEP 9).

    Peers are any hashable keys the driver chooses (addresses, connection
    objects). See the module docstring for the theory of operation.

    Args:
        info_hash: the 20-byte SHA-1 the metadata must hash to.
        rng: orders pieces of equal priority, so peers spread out.
        timeout_s: how long a request may stay unanswered.

    Raises:
        LocalPeerProtocolError: ``info_hash`` is not 20 bytes.
    """

    def __init__(
        self,
        info_hash: bytes,
        *,
        rng: random.Random,
        timeout_s: float = METADATA_REQUEST_TIMEOUT_S,
    ) -> None:
        if len(info_hash) != INFO_HASH_BYTES:
            raise LocalPeerProtocolError(
                f"ut_metadata: info_hash is {len(info_hash)} bytes, not 20"
            )
        self._info_hash = bytes(info_hash)
        self._rng = rng
        self._timeout_s = timeout_s
        self._peers: dict[Hashable, _PeerState] = {}  # in order of arrival
        self._excluded: set[Hashable] = set()
        self._size: int | None = None
        self._pieces: list[bytes | None] = []
        self._contributors: dict[int, Hashable] = {}
        self._attempted: set[int] = set()
        self._info_bytes: bytes | None = None

    # -- read-only state

    @property
    def is_complete(self) -> bool:
        return self._info_bytes is not None

    @property
    def info_bytes(self) -> bytes | None:
        """The verified info dictionary once complete."""
        return self._info_bytes

    @property
    def metadata_size(self) -> int | None:
        """The size being fetched (the first advertised), if any."""
        return self._size

    @property
    def progress(self) -> tuple[int, int]:
        """``(pieces we have, pieces in total)``; ``(0, 0)`` before any size."""
        have = sum(1 for p in self._pieces if p is not None)
        return have, len(self._pieces)

    def next_deadline(self) -> float | None:
        """When the earliest outstanding request times out, if any."""
        deadlines = [t for st in self._peers.values() for t in st.requested.values()]
        return min(deadlines, default=None)

    # -- events from the driver

    def peer_ready(self, peer: Hashable, metadata_size: int) -> None:
        """A peer advertised ut_metadata with ``metadata_size``.

        Peers excluded after corrupt metadata are ignored, as is a repeat
        with the same size; a new size replaces the peer's old one.

        Raises:
            RemotePeerProtocolError: the size is outside
                1..:data:`MAX_METADATA_BYTES`.
        """
        if not 1 <= metadata_size <= MAX_METADATA_BYTES:
            raise RemotePeerProtocolError(
                f"ut_metadata: metadata_size {metadata_size} not in "
                f"1..{MAX_METADATA_BYTES}"
            )
        if self.is_complete or peer in self._excluded:
            return
        old = self._peers.get(peer)
        if old is not None:
            if old.size == metadata_size:
                return
            self.peer_gone(peer)
        self._peers[peer] = _PeerState(size=metadata_size)
        if self._size is None:
            self._start(metadata_size)

    def peer_gone(self, peer: Hashable) -> None:
        """The peer disconnected; its outstanding pieces go to others."""
        if self._peers.pop(peer, None) is None or self.is_complete:
            return
        if not any(st.size == self._size for st in self._peers.values()):
            # Nobody left can finish this size (maybe a liar advertised it):
            # start over with the oldest size still on offer.
            self._restart()

    def next_requests(
        self, peer: Hashable, now: float, max_outstanding: int = 2
    ) -> list[int]:
        """Piece indices to request from ``peer`` now (and record them).

        Unrequested pieces come first, then pieces whose request timed out
        or was rejected elsewhere. Returns ``[]`` for unknown, excluded or
        mismatched peers and once complete.
        """
        st = self._active(peer)
        if st is None:
            return []
        self._expire(now)
        room = max_outstanding - len(st.requested)
        if room <= 0:
            return []
        others = [
            q for p, q in self._peers.items() if p != peer and q.size == self._size
        ]
        busy = {i for q in self._peers.values() for i in q.requested}
        fresh: list[int] = []
        retry: list[int] = []
        for i, have in enumerate(self._pieces):
            if have is not None or i in busy or i in st.rejected:
                continue
            if i in st.timed_out and any(
                i not in q.timed_out and i not in q.rejected for q in others
            ):
                continue  # another peer may do better than the one that stalled
            (retry if i in self._attempted else fresh).append(i)
        self._rng.shuffle(fresh)
        self._rng.shuffle(retry)
        chosen = (fresh + retry)[:room]
        for i in chosen:
            st.requested[i] = now + self._timeout_s
            self._attempted.add(i)
        return chosen

    def on_reject(self, peer: Hashable, piece: int) -> None:
        """The peer rejected our request for ``piece``; never ask it again."""
        st = self._active(peer)
        if st is not None and st.requested.pop(piece, None) is not None:
            st.rejected.add(piece)

    def on_data(
        self, peer: Hashable, piece: int, total_size: int, data: bytes, now: float
    ) -> MetadataResult | None:
        """A data message arrived. Data we didn't ask this peer for is ignored.

        Returns:
            :class:`MetadataComplete` or :class:`MetadataCorrupt` when this was
            the last missing piece, else None.

        Raises:
            RemotePeerProtocolError: ``total_size`` differs from the size the
                peer advertised, or ``data`` has the wrong length.
        """
        st = self._active(peer)
        size = self._size
        if st is None or size is None:
            return None
        if piece not in st.requested and piece not in st.late:
            return None
        if total_size != size:
            raise RemotePeerProtocolError(
                f"ut_metadata: total_size {total_size} differs from the "
                f"advertised metadata_size {size}"
            )
        expected = metadata_piece_length(size, piece)
        if len(data) != expected:
            raise RemotePeerProtocolError(
                f"ut_metadata: piece {piece} is {len(data)} bytes, not {expected}"
            )
        st.requested.pop(piece, None)
        st.late.discard(piece)
        if self._pieces[piece] is not None:
            return None
        self._pieces[piece] = bytes(data)
        self._contributors[piece] = peer
        for other in self._peers.values():
            other.requested.pop(piece, None)  # free slots racing for the same piece
            other.late.discard(piece)
        if any(p is None for p in self._pieces):
            return None
        info = b"".join(p for p in self._pieces if p is not None)
        if hashlib.sha1(info).digest() == self._info_hash:
            self._info_bytes = info
            for other in self._peers.values():
                other.clear()
            return MetadataComplete(info_bytes=info)
        culprits = frozenset(self._contributors.values())
        self._excluded |= culprits
        for c in culprits:
            self._peers.pop(c, None)
        self._restart()
        return MetadataCorrupt(peers=culprits)

    # -- internals

    def _active(self, peer: Hashable) -> _PeerState | None:
        st = self._peers.get(peer)
        if self.is_complete or st is None or st.size != self._size:
            return None
        return st

    def _start(self, size: int) -> None:
        self._size = size
        self._pieces = [None] * metadata_piece_count(size)
        self._contributors = {}
        self._attempted = set()

    def _restart(self) -> None:
        for st in self._peers.values():
            st.clear()
        self._size = None
        self._pieces = []
        self._contributors = {}
        self._attempted = set()
        first = next(iter(self._peers.values()), None)
        if first is not None:
            self._start(first.size)

    def _expire(self, now: float) -> None:
        for st in self._peers.values():
            for i, deadline in list(st.requested.items()):
                if deadline <= now:
                    del st.requested[i]
                    st.late.add(i)
                    st.timed_out.add(i)


# --- Serving ----------------------------------------------------------------


class MetadataServer:
    """Answers ut_metadata requests from the info dictionary's exact bytes.

    Raises:
        LocalPeerProtocolError: ``info_bytes`` is empty or above the cap.
    """

    __slots__ = ("_info",)

    def __init__(self, info_bytes: bytes) -> None:
        if not 1 <= len(info_bytes) <= MAX_METADATA_BYTES:
            raise LocalPeerProtocolError(
                f"ut_metadata: info dictionary of {len(info_bytes)} bytes not in "
                f"1..{MAX_METADATA_BYTES}"
            )
        self._info = bytes(info_bytes)

    @property
    def metadata_size(self) -> int:
        """What to advertise as ``metadata_size``."""
        return len(self._info)

    def handle_request(self, piece: int) -> bytes:
        """The payload answering a request: data, or reject if out of range.

        Raises:
            LocalPeerProtocolError: ``piece`` is negative (parsing never
                yields one).
        """
        _check_piece(piece)
        size = len(self._info)
        if piece >= metadata_piece_count(size):
            return encode_metadata_reject(piece)
        start = piece * METADATA_PIECE_BYTES
        data = self._info[start : start + METADATA_PIECE_BYTES]
        return encode_metadata_data(piece, size, data)
