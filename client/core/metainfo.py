"""Parsing and validating .torrent metainfo (BEP 3, 12, 27; BEP 47 pad files).

Everything in a .torrent is hostile until it has passed through here. The
infohash is the SHA-1 of the info dictionary's exact bytes as they appear in
the file (or in the ut_metadata payload, BEP 9), never of a re-encoding.

Decisions:

* Text is UTF-8 (BEP 3). ``name.utf-8`` / ``path.utf-8`` win when present and
  valid (older clients wrote a legacy code page in ``name`` and UTF-8 there).
  Invalid UTF-8 is *replaced* (U+FFFD), not refused: the infohash is unchanged,
  the path stays safe, and collisions that replacement may cause are caught by
  the duplicate-path check.
* Paths are checked component by component; a component that is empty, ``.``,
  ``..``, absolute, holds ``/``, ``\\`` or NUL, or starts with a Windows drive
  letter (``C:``) is refused, so no file can land outside the download folder.
* BEP 47 pad files (``attr`` containing ``p``) are kept, with ``attr`` on the
  :class:`FileEntry`, so storage can skip them; they may share a path
  (``.pad/N``), so they are left out of the duplicate check.
* Torrents with no data (total length 0) are refused: they have no pieces to
  verify, and nothing to transfer.
* v2-only torrents (BEP 52, ``meta version`` 2 without ``pieces``) are refused;
  hybrid torrents are read through their v1 keys.
* Optional top-level keys (``announce``, ``announce-list``, ``comment``, ...)
  of the wrong type are ignored rather than refused: they don't affect what is
  downloaded, and real torrents get them wrong.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from client.core.bencode_span import check_bencode, decode, info_span
from client.errors import (
    BadPieceLengthError,
    DuplicatePathError,
    EmptyTorrentError,
    LengthAndFilesError,
    MetainfoTooLargeError,
    MissingKeyError,
    NegativeLengthError,
    NotADictError,
    PieceCountMismatchError,
    PiecesLengthError,
    TooManyFilesError,
    TooManyPiecesError,
    UnsafePathError,
    UnsupportedV2Error,
    WrongTypeError,
)

__all__ = [
    "HASH_BYTES",
    "MAX_FILES",
    "MAX_METAINFO_BYTES",
    "MAX_PIECES",
    "MAX_PIECE_LENGTH",
    "FileEntry",
    "Metainfo",
    "check_path_component",
    "describe",
    "parse_info",
    "parse_metainfo",
]

HASH_BYTES = 20  # SHA-1 digest size; 'pieces' is a concatenation of these (BEP 3)
MAX_METAINFO_BYTES = 64 * 1024 * 1024  # bytes in a .torrent or an info dict
MAX_PIECE_LENGTH = 1 << 28  # 256 MiB; the largest piece size real clients make
MAX_PIECES = 1 << 22  # 4,194,304 pieces (an 80 MiB 'pieces' string)
MAX_FILES = 1 << 20  # 1,048,576 files in one torrent

_DRIVE = re.compile(r"[A-Za-z]:")

Bdict = dict[bytes, object]


@dataclass(frozen=True, slots=True, kw_only=True)
class FileEntry:
    """One file of a torrent, as laid out in the concatenated data.

    Attributes:
        path: relative path under the download folder; for a multi-file
            torrent it starts with the torrent's name (its folder).
        length: bytes.
        offset: byte offset of the file in the torrent's concatenated data.
        attr: BEP 47 attribute letters (``p`` pad file, ``x`` executable, ...).
    """

    path: tuple[str, ...]
    length: int
    offset: int
    attr: str = ""

    @property
    def is_pad(self) -> bool:
        """A BEP 47 pad file: its bytes are zeros and need not be stored."""
        return "p" in self.attr


@dataclass(frozen=True, slots=True, kw_only=True)
class Metainfo:
    """A validated torrent: the info dictionary plus the top-level extras."""

    info_hash: bytes
    info_bytes: bytes
    name: str
    piece_length: int
    piece_hashes: tuple[bytes, ...]
    files: tuple[FileEntry, ...]
    total_length: int
    is_multi_file: bool
    private: bool
    announce_tiers: tuple[tuple[str, ...], ...] = ()
    comment: str | None = None
    created_by: str | None = None
    creation_date: int | None = None

    @property
    def num_pieces(self) -> int:
        return len(self.piece_hashes)

    @property
    def info_hash_hex(self) -> str:
        """The infohash as 40 lowercase hex digits."""
        return self.info_hash.hex()

    @property
    def trackers(self) -> tuple[str, ...]:
        """Every tracker URL, tier by tier (BEP 12 order)."""
        return tuple(url for tier in self.announce_tiers for url in tier)

    def piece_size(self, index: int) -> int:
        """Bytes in piece ``index``; the last piece may be shorter.

        Raises:
            IndexError: ``index`` is not a piece of this torrent (a caller bug).
        """
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range 0..{self.num_pieces - 1}")
        if index == self.num_pieces - 1:
            return self.total_length - index * self.piece_length
        return self.piece_length


# --- field access -----------------------------------------------------------


def _get(d: Bdict, key: str, where: str) -> object:
    try:
        return d[key.encode()]
    except KeyError:
        raise MissingKeyError(
            f"{where}: missing required key '{key}'", key=key, where=where
        ) from None


def _get_int(d: Bdict, key: str, where: str) -> int:
    value = _get(d, key, where)
    if not isinstance(value, int):
        raise WrongTypeError(
            f"{where}: '{key}' must be an integer, not {_kind(value)}",
            key=key,
            where=where,
            expected="integer",
        )
    return value


def _get_bytes(d: Bdict, key: str, where: str) -> bytes:
    value = _get(d, key, where)
    if not isinstance(value, bytes):
        raise WrongTypeError(
            f"{where}: '{key}' must be a string, not {_kind(value)}",
            key=key,
            where=where,
            expected="string",
        )
    return value


def _get_list(d: Bdict, key: str, where: str) -> list[object]:
    value = _get(d, key, where)
    if not isinstance(value, list):
        raise WrongTypeError(
            f"{where}: '{key}' must be a list, not {_kind(value)}",
            key=key,
            where=where,
            expected="list",
        )
    return value


def _kind(value: object) -> str:
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, bytes):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "a dictionary"


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _utf8_or_none(raw: object) -> str | None:
    if not isinstance(raw, bytes):
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


# --- paths ------------------------------------------------------------------


def check_path_component(component: str, where: str) -> None:
    """Refuse a name or path component that is unsafe on any platform.

    Raises:
        UnsafePathError: with ``reason`` one of ``empty``, ``dot``, ``dotdot``,
            ``absolute``, ``slash``, ``backslash``, ``nul``, ``drive``.
    """
    reason = ""
    if component == "":
        reason, text = "empty", "an empty path component"
    elif component == ".":
        reason, text = "dot", "a '.' path component"
    elif component == "..":
        reason, text = "dotdot", "a '..' path component (escapes the folder)"
    elif component[0] in "/\\":
        reason, text = "absolute", "an absolute path"
    elif "/" in component:
        reason, text = "slash", "a '/' inside a path component"
    elif "\\" in component:
        reason, text = "backslash", "a '\\' inside a path component"
    elif "\x00" in component:
        reason, text = "nul", "a NUL byte in a path component"
    elif _DRIVE.match(component):
        reason, text = "drive", "a Windows drive letter"
    if reason:
        raise UnsafePathError(
            f"{where}: unsafe path {component!r}: {text}",
            path=component,
            reason=reason,
        )


def _file_path(entry: Bdict, where: str) -> tuple[str, ...]:
    raw = _get_list(entry, "path", where)
    utf8 = entry.get(b"path.utf-8")
    if isinstance(utf8, list) and utf8:
        decoded = [_utf8_or_none(c) for c in utf8]
        if all(c is not None for c in decoded):
            parts = tuple(c for c in decoded if c is not None)
            for c in parts:
                check_path_component(c, where)
            return parts
    if not raw:
        raise UnsafePathError(
            f"{where}: unsafe path []: an empty path list", path="", reason="empty"
        )
    parts_list: list[str] = []
    for i, comp in enumerate(raw):
        if not isinstance(comp, bytes):
            raise WrongTypeError(
                f"{where}: 'path'[{i}] must be a string, not {_kind(comp)}",
                key="path",
                where=where,
                expected="string",
            )
        text = _text(comp)
        check_path_component(text, where)
        parts_list.append(text)
    return tuple(parts_list)


# --- the info dictionary ----------------------------------------------------


def _files(info: Bdict, name: str) -> tuple[tuple[FileEntry, ...], bool]:
    has_length = b"length" in info
    has_files = b"files" in info
    if has_length and has_files:
        raise LengthAndFilesError(
            "info: has both 'length' (single file) and 'files' (multi-file)"
        )
    if has_length:
        length = _get_int(info, "length", "info")
        if length < 0:
            raise NegativeLengthError(
                f"info: 'length' is negative ({length})", length=length
            )
        return (FileEntry(path=(name,), length=length, offset=0),), False
    if not has_files:
        raise MissingKeyError(
            "info: missing required key 'length' or 'files'",
            key="length/files",
            where="info",
        )
    raw_files = _get_list(info, "files", "info")
    if not raw_files:
        raise EmptyTorrentError("info: 'files' is an empty list")
    if len(raw_files) > MAX_FILES:
        raise TooManyFilesError(
            f"info: {len(raw_files)} files exceed the cap of {MAX_FILES}",
            count=len(raw_files),
            limit=MAX_FILES,
        )
    entries: list[FileEntry] = []
    seen_files: set[tuple[str, ...]] = set()
    seen_dirs: set[tuple[str, ...]] = set()
    offset = 0
    for i, raw in enumerate(raw_files):
        where = f"info: files[{i}]"
        if not isinstance(raw, dict):
            raise WrongTypeError(
                f"{where} must be a dictionary, not {_kind(raw)}",
                key="files",
                where="info",
                expected="dictionary",
            )
        length = _get_int(raw, "length", where)
        if length < 0:
            raise NegativeLengthError(
                f"{where}: 'length' is negative ({length})", length=length
            )
        path = (name, *_file_path(raw, where))
        attr_raw = raw.get(b"attr")
        attr = _text(attr_raw) if isinstance(attr_raw, bytes) else ""
        entry = FileEntry(path=path, length=length, offset=offset, attr=attr)
        offset += length
        entries.append(entry)
        if entry.is_pad:
            continue  # BEP 47: pad files may share a '.pad/N' path
        shown = "/".join(path)
        if path in seen_files or path in seen_dirs:
            raise DuplicatePathError(f"{where}: duplicate path {shown!r}", path=shown)
        parents = {path[:k] for k in range(1, len(path))}
        if parents & seen_files:
            raise DuplicatePathError(
                f"{where}: path {shown!r} puts a file inside another file",
                path=shown,
            )
        seen_files.add(path)
        seen_dirs |= parents
    return tuple(entries), True


def _build(
    info: object,
    info_bytes: bytes,
    *,
    announce_tiers: tuple[tuple[str, ...], ...],
    comment: str | None = None,
    created_by: str | None = None,
    creation_date: int | None = None,
) -> Metainfo:
    if not isinstance(info, dict):
        raise NotADictError(f"info: value is {_kind(info)}, not a dictionary")
    if b"pieces" not in info and (
        info.get(b"meta version") == 2 or b"file tree" in info
    ):
        raise UnsupportedV2Error(
            "info: v2-only torrents are not supported (BEP 52 'meta version' 2 "
            "without v1 'pieces')"
        )
    raw_name = _get_bytes(info, "name", "info")
    name = _utf8_or_none(info.get(b"name.utf-8")) or _text(raw_name)
    check_path_component(name, "info: 'name'")
    piece_length = _get_int(info, "piece length", "info")
    if not 0 < piece_length <= MAX_PIECE_LENGTH:
        raise BadPieceLengthError(
            f"info: 'piece length' {piece_length} is outside 1..{MAX_PIECE_LENGTH} "
            f"(256 MiB cap)",
            piece_length=piece_length,
        )
    pieces = _get_bytes(info, "pieces", "info")
    if len(pieces) % HASH_BYTES:
        raise PiecesLengthError(
            f"info: 'pieces' is {len(pieces)} bytes, not a multiple of {HASH_BYTES}",
            size=len(pieces),
        )
    num_pieces = len(pieces) // HASH_BYTES
    if num_pieces > MAX_PIECES:
        raise TooManyPiecesError(
            f"info: {num_pieces} pieces exceed the cap of {MAX_PIECES}",
            count=num_pieces,
            limit=MAX_PIECES,
        )
    files, multi = _files(info, name)
    total = sum(f.length for f in files)
    if total == 0:
        raise EmptyTorrentError("info: the torrent holds no data (total length 0)")
    expected = -(-total // piece_length)
    if expected != num_pieces:
        raise PieceCountMismatchError(
            f"info: {num_pieces} piece hashes, but {total} bytes in pieces of "
            f"{piece_length} need {expected}",
            expected=expected,
            actual=num_pieces,
        )
    return Metainfo(
        info_hash=hashlib.sha1(info_bytes).digest(),
        info_bytes=info_bytes,
        name=name,
        piece_length=piece_length,
        piece_hashes=tuple(
            pieces[i : i + HASH_BYTES] for i in range(0, len(pieces), HASH_BYTES)
        ),
        files=files,
        total_length=total,
        is_multi_file=multi,
        private=info.get(b"private") == 1,  # BEP 27: private=1, anything else public
        announce_tiers=announce_tiers,
        comment=comment,
        created_by=created_by,
        creation_date=creation_date,
    )


def _check_size(data: bytes, what: str) -> None:
    if len(data) > MAX_METAINFO_BYTES:
        raise MetainfoTooLargeError(
            f"{what}: {len(data)} bytes exceed the cap of {MAX_METAINFO_BYTES}",
            size=len(data),
            limit=MAX_METAINFO_BYTES,
        )


def _tiers(top: Bdict) -> tuple[tuple[str, ...], ...]:
    """BEP 12: 'announce-list' if present (and usable), else [[announce]]."""
    seen: set[str] = set()
    tiers: list[tuple[str, ...]] = []
    raw_list = top.get(b"announce-list")
    if isinstance(raw_list, list):
        for raw_tier in raw_list:
            if not isinstance(raw_tier, list):
                continue
            tier = []
            for raw_url in raw_tier:
                url = _utf8_or_none(raw_url)
                if url and url not in seen:
                    seen.add(url)
                    tier.append(url)
            if tier:
                tiers.append(tuple(tier))
    if not tiers:
        url = _utf8_or_none(top.get(b"announce"))
        if url:
            tiers.append((url,))
    return tuple(tiers)


def parse_metainfo(data: bytes) -> Metainfo:
    """Parse and validate a whole .torrent file.

    Raises:
        MetainfoError: through one of its named subclasses (see
            ``client.errors``) saying what is wrong and where.
    """
    what = "torrent file"
    _check_size(data, what)
    start, end = info_span(data, what=what)
    top = decode(data, what=what)
    if not isinstance(top, dict):  # unreachable: info_span saw a dictionary
        raise NotADictError(f"{what}: top-level value is not a dictionary")
    text = top.get(b"comment.utf-8", top.get(b"comment"))
    created = top.get(b"created by")
    date = top.get(b"creation date")
    info = top[b"info"]
    if not isinstance(info, dict):
        raise WrongTypeError(
            f"{what}: 'info' must be a dictionary, not {_kind(info)}",
            key="info",
            where=what,
            expected="dictionary",
        )
    return _build(
        info,
        data[start:end],
        announce_tiers=_tiers(top),
        comment=_text(text) if isinstance(text, bytes) else None,
        created_by=_text(created) if isinstance(created, bytes) else None,
        creation_date=date if isinstance(date, int) else None,
    )


def parse_info(
    info_bytes: bytes, *, announce_tiers: tuple[tuple[str, ...], ...] = ()
) -> Metainfo:
    """Parse an info dictionary on its own (e.g. fetched with ut_metadata, BEP 9).

    The caller checks the infohash against the one it expected.

    Raises:
        MetainfoError: through one of its named subclasses.
    """
    what = "info dictionary"
    _check_size(info_bytes, what)
    check_bencode(info_bytes, what=what)
    if info_bytes[:1] != b"d":
        raise NotADictError(f"{what}: value is not a dictionary")
    return _build(
        decode(info_bytes, what=what), bytes(info_bytes), announce_tiers=announce_tiers
    )


def describe(meta: Metainfo) -> dict[str, object]:
    """A JSON-able summary of a torrent (for ``bitswarm info --json``)."""
    return {
        "name": meta.name,
        "infohash": meta.info_hash_hex,
        "size": meta.total_length,
        "piece_length": meta.piece_length,
        "pieces": meta.num_pieces,
        "files": [
            {"path": "/".join(f.path), "length": f.length}
            for f in meta.files
            if not f.is_pad
        ],
        "trackers": list(meta.trackers),
        "tracker_tiers": [list(tier) for tier in meta.announce_tiers],
        "private": meta.private,
        "comment": meta.comment,
        "created_by": meta.created_by,
        "creation_date": meta.creation_date,
    }
