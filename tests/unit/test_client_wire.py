"""Peer wire framing (BEP 3): exact bytes both ways, chunking, hostile input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core import wire
from client.errors import LocalPeerProtocolError, RemotePeerProtocolError

INFO_HASH = bytes(range(20))
PEER_ID = b"-BS0100-abcdefghijkl"
RESERVED = wire.make_reserved(extension=True, dht=True)
HANDSHAKE = wire.encode_handshake(INFO_HASH, PEER_ID, RESERVED)

# (message, exact bytes on the wire)
CASES: list[tuple[wire.PeerMessage, bytes]] = [
    (wire.KeepAlive(), b"\0\0\0\0"),
    (wire.Choke(), b"\0\0\0\x01\x00"),
    (wire.Unchoke(), b"\0\0\0\x01\x01"),
    (wire.Interested(), b"\0\0\0\x01\x02"),
    (wire.NotInterested(), b"\0\0\0\x01\x03"),
    (wire.Have(index=258), b"\0\0\0\x05\x04\0\0\x01\x02"),
    (wire.Bitfield(data=b"\xff\xc0"), b"\0\0\0\x03\x05\xff\xc0"),
    (
        wire.Request(index=1, begin=16384, length=16384),
        b"\0\0\0\x0d\x06\0\0\0\x01\0\0\x40\0\0\0\x40\0",
    ),
    (
        wire.Cancel(index=1, begin=16384, length=16384),
        b"\0\0\0\x0d\x08\0\0\0\x01\0\0\x40\0\0\0\x40\0",
    ),
    (
        wire.Piece(index=2, begin=0, block=b"abc"),
        b"\0\0\0\x0c\x07\0\0\0\x02\0\0\0\0abc",
    ),
    (wire.Port(port=6881), b"\0\0\0\x03\x09\x1a\xe1"),
    (wire.Extended(ext_id=0, payload=b"de"), b"\0\0\0\x04\x14\x00de"),
]


def _normal(events: list[object]) -> list[object]:
    out = []
    for e in events:
        if isinstance(e, wire.Piece):
            e = wire.Piece(index=e.index, begin=e.begin, block=bytes(e.block))
        out.append(e)
    return out


def test_handshake_bytes_and_flags() -> None:
    assert len(HANDSHAKE) == 68
    assert HANDSHAKE[:20] == b"\x13BitTorrent protocol"
    core = wire.PeerWire()
    [hs] = core.receive_data(HANDSHAKE)
    assert isinstance(hs, wire.HandshakeReceived)
    assert (hs.info_hash, hs.peer_id) == (INFO_HASH, PEER_ID)
    assert hs.supports_extensions
    assert hs.supports_dht
    plain = wire.PeerWire()
    [hs2] = plain.receive_data(wire.encode_handshake(INFO_HASH, PEER_ID, bytes(8)))
    assert isinstance(hs2, wire.HandshakeReceived)
    assert not hs2.supports_extensions
    assert not hs2.supports_dht


@pytest.mark.parametrize(
    ("msg", "data"), CASES, ids=[type(m).__name__ for m, _ in CASES]
)
def test_message_table_both_ways(msg: wire.PeerMessage, data: bytes) -> None:
    assert wire.encode(msg) == data
    core = wire.PeerWire()
    core.receive_data(HANDSHAKE)
    assert _normal(core.receive_data(data)) == [msg]


def test_whole_stream_equals_byte_by_byte() -> None:
    stream = HANDSHAKE + b"".join(data for _, data in CASES)
    whole = _normal(wire.PeerWire().receive_data(stream))
    core = wire.PeerWire()
    one: list[object] = []
    for i in range(len(stream)):
        one.extend(_normal(core.receive_data(stream[i : i + 1])))
    assert whole == one
    assert len(whole) == 1 + len(CASES)


def test_length_cap_closes_connection() -> None:
    core = wire.PeerWire()
    core.receive_data(HANDSHAKE)
    with pytest.raises(RemotePeerProtocolError, match="exceeds the 131085-byte cap"):
        core.receive_data(b"\xff\xff\xff\xff")
    assert core.state is wire.WireState.ERROR
    with pytest.raises(LocalPeerProtocolError):
        core.receive_data(b"\0\0\0\0")


def test_bad_handshake_refused() -> None:
    with pytest.raises(RemotePeerProtocolError, match="not 19"):
        wire.PeerWire().receive_data(b"\x05hello")
    with pytest.raises(RemotePeerProtocolError, match="BitTorrent protocol"):
        wire.PeerWire().receive_data(b"\x13BitTorrent protocoX" + bytes(48))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\0\0\0\x05\x04\0\0\0\x09", "have 9 out of range"),
        (b"\0\0\0\x02\x05\xff", "bitfield is 1 bytes, not 2"),
        (b"\0\0\0\x03\x05\xff\xff", "spare bits set"),
        (b"\0\0\0\x02\x00\x00", "payload"),
        (b"\0\0\0\x0d\x06\0\0\0\x0a\0\0\0\0\0\0\x40\0", "out of range"),
        (b"\0\0\0\x02\x09\x01", "port message"),
    ],
)
def test_hostile_messages_with_known_piece_count(data: bytes, fragment: str) -> None:
    core = wire.PeerWire(num_pieces=9)
    core.receive_data(HANDSHAKE)
    with pytest.raises(RemotePeerProtocolError, match=fragment):
        core.receive_data(data)


def test_unknown_message_id_is_ignored() -> None:
    core = wire.PeerWire()
    core.receive_data(HANDSHAKE)
    events = core.receive_data(b"\0\0\0\x02\x0d\x00" + wire.encode(wire.Choke()))
    assert events[-1] == wire.Choke()


def test_block_sink_receives_partial_block_in_place() -> None:
    """A piece message split across reads lands in the sink's buffer."""
    dest = bytearray(16384)
    calls: list[tuple[int, int, int]] = []

    def sink(index: int, begin: int, length: int) -> memoryview:
        calls.append((index, begin, length))
        return memoryview(dest)

    core = wire.PeerWire()
    core.set_block_sink(sink)
    core.receive_data(HANDSHAKE)
    block = bytes(range(256)) * 64
    data = wire.encode(wire.Piece(index=3, begin=16384, block=block))
    first = data[:100]
    assert core.receive_data(first) == []
    assert calls == [(3, 16384, 16384)]
    events: list[object] = []
    # the rest goes straight into dest through get_buffer/buffer_updated
    rest = memoryview(data)[100:]
    while rest:
        buf = core.get_buffer()
        n = min(len(buf), len(rest), 5000)
        buf[:n] = rest[:n]
        rest = rest[n:]
        events.extend(core.buffer_updated(n))
    [piece] = events
    assert isinstance(piece, wire.Piece)
    assert piece.in_place
    assert bytes(dest) == block
    # and the stream continues normally afterwards
    assert core.receive_data(wire.encode(wire.Unchoke())) == [wire.Unchoke()]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=50))
def test_arbitrary_bytes_raise_only_remote_errors(data: bytes, chunk: int) -> None:
    core = wire.PeerWire(num_pieces=10)
    try:
        core.receive_data(HANDSHAKE)
        for i in range(0, len(data), chunk):
            core.receive_data(data[i : i + chunk])
    except RemotePeerProtocolError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_handshake_bytes(data: bytes) -> None:
    with contextlib.suppress(RemotePeerProtocolError):
        wire.PeerWire().receive_data(data)


def test_encode_requests_equals_one_request_each() -> None:
    reqs = [
        wire.Request(index=0, begin=0, length=16384),
        wire.Request(index=7, begin=245760, length=1000),
    ]
    assert wire.encode_requests(reqs) == b"".join(wire.encode(r) for r in reqs)
    assert wire.encode_requests([]) == b""
