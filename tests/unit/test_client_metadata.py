"""ut_metadata (BEP 9): message bytes, the parallel assembler, the server."""

from __future__ import annotations

import contextlib
import hashlib
import random

import bencodepy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core import metadata as md
from client.errors import LocalPeerProtocolError, RemotePeerProtocolError

PIECE = md.METADATA_PIECE_BYTES

# (message, exact payload bytes)
CASES: list[tuple[md.MetadataMessage, bytes]] = [
    (md.MetadataRequest(piece=0), b"d8:msg_typei0e5:piecei0ee"),
    (md.MetadataRequest(piece=1023), b"d8:msg_typei0e5:piecei1023ee"),
    (md.MetadataReject(piece=7), b"d8:msg_typei2e5:piecei7ee"),
    (
        md.MetadataData(piece=0, total_size=3, data=b"abc"),
        b"d8:msg_typei1e5:piecei0e10:total_sizei3eeabc",
    ),
    (
        # data that itself looks like bencode must not confuse the dict's end
        md.MetadataData(piece=1, total_size=PIECE + 5, data=b"d1:ae"),
        b"d8:msg_typei1e5:piecei1e10:total_sizei16389eed1:ae",
    ),
    (
        md.MetadataData(piece=0, total_size=PIECE + 1, data=b"e" * PIECE),
        b"d8:msg_typei1e5:piecei0e10:total_sizei16385ee" + b"e" * PIECE,
    ),
]


def _encode(msg: md.MetadataMessage) -> bytes:
    match msg:
        case md.MetadataRequest(piece=piece):
            return md.encode_metadata_request(piece)
        case md.MetadataReject(piece=piece):
            return md.encode_metadata_reject(piece)
        case md.MetadataData(piece=piece, total_size=total, data=data):
            return md.encode_metadata_data(piece, total, data)
    raise AssertionError(msg)


@pytest.mark.parametrize(("msg", "payload"), CASES)
def test_messages_exact_bytes_both_ways(
    msg: md.MetadataMessage, payload: bytes
) -> None:
    assert _encode(msg) == payload
    assert md.parse_metadata_message(payload) == msg


def test_unknown_msg_type_is_ignored_not_an_error() -> None:
    assert md.parse_metadata_message(b"d8:msg_typei3e5:piecei0ee") == (
        md.MetadataUnknown(msg_type=3)
    )
    # BEP 9: ignore unrecognised types, whatever else they carry
    assert md.parse_metadata_message(b"d8:msg_typei-1eejunk") == (
        md.MetadataUnknown(msg_type=-1)
    )


def test_extra_keys_are_ignored() -> None:
    payload = b"d8:msg_typei2e5:piecei1e10:total_sizei9ee"
    assert md.parse_metadata_message(payload) == md.MetadataReject(piece=1)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"de", "'msg_type' is missing"),
        (b"d8:msg_type1:0e", "'msg_type' is missing or not an integer"),
        (b"d8:msg_typei0ee", "'piece' is missing"),
        (b"d8:msg_typei0e5:piecei-1ee", "piece -1 is negative"),
        (b"d8:msg_typei0e5:piecei0eex", "1 unexpected bytes after"),
        (b"d8:msg_typei2e5:piecei0eexy", "2 unexpected bytes after"),
        (b"d8:msg_typei1e5:piecei0ee", "'total_size' is missing"),
        (b"d8:msg_typei1e5:piecei0e10:total_sizei0eex", "total_size 0 not in"),
        (
            b"d8:msg_typei1e5:piecei0e10:total_sizei16777217eex",
            "total_size 16777217 not in 1..16777216",
        ),
        (b"d8:msg_typei1e5:piecei1e10:total_sizei3eeabc", "piece 1 out of range"),
        (b"d8:msg_typei1e5:piecei0e10:total_sizei3eeab", "carries 2 bytes, not 3"),
        (
            b"d8:msg_typei1e5:piecei0e10:total_sizei16385eeabc",
            "carries 3 bytes, not 16384",
        ),
        (
            b"d8:msg_typei1e5:piecei1e10:total_sizei16385eeab",
            "carries 2 bytes, not 1",
        ),
        (b"li0ee", "not a dictionary"),
        (b"", "not valid bencode"),
        (b"d8:msg_typei0e", "not valid bencode"),
        (b"x" * (PIECE + 1025), "exceeds the 17408-byte cap"),
    ],
)
def test_parse_refuses_junk(payload: bytes, fragment: str) -> None:
    with pytest.raises(RemotePeerProtocolError, match=fragment):
        md.parse_metadata_message(payload)


