"""ut_pex (BEP 11): message bytes, tolerant parsing, per-peer diffing and pacing."""

from __future__ import annotations

import contextlib
import ipaddress

import bencodepy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core import pex
from client.errors import LocalPeerProtocolError, RemotePeerProtocolError
from dht import PeerAddr, encode_peer

A = PeerAddr("127.0.0.1", 6881)  # 7f000001 1ae1
B = PeerAddr("10.0.0.2", 80)  # 0a000002 0050
V6 = PeerAddr("::1", 6881)
A_C = b"\x7f\x00\x00\x01\x1a\xe1"
B_C = b"\x0a\x00\x00\x02\x00\x50"
V6_C = b"\0" * 15 + b"\x01\x1a\xe1"

# (added, added_flags, dropped, exact payload)
CASES: list[tuple[list[PeerAddr], list[int], list[PeerAddr], bytes]] = [
    ([], [], [], b"de"),
    ([A], [pex.PEX_REACHABLE], [], b"d5:added6:" + A_C + b"7:added.f1:\x10e"),
    ([], [], [B], b"d7:dropped6:" + B_C + b"e"),
    (
        [A, B],
        [0, pex.PEX_SEED | pex.PEX_PREFERS_ENCRYPTION],
        [],
        b"d5:added12:" + A_C + B_C + b"7:added.f2:\x00\x03e",
    ),
    (
        [V6, A],
        [pex.PEX_SEED, 0],
        [V6],
        b"d5:added6:"
        + A_C
        + b"7:added.f1:\x006:added618:"
        + V6_C
        + b"8:added6.f1:\x028:dropped618:"
        + V6_C
        + b"e",
    ),
]


@pytest.mark.parametrize(("added", "flags", "dropped", "payload"), CASES)
def test_exact_bytes_both_ways(
    added: list[PeerAddr], flags: list[int], dropped: list[PeerAddr], payload: bytes
) -> None:
    assert pex.encode_pex(added, flags, dropped) == payload
    msg = pex.parse_pex(payload)
    # parse lists IPv4 before IPv6
    order = sorted(range(len(added)), key=lambda i: ":" in added[i].host)
    assert msg == pex.PexMessage(
        added=tuple(added[i] for i in order),
        added_flags=tuple(flags[i] for i in order),
        dropped=tuple(sorted(dropped, key=lambda a: ":" in a.host)),
    )


def test_flag_constants_are_the_spec_bits() -> None:
    assert (pex.PEX_PREFERS_ENCRYPTION, pex.PEX_SEED, pex.PEX_REACHABLE) == (
        0x01,
        0x02,
        0x10,
    )


def test_parse_tolerates_missing_keys_and_bad_flags() -> None:
    assert pex.parse_pex(b"de") == pex.PexMessage(added=(), added_flags=(), dropped=())
    # added.f of the wrong length (or type) is ignored: flags unknown, so 0
    payload = bencodepy.encode({b"added": A_C + B_C, b"added.f": b"\x01"})
    assert pex.parse_pex(payload).added_flags == (0, 0)
    payload = bencodepy.encode({b"added": A_C, b"added.f": 5, b"x": [1]})
    assert pex.parse_pex(payload) == pex.PexMessage(
        added=(A,), added_flags=(0,), dropped=()
    )


def test_parse_skips_port_zero() -> None:
    payload = bencodepy.encode(
        {b"added": b"\x7f\0\0\x01\0\0" + A_C, b"added.f": b"\x02\x10"}
    )
    msg = pex.parse_pex(payload)
    assert msg.added == (A,)
    assert msg.added_flags == (0x10,)


