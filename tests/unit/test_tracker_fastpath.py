"""The tracker's hot paths (issue 7) answer exactly like the reference code:
the fast announce parser, the C percent-decoder, compact replies built from
packed records, and the systematic peer sample."""

from __future__ import annotations

import random
from urllib.parse import quote_from_bytes

import bencodepy
from hypothesis import given
from hypothesis import strategies as st

from tracker.core.addr import PeerAddr, compact_peer
from tracker.core.registry import SwarmRegistry, pack_ip
from tracker.core.request import (
    AnnounceRequest,
    _fast_decode,
    _parse_announce_slow,
    parse_announce,
    percent_decode,
)
from tracker.core.response import encode_announce, encode_compact_announce
from tracker.errors import AnnounceRequestError

_PIECES = st.sampled_from(
    [
        "info_hash=",
        "peer_id=",
        "port=",
        "uploaded=",
        "left=",
        "downloaded=",
        "event=",
        "numwant=",
        "compact=",
        "no_peer_id=",
        "ip=",
        "key=",
        "trackerid=",
        "&",
        "%",
        "%0",
        "%00",
        "%ff",
        "%3D",
        "%zz",
        "%41" * 20,
        "a" * 20,
        "%e9" * 10 + "x" * 10,
        "1",
        "-",
        "-1",
        "0",
        "65535",
        "started",
        "stopped",
        "=",
        "::1",
        "192.0.2.4",
        "\r",
    ]
)


def _outcome(raw: str | bytes, trust_ip: bool) -> AnnounceRequest | str:
    try:
        return parse_announce(
            raw, default_numwant=50, max_numwant=200, trust_ip=trust_ip
        )
    except AnnounceRequestError as exc:
        return exc.reason


def _reference(raw: str | bytes, trust_ip: bool) -> AnnounceRequest | str:
    try:
        return _parse_announce_slow(
            raw, default_numwant=50, max_numwant=200, trust_ip=trust_ip
        )
    except AnnounceRequestError as exc:
        return exc.reason


@given(st.lists(st.one_of(_PIECES, st.text(max_size=5)), max_size=60))
def test_fast_parser_answers_like_the_reference(parts: list[str]) -> None:
    raw = "".join(parts)
    for trust_ip in (False, True):
        assert _outcome(raw, trust_ip) == _reference(raw, trust_ip)
        wire = raw.encode("utf-8", "surrogatepass")
        assert _outcome(wire, trust_ip) == _reference(raw, trust_ip)


@given(
    st.binary(max_size=25),
    st.binary(max_size=25),
    st.integers(0, 70000),
    st.integers(-3, 300),
    st.sampled_from(["", "&event=started", "&event=completed", "&compact=0"]),
)
def test_fast_parser_on_well_formed_announces(
    info_hash: bytes, peer_id: bytes, port: int, numwant: int, extra: str
) -> None:
    raw = (
        f"info_hash={quote_from_bytes(info_hash, safe='')}"
        f"&peer_id={quote_from_bytes(peer_id, safe='-')}&port={port}"
        f"&uploaded=0&downloaded=10&left=5&numwant={numwant}{extra}"
    )
    assert _outcome(raw, False) == _reference(raw, False)


@given(st.binary(max_size=40), st.sampled_from(["", "-._~", "=", "\r\n"]))
def test_fast_decode_matches_percent_decode(data: bytes, safe: str) -> None:
    raw = quote_from_bytes(data, safe=safe)
    assert _fast_decode(raw.encode("ascii")) == percent_decode(raw, "x") == data


def test_wire_bytes_that_are_not_utf8_are_raw_bytes() -> None:
    raw = (
        b"info_hash="
        + bytes(range(200, 220))
        + b"&peer_id="
        + b"\xff" * 20
        + b"&port=1&uploaded=0&downloaded=0&left=0"
    )
    req = parse_announce(raw, default_numwant=5, max_numwant=9, trust_ip=False)
    assert req.info_hash == bytes(range(200, 220))
    assert req.peer_id == b"\xff" * 20
    assert req.numwant == 5


