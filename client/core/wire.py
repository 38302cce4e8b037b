"""The peer wire protocol (BEP 3), with BEP 5's ``port`` and BEP 10's
``extended`` message, as a sans-I/O stream core.

Theory of operation
-------------------
A connection starts in ``AWAIT_HANDSHAKE``: the first 68 bytes must be the
BEP 3 handshake (pstrlen 19, ``BitTorrent protocol``, 8 reserved bytes,
info_hash, peer_id). Then it is ``OPEN``: length-prefixed messages follow
until the peer closes (``CLOSED``) or sends something illegal (``ERROR``;
every later call raises and the driver closes the socket).

Receiving is built for ``asyncio.BufferedProtocol``: the core owns one fixed
receive buffer, :meth:`PeerWire.get_buffer` hands out its free tail and
:meth:`PeerWire.buffer_updated` parses what landed there, by offset, without
slicing bytes objects. Complete ``piece`` messages surface as a
:class:`Piece` whose ``block`` is a memoryview into that buffer, valid until
the next call; the driver copies it into the piece's preallocated buffer
(one memcpy, no bytes objects). When a ``piece`` message is only partly
received, the core asks the driver's *block sink* where the block belongs;
the rest of the payload is then received straight into that destination
(``get_buffer`` returns it), and the event carries ``in_place=True``. This
keeps large partial payloads out of the receive buffer (no compaction
copies) while a read that brings many whole blocks costs one syscall.
The alternative, offering the kernel only up to the next header so every
block lands in place, costs two Python callbacks and a syscall per block,
which at loopback rates is dearer than one memcpy.

Deliberately left out: the fast extension (BEP 6), not advertised.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from client.errors import LocalPeerProtocolError, RemotePeerProtocolError

__all__ = [
    "BLOCK_SIZE_CAP",
    "HANDSHAKE_BYTES",
    "MAX_MESSAGE_BYTES",
    "RESERVED_DHT",
    "RESERVED_EXTENSION",
    "Bitfield",
    "BlockSink",
    "BlockTriple",
    "Cancel",
    "Choke",
    "Extended",
    "HandshakeReceived",
    "Have",
    "Interested",
    "KeepAlive",
    "MessageId",
    "NotInterested",
    "PeerMessage",
    "PeerWire",
    "Piece",
    "Port",
    "Request",
    "Unchoke",
    "WireEvent",
    "WireState",
    "check_message",
    "encode",
    "encode_handshake",
    "encode_piece_header",
    "encode_requests",
    "make_reserved",
]

PROTOCOL_NAME = b"BitTorrent protocol"
HANDSHAKE_BYTES = 68  # 1 + 19 + 8 reserved + 20 info_hash + 20 peer_id (BEP 3)
# Largest block we send or accept. 16 KiB is what everyone requests; 128 KiB is
# the conventional ceiling clients accept (libtorrent, Transmission).
BLOCK_SIZE_CAP = 131072
# A message longer than this closes the connection: a piece message with the
# largest block (9-byte header + 4-byte begin... i.e. 1 id + 4 index + 4 begin)
# fits exactly. A bitfield for up to 1,048,576 pieces fits too.
MAX_MESSAGE_BYTES = BLOCK_SIZE_CAP + 13
# Receive buffer: room for two largest messages, so a whole one always fits
# after the partial one before it is moved to the front.
RECEIVE_BUFFER_BYTES = 2 * (MAX_MESSAGE_BYTES + 4)

# Reserved-byte flags (BEP 10: byte 5 bit 0x10; BEP 5: byte 7 bit 0x01).
RESERVED_EXTENSION = (5, 0x10)
RESERVED_DHT = (7, 0x01)


def make_reserved(*, extension: bool = True, dht: bool = False) -> bytes:
    """The 8 reserved handshake bytes advertising what we implement."""
    out = bytearray(8)
    if extension:
        out[RESERVED_EXTENSION[0]] |= RESERVED_EXTENSION[1]
    if dht:
        out[RESERVED_DHT[0]] |= RESERVED_DHT[1]
    return bytes(out)


class MessageId(enum.IntEnum):
    CHOKE = 0
    UNCHOKE = 1
    INTERESTED = 2
    NOT_INTERESTED = 3
    HAVE = 4
    BITFIELD = 5
    REQUEST = 6
    PIECE = 7
    CANCEL = 8
    PORT = 9  # BEP 5
    EXTENDED = 20  # BEP 10


class WireState(enum.Enum):
    AWAIT_HANDSHAKE = enum.auto()  #: waiting for the peer's 68-byte handshake
    OPEN = enum.auto()  #: handshake done; messages flow
    CLOSED = enum.auto()  #: the peer closed the connection cleanly
    ERROR = enum.auto()  #: the peer sent something illegal; close


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeReceived:
    reserved: bytes
    info_hash: bytes
    peer_id: bytes

    @property
    def supports_extensions(self) -> bool:
        byte, bit = RESERVED_EXTENSION
        return bool(self.reserved[byte] & bit)

    @property
    def supports_dht(self) -> bool:
        byte, bit = RESERVED_DHT
        return bool(self.reserved[byte] & bit)


@dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlive:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Choke:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Unchoke:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Interested:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class NotInterested:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Have:
    index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Bitfield:
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel:
    index: int
    begin: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Piece:
    """A block. On receive ``block`` is a view valid until the next call into
    the core (the one exception to copied messages, shared STYLE.md 6); with
    ``in_place`` it is already in the destination the block sink gave."""

    index: int
    begin: int
    block: bytes | memoryview
    in_place: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Port:
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Extended:
    ext_id: int
    payload: bytes


PeerMessage = (
    KeepAlive
    | Choke
    | Unchoke
    | Interested
    | NotInterested
    | Have
    | Bitfield
    | Request
    | Piece
    | Cancel
    | Port
    | Extended
)
WireEvent = HandshakeReceived | PeerMessage

#: ``sink(index, begin, length)`` returns a writable view of exactly ``length``
#: bytes where that block belongs, or None to receive it the ordinary way.
BlockSink = Callable[[int, int, int], memoryview | None]

_U32 = struct.Struct(">I")
_HAVE = struct.Struct(">IBI")
_TRIPLE = struct.Struct(">IBIII")
_PIECE_HEADER = struct.Struct(">IBII")
_INDEX_BEGIN = struct.Struct(">II")
_INDEX_BEGIN_LENGTH = struct.Struct(">III")
_PORT = struct.Struct(">IBH")
_SIMPLE = {
    Choke: MessageId.CHOKE,
    Unchoke: MessageId.UNCHOKE,
    Interested: MessageId.INTERESTED,
    NotInterested: MessageId.NOT_INTERESTED,
}
_SIMPLE_BYTES = {cls: _U32.pack(1) + bytes([mid]) for cls, mid in _SIMPLE.items()}
_SIMPLE_EVENTS: dict[int, PeerMessage] = {
    MessageId.CHOKE: Choke(),
    MessageId.UNCHOKE: Unchoke(),
    MessageId.INTERESTED: Interested(),
    MessageId.NOT_INTERESTED: NotInterested(),
}
_KEEPALIVE = KeepAlive()


def encode_handshake(info_hash: bytes, peer_id: bytes, reserved: bytes) -> bytes:
    """The 68-byte BEP 3 handshake.

    Raises:
        LocalPeerProtocolError: on wrong-length arguments.
    """
    if len(info_hash) != 20 or len(peer_id) != 20 or len(reserved) != 8:
        raise LocalPeerProtocolError("wire: handshake fields have the wrong length")
    return bytes([len(PROTOCOL_NAME)]) + PROTOCOL_NAME + reserved + info_hash + peer_id


def encode_piece_header(index: int, begin: int, length: int) -> bytes:
    """The 13 bytes before a block's data (the driver sends the data after it,
    straight from its cache, so blocks are never concatenated)."""
    return _PIECE_HEADER.pack(9 + length, MessageId.PIECE, index, begin)


class BlockTriple(Protocol):
    """Anything naming a block: a :class:`Request`, the picker's requests."""

    @property
    def index(self) -> int: ...
    @property
    def begin(self) -> int: ...
    @property
    def length(self) -> int: ...