@pytest.mark.parametrize(
    "call",
    [
        lambda: md.encode_metadata_request(-1),
        lambda: md.encode_metadata_reject(-1),
        lambda: md.encode_metadata_data(0, 0, b""),
        lambda: md.encode_metadata_data(1, 3, b"abc"),
        lambda: md.encode_metadata_data(0, 3, b"ab"),
        lambda: md.MetadataServer(b""),
        lambda: md.MetadataAssembler(b"short", rng=random.Random(0)),
    ],
)
def test_local_misuse_raises_local_error(call: object) -> None:
    with pytest.raises(LocalPeerProtocolError):
        call()  # type: ignore[operator]


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes_raise_only_remote_error(data: bytes) -> None:
    with contextlib.suppress(RemotePeerProtocolError):
        md.parse_metadata_message(data)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from([b"msg_type", b"piece", b"total_size", b"x"]),
        st.integers(-3, 2**25) | st.binary(max_size=4),
        max_size=4,
    ),
    st.binary(max_size=40),
)
def test_fuzz_structured(d: dict[bytes, object], tail: bytes) -> None:
    with contextlib.suppress(RemotePeerProtocolError):
        md.parse_metadata_message(bencodepy.encode(d) + tail)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 3 * PIECE), st.data())
def test_data_round_trip(total_size: int, data: st.DataObject) -> None:
    piece = data.draw(st.integers(0, md.metadata_piece_count(total_size) - 1))
    body = bytes([piece % 251]) * md.metadata_piece_length(total_size, piece)
    msg = md.parse_metadata_message(md.encode_metadata_data(piece, total_size, body))
    assert msg == md.MetadataData(piece=piece, total_size=total_size, data=body)


def test_piece_arithmetic() -> None:
    assert md.metadata_piece_count(1) == 1
    assert md.metadata_piece_count(PIECE) == 1
    assert md.metadata_piece_count(PIECE + 1) == 2
    assert md.metadata_piece_length(PIECE + 1, 0) == PIECE
    assert md.metadata_piece_length(PIECE + 1, 1) == 1


# --- server -----------------------------------------------------------------

# An info dictionary of five metadata pieces, the last one short; the padding
# key just makes it long (the assembler never looks inside).
INFO: bytes = bencodepy.encode(
    {
        b"length": 1,
        b"name": b"x",
        b"pad": bytes(range(256)) * 256 + b"\0" * 100,
        b"piece length": 16384,
        b"pieces": bytes(range(20)),
    }
)
INFO_HASH = hashlib.sha1(INFO).digest()
N_PIECES = md.metadata_piece_count(len(INFO))


def test_info_sample_spans_several_pieces() -> None:
    assert N_PIECES == 5
    assert len(INFO) % PIECE != 0


def test_server_serves_every_piece_and_rejects_out_of_range() -> None:
    server = md.MetadataServer(INFO)
    assert server.metadata_size == len(INFO)
    got = []
    for i in range(N_PIECES):
        msg = md.parse_metadata_message(server.handle_request(i))
        assert isinstance(msg, md.MetadataData)
        assert (msg.piece, msg.total_size) == (i, len(INFO))
        got.append(msg.data)
    assert b"".join(got) == INFO
    assert server.handle_request(N_PIECES) == md.encode_metadata_reject(N_PIECES)
    with pytest.raises(LocalPeerProtocolError):
        server.handle_request(-1)


# --- assembler --------------------------------------------------------------


def _piece(i: int, info: bytes = INFO) -> bytes:
    return info[i * PIECE : (i + 1) * PIECE]


def _assembler(**kw: float) -> md.MetadataAssembler:
    return md.MetadataAssembler(INFO_HASH, rng=random.Random(7), **kw)


def _run(
    asm: md.MetadataAssembler,
    peers: dict[str, bytes],
    now: float = 0.0,
    max_rounds: int = 50,
) -> tuple[md.MetadataResult | None, dict[str, list[int]]]:
    """Drive the assembler like a session: every peer answers every request
    at once with pieces of its own copy of the metadata."""
    asked: dict[str, list[int]] = {p: [] for p in peers}
    for _ in range(max_rounds):
        progressed = False
        for name, info in peers.items():
            for i in asm.next_requests(name, now):
                progressed = True
                asked[name].append(i)
                res = asm.on_data(name, i, len(info), _piece(i, info), now)
                if res is not None:
                    return res, asked
        if not progressed:
            break
    return None, asked


