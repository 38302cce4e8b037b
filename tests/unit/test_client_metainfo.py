"""Metainfo parsing (BEP 3/12/27/47) and the bencode span scanner."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import bencodepy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from client.core import bencode_span, metainfo
from client.core.bencode_span import check_bencode, decode, info_span
from client.core.metainfo import (
    FileEntry,
    describe,
    parse_info,
    parse_metainfo,
)
from client.errors import (
    BencodeSyntaxError,
    DuplicatePathError,
    MetainfoError,
    MetainfoTooLargeError,
    NotADictError,
    TooManyFilesError,
    TooManyPiecesError,
    TrailingDataError,
)

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"
H = b"\x11" * 20


def enc(value: object) -> bytes:
    return bytes(bencodepy.encode(value))


def single_info(**extra: object) -> dict[bytes, object]:
    info: dict[bytes, object] = {
        b"name": b"a.txt",
        b"piece length": 16384,
        b"pieces": H * 2,
        b"length": 20000,
    }
    info.update({k.encode(): v for k, v in extra.items()})
    return info


# --- samples ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["greeting.txt.torrent", "random.bin.torrent", "album.torrent"]
)
def test_sample_infohash_is_sha1_of_exact_info_span(name: str) -> None:
    data = (SAMPLES / name).read_bytes()
    meta = parse_metainfo(data)
    start, end = info_span(data)
    assert data[start : start + 1] == b"d"
    assert meta.info_bytes == data[start:end]
    assert meta.info_hash == hashlib.sha1(data[start:end]).digest()
    assert meta.info_hash_hex == meta.info_hash.hex()
    assert len(meta.info_hash_hex) == 40
    assert parse_info(meta.info_bytes).info_hash == meta.info_hash


def test_greeting_sample() -> None:
    meta = parse_metainfo((SAMPLES / "greeting.txt.torrent").read_bytes())
    data = (SAMPLES / "greeting.txt").read_bytes()
    assert b"\x00" in data
    assert meta.name == "greeting.txt"
    assert not meta.is_multi_file
    assert meta.files == (
        FileEntry(path=("greeting.txt",), length=len(data), offset=0),
    )
    assert meta.total_length % meta.piece_length != 0
    assert meta.piece_hashes == (hashlib.sha1(data).digest(),)
    assert meta.announce_tiers == ()
    assert meta.creation_date == 1_700_000_000
    assert meta.created_by == "bitswarm/0.1"


def test_random_sample_pieces_and_last_piece_size() -> None:
    meta = parse_metainfo((SAMPLES / "random.bin.torrent").read_bytes())
    data = (SAMPLES / "random.bin").read_bytes()
    pl = meta.piece_length
    assert pl == 262144
    assert meta.num_pieces == -(-len(data) // pl)
    for i, digest in enumerate(meta.piece_hashes):
        assert hashlib.sha1(data[i * pl : (i + 1) * pl]).digest() == digest
    assert meta.piece_size(0) == pl
    assert meta.piece_size(meta.num_pieces - 1) == len(data) % pl
    with pytest.raises(IndexError):
        meta.piece_size(meta.num_pieces)
    with pytest.raises(IndexError):
        meta.piece_size(-1)


def test_album_sample_multi_file_layout() -> None:
    meta = parse_metainfo((SAMPLES / "album.torrent").read_bytes())
    assert meta.is_multi_file
    assert meta.name == "album"
    paths = [f.path for f in meta.files]
    assert paths == [
        ("album", "01 - intro.txt"),
        ("album", "disc 2", "02 - caf\u00e9.bin"),
        ("album", "disc 2", "notes.txt"),
        ("album", "empty.txt"),
    ]
    offset = 0
    blob = b""
    for f in meta.files:
        assert f.offset == offset
        on_disk = SAMPLES.joinpath(*f.path).read_bytes()
        assert len(on_disk) == f.length
        blob += on_disk
        offset += f.length
    assert meta.total_length == len(blob)
    pl = meta.piece_length
    for i, digest in enumerate(meta.piece_hashes):
        assert hashlib.sha1(blob[i * pl : (i + 1) * pl]).digest() == digest


# --- infohash from the original bytes ---------------------------------------


def test_infohash_uses_original_bytes_when_keys_are_unsorted() -> None:
    # keys deliberately out of order: re-encoding would sort them
    info = (
        b"d6:lengthi20000e4:name5:a.txt6:pieces40:" + H * 2 + b"12:piece lengthi16384ee"
    )
    data = b"d4:info" + info + b"8:announce18:http://127.0.0.1/ae"
    meta = parse_metainfo(data)
    assert meta.info_bytes == info
    assert meta.info_hash == hashlib.sha1(info).digest()
    reencoded = enc(bencodepy.decode(info))
    assert reencoded != info
    assert meta.info_hash != hashlib.sha1(reencoded).digest()
    assert meta.announce_tiers == (("http://127.0.0.1/a",),)


def test_info_span_ignores_nested_info_keys() -> None:
    real = enc(single_info())
    data = b"d1:ad4:infoi1ee1:bl4:infoe4:info" + real + b"e"
    assert data[slice(*info_span(data))] == real


# --- BEP 12 / 27 / optional keys -------------------------------------------


def test_announce_list_wins_over_announce() -> None:
    top = {
        b"announce": b"http://127.0.0.1:1/x",
        b"announce-list": [
            [b"http://127.0.0.1:2/a", b"http://127.0.0.1:3/b"],
            [b"http://127.0.0.1:4/c"],
            [],
            [b"http://127.0.0.1:2/a"],
        ],
        b"info": single_info(),
    }
    meta = parse_metainfo(enc(top))
    assert meta.announce_tiers == (
        ("http://127.0.0.1:2/a", "http://127.0.0.1:3/b"),
        ("http://127.0.0.1:4/c",),
    )
    assert meta.trackers == (
        "http://127.0.0.1:2/a",
        "http://127.0.0.1:3/b",
        "http://127.0.0.1:4/c",
    )


def test_malformed_optional_keys_are_ignored() -> None:
    top = {
        b"announce": b"http://127.0.0.1:1/x",
        b"announce-list": b"not a list",
        b"comment": 5,
        b"created by": [b"x"],
        b"creation date": b"yesterday",
        b"info": single_info(),
    }
    meta = parse_metainfo(enc(top))
    assert meta.announce_tiers == (("http://127.0.0.1:1/x",),)
    assert meta.comment is None
    assert meta.created_by is None
    assert meta.creation_date is None


@pytest.mark.parametrize(("value", "private"), [(1, True), (0, False), (b"1", False)])
def test_private_flag(value: object, private: bool) -> None:
    meta = parse_metainfo(enc({b"info": single_info(private=value)}))
    assert meta.private is private
    assert parse_metainfo(enc({b"info": single_info()})).private is False


def test_comment_prefers_utf8_variant() -> None:
    top = {
        b"comment": b"plain",
        b"comment.utf-8": "caf\u00e9".encode(),
        b"info": single_info(),
    }
    assert parse_metainfo(enc(top)).comment == "caf\u00e9"


# --- names and paths ------------------------------------------------------------


def test_name_utf8_variant_wins_and_invalid_utf8_is_replaced() -> None:
    info = single_info(name=b"caf\xe9.txt")  # Latin-1, not UTF-8
    assert parse_metainfo(enc({b"info": info})).name == "caf\ufffd.txt"
    info[b"name.utf-8"] = "caf\u00e9.txt".encode()
    assert parse_metainfo(enc({b"info": info})).name == "caf\u00e9.txt"


def test_path_utf8_variant_wins() -> None:
    info = {
        b"name": b"dir",
        b"piece length": 16384,
        b"pieces": H,
        b"files": [
            {
                b"length": 3,
                b"path": [b"\xff.txt"],
                b"path.utf-8": ["\u00fc.txt".encode()],
            },
            {b"length": 4, b"path": [b"b.txt"]},
        ],
    }
    meta = parse_metainfo(enc({b"info": info}))
    assert [f.path for f in meta.files] == [("dir", "\u00fc.txt"), ("dir", "b.txt")]
    assert [f.offset for f in meta.files] == [0, 3]


def test_replacement_collisions_are_duplicates() -> None:
    info = {
        b"name": b"dir",
        b"piece length": 16384,
        b"pieces": H,
        b"files": [
            {b"length": 3, b"path": [b"\xff"]},
            {b"length": 4, b"path": [b"\xfe"]},
        ],
    }
    with pytest.raises(DuplicatePathError):
        parse_metainfo(enc({b"info": info}))


def test_pad_files_are_kept_and_may_repeat() -> None:
    info = {
        b"name": b"dir",
        b"piece length": 16384,
        b"pieces": H * 3,
        b"files": [
            {b"length": 100, b"path": [b"a"]},
            {b"length": 16284, b"path": [b".pad", b"16284"], b"attr": b"p"},
            {b"length": 100, b"path": [b"b"]},
            {b"length": 16284, b"path": [b".pad", b"16284"], b"attr": b"p"},
            {b"length": 1, b"path": [b"c"], b"attr": b"x"},
        ],
    }
    meta = parse_metainfo(enc({b"info": info}))
    assert [f.is_pad for f in meta.files] == [False, True, False, True, False]
    assert meta.files[4].attr == "x"
    files = describe(meta)["files"]
    assert isinstance(files, list)
    assert [f["path"] for f in files] == ["dir/a", "dir/b", "dir/c"]


def test_hybrid_torrent_parses_through_v1_keys() -> None:
    info = single_info()
    info[b"meta version"] = 2
    info[b"file tree"] = {b"a.txt": {b"": {b"length": 20000, b"pieces root": H * 2}}}
    top = {b"info": info, b"piece layers": {H * 2: H * 2}}
    meta = parse_metainfo(enc(top))
    assert meta.total_length == 20000
    assert meta.num_pieces == 2


# --- caps -----------------------------------------------------------------------


def test_too_many_files(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metainfo, "MAX_FILES", 2)
    info = {
        b"name": b"dir",
        b"piece length": 16384,
        b"pieces": H,
        b"files": [{b"length": 1, b"path": [str(i).encode()]} for i in range(3)],
    }
    with pytest.raises(TooManyFilesError, match="3 files exceed the cap of 2"):
        parse_metainfo(enc({b"info": info}))


def test_too_many_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metainfo, "MAX_PIECES", 1)
    with pytest.raises(TooManyPiecesError, match="2 pieces exceed the cap of 1"):
        parse_metainfo(enc({b"info": single_info()}))


def test_too_large_input(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metainfo, "MAX_METAINFO_BYTES", 50)
    data = enc({b"info": single_info()})
    with pytest.raises(MetainfoTooLargeError, match="exceed the cap of 50"):
        parse_metainfo(data)
    with pytest.raises(MetainfoTooLargeError):
        parse_info(enc(single_info()))


# --- parse_info -----------------------------------------------------------------


def test_parse_info_matches_and_takes_tiers() -> None:
    info = enc(single_info())
    meta = parse_info(info, announce_tiers=(("http://127.0.0.1/a",),))
    assert meta.info_hash == hashlib.sha1(info).digest()
    assert meta.trackers == ("http://127.0.0.1/a",)
    assert meta.comment is None


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"l1:ae", NotADictError),
        (b"i3e", NotADictError),
        (b"d4:name1:ae extra", TrailingDataError),
        (b"", BencodeSyntaxError),
    ],
)
def test_parse_info_refuses(data: bytes, error: type[MetainfoError]) -> None:
    with pytest.raises(error):
        parse_info(data)


def test_describe_is_json_and_complete() -> None:
    meta = parse_metainfo((SAMPLES / "album.torrent").read_bytes())
    d = json.loads(json.dumps(describe(meta)))
    assert d["infohash"] == meta.info_hash_hex
    assert d["name"] == "album"
    assert d["size"] == meta.total_length
    assert d["pieces"] == meta.num_pieces
    assert d["piece_length"] == 262144
    assert d["private"] is False
    assert d["trackers"] == []
    assert d["creation_date"] == 1_700_000_000
    assert {"path": "album/empty.txt", "length": 0} in d["files"]
    assert set(d) >= {"comment", "created_by", "files"}


# --- the scanner ---------------------------------------------------------------

LENIENT_IN_BENCODEPY = [b"i 1e", b"i1_0e", b"i+1e", b"d1:a0:1:a0:e", b"i 1e "]


@pytest.mark.parametrize("data", LENIENT_IN_BENCODEPY)
def test_scanner_refuses_what_bencodepy_lets_through(data: bytes) -> None:
    with pytest.raises(MetainfoError):
        check_bencode(data)
    with pytest.raises(MetainfoError):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"i-0e",
        b"i01e",
        b"ie",
        b"i-e",
        b"01:a",
        b"-1:a",
        b"2:a",
        b"l",
        b"d1:a",
        b"di1ei2ee",
        b"x",
        b"i12345678901234567890e",
        b"1234567890123:",
        b"l" * 101 + b"e" * 101,
    ],
)
def test_scanner_refuses_malformed(data: bytes) -> None:
    with pytest.raises(BencodeSyntaxError):
        check_bencode(data)


@pytest.mark.parametrize(
    "data",
    [b"i0e", b"i-5e", b"0:", b"le", b"de", b"d1:bi1e1:ai2ee", b"l" * 100 + b"e" * 100],
)
def test_scanner_accepts(data: bytes) -> None:
    check_bencode(data)
    assert decode(data) == bencodepy.decode(data)


def test_scanner_depth_constant() -> None:
    assert bencode_span.MAX_DEPTH == 100


bencodable = st.recursive(
    st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.binary(max_size=30),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.binary(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(bencodable)
def test_scanner_accepts_every_encoded_value(value: object) -> None:
    data = enc(value)
    check_bencode(data)
    assert decode(data) == value


@given(st.dictionaries(st.binary(max_size=8), bencodable, max_size=4), bencodable)
def test_info_span_finds_info_among_other_keys(
    top: dict[bytes, object], info: object
) -> None:
    top[b"info"] = info
    data = enc(top)
    assert data[slice(*info_span(data))] == enc(info)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_metainfo_error(data: bytes) -> None:
    with contextlib.suppress(MetainfoError):
        parse_metainfo(data)
    with contextlib.suppress(MetainfoError):
        parse_info(data)


SAMPLE_BYTES = (SAMPLES / "album.torrent").read_bytes()


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(st.integers(0, len(SAMPLE_BYTES) - 1), st.binary(max_size=4)),
        min_size=1,
        max_size=4,
    )
)
def test_mutated_sample_raises_only_metainfo_error(
    edits: list[tuple[int, bytes]],
) -> None:
    data = bytearray(SAMPLE_BYTES)
    for pos, chunk in edits:
        data[pos : pos + len(chunk)] = chunk
    with contextlib.suppress(MetainfoError):
        parse_metainfo(bytes(data))
