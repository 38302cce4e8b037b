"""Chord ring: id arithmetic, message codec, and junk that must never crash."""

from __future__ import annotations

import random

import bencodepy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dht.core.chord.config import ChordConfig, chord_testing_config
from dht.core.chord.events import SendDatagram
from dht.core.chord.messages import (
    AnnouncePeer,
    ChordPeer,
    ErrorMessage,
    FindSuccessor,
    GetNeighbors,
    GetPeers,
    Leave,
    Notify,
    Ping,
    Response,
    Store,
    StoredItem,
    decode_message,
    encode_message,
)
from dht.core.chord.node import ChordCore
from dht.core.chord.ring import (
    ChordRing,
    between,
    between_right,
    finger_start,
    key_id,
    peer_id_for,
)
from dht.core.compact import PeerAddr
from dht.errors import BadQuery, LocalKrpcError, RemoteKrpcError

A = PeerAddr("127.0.0.1", 6881)
P1 = ChordPeer(id=12, addr=PeerAddr("127.0.0.1", 7001))
P2 = ChordPeer(id=13, addr=PeerAddr("127.0.0.1", 7002))


@pytest.mark.parametrize(
    ("x", "a", "b", "open_", "half"),
    [
        (5, 1, 10, True, True),
        (10, 1, 10, False, True),
        (1, 1, 10, False, False),
        (62, 60, 1, True, True),  # wraps past zero
        (0, 60, 1, True, True),
        (1, 60, 1, False, True),
        (30, 60, 1, False, False),
        (7, 7, 7, False, True),  # (a, a] is the whole circle
        (8, 7, 7, True, True),
    ],
)
def test_chord_interval_arithmetic(
    x: int, a: int, b: int, open_: bool, half: bool
) -> None:
    assert between(x, a, b) is open_
    assert between_right(x, a, b) is half


def test_chord_finger_starts_and_key_ids() -> None:
    assert [finger_start(1, i, 6) for i in range(1, 7)] == [2, 3, 5, 9, 17, 33]
    assert finger_start(60, 3, 6) == 0  # wraps mod 64
    assert key_id(b"\xff" * 20, 6) == 63
    assert key_id(b"\x00" * 19 + b"\x41", 160) == 0x41
    assert 0 <= peer_id_for("127.0.0.1:6881", 6) < 64
    with pytest.raises(LocalKrpcError):
        key_id(b"x" * 20, 0)


def test_chord_ring_model_worked_example_fingers_and_path() -> None:
    ring = ChordRing([1, 12, 13, 25, 32, 40, 48, 60], m=6)
    assert ring.fingers(1) == (12, 12, 12, 12, 25, 40)
    assert ring.successors(60) == (1, 12)
    path = ring.lookup(1, 51)
    assert path.owner == 60
    assert path.visited == (1, 40, 48)
    assert path.hops == 2
    assert ring.lookup(60, 59).hops == 0  # 60 owns 59 itself


MESSAGES = [
    Ping(transaction_id=b"aa", sender_id=1),
    GetNeighbors(transaction_id=b"ab", sender_id=2),
    Notify(transaction_id=b"ac", sender_id=3),
    FindSuccessor(transaction_id=b"ad", sender_id=4, target=51),
    GetPeers(transaction_id=b"ae", sender_id=5, info_hash=b"i" * 20),
    AnnouncePeer(transaction_id=b"af", sender_id=6, info_hash=b"i" * 20, port=6881),
    Store(
        transaction_id=b"ag",
        sender_id=7,
        items=(StoredItem(info_hash=b"i" * 20, peer=A, ttl_s=600),),
    ),
    Leave(transaction_id=b"ah", sender_id=8, predecessor=P1, successors=(P2,)),
    Leave(transaction_id=b"ai", sender_id=8, predecessor=None, successors=()),
    Response(
        transaction_id=b"ba",
        sender_id=9,
        predecessor=P1,
        successors=(P1, P2),
        found=True,
    ),
    Response(transaction_id=b"bb", sender_id=9, nodes=(P2,), values=(A,)),
    ErrorMessage(transaction_id=b"ca", code=203, message="bad"),
]


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: type(m).__name__)
def test_chord_messages_round_trip(msg: object) -> None:
    data = encode_message(msg, b"BS\x00\x01")  # type: ignore[arg-type]
    assert decode_message(data, 6) == msg