def _req(n: int, *, numwant: int = 50, left: int = 1) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=b"h" * 20,  # type: ignore[arg-type]
        peer_id=n.to_bytes(20, "big"),  # type: ignore[arg-type]
        port=n,
        uploaded=0,
        downloaded=0,
        left=left,
        event=parse_announce(
            "info_hash="
            + "a" * 20
            + "&peer_id="
            + "b" * 20
            + "&port=1&uploaded=0&downloaded=0&left=0",
            default_numwant=1,
            max_numwant=1,
            trust_ip=False,
        ).event,
        numwant=numwant,
        compact=True,
        no_peer_id=False,
        ip=None,
        key=None,
        tracker_id=None,
    )


def _addr(n: int) -> PeerAddr:
    if n % 3 == 0:
        return PeerAddr(f"2001:db8::{n:x}", 1000 + n)
    return PeerAddr(f"192.0.2.{n % 250}", 1000 + n)


def test_compact_reply_matches_the_reference_encoder() -> None:
    # two registries fed alike, one answered through PeerAddr objects and
    # bencodepy, the other from the packed records
    slow = SwarmRegistry(peer_timeout_s=100, rng=random.Random(5))
    fast = SwarmRegistry(peer_timeout_s=100, rng=random.Random(5))
    for n in range(1, 80):
        req = _req(n, numwant=7, left=n % 2)
        a = _addr(n)
        result = slow.announce(req, a, float(n))
        reply = fast.announce_compact(req, pack_ip(a.host), a.port, float(n))
        expected = encode_announce(
            result, compact=True, no_peer_id=False, interval_s=60, min_interval_s=30
        )
        got = encode_compact_announce(reply, interval_s=60, min_interval_s=30)
        assert got == expected
        assert bencodepy.decode(got)[b"complete"] == result.complete


def test_v4_swarm_sample_is_spread_and_never_the_asker() -> None:
    reg = SwarmRegistry(peer_timeout_s=100, rng=random.Random(1))
    for n in range(1, 201):
        reg.announce_compact(_req(n), bytes([192, 0, 2, 1]), n, 0.0)
    seen: dict[bytes, int] = {}
    for n in range(201, 1201):
        reply = reg.announce_compact(_req(n, numwant=20), bytes([192, 0, 2, 9]), 7, 1.0)
        entries = [reply.peers[i : i + 6] for i in range(0, len(reply.peers), 6)]
        assert len(entries) == len(set(entries)) == 20
        assert compact_peer(PeerAddr("192.0.2.9", 7)) not in entries
        for entry in entries:
            seen[entry] = seen.get(entry, 0) + 1
        reg.announce_compact(_req(n, numwant=0, left=1), bytes([192, 0, 2, 9]), 7, 1.0)
    # the first 200 peers: each handed out about 1000 * 20 / N times
    first = [seen.get(compact_peer(PeerAddr("192.0.2.1", n)), 0) for n in range(1, 201)]
    assert min(first) > 0


def test_same_address_peer_is_skipped_in_a_v4_swarm() -> None:
    reg = SwarmRegistry(peer_timeout_s=100, rng=random.Random(1))
    ip = bytes([192, 0, 2, 1])
    for n in range(1, 60):
        reg.announce_compact(_req(n), ip, 5 if n == 30 else 100 + n, 0.0)
    for _ in range(20):
        reply = reg.announce_compact(_req(99, numwant=10), ip, 5, 1.0)
        entries = [reply.peers[i : i + 6] for i in range(0, len(reply.peers), 6)]
        assert len(entries) == 10
        assert ip + (5).to_bytes(2, "big") not in entries


def test_v4_compact_sample_equals_the_indexed_sample() -> None:
    slow = SwarmRegistry(peer_timeout_s=100, rng=random.Random(8))
    fast = SwarmRegistry(peer_timeout_s=100, rng=random.Random(8))
    for n in range(1, 300):
        req = _req(n, numwant=1 + n % 37, left=n % 2)
        a = PeerAddr(f"192.0.2.{n % 200}", 2000 + n)
        result = slow.announce(req, a, float(n))
        reply = fast.announce_compact(req, pack_ip(a.host), a.port, float(n))
        assert reply.peers == b"".join(compact_peer(p.addr) for p in result.peers)
        assert len(reply.peers) == 6 * min(n - 1, 1 + n % 37)