def test_parallel_fetch_from_three_peers_completes() -> None:
    asm = _assembler()
    assert asm.progress == (0, 0)
    for p in ("a", "b", "c"):
        asm.peer_ready(p, len(INFO))
    assert asm.metadata_size == len(INFO)
    # First round: every peer gets different pieces, at most 2 each.
    first = {p: asm.next_requests(p, 0.0) for p in ("a", "b", "c")}
    assert [len(v) for v in first.values()] == [2, 2, 1]
    flat = [i for v in first.values() for i in v]
    assert sorted(flat) == list(range(N_PIECES))
    assert asm.next_deadline() == md.METADATA_REQUEST_TIMEOUT_S
    results = [
        asm.on_data(p, i, len(INFO), _piece(i), 1.0)
        for p, v in first.items()
        for i in v
    ]
    assert results[:-1] == [None] * (N_PIECES - 1)
    assert results[-1] == md.MetadataComplete(info_bytes=INFO)
    assert asm.is_complete
    assert asm.info_bytes == INFO
    assert asm.progress == (N_PIECES, N_PIECES)
    assert asm.next_requests("a", 2.0) == []
    assert asm.on_data("a", 0, len(INFO), _piece(0), 2.0) is None


def test_wrong_piece_names_the_peer_and_others_complete() -> None:
    bad = bytearray(INFO)
    bad[PIECE + 3] ^= 0xFF  # piece 1 is wrong in the liar's copy
    asm = _assembler()
    asm.peer_ready("liar", len(INFO))
    res, asked = _run(asm, {"liar": bytes(bad)})
    assert res == md.MetadataCorrupt(peers=frozenset({"liar"}))
    assert sorted(asked["liar"]) == list(range(N_PIECES))
    assert asm.progress == (0, 0)  # started over; nobody left to fetch from
    # The liar is out for good, even if it says hello again.
    asm.peer_ready("liar", len(INFO))
    assert asm.next_requests("liar", 1.0) == []
    for p in ("a", "b"):
        asm.peer_ready(p, len(INFO))
    res, asked = _run(asm, {"liar": bytes(bad), "a": INFO, "b": INFO}, now=1.0)
    assert res == md.MetadataComplete(info_bytes=INFO)
    assert asked["liar"] == []
    assert asked["a"]
    assert asked["b"]


def test_corrupt_names_every_contributor_of_a_mixed_fetch() -> None:
    bad = bytearray(INFO)
    for i in range(N_PIECES):
        bad[i * PIECE] ^= 1  # every piece of the liar's copy is wrong
    asm = _assembler()
    for p in ("a", "liar", "c"):
        asm.peer_ready(p, len(INFO))
    res, asked = _run(asm, {"a": INFO, "liar": bytes(bad), "c": INFO})
    assert isinstance(res, md.MetadataCorrupt)
    assert res.peers == frozenset(p for p, v in asked.items() if v)
    assert asked["liar"]
    assert {"a", "liar", "c"} == res.peers
    asm.peer_ready("d", len(INFO))
    res2, _ = _run(asm, {"d": INFO}, now=5.0)
    assert res2 == md.MetadataComplete(info_bytes=INFO)


def test_timed_out_requests_go_to_another_peer() -> None:
    asm = _assembler()
    asm.peer_ready("slow", len(INFO))
    asm.peer_ready("b", len(INFO))
    stalled = asm.next_requests("slow", 0.0)
    assert len(stalled) == 2
    taken = asm.next_requests("b", 0.0)
    assert not set(taken) & set(stalled)
    for i in taken:
        asm.on_data("b", i, len(INFO), _piece(i), 1.0)
    # Before the deadline the stalled pieces stay with 'slow'.
    again = asm.next_requests("b", 9.0)
    assert not set(again) & set(stalled)
    for i in again:
        asm.on_data("b", i, len(INFO), _piece(i), 9.0)
    # After it, 'b' gets them, and 'slow' is not handed them back.
    assert asm.next_requests("slow", 10.0) == []
    retried = asm.next_requests("b", 10.0)
    assert sorted(retried) == sorted(stalled)
    # Late data from 'slow' still counts; b's answer then is a duplicate.
    late = stalled[0]
    assert asm.on_data("slow", late, len(INFO), _piece(late), 11.0) is None
    assert asm.next_deadline() == 20.0
    other = stalled[1]
    assert asm.on_data("b", late, len(INFO), _piece(late), 11.0) is None
    res = asm.on_data("b", other, len(INFO), _piece(other), 11.0)
    assert res == md.MetadataComplete(info_bytes=INFO)


