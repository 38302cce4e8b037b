"""Announce and scrape request parsing (tracker/core/request.py)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker.core.request import (
    MAX_SCRAPE_HASHES,
    Event,
    parse_announce,
    parse_query,
    parse_scrape,
    percent_decode,
)
from tracker.errors import AnnounceRequestError

INFO_HASH = bytes([0x00, 0xFF, 0x80, 0x25, 0x26, 0x3D, 0x2B, 0x20]) + bytes(range(12))
PEER_ID = b"-BS0001-" + bytes([0x00, 0xC3, 0x28, 0xFE]) + b"abcdefgh"


def enc(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


def query(**overrides: str | None) -> str:
    params: dict[str, str | None] = {
        "info_hash": enc(INFO_HASH),
        "peer_id": enc(PEER_ID),
        "port": "6881",
        "uploaded": "0",
        "downloaded": "0",
        "left": "100",
    }
    params.update(overrides)
    return "&".join(f"{k}={v}" for k, v in params.items() if v is not None)


def parse(raw: str, trust_ip: bool = False):  # type: ignore[no-untyped-def]
    return parse_announce(raw, default_numwant=50, max_numwant=200, trust_ip=trust_ip)


def test_announce_binary_ids_round_trip() -> None:
    req = parse(query(event="started", key="abc", trackerid="t%00"))
    assert req.info_hash == INFO_HASH
    assert req.peer_id == PEER_ID
    assert (req.port, req.uploaded, req.downloaded, req.left) == (6881, 0, 0, 100)
    assert req.event is Event.STARTED
    assert req.numwant == 50
    assert req.compact is True
    assert req.no_peer_id is False
    assert req.key == b"abc"
    assert req.tracker_id == b"t\x00"
    assert req.ip is None


def test_unreserved_bytes_may_be_sent_unescaped() -> None:
    info_hash = b"abcdefghij0123456789"
    req = parse(query(info_hash="abcdefghij%30123456789"))
    assert req.info_hash == info_hash


def test_plus_is_a_literal_byte() -> None:
    req = parse(query(info_hash="+" * 20))
    assert req.info_hash == b"+" * 20


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"event": None}, Event.EMPTY),
        ({"event": ""}, Event.EMPTY),
        ({"event": "started"}, Event.STARTED),
        ({"event": "completed"}, Event.COMPLETED),
        ({"event": "stopped"}, Event.STOPPED),
    ],
)
def test_events(overrides: dict[str, str | None], expected: Event) -> None:
    assert parse(query(**overrides)).event is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, 50),
        ("", 50),
        ("0", 0),
        ("10", 10),
        ("200", 200),
        ("5000", 200),
        ("-1", 50),
    ],
)
def test_numwant_defaults_and_cap(value: str | None, expected: int) -> None:
    assert parse(query(numwant=value)).numwant == expected


def test_compact_and_no_peer_id_flags() -> None:
    req = parse(query(compact="0", no_peer_id="1"))
    assert req.compact is False
    assert req.no_peer_id is True


def test_ip_ignored_unless_trusted() -> None:
    assert parse(query(ip="not-an-ip")).ip is None
    assert parse(query(ip="127.0.0.7"), trust_ip=True).ip == "127.0.0.7"
    assert parse(query(ip="%3A%3Affff%3A127.0.0.8"), trust_ip=True).ip == "127.0.0.8"
    assert parse(query(ip="::1"), trust_ip=True).ip == "::1"


BAD_ANNOUNCES: list[tuple[dict[str, str | None], str]] = [
    ({"info_hash": None}, "info_hash is missing"),
    ({"info_hash": enc(INFO_HASH[:19])}, "info_hash is 19 bytes, not 20"),
    ({"info_hash": enc(INFO_HASH + b"\x00")}, "info_hash is 21 bytes, not 20"),
    (
        {"info_hash": "%zz" + enc(INFO_HASH[1:])},
        "info_hash has a malformed percent-escape: '%zz'",
    ),
    (
        {"info_hash": enc(INFO_HASH) + "%4"},
        "info_hash has a malformed percent-escape: '%4'",
    ),
    ({"peer_id": None}, "peer_id is missing"),
    ({"peer_id": "short"}, "peer_id is 5 bytes, not 20"),
    ({"port": None}, "port is missing"),
    ({"port": "70000"}, "port 70000 is out of range"),
    ({"port": "0"}, "port 0 is out of range"),
    ({"port": "-1"}, "port -1 is out of range"),
    ({"port": "http"}, "port is not a number: 'http'"),
    ({"uploaded": "abc"}, "uploaded is not a number: 'abc'"),
    ({"uploaded": "1.5"}, "uploaded is not a number: '1.5'"),
    ({"uploaded": ""}, "uploaded is not a number: ''"),
    ({"downloaded": "-5"}, "downloaded -5 is negative"),
    ({"downloaded": None}, "downloaded is missing"),
    ({"left": "1" * 21}, "left has 21 digits; the cap is 20"),
    ({"left": "%C3%A9"}, "left is not a number: 'Ã©'"),
    (
        {"event": "paused"},
        "event 'paused' is not one of started, completed, stopped or empty",
    ),
    ({"numwant": "lots"}, "numwant is not a number: 'lots'"),
    ({"compact": "yes"}, "compact must be 0 or 1, not 'yes'"),
    ({"no_peer_id": "2"}, "no_peer_id must be 0 or 1, not '2'"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_ANNOUNCES)
def test_bad_announce_messages(overrides: dict[str, str | None], message: str) -> None:
    with pytest.raises(AnnounceRequestError) as info:
        parse(query(**overrides))
    assert info.value.reason == message


def test_repeated_singular_key_is_an_error() -> None:
    with pytest.raises(
        AnnounceRequestError, match=r"^port is given 2 times, not once$"
    ):
        parse(query() + "&port=1")


def test_bad_trusted_ip() -> None:
    with pytest.raises(
        AnnounceRequestError, match=r"^ip 'nowhere' is not an IP address$"
    ):
        parse(query(ip="nowhere"), trust_ip=True)


def test_overlong_query() -> None:
    with pytest.raises(AnnounceRequestError, match="query string is 20000 characters"):
        parse("a" * 20000)


def test_long_bad_values_are_truncated_in_messages() -> None:
    with pytest.raises(AnnounceRequestError) as info:
        parse(query(uploaded="x" * 1000))
    assert info.value.reason == "uploaded is not a number: '" + "x" * 32 + "'..."


def test_parse_query_keeps_repeats_and_decodes_keys() -> None:
    assert parse_query("a=1&&b&a=%00&%61=2") == {"a": [b"1", b"\x00", b"2"], "b": [b""]}


def test_percent_decode_non_ascii_text_is_utf8() -> None:
    assert percent_decode("é%41", "x") == "é".encode() + b"A"


def test_scrape_several_hashes_deduplicated() -> None:
    a, b = b"\x01" * 20, b"\xff" * 20
    req = parse_scrape(f"info_hash={enc(a)}&info_hash={enc(b)}&info_hash={enc(a)}")
    assert req.info_hashes == (a, b)
    assert parse_scrape("").info_hashes == ()


def test_scrape_errors() -> None:
    with pytest.raises(AnnounceRequestError, match=r"^info_hash is 3 bytes, not 20$"):
        parse_scrape("info_hash=abc")
    too_many = "&".join(
        f"info_hash={enc(bytes([i]) * 20)}" for i in range(MAX_SCRAPE_HASHES + 1)
    )
    with pytest.raises(AnnounceRequestError, match="scrape names 129 info_hash values"):
        parse_scrape(too_many)


@given(st.text(max_size=300))
def test_any_query_raises_only_announce_request_error(raw: str) -> None:
    for trust_ip in (False, True):
        with contextlib.suppress(AnnounceRequestError):
            parse(raw, trust_ip=trust_ip)
    with contextlib.suppress(AnnounceRequestError):
        parse_scrape(raw)


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
        "&",
        "%",
        "%0",
        "%00",
        "%ff",
        "%zz",
        "1",
        "-",
        "0",
        "65535",
        "started",
        "=",
        "::1",
        "1.2",
    ]
)


@given(st.lists(st.one_of(_PIECES, st.text(max_size=5)), max_size=60))
def test_structured_queries_raise_only_announce_request_error(parts: list[str]) -> None:
    raw = "".join(parts)
    for trust_ip in (False, True):
        with contextlib.suppress(AnnounceRequestError):
            parse(raw, trust_ip=trust_ip)