def encode_requests(reqs: Iterable[BlockTriple]) -> bytes:
    """``request`` messages for ``reqs``, in one bytes object (the same
    bytes as encoding a :class:`Request` for each)."""
    pack = _TRIPLE.pack
    rid = MessageId.REQUEST.value
    return b"".join([pack(13, rid, r.index, r.begin, r.length) for r in reqs])


def encode(msg: PeerMessage) -> bytes:
    """Serialize one message.

    Raises:
        LocalPeerProtocolError: for values that don't fit the wire format.
    """
    match msg:
        case KeepAlive():
            return b"\0\0\0\0"
        case Choke() | Unchoke() | Interested() | NotInterested():
            return _SIMPLE_BYTES[type(msg)]
        case Have(index=index):
            return _HAVE.pack(5, MessageId.HAVE, index)
        case Bitfield(data=data):
            return _U32.pack(1 + len(data)) + bytes([MessageId.BITFIELD]) + data
        case Request(index=i, begin=b, length=n):
            return _TRIPLE.pack(13, MessageId.REQUEST, i, b, n)
        case Cancel(index=i, begin=b, length=n):
            return _TRIPLE.pack(13, MessageId.CANCEL, i, b, n)
        case Piece(index=i, begin=b, block=block):
            return encode_piece_header(i, b, len(block)) + bytes(block)
        case Port(port=port):
            return _PORT.pack(3, MessageId.PORT, port)
        case Extended(ext_id=ext_id, payload=payload):
            if not 0 <= ext_id <= 255:
                raise LocalPeerProtocolError(f"wire: extended id {ext_id} out of range")
            head = _U32.pack(2 + len(payload)) + bytes([MessageId.EXTENDED, ext_id])
            return head + payload
    raise LocalPeerProtocolError(f"wire: cannot encode {msg!r}")