def test_parse_uses_at_most_50_added_and_50_dropped() -> None:
    v4 = [PeerAddr("127.0.0.1", 1000 + i) for i in range(40)]
    v6 = [PeerAddr("::1", 2000 + i) for i in range(40)]
    payload = bencodepy.encode(
        {
            b"added": b"".join(encode_peer(a) for a in v4),
            b"added6": b"".join(encode_peer(a) for a in v6),
            b"dropped": b"".join(encode_peer(a) for a in v4[:30]),
            b"dropped6": b"".join(encode_peer(a) for a in v6[:30]),
        }
    )
    msg = pex.parse_pex(payload)
    assert msg.added == tuple(v4 + v6[:10])
    assert msg.dropped == tuple(v4[:30] + v6[:20])


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"d5:added5:abcdee", "'added' is 5 bytes, not a multiple of 6"),
        (b"d6:added66:abcdefe", "'added6' is 6 bytes, not a multiple of 18"),
        (b"d7:dropped7:abcdefge", "'dropped' is 7 bytes, not a multiple of 6"),
        (b"d5:addedi1ee", "'added' is a int, not a string"),
        (b"d8:dropped6lee", "'dropped6' is a list, not a string"),
        (b"le", "not a dictionary"),
        (b"d5:added", "not valid bencode"),
        (b"dexx", "trailing data"),
        (b"d1:x65530:" + b"x" * 65530 + b"e", "exceeds the 65536-byte cap"),
    ],
)
def test_parse_refuses_junk(payload: bytes, fragment: str) -> None:
    with pytest.raises(RemotePeerProtocolError, match=fragment):
        pex.parse_pex(payload)


@pytest.mark.parametrize(
    ("added", "flags", "dropped"),
    [
        ([A], [], []),
        ([A], [256], []),
        ([PeerAddr("localhost", 1)], [0], []),
        ([PeerAddr("127.0.0.1", i + 1) for i in range(51)], [0] * 51, []),
        ([], [], [PeerAddr("127.0.0.1", i + 1) for i in range(51)]),
    ],
)
def test_encode_refuses_misuse(
    added: list[PeerAddr], flags: list[int], dropped: list[PeerAddr]
) -> None:
    with pytest.raises(LocalPeerProtocolError):
        pex.encode_pex(added, flags, dropped)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_bytes_raise_only_remote_error(data: bytes) -> None:
    with contextlib.suppress(RemotePeerProtocolError):
        pex.parse_pex(data)


_keys = st.sampled_from(
    [b"added", b"added.f", b"added6", b"added6.f", b"dropped", b"dropped6", b"x"]
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, st.binary(max_size=60) | st.integers(), max_size=7))
def test_fuzz_structured(d: dict[bytes, object]) -> None:
    with contextlib.suppress(RemotePeerProtocolError):
        msg = pex.parse_pex(bencodepy.encode(d))
        assert len(msg.added) == len(msg.added_flags) <= pex.MAX_PEX_ADDED
        assert len(msg.dropped) <= pex.MAX_PEX_DROPPED


_addr4 = st.builds(
    lambda last, port: PeerAddr(f"127.0.0.{last}", port),
    st.integers(0, 255),
    st.integers(1, 65535),
)
_addr6 = st.builds(
    # canonical text, as addresses from sockets and from parse_pex are
    lambda n, port: PeerAddr(str(ipaddress.IPv6Address(f"fd00::{n:x}")), port),
    st.integers(0, 0xFFFF),
    st.integers(1, 65535),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(_addr4 | _addr6, st.integers(0, 255)), max_size=50),
    st.lists(_addr4 | _addr6, max_size=50),
)
def test_round_trip(added: list[tuple[PeerAddr, int]], dropped: list[PeerAddr]) -> None:
    addrs = [a for a, _ in added]
    flags = [f for _, f in added]
    msg = pex.parse_pex(pex.encode_pex(addrs, flags, dropped))
    v4_first = sorted(range(len(added)), key=lambda i: ":" in addrs[i].host)
    assert msg.added == tuple(addrs[i] for i in v4_first)
    assert msg.added_flags == tuple(flags[i] for i in v4_first)
    assert msg.dropped == tuple(sorted(dropped, key=lambda a: ":" in a.host))


# --- PexState ---------------------------------------------------------------

ME = PeerAddr("127.0.0.1", 5000)  # the peer we talk to


def _peers(n: int, base: int = 10000) -> set[PeerAddr]:
    return {PeerAddr("127.0.0.1", base + i) for i in range(n)}


