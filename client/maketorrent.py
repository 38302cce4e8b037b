"""Making .torrent files from a file or folder, and reading them (BEP 3, 12, 27).

This is a driver: it walks the disk and reads file data; the metainfo rules
live in ``client.core.metainfo``, which also checks every torrent made here.

Hashing uses every core: the pieces are split into contiguous ranges, one per
thread; each thread reads its pieces with ``os.preadv`` into one reused
``bytearray`` and hashes it with ``hashlib.sha1``, which releases the GIL. A
piece may span several files (multi-file torrents concatenate them), and no
file is ever loaded whole.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import bencodepy

from client.core.metainfo import (
    MAX_METAINFO_BYTES,
    MAX_PIECE_LENGTH,
    Metainfo,
    check_path_component,
    parse_metainfo,
)
from client.errors import (
    BadPieceLengthError,
    EmptyTorrentError,
    MetainfoReadError,
    MetainfoTooLargeError,
    StorageError,
    UnsafePathError,
)

__all__ = [
    "DEFAULT_CREATED_BY",
    "DEFAULT_PIECE_LENGTH",
    "MIN_PIECE_LENGTH",
    "SourceFile",
    "collect_files",
    "create_torrent",
    "hash_pieces",
    "load_metainfo",
    "write_torrent",
]

log = logging.getLogger(__name__)

DEFAULT_PIECE_LENGTH = 256 * 1024  # bytes; 2^18, the common choice (BEP 3)
MIN_PIECE_LENGTH = 16 * 1024  # bytes; one request block (BEP 3)
DEFAULT_CREATED_BY = "bitswarm/0.1"

SkipHandler = Callable[[Path, str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceFile:
    """A file on disk that goes into a torrent.

    Attributes:
        disk_path: where to read it.
        parts: its path components under the torrent's folder (empty for a
            single-file torrent).
        length: bytes, as found when the folder was walked.
        offset: byte offset in the torrent's concatenated data.
    """

    disk_path: Path
    parts: tuple[str, ...]
    length: int
    offset: int


def _log_skip(path: Path, why: str) -> None:
    log.warning("skipping %s: %s", path, why)


def _checked_name(name: str, where: Path) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError(
            f"cannot make a torrent of {where}: its name is not valid UTF-8",
            path=repr(name),
            reason="encoding",
        ) from None
    check_path_component(name, f"cannot make a torrent of {where}")
    return name


def collect_files(
    root: Path, *, on_skip: SkipHandler | None = None
) -> tuple[str, list[SourceFile], bool]:
    """Find what goes into a torrent of ``root``.

    A folder is walked in sorted name order; empty files are included,
    symlinks and special files (sockets, FIFOs, devices) are skipped and
    reported through ``on_skip`` (default: a log warning).

    Returns:
        ``(name, files, is_multi_file)``.

    Raises:
        StorageError: ``root`` (or something under it) cannot be read.
        UnsafePathError: a name is not valid UTF-8 or is unsafe in a torrent.
    """
    skip = on_skip or _log_skip
    name = _checked_name(os.path.basename(os.path.abspath(root)), root)
    try:
        st = os.stat(root)
    except OSError as exc:
        raise StorageError(f"cannot read {root}: {exc.strerror or exc}") from exc
    if not os.path.isdir(root):
        if not os.path.isfile(root):
            raise StorageError(f"cannot make a torrent of {root}: not a regular file")
        single = SourceFile(disk_path=root, parts=(), length=st.st_size, offset=0)
        return name, [single], False
    files: list[SourceFile] = []
    offset = 0

    def walk(folder: Path, parts: tuple[str, ...]) -> None:
        nonlocal offset
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            raise StorageError(f"cannot read {folder}: {exc.strerror or exc}") from exc
        for entry in entries:
            path = folder / entry.name
            try:
                if entry.is_symlink():
                    skip(path, "symbolic link")
                elif entry.is_dir(follow_symlinks=False):
                    walk(path, (*parts, _checked_name(entry.name, path)))
                elif entry.is_file(follow_symlinks=False):
                    length = entry.stat(follow_symlinks=False).st_size
                    files.append(
                        SourceFile(
                            disk_path=path,
                            parts=(*parts, _checked_name(entry.name, path)),
                            length=length,
                            offset=offset,
                        )
                    )
                    offset += length
                else:
                    skip(path, "not a regular file or folder")
            except OSError as exc:
                raise StorageError(
                    f"cannot read {path}: {exc.strerror or exc}"
                ) from exc

    walk(root, ())
    return name, files, True


def _hash_range(
    files: Sequence[SourceFile],
    piece_length: int,
    total: int,
    first: int,
    stop: int,
    out: list[bytes],
) -> None:
    """Hash pieces ``first..stop-1`` into ``out`` (one thread's share)."""
    buf = bytearray(piece_length)
    view = memoryview(buf)
    offsets = [f.offset for f in files]
    fd = -1
    fd_index = -1
    try:
        for index in range(first, stop):
            start = index * piece_length
            size = min(piece_length, total - start)
            # the last file starting at or before `start` (zero-length files
            # share their successor's offset and come before it)
            k = bisect.bisect_right(offsets, start) - 1
            filled = 0
            while filled < size:
                f = files[k]
                within = start + filled - f.offset
                want = min(size - filled, f.length - within)
                if want <= 0:
                    k += 1
                    continue
                if fd_index != k:
                    if fd >= 0:
                        os.close(fd)
                        fd = -1
                    try:
                        fd = os.open(f.disk_path, os.O_RDONLY)
                    except OSError as exc:
                        raise StorageError(
                            f"cannot read {f.disk_path}: {exc.strerror or exc}"
                        ) from exc
                    fd_index = k
                try:
                    got = os.preadv(fd, [view[filled : filled + want]], within)
                except OSError as exc:
                    raise StorageError(
                        f"cannot read {f.disk_path}: {exc.strerror or exc}"
                    ) from exc
                if got == 0:
                    raise StorageError(
                        f"{f.disk_path} shrank while it was being hashed "
                        f"(expected {f.length} bytes)"
                    )
                filled += got
            out[index] = hashlib.sha1(view[:size]).digest()
    finally:
        if fd >= 0:
            os.close(fd)


def hash_pieces(
    files: Sequence[SourceFile],
    piece_length: int,
    *,
    threads: int | None = None,
) -> list[bytes]:
    """SHA-1 of every piece of the concatenated ``files``.

    Args:
        files: in torrent order, with offsets.
        piece_length: bytes per piece.
        threads: worker threads (default: one per CPU); each hashes one
            contiguous range of pieces.

    Raises:
        StorageError: a file cannot be read or shrank.
    """
    total = sum(f.length for f in files)
    count = -(-total // piece_length)
    workers = max(1, min(threads or os.cpu_count() or 1, count))
    out = [b""] * count
    bounds = [count * k // workers for k in range(workers + 1)]
    if workers == 1:
        _hash_range(files, piece_length, total, 0, count, out)
        return out
    errors: list[Exception] = []

    def run(first: int, stop: int) -> None:
        try:
            _hash_range(files, piece_length, total, first, stop, out)
        except Exception as exc:  # thread boundary: re-raised in the caller
            errors.append(exc)

    pool = [
        threading.Thread(
            target=run, args=(bounds[k], bounds[k + 1]), name=f"hash-{k}", daemon=True
        )
        for k in range(workers)
    ]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise errors[0]
    return out


def _check_piece_length(piece_length: int) -> None:
    power_of_two = piece_length > 0 and piece_length & (piece_length - 1) == 0
    if not power_of_two or not MIN_PIECE_LENGTH <= piece_length <= MAX_PIECE_LENGTH:
        raise BadPieceLengthError(
            f"piece length {piece_length} must be a power of two from "
            f"{MIN_PIECE_LENGTH} (16 KiB) to {MAX_PIECE_LENGTH} (256 MiB)",
            piece_length=piece_length,
        )


def create_torrent(
    path: Path,
    *,
    trackers: Sequence[str] = (),
    piece_length: int = DEFAULT_PIECE_LENGTH,
    private: bool = False,
    comment: str | None = None,
    created_by: str = DEFAULT_CREATED_BY,
    creation_date: int | None = None,
    threads: int | None = None,
    on_skip: SkipHandler | None = None,
) -> bytes:
    """Make the .torrent bytes for a file or a folder.

    Args:
        path: a file (single-file torrent) or a folder (multi-file).
        trackers: announce URLs; the first is ``announce`` and each gets its
            own tier in ``announce-list`` (BEP 12).
        piece_length: a power of two, 16 KiB..256 MiB.
        private: set ``private=1`` in the info dictionary (BEP 27).
        comment: optional ``comment``.
        created_by: the ``created by`` value.
        creation_date: Unix seconds; ``None`` means now.
        threads: hashing threads; ``None`` means one per CPU.
        on_skip: called with (path, reason) for each skipped symlink or
            special file; default logs a warning.

    Raises:
        BadPieceLengthError: piece length is not an allowed power of two.
        EmptyTorrentError: there is no data to share (no files, or all empty).
        UnsafePathError: a name cannot be stored safely in a torrent.
        StorageError: something cannot be read.
    """
    _check_piece_length(piece_length)
    name, files, multi = collect_files(path, on_skip=on_skip)
    total = sum(f.length for f in files)
    if total == 0:
        raise EmptyTorrentError(
            f"cannot make a torrent of {path}: it holds no data "
            f"({len(files)} files, all empty)"
        )
    pieces = hash_pieces(files, piece_length, threads=threads)
    info: dict[bytes, object] = {
        b"name": name.encode(),
        b"piece length": piece_length,
        b"pieces": b"".join(pieces),
    }
    if multi:
        info[b"files"] = [
            {b"length": f.length, b"path": [p.encode() for p in f.parts]} for f in files
        ]
    else:
        info[b"length"] = total
    if private:
        info[b"private"] = 1
    top: dict[bytes, object] = {
        b"info": info,
        b"created by": created_by.encode(),
        b"creation date": int(time.time()) if creation_date is None else creation_date,
    }
    if comment is not None:
        top[b"comment"] = comment.encode()
    if trackers:
        top[b"announce"] = trackers[0].encode()
        top[b"announce-list"] = [[url.encode()] for url in trackers]
    data: bytes = bencodepy.encode(top)  # sorts dictionary keys, as BEP 3 asks
    parse_metainfo(data)  # the same checks any downloader will apply
    return data


def write_torrent(data: bytes, out: Path) -> None:
    """Write .torrent bytes to ``out`` (via a temporary file and a rename).

    Raises:
        StorageError: the file cannot be written.
    """
    tmp = out.with_name(out.name + ".part")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise StorageError(f"cannot write {out}: {exc.strerror or exc}") from exc


def load_metainfo(path: Path) -> Metainfo:
    """Read and parse a .torrent file.

    Raises:
        MetainfoReadError: the file cannot be read.
        MetainfoTooLargeError: it is over the size cap.
        MetainfoError: through a named subclass, if it is not a valid torrent.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_METAINFO_BYTES + 1)
    except OSError as exc:
        raise MetainfoReadError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_METAINFO_BYTES:
        raise MetainfoTooLargeError(
            f"{path}: over the cap of {MAX_METAINFO_BYTES} bytes for a .torrent",
            size=len(data),
            limit=MAX_METAINFO_BYTES,
        )
    return parse_metainfo(data)