class PeerWire:
    """Framing and parsing of one peer connection (receive side).

    Sending is stateless (:func:`encode`); the choke/interest state a session
    keeps lives with the session, because it also depends on its decisions.
    """

    def __init__(
        self,
        *,
        num_pieces: int | None = None,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
    ) -> None:
        self._buf = bytearray(max(RECEIVE_BUFFER_BYTES, 2 * (max_message_bytes + 4)))
        self._view = memoryview(self._buf)
        self._start = 0  # first unparsed byte
        self._end = 0  # end of received data
        self._max = max_message_bytes
        self._num_pieces = num_pieces
        self._state = WireState.AWAIT_HANDSHAKE
        self._sink: BlockSink | None = None
        # direct receive of a partly arrived block: (dest, filled, index, begin)
        self._direct: memoryview | None = None
        self._direct_filled = 0
        self._direct_index = 0
        self._direct_begin = 0
        self.bytes_received = 0

    # -- read-only state -------------------------------------------------------
    @property
    def state(self) -> WireState:
        return self._state

    @property
    def num_pieces(self) -> int | None:
        return self._num_pieces

    def set_num_pieces(self, n: int) -> None:
        """Known once metadata arrives (magnet links); enables range checks."""
        self._num_pieces = n

    def set_block_sink(self, sink: BlockSink | None) -> None:
        self._sink = sink

    # -- receiving -------------------------------------------------------------
    def get_buffer(self) -> memoryview:
        """Writable space for the next read (``BufferedProtocol.get_buffer``)."""
        self._check_usable()
        if self._direct is not None:
            return self._direct[self._direct_filled :]
        if self._start:
            # Move the partial message to the front; at most one message long.
            n = self._end - self._start
            self._buf[:n] = self._view[self._start : self._end]
            self._start, self._end = 0, n
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> list[WireEvent]:
        """Parse after ``nbytes`` were written into the last :meth:`get_buffer`.

        Raises:
            RemotePeerProtocolError: the peer sent something illegal.
        """
        self._check_usable()
        self.bytes_received += nbytes
        if self._direct is not None:
            self._direct_filled += nbytes
            if self._direct_filled < len(self._direct):
                return []
            event = Piece(
                index=self._direct_index,
                begin=self._direct_begin,
                block=self._direct,
                in_place=True,
            )
            self._direct = None
            return [event, *self._parse()]
        self._end += nbytes
        return self._parse()

    def receive_data(self, data: bytes) -> list[WireEvent]:
        """Feed bytes (``b""`` means the peer closed). For tests and for
        drivers that are not BufferedProtocols; copies into the buffer."""
        if not data:
            return self.connection_lost()
        events: list[WireEvent] = []
        pos = 0
        while pos < len(data):
            # Views handed out in earlier events die at the next get_buffer:
            # copy their blocks so a caller collecting all events sees them.
            events = [_detach(e) for e in events]
            buf = self.get_buffer()
            n = min(len(buf), len(data) - pos)
            buf[:n] = data[pos : pos + n]
            pos += n
            events.extend(self.buffer_updated(n))
        return events

    def connection_lost(self) -> list[WireEvent]:
        if self._state is WireState.ERROR:
            return []
        self._state = WireState.CLOSED
        return []

    # -- internals -------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._state is WireState.ERROR:
            raise LocalPeerProtocolError("wire: connection already failed")
        if self._state is WireState.CLOSED:
            raise LocalPeerProtocolError("wire: connection closed")

    def _fail(self, message: str) -> RemotePeerProtocolError:
        self._state = WireState.ERROR
        return RemotePeerProtocolError(message)

    def _parse(self) -> list[WireEvent]:
        events: list[WireEvent] = []
        buf = self._buf
        if self._state is WireState.AWAIT_HANDSHAKE:
            if self._end - self._start < 1:
                return events
            if buf[self._start] != len(PROTOCOL_NAME):
                raise self._fail(
                    f"wire: handshake protocol length {buf[self._start]}, not 19"
                )
            if self._end - self._start < HANDSHAKE_BYTES:
                got = bytes(self._view[self._start + 1 : self._end])
                if not PROTOCOL_NAME.startswith(got[: len(PROTOCOL_NAME)]):
                    raise self._fail("wire: handshake is not 'BitTorrent protocol'")
                return events
            s = self._start
            if bytes(self._view[s + 1 : s + 20]) != PROTOCOL_NAME:
                raise self._fail("wire: handshake is not 'BitTorrent protocol'")
            events.append(
                HandshakeReceived(
                    reserved=bytes(self._view[s + 20 : s + 28]),
                    info_hash=bytes(self._view[s + 28 : s + 48]),
                    peer_id=bytes(self._view[s + 48 : s + 68]),
                )
            )
            self._start += HANDSHAKE_BYTES
            self._state = WireState.OPEN
        unpack_u32 = _U32.unpack_from
        unpack_ib = _INDEX_BEGIN.unpack_from
        unpack_ibl = _INDEX_BEGIN_LENGTH.unpack_from
        view = self._view
        num_pieces = self._num_pieces
        while True:
            avail = self._end - self._start
            if avail < 4:
                break
            (length,) = unpack_u32(buf, self._start)
            if length > self._max:
                raise self._fail(
                    f"wire: message length {length} exceeds the {self._max}-byte cap"
                )
            if avail < 4 + length:
                if (
                    self._sink is not None
                    and length > 9
                    and avail >= 13
                    and buf[self._start + 4] == MessageId.PIECE
                ):
                    self._begin_direct(length, avail)
                break
            body = self._start + 4
            self._start = end = body + length
            if length == 0:
                events.append(_KEEPALIVE)
                continue
            if (
                buf[body] == MessageId.PIECE
                and 9 <= length <= BLOCK_SIZE_CAP + 9
                and num_pieces is not None
            ):
                # The common block, checked and built inline (the general
                # path below is a call and two checks more per 16 KiB).
                index, begin = unpack_ib(buf, body + 1)
                if index < num_pieces:
                    events.append(
                        Piece(index=index, begin=begin, block=view[body + 9 : end])
                    )
                    continue
            elif (
                length == 13
                and buf[body] == MessageId.REQUEST
                and num_pieces is not None
            ):
                # What a seeder receives most; inline as the block above.
                index, begin, block_len = unpack_ibl(buf, body + 1)
                if index < num_pieces:
                    events.append(Request(index=index, begin=begin, length=block_len))
                    continue
            events.append(self._message(buf[body], body + 1, length - 1))
        return events

    def _begin_direct(self, length: int, avail: int) -> None:
        s = self._start
        index, begin = struct.unpack_from(">II", self._buf, s + 5)
        block_len = length - 9
        self._check_piece(index, begin, block_len)
        assert self._sink is not None
        dest = self._sink(index, begin, block_len)
        if dest is None:
            return
        if len(dest) != block_len:
            raise LocalPeerProtocolError("wire: block sink returned the wrong size")
        have = avail - 13
        dest[:have] = self._view[s + 13 : s + 13 + have]
        self._start = self._end = 0
        self._direct = dest
        self._direct_filled = have
        self._direct_index = index
        self._direct_begin = begin

    def _check_piece(self, index: int, begin: int, block_len: int) -> None:
        if self._num_pieces is not None and index >= self._num_pieces:
            raise self._fail(
                f"wire: piece index {index} out of range ({self._num_pieces} pieces)"
            )
        if block_len > BLOCK_SIZE_CAP:
            raise self._fail(
                f"wire: block of {block_len} bytes exceeds the {BLOCK_SIZE_CAP} cap"
            )

    def _message(self, mid: int, pos: int, size: int) -> PeerMessage:
        """Parse one message body of ``size`` bytes at ``pos`` (after the id)."""
        buf = self._buf
        if mid == MessageId.PIECE:
            if size < 8:
                raise self._fail(f"wire: piece message body is {size} bytes")
            index, begin = struct.unpack_from(">II", buf, pos)
            self._check_piece(index, begin, size - 8)
            return Piece(
                index=index, begin=begin, block=self._view[pos + 8 : pos + size]
            )
        simple = _SIMPLE_EVENTS.get(mid)
        if simple is not None:
            if size:
                raise self._fail(f"wire: message {mid} has a {size}-byte payload")
            return simple
        if mid == MessageId.HAVE:
            if size != 4:
                raise self._fail(f"wire: have message is {size} bytes, not 4")
            (index,) = _U32.unpack_from(buf, pos)
            if self._num_pieces is not None and index >= self._num_pieces:
                raise self._fail(
                    f"wire: have {index} out of range ({self._num_pieces} pieces)"
                )
            return Have(index=index)
        if mid in (MessageId.REQUEST, MessageId.CANCEL):
            if size != 12:
                raise self._fail(f"wire: request/cancel is {size} bytes, not 12")
            index, begin, length = struct.unpack_from(">III", buf, pos)
            if self._num_pieces is not None and index >= self._num_pieces:
                raise self._fail(
                    f"wire: request for piece {index} out of range "
                    f"({self._num_pieces} pieces)"
                )
            cls = Request if mid == MessageId.REQUEST else Cancel
            return cls(index=index, begin=begin, length=length)
        if mid == MessageId.BITFIELD:
            data = bytes(self._view[pos : pos + size])
            if self._num_pieces is not None:
                _check_bitfield(data, self._num_pieces, self._fail)
            return Bitfield(data=data)
        if mid == MessageId.PORT:
            if size != 2:
                raise self._fail(f"wire: port message is {size} bytes, not 2")
            return Port(port=(buf[pos] << 8) | buf[pos + 1])
        if mid == MessageId.EXTENDED:
            if size < 1:
                raise self._fail("wire: extended message without an id")
            return Extended(
                ext_id=buf[pos], payload=bytes(self._view[pos + 1 : pos + size])
            )
        # BEP 3 leaves room for new ids; ignoring unknown ones keeps us
        # compatible with extensions we don't speak (e.g. BEP 6's).
        return _KEEPALIVE


