"""Hostile input against pure cores, found while writing issue 8's hostile
peer tests."""

from __future__ import annotations

import random

import pytest

from client.core import wire
from client.core.bitfield import Bitfield
from client.core.picker import PiecePicker
from client.errors import RemotePeerProtocolError


def test_issue_8_block_from_a_peer_that_did_not_request_it_is_refused() -> None:
    picker = PiecePicker(2, 32768, 65536, rng=random.Random(1))
    have = Bitfield(2)
    have.set(0)
    have.set(1)
    picker.peer_bitfield("honest", have)
    picker.peer_bitfield("hostile", have)
    (req,) = picker.pick("honest", have, 1)
    outcome = picker.block_received("hostile", req.index, req.begin, req.length)
    assert not outcome.accepted
    assert not outcome.duplicate  # counted against the hostile peer
    # The honest peer's request still stands and its block is taken.
    assert picker.block_received("honest", req.index, req.begin, req.length).accepted


@pytest.mark.parametrize(
    "msg",
    [
        wire.Have(index=5),
        wire.Request(index=0xFFFFFFFF, begin=0, length=16384),
        wire.Cancel(index=5, begin=0, length=16384),
        wire.Piece(index=7, begin=0, block=b"x"),
        wire.Bitfield(data=b"\xf8\x00"),  # one byte too many
        wire.Bitfield(data=b"\xfc"),  # a spare bit set
    ],
)
def test_issue_8_check_message_range_checks_messages_parsed_early(
    msg: wire.PeerMessage,
) -> None:
    # What arrives with an incoming handshake is parsed before the torrent
    # (so its piece count) is known; check_message is the late check.
    core = wire.PeerWire()
    hs = wire.encode_handshake(b"\x01" * 20, b"\x02" * 20, wire.make_reserved())
    events = core.receive_data(hs + wire.encode(msg))
    assert len(events) == 2  # nothing refused it yet
    with pytest.raises(RemotePeerProtocolError, match=r"out of range|bitfield"):
        wire.check_message(events[1], 5)


@pytest.mark.parametrize(
    "msg",
    [
        wire.Have(index=4),
        wire.Bitfield(data=b"\xf8"),
        wire.Request(index=4, begin=0, length=16384),
        wire.Unchoke(),
        wire.Extended(ext_id=0, payload=b"de"),
    ],
)
def test_check_message_passes_legal_messages(msg: wire.PeerMessage) -> None:
    wire.check_message(msg, 5)


HANG = b"d1:a1:b-6:e"  # a key of length -6 walks bencode.py back to "1:b"


def _dht_core(data: bytes) -> None:
    from dht.core import config as dht_config
    from dht.core.compact import PeerAddr
    from dht.core.mainline import DhtCore

    core = DhtCore(b"\x01" * 20, random.Random(1), dht_config.testing_config())
    assert core.handle_datagram(data, PeerAddr("127.0.0.2", 6881), 0.0) == []


def _chord_core(data: bytes) -> None:
    from dht.core.chord.config import chord_testing_config
    from dht.core.chord.node import ChordCore
    from dht.core.compact import PeerAddr

    core = ChordCore(
        1, PeerAddr("127.0.0.1", 1), random.Random(1), chord_testing_config()
    )
    assert core.handle_datagram(data, PeerAddr("127.0.0.2", 6881), 0.0) == []


def _krpc(data: bytes) -> None:
    from dht.core.krpc import decode_message
    from dht.errors import RemoteKrpcError

    with pytest.raises(RemoteKrpcError, match="bad string length"):
        decode_message(data)


def _chord_messages(data: bytes) -> None:
    from dht.core.chord.messages import decode_message
    from dht.errors import RemoteKrpcError

    with pytest.raises(RemoteKrpcError, match="bad string length"):
        decode_message(data, 160)


def _announce_response(data: bytes) -> None:
    from client.core.announce import parse_announce_response
    from client.errors import TrackerFailure

    with pytest.raises(TrackerFailure, match="bad string length"):
        parse_announce_response(data)


def _scrape_response(data: bytes) -> None:
    from client.core.announce import parse_scrape_response
    from client.errors import TrackerFailure

    with pytest.raises(TrackerFailure, match="bad string length"):
        parse_scrape_response(data)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "parse",
    [
        _krpc,
        _chord_messages,
        _dht_core,
        _chord_core,
        _announce_response,
        _scrape_response,
    ],
)
def test_issue_8_negative_bencode_key_length_never_hangs(parse: object) -> None:
    # Found by the tracker_response fuzz target (a libFuzzer timeout):
    # bencode.py decodes a dictionary key's length with int(), and a negative
    # one moves its read position backwards, forever. One UDP datagram would
    # have hung a DHT node, one response a tracker client.
    assert callable(parse)
    parse(HANG)
