"""Tracker announce/scrape client core (client/core/announce.py)."""

from __future__ import annotations

import contextlib
import random

import bencodepy
import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.announce import (
    MAX_ANNOUNCE_INTERVAL_S,
    AnnounceEvent,
    AnnounceResponse,
    RetryBackoff,
    ScrapeStats,
    TierList,
    announce_url,
    build_announce_query,
    build_scrape_query,
    is_supported_tracker_url,
    next_announce_delay,
    parse_announce_response,
    parse_scrape_response,
    percent_encode,
    scrape_url,
)
from client.errors import TrackerFailure
from dht import PeerAddr
from tracker.core.request import Event, parse_announce, parse_scrape

INFO_HASH = bytes([0x00, 0xFF, 0x80, 0x25, 0x26, 0x3D, 0x2B, 0x20, 0x7E, 0x2E]) + bytes(
    range(10)
)
PEER_ID = b"-BS0100-" + bytes([0x00, 0xC3, 0x28, 0xFE]) + b"ab-_.~gh"


def benc(value: object) -> bytes:
    return bytes(bencodepy.encode(value))


# -- building requests ---------------------------------------------------------------


def test_percent_encode_keeps_only_unreserved() -> None:
    assert percent_encode(b"aZ09-._~") == "aZ09-._~"
    assert percent_encode(b"\x00 %&=+/?\xff") == "%00%20%25%26%3D%2B%2F%3F%FF"


@pytest.mark.parametrize("event", list(AnnounceEvent))
def test_query_round_trips_through_the_tracker_parser(event: AnnounceEvent) -> None:
    query = build_announce_query(
        INFO_HASH, PEER_ID, 6881, 10, 20, 30, event, 25, key="k1", tracker_id=b"\x00t"
    )
    req = parse_announce(query, default_numwant=50, max_numwant=200, trust_ip=False)
    assert req.info_hash == INFO_HASH
    assert req.peer_id == PEER_ID
    assert (req.port, req.uploaded, req.downloaded, req.left) == (6881, 10, 20, 30)
    assert req.event is Event(event.value)
    assert (req.numwant, req.compact, req.key, req.tracker_id) == (
        25,
        True,
        b"k1",
        b"\x00t",
    )


@given(st.binary(min_size=20, max_size=20), st.binary(min_size=20, max_size=20))
def test_any_ids_round_trip(info_hash: bytes, peer_id: bytes) -> None:
    query = build_announce_query(
        info_hash, peer_id, 1, 0, 0, 0, AnnounceEvent.EMPTY, 0, compact=False
    )
    req = parse_announce(query, default_numwant=50, max_numwant=200, trust_ip=False)
    assert (req.info_hash, req.peer_id, req.compact) == (info_hash, peer_id, False)
    scrape = parse_scrape(build_scrape_query([info_hash, peer_id]))
    assert set(scrape.info_hashes) == {info_hash, peer_id}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"info_hash": b"x"}, "announce: info_hash is 1 bytes, not 20"),
        ({"peer_id": b""}, "announce: peer_id is 0 bytes, not 20"),
        ({"port": 0}, "announce: port 0 is out of range"),
        ({"left": -1}, "announce: left -1 is negative"),
    ],
)
def test_bad_query_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "info_hash": INFO_HASH,
        "peer_id": PEER_ID,
        "port": 1,
        "uploaded": 0,
        "downloaded": 0,
        "left": 0,
        "event": AnnounceEvent.EMPTY,
        "numwant": 1,
    }
    args.update(kwargs)
    with pytest.raises(TrackerFailure) as info:
        build_announce_query(**args)  # type: ignore[arg-type]
    assert info.value.reason == message


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("http://t/announce", "http://t/announce?a=1"),
        ("http://t/announce?passkey=x", "http://t/announce?passkey=x&a=1"),
        ("http://t/announce?", "http://t/announce?a=1"),
        ("http://t/announce?k=v&", "http://t/announce?k=v&a=1"),
        ("http://t/announce#frag", "http://t/announce?a=1#frag"),
    ],
)
def test_announce_url(base: str, expected: str) -> None:
    assert announce_url(base, "a=1") == expected


@pytest.mark.parametrize(
    ("announce", "expected"),
    [
        ("http://t:6969/announce", "http://t:6969/scrape"),
        ("http://t/x/announce?passkey=1", "http://t/x/scrape?passkey=1"),
        ("http://t/announce.php", "http://t/scrape.php"),
        ("http://t/a", None),
        ("http://t/announce/x", None),
        ("http://t/x%064announce", None),
        ("http://t", None),
        ("announce", None),
    ],
)
def test_scrape_url(announce: str, expected: str | None) -> None:
    assert scrape_url(announce) == expected


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://127.0.0.1:1/announce", True),
        ("HTTPS://t/announce", True),
        ("udp://t:6969/announce", True),
        ("udp://t/announce", False),
        ("wss://t/announce", False),
        ("http:///announce", False),
        ("http://[::1/announce", False),
        ("", False),
    ],
)
def test_supported_urls(url: str, ok: bool) -> None:
    assert is_supported_tracker_url(url) is ok