def _check_bitfield(
    data: bytes, num_pieces: int, fail: Callable[[str], RemotePeerProtocolError]
) -> None:
    expected = (num_pieces + 7) // 8
    if len(data) != expected:
        raise fail(f"wire: bitfield is {len(data)} bytes, not {expected}")
    spare = expected * 8 - num_pieces
    if spare and data[-1] & ((1 << spare) - 1):
        raise fail("wire: bitfield has spare bits set")


def _detach(event: WireEvent) -> WireEvent:
    if isinstance(event, Piece) and isinstance(event.block, memoryview):
        return Piece(
            index=event.index,
            begin=event.begin,
            block=bytes(event.block),
            in_place=event.in_place,
        )
    return event


def check_message(msg: WireEvent, num_pieces: int) -> None:
    """Range-check a message parsed before the piece count was known.

    An incoming connection learns its torrent from the handshake, but the
    messages that arrived in the same read were parsed with it, unchecked;
    the driver runs them through here once it has called
    :meth:`PeerWire.set_num_pieces` (issue 8).

    Raises:
        RemotePeerProtocolError: a piece index out of range, or a bitfield
            of the wrong size or with spare bits set.
    """
    match msg:
        case Have(index=i) | Request(index=i) | Cancel(index=i) | Piece(index=i):
            if i >= num_pieces:
                raise RemotePeerProtocolError(
                    f"wire: piece index {i} out of range ({num_pieces} pieces)"
                )
        case Bitfield(data=data):
            _check_bitfield(data, num_pieces, RemotePeerProtocolError)
        case _:
            pass