def test_first_message_at_once_then_at_most_once_a_minute() -> None:
    state = pex.PexState(ME)
    assert state.due(0.0)
    first = state.build({A}, 0.0)
    assert first is not None
    assert pex.parse_pex(first).added == (A,)
    assert not state.due(59.9)
    assert state.build({A, B}, 59.9) is None
    assert state.due(60.0)
    second = state.build({A, B}, 60.0)
    assert second is not None
    assert pex.parse_pex(second).added == (B,)


def test_nothing_changed_sends_nothing_and_keeps_the_slot() -> None:
    state = pex.PexState(ME)
    assert state.build(set(), 0.0) is None
    assert state.due(1.0)  # nothing went out, so the first message may still go
    assert state.build({A}, 1.0) is not None
    assert state.build({A}, 100.0) is None
    assert state.due(100.0)


def test_50_cap_with_carry_over() -> None:
    state = pex.PexState(ME)
    everyone = _peers(120)
    seen: list[PeerAddr] = []
    for t in (0.0, 60.0, 120.0):
        payload = state.build(everyone, t)
        assert payload is not None
        msg = pex.parse_pex(payload)
        seen.extend(msg.added)
        assert len(msg.added) == min(50, 120 - 50 * int(t // 60))
        assert msg.dropped == ()
    assert len(seen) == len(set(seen)) == 120
    assert set(seen) == everyone
    assert state.advertised == everyone
    assert state.build(everyone, 180.0) is None


def test_dropped_detection_and_cap() -> None:
    state = pex.PexState(ME)
    first = _peers(50)
    state.build(first, 0.0)
    payload = state.build({A}, 60.0)
    assert payload is not None
    msg = pex.parse_pex(payload)
    assert msg.added == (A,)
    assert set(msg.dropped) == first
    assert state.advertised == {A}
    # More than 50 gone: the rest is dropped in the next message.
    state2 = pex.PexState(ME)
    state2.build(_peers(50), 0.0)
    state2.build(_peers(100), 60.0)
    p1 = state2.build(set(), 120.0)
    p2 = state2.build(set(), 180.0)
    assert p1 is not None
    assert p2 is not None
    d1, d2 = pex.parse_pex(p1).dropped, pex.parse_pex(p2).dropped
    assert (len(d1), len(d2)) == (50, 50)
    assert set(d1) | set(d2) == _peers(100)
    assert state2.advertised == frozenset()


def test_readded_peer_is_sent_again() -> None:
    state = pex.PexState(ME)
    state.build({A}, 0.0)
    state.build(set(), 60.0)
    payload = state.build({A}, 120.0)
    assert payload is not None
    assert pex.parse_pex(payload).added == (A,)


def test_own_address_and_unencodable_ones_never_sent() -> None:
    state = pex.PexState(ME)
    assert (
        state.build({ME, PeerAddr("localhost", 1), PeerAddr("10.0.0.9", 0)}, 0) is None
    )
    payload = state.build({ME, A, V6}, 1.0)
    assert payload is not None
    msg = pex.parse_pex(payload)
    assert ME not in msg.added
    assert set(msg.added) == {A, V6}


def test_flags_are_sent_per_peer() -> None:
    state = pex.PexState(ME)
    payload = state.build({A, B}, 0.0, flags={B: pex.PEX_SEED | pex.PEX_REACHABLE})
    assert payload is not None
    msg = pex.parse_pex(payload)
    assert dict(zip(msg.added, msg.added_flags, strict=True)) == {A: 0, B: 0x12}


def test_custom_interval() -> None:
    state = pex.PexState(ME, interval_s=5.0)
    state.build({A}, 0.0)
    assert not state.due(4.0)
    assert state.due(5.0)


def test_oversized_lists_keep_their_flags_aligned() -> None:
    v4 = [PeerAddr("127.0.0.1", 1000 + i) for i in range(150)]
    payload = bencodepy.encode(
        {
            b"added": b"".join(encode_peer(a) for a in v4),
            b"added.f": bytes(i % 256 for i in range(150)),
        }
    )
    msg = pex.parse_pex(payload)
    assert msg.added == tuple(v4[:50])
    assert msg.added_flags == tuple(range(50))
