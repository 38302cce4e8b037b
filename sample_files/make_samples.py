"""Regenerate every file in sample_files/ deterministically.

    python sample_files/make_samples.py

Writes the sample data (greeting.txt, random.bin, album/), their .torrent
files (no tracker, fixed creation date, so the bytes never change), and
bad/: one deliberately broken .torrent per named metainfo failure, mapped to
its exception in tests/unit/test_client_bad_torrents.py.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import bencodepy

from client.maketorrent import create_torrent

HERE = Path(__file__).resolve().parent
CREATION_DATE = 1_700_000_000  # fixed so the .torrent bytes are reproducible
CREATED_BY = "bitswarm/0.1"
PIECE_256K = 256 * 1024
PIECE_16K = 16 * 1024


def stream(seed: bytes, n: int) -> bytes:
    """n deterministic pseudo-random bytes (SHA-256 in counter mode)."""
    out = bytearray()
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(seed + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:n])


def greeting() -> bytes:
    lines = [
        f"{i:03d} hello from bitswarm, a small BitTorrent system in Python\n"
        for i in range(80)
    ]
    # A NUL byte in the middle: text tools must not be trusted with this data.
    body = "".join(lines[:40]).encode() + b"\x00" + "".join(lines[40:]).encode()
    return body + "greetings, caf\u00e9 \u2603\n".encode()


def write_data() -> None:
    (HERE / "greeting.txt").write_bytes(greeting())
    (HERE / "random.bin").write_bytes(stream(b"random.bin", 1_363_149))
    album = HERE / "album"
    if album.exists():
        shutil.rmtree(album)
    (album / "disc 2").mkdir(parents=True)
    (album / "01 - intro.txt").write_bytes(
        b"track one: an intro that ends mid-piece\n" * 2000
    )
    (album / "empty.txt").write_bytes(b"")
    (album / "disc 2" / "02 - caf\u00e9.bin").write_bytes(stream(b"cafe", 300_001))
    (album / "disc 2" / "notes.txt").write_bytes(b"liner notes\n" * 100)


def write_torrents() -> None:
    for name, piece_length in (
        ("greeting.txt", PIECE_16K),
        ("random.bin", PIECE_256K),
        ("album", PIECE_256K),
    ):
        data = create_torrent(
            HERE / name,
            piece_length=piece_length,
            created_by=CREATED_BY,
            creation_date=CREATION_DATE,
        )
        (HERE / f"{name}.torrent").write_bytes(data)


# --- bad/ ---------------------------------------------------------------------

FAKE_HASH = b"\xab" * 20


def single(**changes: object) -> dict[bytes, object]:
    info: dict[bytes, object] = {
        b"name": b"bad.txt",
        b"piece length": PIECE_16K,
        b"pieces": FAKE_HASH,
        b"length": 100,
    }
    return _apply(info, changes)


def multi(*paths: list[bytes], **changes: object) -> dict[bytes, object]:
    if not paths:
        paths = ([b"a.txt"], [b"sub", b"b.txt"])
    info: dict[bytes, object] = {
        b"name": b"bad",
        b"piece length": PIECE_16K,
        b"pieces": FAKE_HASH,
        b"files": [{b"length": 50, b"path": list(p)} for p in paths],
    }
    return _apply(info, changes)


def _apply(
    info: dict[bytes, object], changes: dict[str, object]
) -> dict[bytes, object]:
    for key, value in changes.items():
        bkey = key.replace("_", " ").encode()
        if value is None:
            info.pop(bkey, None)
        else:
            info[bkey] = value
    return info


def torrent(info: object) -> bytes:
    return bytes(bencodepy.encode({b"created by": CREATED_BY.encode(), b"info": info}))


def bad_samples() -> dict[str, bytes]:
    good = torrent(single())
    deep = b"l" * 101 + b"e" * 101
    return {
        "not_bencode": b"this is not a torrent file\n",
        "trailing_garbage": good + b"garbage",
        "truncated": good[:-10],
        "leading_zero_integer": good.replace(b"i100e", b"i0100e"),
        "repeated_key": b"d4:infod4:name1:a4:name1:bee",
        "too_deep": b"d7:comment"
        + deep
        + b"4:info"
        + good[good.index(b"4:info") + 6 :],
        "not_a_dict": b"l4:spame",
        "missing_info": bencodepy.encode({b"announce": b"http://127.0.0.1/a"}),
        "info_not_a_dict": torrent([b"name"]),
        "missing_name": torrent(single(name=None)),
        "name_not_a_string": torrent(single(name=7)),
        "missing_piece_length": torrent(single(piece_length=None)),
        "piece_length_zero": torrent(single(piece_length=0)),
        "piece_length_negative": torrent(single(piece_length=-16384)),
        "piece_length_huge": torrent(single(piece_length=1 << 40)),
        "missing_pieces": torrent(single(pieces=None)),
        "pieces_not_multiple_of_20": torrent(single(pieces=b"\xab" * 41)),
        "piece_count_mismatch": torrent(single(pieces=FAKE_HASH * 3)),
        "negative_length": torrent(single(length=-1)),
        "negative_file_length": torrent(
            multi(files=[{b"length": -5, b"path": [b"a.txt"]}])
        ),
        "missing_length_and_files": torrent(single(length=None)),
        "both_length_and_files": torrent(multi(length=100)),
        "files_not_a_list": torrent(multi(files=b"a.txt")),
        "empty_files_list": torrent(multi(files=[])),
        "zero_total_length": torrent(single(length=0, pieces=b"")),
        "file_missing_path": torrent(multi(files=[{b"length": 100}])),
        "path_empty_list": torrent(multi([], [b"b.txt"])),
        "path_dotdot": torrent(multi([b"..", b"evil.txt"], [b"b.txt"])),
        "path_dot": torrent(multi([b".", b"a.txt"], [b"b.txt"])),
        "path_absolute": torrent(multi([b"/etc", b"passwd"], [b"b.txt"])),
        "path_backslash_absolute": torrent(multi([b"\\Windows", b"x"], [b"b.txt"])),
        "path_empty_component": torrent(multi([b"sub", b"", b"a.txt"], [b"b.txt"])),
        "path_with_slash": torrent(multi([b"sub/a.txt"], [b"b.txt"])),
        "path_with_backslash": torrent(multi([b"sub\\a.txt"], [b"b.txt"])),
        "path_with_nul": torrent(multi([b"a\x00.txt"], [b"b.txt"])),
        "path_drive_letter": torrent(multi([b"C:", b"a.txt"], [b"b.txt"])),
        "name_dotdot": torrent(single(name=b"..")),
        "name_with_slash": torrent(single(name=b"../escape.txt")),
        "name_empty": torrent(single(name=b"")),
        "duplicate_paths": torrent(multi([b"a.txt"], [b"a.txt"])),
        "file_inside_file": torrent(multi([b"a.txt"], [b"a.txt", b"b.txt"])),
        "v2_only": torrent(
            {
                b"name": b"v2.txt",
                b"piece length": PIECE_16K,
                b"meta version": 2,
                b"file tree": {
                    b"v2.txt": {
                        b"": {
                            b"length": 100,
                            b"pieces root": FAKE_HASH + FAKE_HASH[:12],
                        }
                    }
                },
            }
        ),
    }


def write_bad() -> None:
    # Rewrites the samples made here and leaves the others alone: some broken
    # torrents in bad/ were made by hand for the hostile-input tests (issue 8),
    # and the table test requires every file there to stay.
    bad = HERE / "bad"
    bad.mkdir(exist_ok=True)
    for name, data in bad_samples().items():
        (bad / f"{name}.torrent").write_bytes(data)


def main() -> None:
    write_data()
    write_torrents()
    write_bad()


if __name__ == "__main__":
    main()
