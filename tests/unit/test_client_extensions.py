"""Extension handshake (BEP 10): exact bytes, tolerant parsing, per-peer state."""

from __future__ import annotations

import contextlib

import bencodepy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core import extensions as ext
from client.errors import LocalPeerProtocolError, RemotePeerProtocolError

# (encode_ext_handshake kwargs, exact payload bytes, parsed form)
CASES: list[tuple[dict[str, object], bytes, ext.ExtHandshake]] = [
    (
        {"metadata_size": None, "listen_port": None, "yourip": None},
        b"d1:md11:ut_metadatai1e6:ut_pexi2ee4:reqqi250e1:v12:bitswarm 0.1e",
        ext.ExtHandshake(m={"ut_metadata": 1, "ut_pex": 2}, v="bitswarm 0.1", reqq=250),
    ),
    (
        {
            "metadata_size": 31337,
            "listen_port": 6881,
            "yourip": b"\x7f\x00\x00\x01",
            "reqq": 100,
            "version": "t",
            "ut_pex": False,
        },
        b"d1:md11:ut_metadatai1ee13:metadata_sizei31337e1:pi6881e"
        b"4:reqqi100e1:v1:t6:yourip4:\x7f\x00\x00\x01e",
        ext.ExtHandshake(
            m={"ut_metadata": 1},
            v="t",
            p=6881,
            metadata_size=31337,
            reqq=100,
            yourip=b"\x7f\x00\x00\x01",
        ),
    ),
    (
        {"metadata_size": 1, "listen_port": 1, "yourip": b"\0" * 15 + b"\x01"},
        b"d1:md11:ut_metadatai1e6:ut_pexi2ee13:metadata_sizei1e1:pi1e"
        b"4:reqqi250e1:v12:bitswarm 0.16:yourip16:" + b"\0" * 15 + b"\x01e",
        ext.ExtHandshake(
            m={"ut_metadata": 1, "ut_pex": 2},
            v="bitswarm 0.1",
            p=1,
            metadata_size=1,
            reqq=250,
            yourip=b"\0" * 15 + b"\x01",
        ),
    ),
]


@pytest.mark.parametrize(("kwargs", "payload", "parsed"), CASES)
def test_handshake_exact_bytes_both_ways(
    kwargs: dict[str, object], payload: bytes, parsed: ext.ExtHandshake
) -> None:
    assert ext.encode_ext_handshake(**kwargs) == payload  # type: ignore[arg-type]
    assert ext.parse_ext_handshake(payload) == parsed


def test_local_ids_are_the_spec_names() -> None:
    assert ext.LOCAL_EXTENSION_IDS == {"ut_metadata": 1, "ut_pex": 2}
    assert ext.local_extension_name(ext.UT_METADATA_ID) == "ut_metadata"
    assert ext.local_extension_name(ext.UT_PEX_ID) == "ut_pex"
    assert ext.local_extension_name(0) is None
    assert ext.local_extension_name(9) is None


def test_parse_ignores_unknown_and_wrong_typed_keys() -> None:
    payload = bencodepy.encode(
        {
            b"m": {
                b"ut_metadata": 3,
                b"ut_pex": 0,
                b"lt_donthave": 7,
                b"\xff\xfe": 4,  # not UTF-8: skipped
                b"too_big": 256,  # not one byte: skipped
                b"neg": -1,
                b"str": b"x",
            },
            b"v": 5,
            b"p": 70000,
            b"metadata_size": b"12",
            b"reqq": 0,
            b"yourip": b"abc",
            b"ipv4": b"\x0a\0\0\x01",
            b"ipv6": b"short",
            b"complete_ago": 3,
            b"upload_only": 1,
        }
    )
    hs = ext.parse_ext_handshake(payload)
    assert hs == ext.ExtHandshake(
        m={"ut_metadata": 3, "ut_pex": 0, "lt_donthave": 7}, ipv4=b"\x0a\0\0\x01"
    )


def test_parse_tolerates_missing_or_non_dict_m() -> None:
    assert ext.parse_ext_handshake(b"de").m == {}
    assert ext.parse_ext_handshake(b"d1:mi3ee").m == {}
    assert ext.parse_ext_handshake(b"d1:v4:\xff\xfeabe").v == "\ufffd\ufffdab"