def test_a_lone_peer_that_timed_out_is_asked_again() -> None:
    asm = _assembler(timeout_s=5.0)
    asm.peer_ready("only", len(INFO))
    first = asm.next_requests("only", 0.0, max_outstanding=N_PIECES)
    assert sorted(first) == list(range(N_PIECES))
    assert asm.next_requests("only", 4.9, max_outstanding=N_PIECES) == []
    again = asm.next_requests("only", 5.0, max_outstanding=N_PIECES)
    assert sorted(again) == list(range(N_PIECES))


def test_rejected_piece_goes_elsewhere_and_never_back() -> None:
    asm = _assembler()
    asm.peer_ready("a", len(INFO))
    [p0, p1] = asm.next_requests("a", 0.0)
    asm.on_reject("a", p0)
    asm.on_reject("a", 99)  # never asked: ignored
    # 'a' has one slot free but may not get p0 again.
    nxt = asm.next_requests("a", 0.0)
    assert p0 not in nxt
    assert len(nxt) == 1
    asm.peer_ready("b", len(INFO))
    got_b = asm.next_requests("b", 0.0, max_outstanding=N_PIECES)
    assert p0 in got_b
    assert p1 not in got_b


def test_unrequested_data_is_ignored() -> None:
    asm = _assembler()
    asm.peer_ready("a", len(INFO))
    asm.peer_ready("b", len(INFO))
    [i, _] = asm.next_requests("a", 0.0)
    assert asm.on_data("b", i, len(INFO), _piece(i), 0.0) is None
    assert asm.on_data("stranger", i, len(INFO), _piece(i), 0.0) is None
    assert asm.progress == (0, N_PIECES)
    asm.on_data("a", i, len(INFO), _piece(i), 0.0)
    assert asm.progress == (1, N_PIECES)


def test_data_inconsistent_with_the_size_is_a_remote_error() -> None:
    asm = _assembler()
    asm.peer_ready("a", len(INFO))
    [i, _] = asm.next_requests("a", 0.0)
    with pytest.raises(RemotePeerProtocolError, match="differs from the advertised"):
        asm.on_data("a", i, len(INFO) + 1, _piece(i), 0.0)
    with pytest.raises(RemotePeerProtocolError, match="bytes, not"):
        asm.on_data("a", i, len(INFO), b"short", 0.0)
    assert asm.progress == (0, N_PIECES)


def test_oversize_or_empty_metadata_size_refused() -> None:
    asm = _assembler()
    with pytest.raises(RemotePeerProtocolError, match=r"16777217 not in 1\.\.16777216"):
        asm.peer_ready("a", md.MAX_METADATA_BYTES + 1)
    with pytest.raises(RemotePeerProtocolError):
        asm.peer_ready("a", 0)
    assert asm.metadata_size is None
    assert asm.next_requests("a", 0.0) == []


def test_first_size_wins_until_nobody_offers_it() -> None:
    asm = _assembler()
    asm.peer_ready("wrong", len(INFO) + 7)
    asm.peer_ready("a", len(INFO))
    asm.peer_ready("b", len(INFO))
    assert asm.metadata_size == len(INFO) + 7
    assert asm.next_requests("a", 0.0) == []
    assert asm.next_requests("wrong", 0.0)
    asm.peer_gone("wrong")
    assert asm.metadata_size == len(INFO)
    res, _ = _run(asm, {"a": INFO, "b": INFO})
    assert res == md.MetadataComplete(info_bytes=INFO)


def test_peer_gone_frees_its_pieces() -> None:
    asm = _assembler()
    asm.peer_ready("a", len(INFO))
    asm.peer_ready("b", len(INFO))
    held = asm.next_requests("a", 0.0, max_outstanding=N_PIECES)
    assert sorted(held) == list(range(N_PIECES))
    assert asm.next_requests("b", 0.0) == []
    asm.peer_gone("a")
    asm.peer_gone("nobody")
    assert len(asm.next_requests("b", 0.0)) == 2
    assert asm.on_data("a", held[0], len(INFO), _piece(held[0]), 0.0) is None


def test_single_piece_metadata() -> None:
    info = b"d4:name1:xe"
    asm = md.MetadataAssembler(hashlib.sha1(info).digest(), rng=random.Random(1))
    asm.peer_ready(("127.0.0.1", 1), len(info))
    assert asm.next_requests(("127.0.0.1", 1), 0.0) == [0]
    res = asm.on_data(("127.0.0.1", 1), 0, len(info), info, 0.0)
    assert res == md.MetadataComplete(info_bytes=info)