# -- parsing responses ---------------------------------------------------------------

V4 = bytes([127, 0, 0, 2, 0x1A, 0xE1]) + bytes([127, 0, 0, 3, 0, 80])
V6 = bytes(15) + b"\x01" + bytes([0x1A, 0xE2])


def test_parse_compact_with_everything() -> None:
    body = benc(
        {
            b"interval": 1800,
            b"min interval": 60,
            b"complete": 3,
            b"incomplete": 4,
            b"peers": V4,
            b"peers6": V6,
            b"warning message": b"be nice",
            b"tracker id": b"\xffid",
        }
    )
    assert parse_announce_response(body) == AnnounceResponse(
        interval=1800,
        min_interval=60,
        peers=(
            PeerAddr("127.0.0.2", 6881),
            PeerAddr("127.0.0.3", 80),
            PeerAddr("::1", 6882),
        ),
        complete=3,
        incomplete=4,
        warning="be nice",
        tracker_id=b"\xffid",
    )


def test_parse_minimal_and_dictionary_model() -> None:
    assert parse_announce_response(b"d8:intervali5ee") == AnnounceResponse(
        interval=5,
        min_interval=None,
        peers=(),
        complete=None,
        incomplete=None,
        warning=None,
        tracker_id=None,
    )
    body = benc(
        {
            b"interval": 5,
            b"peers": [
                {b"peer id": b"x" * 20, b"ip": b"127.0.0.5", b"port": 1},
                {b"ip": b"::ffff:127.0.0.6", b"port": 2},
                {b"ip": b"::1", b"port": 3},
                {b"ip": b"127.0.0.7", b"port": 0},  # unconnectable: dropped
                {b"ip": b"127.0.0.5", b"port": 1},  # duplicate: dropped
            ],
        }
    )
    assert parse_announce_response(body).peers == (
        PeerAddr("127.0.0.5", 1),
        PeerAddr("127.0.0.6", 2),
        PeerAddr("::1", 3),
    )


