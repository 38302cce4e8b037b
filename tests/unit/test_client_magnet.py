"""Magnet URIs (BEP 9): parsing, named failures, round trips."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core.magnet import Magnet, magnet_from_metainfo, parse_magnet
from client.core.metainfo import parse_metainfo
from client.errors import (
    MagnetConflictError,
    MagnetError,
    MagnetHashError,
    MagnetLengthError,
    MagnetMissingHashError,
    MagnetPeerError,
    NotAMagnetError,
)
from dht import PeerAddr

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"
IH = bytes(range(20))
HEX = IH.hex()
B32 = base64.b32encode(IH).decode()


def test_full_magnet() -> None:
    uri = (
        f"magnet:?xt=urn:btih:{HEX}&dn=caf%C3%A9%20m%C3%BAsica+x"
        "&tr=http%3A%2F%2F127.0.0.1%3A6969%2Fannounce&tr=udp://127.0.0.1:1"
        "&tr=udp://127.0.0.1:1&x.pe=127.0.0.1:6881&x.pe=[::1]:6882"
        "&x.pe=localhost:7000&xl=12345&ws=http://ignored&unknown"
    )
    m = parse_magnet(uri)
    assert m.info_hash == IH
    assert m.display_name == "caf\u00e9 m\u00fasica+x"
    assert m.trackers == ("http://127.0.0.1:6969/announce", "udp://127.0.0.1:1")
    assert m.peers == (
        PeerAddr("127.0.0.1", 6881),
        PeerAddr("::1", 6882),
        PeerAddr("localhost", 7000),
    )
    assert m.exact_length == 12345


@pytest.mark.parametrize("btih", [HEX, HEX.upper(), B32, B32.lower(), B32.capitalize()])
def test_btih_hex_and_base32_any_case(btih: str) -> None:
    assert parse_magnet(f"magnet:?xt=urn:btih:{btih}").info_hash == IH
    assert parse_magnet(f"MAGNET:?XT=URN:BTIH:{btih}").info_hash == IH


def test_minimal_magnet_defaults() -> None:
    m = parse_magnet(f"magnet:?xt=urn:btih:{HEX}")
    assert m == Magnet(info_hash=IH)
    assert m.display_name is None
    assert m.trackers == ()
    assert m.peers == ()
    assert m.exact_length is None


def test_numbered_params_and_same_hash_twice() -> None:
    m = parse_magnet(
        f"magnet:?xt.1=urn:btih:{HEX}&xt.2=urn:btih:{B32}&tr.1=http://127.0.0.1/a"
        "&tr.2=http://127.0.0.1/b&xt=urn:btmh:1220" + "00" * 32
    )
    assert m.info_hash == IH
    assert m.trackers == ("http://127.0.0.1/a", "http://127.0.0.1/b")


def test_fragment_is_ignored() -> None:
    assert parse_magnet(f"magnet:?xt=urn:btih:{HEX}#frag").info_hash == IH


@pytest.mark.parametrize(
    ("uri", "error", "fragment"),
    [
        ("http://example.invalid/x.torrent", NotAMagnetError, "not a magnet URI"),
        ("", NotAMagnetError, "not a magnet URI"),
        ("magnet:", NotAMagnetError, "not a magnet URI"),
        ("magnet:?dn=x", MagnetMissingHashError, "missing 'xt=urn:btih:"),
        ("magnet:?xt=urn:sha1:abc", MagnetMissingHashError, "missing"),
        ("magnet:?xt=urn:btmh:1220" + "00" * 32, MagnetMissingHashError, "v2"),
        ("magnet:?xt=urn:btih:abc", MagnetHashError, "3 characters"),
        ("magnet:?xt=urn:btih:" + "g" * 40, MagnetHashError, "not hex"),
        ("magnet:?xt=urn:btih:" + "a " * 20, MagnetHashError, "not hex"),
        ("magnet:?xt=urn:btih:" + "1" * 32, MagnetHashError, "not base32"),
        ("magnet:?xt=urn:btih:" + "A" * 28 + "====", MagnetHashError, "base32"),
        (
            f"magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{'ff' * 20}",
            MagnetConflictError,
            "several different btih",
        ),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=127.0.0.1", MagnetPeerError, "HOST:PORT"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=127.0.0.1:0", MagnetPeerError, "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=127.0.0.1:65536", MagnetPeerError, "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=::1:80", MagnetPeerError, "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=[zz]:80", MagnetPeerError, "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=:80", MagnetPeerError, "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&x.pe=a b:80", MagnetPeerError, "x.pe"),
        (f"magnet:?xt=urn:btih:{HEX}&xl=-1", MagnetLengthError, "xl"),
        (f"magnet:?xt=urn:btih:{HEX}&xl=12a", MagnetLengthError, "xl"),
        (f"magnet:?xt=urn:btih:{HEX}&xl=", MagnetLengthError, "xl"),
        (f"magnet:?xt=urn:btih:{HEX}&xl=" + "9" * 20, MagnetLengthError, "xl"),
    ],
)
def test_named_failures(uri: str, error: type[MagnetError], fragment: str) -> None:
    with pytest.raises(error) as info:
        parse_magnet(uri)
    assert type(info.value) is error
    assert fragment in str(info.value)


def test_magnet_validates_its_fields() -> None:
    with pytest.raises(MagnetHashError):
        Magnet(info_hash=b"short")
    with pytest.raises(MagnetLengthError):
        Magnet(info_hash=IH, exact_length=-1)


def test_magnet_from_sample_torrent() -> None:
    meta = parse_metainfo((SAMPLES / "album.torrent").read_bytes())
    m = magnet_from_metainfo(meta)
    assert m.info_hash == meta.info_hash
    assert m.display_name == "album"
    assert m.exact_length == meta.total_length
    uri = m.to_uri()
    assert uri.startswith(f"magnet:?xt=urn:btih:{meta.info_hash_hex}&dn=album&xl=")
    assert parse_magnet(uri) == m


def test_to_uri_keeps_tracker_order_and_escapes() -> None:
    m = Magnet(
        info_hash=IH,
        display_name="a&b=c d+e/\u00e9",
        trackers=("http://127.0.0.1:2/a?x=1&y=2", "udp://127.0.0.1:1"),
        peers=(PeerAddr("::1", 80), PeerAddr("127.0.0.1", 81)),
        exact_length=0,
    )
    uri = m.to_uri()
    assert "&tr=http%3A%2F%2F127.0.0.1%3A2%2Fa%3Fx%3D1%26y%3D2&tr=udp" in uri
    assert "x.pe=[::1]:80&x.pe=127.0.0.1:81" in uri
    assert parse_magnet(uri) == m


text_no_controls = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
hosts = st.one_of(
    st.ip_addresses().map(str),
    st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?(\.[a-z]{2,5})?", fullmatch=True),
)


@given(
    info_hash=st.binary(min_size=20, max_size=20),
    name=st.none() | text_no_controls,
    trackers=st.lists(text_no_controls.filter(bool), max_size=3, unique=True),
    peers=st.lists(
        st.builds(PeerAddr, hosts, st.integers(1, 65535)), max_size=3, unique=True
    ),
    length=st.none() | st.integers(0, 2**63 - 1),
)
def test_round_trip(
    info_hash: bytes,
    name: str | None,
    trackers: list[str],
    peers: list[PeerAddr],
    length: int | None,
) -> None:
    m = Magnet(
        info_hash=info_hash,
        display_name=name,
        trackers=tuple(trackers),
        peers=tuple(peers),
        exact_length=length,
    )
    assert parse_magnet(m.to_uri()) == m


@settings(max_examples=500)
@given(st.text(max_size=200))
def test_arbitrary_text_raises_only_magnet_error(text: str) -> None:
    for uri in (text, "magnet:?" + text, f"magnet:?xt=urn:btih:{HEX}&" + text):
        with contextlib.suppress(MagnetError):
            parse_magnet(uri)


@settings(max_examples=300)
@given(
    st.lists(
        st.sampled_from(["xt", "dn", "tr", "x.pe", "xl", "xt.1", "tr.2"]).flatmap(
            lambda k: st.text(max_size=45).map(lambda v: f"{k}={v}")
        ),
        max_size=5,
    )
)
def test_structured_junk_raises_only_magnet_error(params: list[str]) -> None:
    with contextlib.suppress(MagnetError):
        parse_magnet("magnet:?" + "&".join(params))
