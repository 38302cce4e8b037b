"""KRPC messages (BEP 5): a table of exact bytes checked both ways, and junk."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dht.core.compact import PeerAddr, decode_peer
from dht.core.distance import NodeId
from dht.core.krpc import (
    MAX_DATAGRAM_BYTES,
    AnnouncePeer,
    ErrorCode,
    ErrorMessage,
    FindNode,
    GetPeers,
    KrpcMessage,
    Ping,
    Response,
    decode_message,
    encode_message,
)
from dht.errors import BadQuery, RemoteKrpcError

A = NodeId(b"abcdefghij0123456789")  # the ids of BEP 5's examples
M = NodeId(b"mnopqrstuvwxyz123456")

# (message, exact bytes): BEP 5's own examples, plus our extras.
CASES: list[tuple[KrpcMessage, bytes]] = [
    (
        Ping(transaction_id=b"aa", sender_id=A),
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe",
    ),
    (
        Response(transaction_id=b"aa", sender_id=M),
        b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re",
    ),
    (
        FindNode(transaction_id=b"aa", sender_id=A, target=M),
        b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e"
        b"1:q9:find_node1:t2:aa1:y1:qe",
    ),
    (
        GetPeers(transaction_id=b"aa", sender_id=A, info_hash=M),
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e"
        b"1:q9:get_peers1:t2:aa1:y1:qe",
    ),
    (
        Response(
            transaction_id=b"aa",
            sender_id=A,
            token=b"aoeusnth",
            values=(
                decode_peer(b"axje.u"),
                decode_peer(b"idhtnm"),
            ),
        ),
        b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnmee"
        b"1:t2:aa1:y1:re",
    ),
    (
        AnnouncePeer(
            transaction_id=b"aa",
            sender_id=A,
            info_hash=M,
            port=6881,
            token=b"aoeusnth",
            implied_port=True,
        ),
        b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:"
        b"mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer"
        b"1:t2:aa1:y1:qe",
    ),
    (
        ErrorMessage(transaction_id=b"aa", code=201, message="A Generic Error Ocurred"),
        b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee",
    ),
    (
        Response(
            transaction_id=b"\x01\x02",
            sender_id=A,
            nodes=((M, PeerAddr("127.0.0.1", 6881)),),
            version=b"BS\x00\x01",
        ),
        b"d1:rd2:id20:abcdefghij01234567895:nodes26:mnopqrstuvwxyz123456\x7f\x00\x00\x01"
        b"\x1a\xe1e1:t2:\x01\x021:v4:BS\x00\x011:y1:re",
    ),
    (
        Ping(transaction_id=b"zz", sender_id=A, read_only=True),
        b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping2:roi1e1:t2:zz1:y1:qe",
    ),
]


@pytest.mark.parametrize(("msg", "wire"), CASES)
def test_dht_krpc_table_both_ways(msg: KrpcMessage, wire: bytes) -> None:
    assert encode_message(msg) == wire
    assert decode_message(wire) == msg


def test_dht_krpc_tolerates_unknown_keys_and_ip_field() -> None:
    wire = (
        b"d2:ip6:\x7f\x00\x00\x01\x1a\xe11:rd2:id20:mnopqrstuvwxyz1234566:nodes6"
        b"0:5:extrai3ee1:t2:aa1:v4:LT\x01\x001:y1:re"
    )
    msg = decode_message(wire)
    assert isinstance(msg, Response)
    assert msg.version == b"LT\x01\x00"


BAD_QUERIES = [
    # (wire, code)
    (b"d1:ad2:id20:abcdefghij0123456789e1:q4:pong1:t2:aa1:y1:qe", 204),
    (b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe", 203),
    (b"d1:ad2:idi5ee1:q4:ping1:t2:aa1:y1:qe", 203),
    (b"d1:a3:xyz1:q4:ping1:t2:aa1:y1:qe", 203),
    (b"d1:ad2:id20:abcdefghij0123456789e1:q9:find_node1:t2:aa1:y1:qe", 203),
    (
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:port"
        b"i70000e5:token2:xxe1:q13:announce_peer1:t2:aa1:y1:qe",
        203,
    ),
    (
        b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz1234564:port"
        b"i6881ee1:q13:announce_peer1:t2:aa1:y1:qe",
        203,
    ),
]


@pytest.mark.parametrize(("wire", "code"), BAD_QUERIES)
def test_dht_krpc_bad_queries_raise_bad_query(wire: bytes, code: int) -> None:
    with pytest.raises(BadQuery) as info:
        decode_message(wire)
    assert info.value.code == code
    assert info.value.transaction_id == b"aa"


JUNK = [
    b"",
    b"\x00\xff",
    b"i42e",
    b"le",
    b"d1:t2:aae",  # no 'y'
    b"d1:ti5e1:y1:qe",  # 't' not a string
    b"d1:t2:aa1:y1:xe",
    b"d1:rle1:t2:aa1:y1:re",
    b"d1:rd2:id20:mnopqrstuvwxyz1234565:nodes5:shorte1:t2:aa1:y1:re",
    b"d1:rd2:id20:mnopqrstuvwxyz1234566:valuesl3:abcee1:t2:aa1:y1:re",
    b"d1:ei201e1:t2:aa1:y1:ee",
    b"d1:t40:" + b"x" * 40 + b"1:y1:qe",
    b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:q",  # truncated
    b"l" * 500 + b"e" * 500,
]


@pytest.mark.parametrize("wire", JUNK)
def test_dht_krpc_junk_raises_remote_error(wire: bytes) -> None:
    with pytest.raises(RemoteKrpcError):
        decode_message(wire)


def test_dht_krpc_oversized_datagram_rejected_before_decoding() -> None:
    wire = (
        b"d1:t2:aa1:y1:r1:rd2:id20:mnopqrstuvwxyz1234565:token3000:"
        + b"x" * 3000
        + b"ee"
    )
    assert len(wire) > MAX_DATAGRAM_BYTES
    with pytest.raises(RemoteKrpcError, match="cap"):
        decode_message(wire)


@given(st.binary(max_size=300))
def test_dht_krpc_decode_only_raises_remote_errors(data: bytes) -> None:
    with contextlib.suppress(RemoteKrpcError):
        decode_message(data)


@given(
    st.binary(min_size=0, max_size=8),
    st.binary(min_size=20, max_size=20),
    st.binary(min_size=20, max_size=20),
)
def test_dht_krpc_round_trip(tid: bytes, a: bytes, b: bytes) -> None:
    for msg in (
        Ping(transaction_id=tid, sender_id=NodeId(a)),
        FindNode(transaction_id=tid, sender_id=NodeId(a), target=NodeId(b)),
        GetPeers(transaction_id=tid, sender_id=NodeId(a), info_hash=NodeId(b)),
        Response(
            transaction_id=tid,
            sender_id=NodeId(a),
            token=b,
            nodes=((NodeId(b), PeerAddr("10.0.0.1", 1)),),
        ),
    ):
        assert decode_message(encode_message(msg)) == msg


def test_dht_krpc_error_code_enum_encodes_as_plain_int() -> None:
    # bencode.py cannot encode IntEnum members; found by the core's junk tests.
    msg = ErrorMessage(transaction_id=b"aa", code=ErrorCode.METHOD_UNKNOWN, message="x")
    assert encode_message(msg) == b"d1:eli204e1:xe1:t2:aa1:y1:ee"