def test_oversize_metadata_size_refused() -> None:
    payload = b"d13:metadata_sizei16777217ee"
    with pytest.raises(RemotePeerProtocolError) as info:
        ext.parse_ext_handshake(payload)
    assert str(info.value) == (
        "ext handshake: metadata_size 16777217 exceeds the 16777216-byte cap"
    )
    ok = ext.parse_ext_handshake(b"d13:metadata_sizei16777216ee")
    assert ok.metadata_size == ext.MAX_METADATA_BYTES


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (b"le", "not a dictionary"),
        (b"i3e", "not a dictionary"),
        (b"", "not valid bencode"),
        (b"d1:m", "not valid bencode"),
        (b"dee", "trailing data"),
        (b"d1:mi1e1:mi2ee", "repeated dictionary key"),
        (b"di1ei2ee", "not valid bencode"),
    ],
)
def test_parse_refuses_junk(payload: bytes, fragment: str) -> None:
    with pytest.raises(RemotePeerProtocolError, match=fragment):
        ext.parse_ext_handshake(payload)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"metadata_size": 0, "listen_port": None, "yourip": None},
        {"metadata_size": 2**24 + 1, "listen_port": None, "yourip": None},
        {"metadata_size": None, "listen_port": 0, "yourip": None},
        {"metadata_size": None, "listen_port": 65536, "yourip": None},
        {"metadata_size": None, "listen_port": None, "yourip": b"\0" * 5},
        {"metadata_size": None, "listen_port": None, "yourip": None, "reqq": 0},
    ],
)
def test_encode_refuses_bad_arguments(kwargs: dict[str, object]) -> None:
    with pytest.raises(LocalPeerProtocolError):
        ext.encode_ext_handshake(**kwargs)  # type: ignore[arg-type]


def test_state_records_peer_ids_for_sending() -> None:
    state = ext.ExtensionState()
    assert not state.received
    assert state.peer_id_for("ut_metadata") is None
    hs = state.receive_handshake(
        b"d1:md11:ut_metadatai3e6:ut_pexi0ee13:metadata_sizei500ee"
    )
    assert state.received
    assert state.handshake == hs
    assert state.peer_id_for("ut_metadata") == 3
    assert state.supports("ut_metadata")
    assert not state.supports("ut_pex")  # 0 means disabled
    assert state.peer_id_for("ut_pex") is None
    assert state.metadata_size == 500
    assert state.peer_extensions == {"ut_metadata": 3}


def test_state_later_handshakes_are_additive() -> None:
    state = ext.ExtensionState()
    state.receive_handshake(b"d1:md11:ut_metadatai3e6:ut_pexi4eee")
    # Only changes: ut_pex moves, ut_metadata is switched off, the rest stays.
    state.receive_handshake(b"d1:md11:ut_metadatai0e6:ut_pexi9eee")
    assert state.peer_extensions == {"ut_pex": 9}
    state.receive_handshake(b"d1:pi7000ee")
    assert state.peer_extensions == {"ut_pex": 9}
    assert state.handshake is not None
    assert state.handshake.p == 7000


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_bytes_raise_only_remote_error(data: bytes) -> None:
    with contextlib.suppress(RemotePeerProtocolError):
        ext.parse_ext_handshake(data)


_bvalues = st.recursive(
    st.integers(min_value=-(2**40), max_value=2**40) | st.binary(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.binary(max_size=15), children, max_size=4)
    ),
    max_leaves=12,
)
_keys = st.sampled_from(
    [b"m", b"v", b"p", b"metadata_size", b"reqq", b"yourip", b"ipv4", b"ipv6"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(_keys | st.binary(max_size=8), _bvalues, max_size=6),
    st.dictionaries(st.binary(max_size=12), _bvalues, max_size=4),
)
def test_fuzz_structured_dicts(d: dict[bytes, object], m: dict[bytes, object]) -> None:
    d = {**d, b"m": m}
    size = d.get(b"metadata_size")
    if isinstance(size, int) and size > ext.MAX_METADATA_BYTES:
        with pytest.raises(RemotePeerProtocolError, match="metadata_size"):
            ext.parse_ext_handshake(bencodepy.encode(d))
        return
    hs = ext.parse_ext_handshake(bencodepy.encode(d))
    assert all(0 <= i <= 255 for i in hs.m.values())
    assert hs.metadata_size is None or 1 <= hs.metadata_size <= 2**24


@settings(max_examples=100, deadline=None)
@given(
    metadata_size=st.none() | st.integers(1, ext.MAX_METADATA_BYTES),
    listen_port=st.none() | st.integers(1, 65535),
    yourip=st.none()
    | st.binary(min_size=4, max_size=4)
    | st.binary(min_size=16, max_size=16),
    reqq=st.integers(1, 65535),
    version=st.text(max_size=30),
    ut_pex=st.booleans(),
)
def test_round_trip(
    metadata_size: int | None,
    listen_port: int | None,
    yourip: bytes | None,
    reqq: int,
    version: str,
    ut_pex: bool,
) -> None:
    payload = ext.encode_ext_handshake(
        metadata_size=metadata_size,
        listen_port=listen_port,
        yourip=yourip,
        reqq=reqq,
        version=version,
        ut_pex=ut_pex,
    )
    hs = ext.parse_ext_handshake(payload)
    expect_m = {"ut_metadata": 1, **({"ut_pex": 2} if ut_pex else {})}
    assert hs.m == expect_m
    assert (hs.metadata_size, hs.p, hs.yourip, hs.reqq) == (
        metadata_size,
        listen_port,
        yourip,
        reqq,
    )
    if len(version.encode()) <= ext.MAX_VERSION_CHARS:
        assert hs.v == version
