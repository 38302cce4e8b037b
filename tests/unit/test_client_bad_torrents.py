"""Every broken sample in sample_files/bad/ maps to its named error (STYLE.md 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.core.metainfo import parse_metainfo
from client.errors import (
    BadPieceLengthError,
    BencodeSyntaxError,
    DuplicatePathError,
    EmptyTorrentError,
    LengthAndFilesError,
    MetainfoError,
    MissingKeyError,
    NegativeLengthError,
    NotADictError,
    PieceCountMismatchError,
    PiecesLengthError,
    TrailingDataError,
    UnsafePathError,
    UnsupportedV2Error,
    WrongTypeError,
)
from client.maketorrent import load_metainfo

BAD = Path(__file__).resolve().parents[2] / "sample_files" / "bad"

# file stem -> (exception class, fragment of its message)
TABLE: dict[str, tuple[type[MetainfoError], str]] = {
    "not_bencode": (BencodeSyntaxError, "not valid bencode: unexpected byte"),
    "trailing_garbage": (TrailingDataError, "7 bytes of trailing data"),
    "truncated": (BencodeSyntaxError, "runs past the end"),
    "leading_zero_integer": (BencodeSyntaxError, "bad integer"),
    "repeated_key": (BencodeSyntaxError, "repeated dictionary key b'name'"),
    "too_deep": (BencodeSyntaxError, "nesting deeper than 100 levels"),
    "not_a_dict": (NotADictError, "top-level value is not a dictionary"),
    "missing_info": (MissingKeyError, "missing required key 'info'"),
    "info_not_a_dict": (WrongTypeError, "'info' must be a dictionary, not a list"),
    "missing_name": (MissingKeyError, "missing required key 'name'"),
    "name_not_a_string": (WrongTypeError, "'name' must be a string, not an integer"),
    "missing_piece_length": (MissingKeyError, "missing required key 'piece length'"),
    "piece_length_zero": (BadPieceLengthError, "'piece length' 0 is outside"),
    "piece_length_negative": (BadPieceLengthError, "'piece length' -16384"),
    "piece_length_huge": (BadPieceLengthError, "1099511627776 is outside 1..268435456"),
    "missing_pieces": (MissingKeyError, "missing required key 'pieces'"),
    "pieces_not_multiple_of_20": (PiecesLengthError, "41 bytes, not a multiple of 20"),
    "piece_count_mismatch": (PieceCountMismatchError, "3 piece hashes, but 100 bytes"),
    "negative_length": (NegativeLengthError, "'length' is negative (-1)"),
    "negative_file_length": (NegativeLengthError, "files[0]: 'length' is negative"),
    "missing_length_and_files": (MissingKeyError, "'length' or 'files'"),
    "both_length_and_files": (LengthAndFilesError, "both 'length'"),
    "files_not_a_list": (WrongTypeError, "'files' must be a list"),
    "empty_files_list": (EmptyTorrentError, "'files' is an empty list"),
    "zero_total_length": (EmptyTorrentError, "holds no data (total length 0)"),
    "file_missing_path": (MissingKeyError, "files[0]: missing required key 'path'"),
    "path_empty_list": (UnsafePathError, "an empty path list"),
    "path_dotdot": (UnsafePathError, "'..' path component"),
    "path_dot": (UnsafePathError, "a '.' path component"),
    "path_absolute": (UnsafePathError, "'/etc': an absolute path"),
    "path_backslash_absolute": (UnsafePathError, "an absolute path"),
    "path_empty_component": (UnsafePathError, "an empty path component"),
    "path_with_slash": (UnsafePathError, "a '/' inside a path component"),
    "path_with_backslash": (UnsafePathError, "a '\\' inside a path component"),
    "path_with_nul": (UnsafePathError, "a NUL byte"),
    "path_drive_letter": (UnsafePathError, "a Windows drive letter"),
    "name_dotdot": (UnsafePathError, "'name': unsafe path '..'"),
    "name_with_slash": (UnsafePathError, "'name': unsafe path '../escape.txt'"),
    "name_empty": (UnsafePathError, "'name': unsafe path ''"),
    "duplicate_paths": (DuplicatePathError, "duplicate path 'bad/a.txt'"),
    "file_inside_file": (DuplicatePathError, "puts a file inside another file"),
    "v2_only": (UnsupportedV2Error, "v2-only torrents are not supported"),
    # issue 8: more forms of path traversal, and a file list the pieces disagree with
    "path_utf8_dotdot": (UnsafePathError, "unsafe path '..'"),
    "path_unc": (UnsafePathError, "an absolute path"),
    "name_drive_letter": (UnsafePathError, "'C:evil.txt': a Windows drive letter"),
    "path_dotdot_nested": (UnsafePathError, "'..' path component"),
    "files_total_disagrees": (PieceCountMismatchError, "3 piece hashes, but 16484"),
    "name_with_nul": (UnsafePathError, "a NUL byte"),
}


def test_every_bad_sample_is_in_the_table() -> None:
    on_disk = {p.stem for p in BAD.glob("*")}
    assert on_disk == set(TABLE)
    assert all(p.suffix == ".torrent" for p in BAD.glob("*"))


@pytest.mark.parametrize("stem", sorted(TABLE))
def test_bad_sample_raises_its_named_error(stem: str) -> None:
    cls, fragment = TABLE[stem]
    data = (BAD / f"{stem}.torrent").read_bytes()
    with pytest.raises(cls) as info:
        parse_metainfo(data)
    assert type(info.value) is cls
    assert fragment in str(info.value)


@pytest.mark.parametrize("stem", ["path_dotdot", "v2_only", "piece_length_huge"])
def test_bad_sample_from_disk_is_a_metainfo_error(stem: str) -> None:
    with pytest.raises(TABLE[stem][0]):
        load_metainfo(BAD / f"{stem}.torrent")


def test_unsafe_path_reason_attribute() -> None:
    with pytest.raises(UnsafePathError) as info:
        parse_metainfo((BAD / "path_drive_letter.torrent").read_bytes())
    assert info.value.reason == "drive"
    assert info.value.path == "C:"
