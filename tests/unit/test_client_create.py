"""Making torrents: create -> parse round trips, threaded hashing, refusals."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import bencodepy
import pytest

from client import maketorrent
from client.core.metainfo import parse_metainfo
from client.errors import (
    BadPieceLengthError,
    EmptyTorrentError,
    MetainfoReadError,
    StorageError,
    UnsafePathError,
)
from client.maketorrent import (
    collect_files,
    create_torrent,
    hash_pieces,
    load_metainfo,
    write_torrent,
)

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"
PL = 16384


def blob(seed: int, n: int) -> bytes:
    out = bytearray()
    i = 0
    while len(out) < n:
        out += hashlib.sha256(bytes([seed]) + i.to_bytes(4, "big")).digest()
        i += 1
    return bytes(out[:n])


def expected_pieces(data: bytes, piece_length: int) -> tuple[bytes, ...]:
    return tuple(
        hashlib.sha1(data[i : i + piece_length]).digest()
        for i in range(0, len(data), piece_length)
    )


def make_tree(root: Path) -> bytes:
    """A folder whose files straddle piece boundaries; returns the concatenation."""
    files = {
        "b.bin": blob(1, 3 * PL + 5),
        "a.txt": blob(2, 100),
        "sub/z.bin": blob(3, PL - 1),
        "sub/deeper/empty": b"",
        "sub/deeper/\u00fcml\u00e4ut.txt": blob(4, 2 * PL + 1),
        "c": blob(5, 7),
    }
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    order = [
        "a.txt",
        "b.bin",
        "c",
        "sub/deeper/empty",
        "sub/deeper/\u00fcml\u00e4ut.txt",
        "sub/z.bin",
    ]
    return b"".join(files[rel] for rel in order)


def test_single_file_round_trip(tmp_path: Path) -> None:
    data = blob(9, 5 * PL + 123)
    src = tmp_path / "file.bin"
    src.write_bytes(data)
    raw = create_torrent(
        src,
        piece_length=PL,
        trackers=["http://127.0.0.1:1/announce", "udp://127.0.0.1:2"],
        private=True,
        comment="hi",
        creation_date=1234,
        threads=2,
    )
    meta = parse_metainfo(raw)
    assert meta.name == "file.bin"
    assert not meta.is_multi_file
    assert meta.total_length == len(data)
    assert meta.piece_hashes == expected_pieces(data, PL)
    assert meta.piece_size(meta.num_pieces - 1) == 123
    assert meta.private
    assert meta.comment == "hi"
    assert meta.creation_date == 1234
    assert meta.created_by == "bitswarm/0.1"
    assert meta.announce_tiers == (
        ("http://127.0.0.1:1/announce",),
        ("udp://127.0.0.1:2",),
    )
    top = bencodepy.decode(raw)
    assert top[b"announce"] == b"http://127.0.0.1:1/announce"
    assert list(top) == sorted(top)
    assert list(top[b"info"]) == sorted(top[b"info"])
    assert bencodepy.encode(top) == raw


def test_multi_file_round_trip_pieces_span_files(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    concatenated = make_tree(root)
    meta = parse_metainfo(create_torrent(root, piece_length=PL, threads=3))
    assert meta.is_multi_file
    assert meta.name == "tree"
    assert [f.path for f in meta.files] == [
        ("tree", "a.txt"),
        ("tree", "b.bin"),
        ("tree", "c"),
        ("tree", "sub", "deeper", "empty"),
        ("tree", "sub", "deeper", "\u00fcml\u00e4ut.txt"),
        ("tree", "sub", "z.bin"),
    ]
    assert meta.total_length == len(concatenated)
    assert meta.total_length % PL != 0
    assert meta.piece_hashes == expected_pieces(concatenated, PL)
    assert meta.announce_tiers == ()
    assert b"announce" not in bencodepy.decode(create_torrent(root, piece_length=PL))


def test_threads_give_identical_pieces_and_really_use_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "tree"
    concatenated = make_tree(root)
    _, files, _ = collect_files(root)
    seen: list[tuple[str, int, int]] = []
    real = maketorrent._hash_range

    def spy(*args: object, **kwargs: object) -> None:
        seen.append((threading.current_thread().name, args[3], args[4]))  # type: ignore[arg-type]
        real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(maketorrent, "_hash_range", spy)
    one = hash_pieces(files, PL, threads=1)
    assert [name for name, _, _ in seen] == [threading.current_thread().name]
    seen.clear()
    two = hash_pieces(files, PL, threads=2)
    # thread idents may be reused after a thread ends; names are per thread
    assert sorted(name for name, _, _ in seen) == ["hash-0", "hash-1"]
    ranges = sorted((lo, hi) for _, lo, hi in seen)
    assert ranges[0][0] == 0
    assert ranges[0][1] == ranges[1][0]
    assert ranges[1][1] == len(one)
    many = hash_pieces(files, PL, threads=64)  # capped at the piece count
    assert one == two == many == list(expected_pieces(concatenated, PL))


def test_default_threads_and_piece_length(tmp_path: Path) -> None:
    src = tmp_path / "x"
    src.write_bytes(blob(7, 300_000))
    meta = parse_metainfo(create_torrent(src))
    assert meta.piece_length == 262144
    assert meta.num_pieces == 2


@pytest.mark.parametrize(
    "name", ["greeting.txt.torrent", "random.bin.torrent", "album.torrent"]
)
def test_samples_are_reproducible(name: str) -> None:
    source = SAMPLES / name.removesuffix(".torrent")
    want = (SAMPLES / name).read_bytes()
    meta = parse_metainfo(want)
    got = create_torrent(
        source,
        piece_length=meta.piece_length,
        created_by="bitswarm/0.1",
        creation_date=1_700_000_000,
        threads=2,
    )
    assert got == want


@pytest.mark.parametrize("piece_length", [0, 1, 8192, 16385, 3 * 16384, 1 << 29])
def test_bad_piece_length_is_refused(tmp_path: Path, piece_length: int) -> None:
    src = tmp_path / "x"
    src.write_bytes(b"x")
    with pytest.raises(BadPieceLengthError, match="power of two"):
        create_torrent(src, piece_length=piece_length)


def test_empty_inputs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(EmptyTorrentError, match="holds no data"):
        create_torrent(tmp_path / "empty_dir")
    (tmp_path / "zeros").mkdir()
    (tmp_path / "zeros" / "a").write_bytes(b"")
    with pytest.raises(EmptyTorrentError, match="1 files, all empty"):
        create_torrent(tmp_path / "zeros")
    (tmp_path / "e").write_bytes(b"")
    with pytest.raises(EmptyTorrentError):
        create_torrent(tmp_path / "e")


def test_missing_source_is_a_storage_error(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="cannot read"):
        create_torrent(tmp_path / "nope")


def test_symlinks_and_fifos_are_skipped_and_reported(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "real").write_bytes(b"data")
    (root / "link").symlink_to(root / "real")
    os.mkfifo(root / "fifo")
    skipped: list[tuple[str, str]] = []
    meta = parse_metainfo(
        create_torrent(root, on_skip=lambda p, why: skipped.append((p.name, why)))
    )
    assert [f.path for f in meta.files] == [("tree", "real")]
    assert sorted(skipped) == [
        ("fifo", "not a regular file or folder"),
        ("link", "symbolic link"),
    ]


def test_unsafe_names_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "back\\slash").write_bytes(b"x")
    with pytest.raises(UnsafePathError, match=r"inside a path component"):
        create_torrent(root)


def test_non_utf8_name_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / os.fsdecode(b"bad\xff")).write_bytes(b"x")
    with pytest.raises(UnsafePathError, match="not valid UTF-8"):
        create_torrent(root)


def test_file_that_shrinks_while_hashing_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "x"
    src.write_bytes(b"x" * 40000)
    _, files, _ = collect_files(src)
    src.write_bytes(b"x" * 100)
    with pytest.raises(StorageError, match="shrank"):
        hash_pieces(files, PL)


def test_write_and_load(tmp_path: Path) -> None:
    src = tmp_path / "x"
    src.write_bytes(b"payload")
    data = create_torrent(src, piece_length=PL)
    out = tmp_path / "x.torrent"
    write_torrent(data, out)
    assert out.read_bytes() == data
    assert load_metainfo(out).name == "x"
    with pytest.raises(StorageError, match="cannot write"):
        write_torrent(data, tmp_path / "no" / "such" / "dir.torrent")
    with pytest.raises(MetainfoReadError, match="cannot read"):
        load_metainfo(tmp_path / "missing.torrent")