BAD_RESPONSES: list[tuple[bytes, str]] = [
    (b"d14:failure reason9:not knowne", "not known"),
    (b"d14:failure reason2:\xff!e", "\ufffd!"),
    (
        b"d14:failure reasoni1ee",
        "tracker response has a 'failure reason' that is not a string",
    ),
    (b"<html>oops</html>", "tracker response is not valid bencode"),
    (b"", "tracker response is not valid bencode"),
    (b"li1ee", "tracker response is a bencoded list, not a dictionary"),
    (b"de", "tracker response has no 'interval'"),
    (b"d8:interval1:xe", "tracker response 'interval' is not a non-negative integer"),
    (b"d8:intervali-1ee", "tracker response 'interval' is not a non-negative integer"),
    (
        benc({b"interval": 1, b"peers": b"12345"}),
        "tracker response: compact: peers string is 5 bytes, not a multiple of 6",
    ),
    (
        benc({b"interval": 1, b"peers6": b"1" * 17}),
        "tracker response: compact: peers6 string is 17 bytes, not a multiple of 18",
    ),
    (
        benc({b"interval": 1, b"peers": 7}),
        "tracker response 'peers' is not a string or a list",
    ),
    (
        benc({b"interval": 1, b"peers6": []}),
        "tracker response 'peers6' is not a string",
    ),
    (
        benc({b"interval": 1, b"peers": [1]}),
        "tracker response peers[0] is not a dictionary",
    ),
    (
        benc({b"interval": 1, b"peers": [{b"ip": b"192.0.2.4"}]}),
        "tracker response peers[0] lacks a string 'ip' and integer 'port'",
    ),
    (
        benc({b"interval": 1, b"peers": [{b"ip": b"example.com", b"port": 1}]}),
        "tracker response peers[0] ip b'example.com' is not an IP address",
    ),
    (
        benc({b"interval": 1, b"peers": [{b"ip": b"::1", b"port": 70000}]}),
        "tracker response peers[0] port 70000 is invalid",
    ),
    (
        benc({b"interval": 1, b"complete": b"3"}),
        "tracker response 'complete' is not a non-negative integer",
    ),
    (
        benc({b"interval": 1, b"warning message": 3}),
        "tracker response 'warning message' is not a string",
    ),
    (
        benc({b"interval": 1, b"tracker id": 3}),
        "tracker response 'tracker id' is not a string",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_RESPONSES)
def test_bad_responses(body: bytes, message: str) -> None:
    with pytest.raises(TrackerFailure) as info:
        parse_announce_response(body)
    assert info.value.reason.startswith(message)


_bencodable = st.recursive(
    st.integers(min_value=-(2**70), max_value=2**70) | st.binary(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.dictionaries(
            st.sampled_from(
                [
                    b"interval",
                    b"min interval",
                    b"peers",
                    b"peers6",
                    b"ip",
                    b"port",
                    b"complete",
                    b"incomplete",
                    b"failure reason",
                    b"warning message",
                    b"tracker id",
                    b"files",
                    b"x" * 20,
                ]
            ),
            inner,
            max_size=6,
        )
    ),
    max_leaves=20,
)


@given(_bencodable)
def test_any_bencoded_value_parses_or_raises_tracker_failure(value: object) -> None:
    body = benc(value)
    for parse in (parse_announce_response, parse_scrape_response):
        with contextlib.suppress(TrackerFailure):
            parse(body)


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_tracker_failure(body: bytes) -> None:
    for parse in (parse_announce_response, parse_scrape_response):
        with contextlib.suppress(TrackerFailure):
            parse(body)


def test_parse_scrape_response() -> None:
    a, b = b"\x01" * 20, b"\x02" * 20
    body = benc(
        {
            b"files": {
                a: {b"complete": 1, b"downloaded": 2, b"incomplete": 3},
                b: {b"complete": 4},
            }
        }
    )
    assert parse_scrape_response(body) == {
        a: ScrapeStats(complete=1, downloaded=2, incomplete=3),
        b: ScrapeStats(complete=4, downloaded=0, incomplete=0),
    }
    assert parse_scrape_response(b"de") == {}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"d14:failure reason4:nopee", "nope"),
        (benc({b"files": []}), "scrape response 'files' is not a dictionary"),
        (benc({b"files": {b"ab": {}}}), "scrape response key b'ab' is 2 bytes, not 20"),
        (
            benc({b"files": {b"a" * 20: 1}}),
            "scrape response entry 61616161 is not a dictionary",
        ),
        (
            benc({b"files": {b"a" * 20: {b"complete": -1}}}),
            "scrape response entry 61616161 'complete' is not a non-negative "
            "integer: -1",
        ),
    ],
)
def test_bad_scrape_responses(body: bytes, message: str) -> None:
    with pytest.raises(TrackerFailure) as info:
        parse_scrape_response(body)
    assert info.value.reason == message


# -- scheduling ----------------------------------------------------------------------


def response(interval: int, min_interval: int | None = None) -> AnnounceResponse:
    return AnnounceResponse(
        interval=interval,
        min_interval=min_interval,
        peers=(),
        complete=None,
        incomplete=None,
        warning=None,
        tracker_id=None,
    )


def test_next_announce_delay() -> None:
    assert next_announce_delay(response(1800), 30) == 1800
    assert next_announce_delay(response(5), 30) == 30
    assert next_announce_delay(response(5, 60), 0.1) == 60
    assert next_announce_delay(response(0), 0.05) == 0.05
    assert next_announce_delay(response(10**12), 30) == MAX_ANNOUNCE_INTERVAL_S


def test_backoff_grows_caps_and_resets() -> None:
    backoff = RetryBackoff(15, 1800)
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays == [15, 30, 60, 120, 240, 480, 960, 1800, 1800, 1800]
    assert backoff.failures == 10
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay() == 15
    many = RetryBackoff(1, 5)
    assert [many.next_delay() for _ in range(200)][-1] == 5


def test_tier_list_shuffles_each_tier_with_the_rng() -> None:
    tiers = [["a", "b", "c", "d"], ["e", "f"], [], ["a", "g"]]
    first = TierList(tiers, random.Random(1))
    assert first.tiers == TierList(tiers, random.Random(1)).tiers
    assert [sorted(t) for t in first.tiers] == [["a", "b", "c", "d"], ["e", "f"], ["g"]]
    orders = {TierList(tiers, random.Random(seed)).tiers[0] for seed in range(20)}
    assert len(orders) > 1
    assert len(first) == 7


def test_tier_list_moves_success_to_front_of_its_tier() -> None:
    tiers = TierList([["a", "b", "c"], ["d", "e"]], random.Random(0))
    tier0, tier1 = tiers.tiers
    last = tier1[-1]
    tiers.mark_success(last)
    assert tiers.tiers == (tier0, (last, tier1[0]))
    assert tiers.candidates() == [*tier0, last, tier1[0]]
    tiers.mark_success("unknown")
    assert tiers.candidates() == [*tier0, last, tier1[0]]