def test_chord_find_successor_exact_bytes() -> None:
    msg = FindSuccessor(transaction_id=b"aa", sender_id=1, target=51)
    assert encode_message(msg) == (
        b"d1:ad2:id20:"
        + (1).to_bytes(20, "big")
        + b"6:target20:"
        + (51).to_bytes(20, "big")
        + b"e1:q14:find_successor1:t2:aa1:y1:qe"
    )


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({b"t": b"x", b"y": b"q", b"q": b"nope", b"a": {b"id": b"\0" * 20}}, 204),
        ({b"t": b"x", b"y": b"q", b"q": b"ping", b"a": {b"id": b"short"}}, 203),
        ({b"t": b"x", b"y": b"q", b"q": b"ping", b"a": {b"id": b"\xff" * 20}}, 203),
        (
            {
                b"t": b"x",
                b"y": b"q",
                b"q": b"announce_peer",
                b"a": {b"id": b"\0" * 20, b"info_hash": b"i" * 20, b"port": 0},
            },
            203,
        ),
        (
            {
                b"t": b"x",
                b"y": b"q",
                b"q": b"store",
                b"a": {b"id": b"\0" * 20, b"items": [[b"i" * 20, b"123456", -1]]},
            },
            203,
        ),
    ],
)
def test_chord_bad_queries_are_answerable(
    payload: dict[bytes, object], code: int
) -> None:
    with pytest.raises(BadQuery) as info:
        decode_message(bencodepy.encode(payload), 6)  # id 0xff.. is outside 2^6
    assert info.value.code == code
    assert info.value.transaction_id == b"x"


@pytest.mark.parametrize(
    "data",
    [b"", b"garbage", b"le", b"d1:t1:x1:y1:ze", b"i3e", b"d1:y1:re", b"d" * 5000],
)
def test_chord_junk_is_a_remote_error(data: bytes) -> None:
    with pytest.raises(RemoteKrpcError):
        decode_message(data, 160)


def _core(node_id: int = 1, m: int = 6) -> ChordCore:
    return ChordCore(node_id, A, random.Random(1), chord_testing_config(m=m))


def test_chord_core_answers_bad_query_with_error_and_drops_junk() -> None:
    core = _core()
    bad = bencodepy.encode(
        {b"t": b"x", b"y": b"q", b"q": b"nope", b"a": {b"id": b"\0" * 20}}
    )
    out = core.handle_datagram(bad, PeerAddr("127.0.0.1", 9), 0.0)
    sends = [o for o in out if isinstance(o, SendDatagram)]
    assert len(sends) == 1
    assert decode_message(sends[0].payload, 6) == ErrorMessage(
        transaction_id=b"x", code=204, message="chord: method b'nope' is unknown"
    )
    assert core.handle_datagram(b"\xff\x00junk", PeerAddr("127.0.0.1", 9), 0.0) == []
    # an answer to a query we never sent is dropped
    stray = encode_message(Response(transaction_id=b"zz", sender_id=3))
    assert core.handle_datagram(stray, PeerAddr("127.0.0.1", 9), 0.0) == []
    assert core.statistics().dropped_in == 3


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_chord_core_never_raises_on_any_bytes(data: bytes) -> None:
    core = _core()
    core.handle_datagram(data, PeerAddr("127.0.0.1", 9), 0.0)
    core.tick(1.0)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([b"t", b"y", b"q", b"a", b"r", b"e"]),
        st.one_of(
            st.binary(max_size=30),
            st.integers(-5, 70000),
            st.sampled_from([b"q", b"r", b"e", b"ping", b"store", b"find_successor"]),
            st.dictionaries(
                st.sampled_from(
                    [
                        b"id",
                        b"target",
                        b"info_hash",
                        b"port",
                        b"items",
                        b"succ",
                        b"pred",
                        b"nodes",
                        b"values",
                        b"found",
                    ]
                ),
                st.one_of(
                    st.binary(max_size=60),
                    st.integers(-5, 70000),
                    st.lists(st.binary(max_size=26), max_size=3),
                ),
            ),
        ),
    )
)
def test_chord_core_never_raises_on_krpc_shaped_input(top: dict[bytes, object]) -> None:
    core = _core()
    core.handle_datagram(bencodepy.encode(top), PeerAddr("127.0.0.1", 9), 0.0)


def test_chord_core_lone_peer_owns_everything() -> None:
    core = _core(5)
    _, out = core.start_lookup(40, 0.0)
    assert out[-1].owner.id == 5  # type: ignore[union-attr]
    assert out[-1].hops == 0  # type: ignore[union-attr]


def test_chord_config_and_starters_validate() -> None:
    with pytest.raises(LocalKrpcError):
        ChordConfig(m=0)
    with pytest.raises(LocalKrpcError):
        ChordConfig(successors=0)
    with pytest.raises(LocalKrpcError):
        ChordCore(64, A, random.Random(), chord_testing_config(m=6))
    core = _core()
    with pytest.raises(LocalKrpcError):
        core.start_lookup(64, 0.0)
    with pytest.raises(LocalKrpcError):
        core.start_get_peers(b"short", 0.0)
    with pytest.raises(LocalKrpcError):
        core.start_announce(b"i" * 20, 0, 0.0)
