"""Torrent data on disk: whole pieces read and written by offset.

Every method here blocks; the session calls each once per piece in a worker
thread (``asyncio.to_thread``), never once per block (shared DESIGN.md, data
path). Files are opened lazily, written with ``os.pwrite`` at their offsets
(sparse until filled) and never held in memory whole.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from client.core.layout import PieceLayout
from client.core.metainfo import FileEntry, Metainfo
from client.errors import StorageError

__all__ = ["Storage"]

log = logging.getLogger(__name__)

# Re-check of existing data at start: pieces hashed per worker batch.
RECHECK_THREADS = 2  # both cores; hashlib releases the GIL


def _is_pad(entry: FileEntry) -> bool:
    return "p" in getattr(entry, "attr", "")


class Storage:
    """The files of one torrent under ``root``.

    Raises (from every method):
        StorageError: a path escapes ``root`` or the OS refused an operation
            (disk full, permissions); the message names the file.
    """

    def __init__(self, root: Path, meta: Metainfo) -> None:
        self.root = Path(root)
        self.meta = meta
        self._entries: Sequence[FileEntry] = meta.files
        pads = frozenset(i for i, e in enumerate(self._entries) if _is_pad(e))
        self.layout = PieceLayout(
            [e.length for e in self._entries], meta.piece_length, pads
        )
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    # -- paths -------------------------------------------------------------------
    def path_of(self, file_index: int) -> Path:
        return self.root.joinpath(*self._entries[file_index].path)

    def _checked_path(self, file_index: int) -> Path:
        """The file's path, refusing any that resolves outside ``root``
        (e.g. through a symlinked folder planted in the download dir)."""
        path = self.path_of(file_index)
        root = os.path.realpath(self.root)
        real = os.path.realpath(path)
        if os.path.commonpath([root, real]) != root:
            raise StorageError(
                f"storage: {path} resolves to {real}, outside the download folder"
            )
        return path

    def _fd(self, file_index: int, *, create: bool) -> int | None:
        fd = self._fds.get(file_index)
        if fd is not None:
            return fd
        with self._lock:
            fd = self._fds.get(file_index)
            if fd is not None:
                return fd
            if self._closed:
                raise StorageError("storage: closed")
            path = self._checked_path(file_index)
            try:
                if create:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path = self._checked_path(file_index)
                    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
                elif not path.exists():
                    return None
                else:
                    try:
                        fd = os.open(path, os.O_RDWR)
                    except PermissionError:
                        fd = os.open(path, os.O_RDONLY)  # seeding read-only data
            except OSError as exc:
                raise StorageError(
                    f"storage: cannot open {path}: {exc.strerror}"
                ) from exc
            self._fds[file_index] = fd
            return fd

    # -- whole-piece I/O (blocking) -------------------------------------------------
    def create_empty_files(self) -> None:
        """Create zero-length files now: no piece ever touches them."""
        for i, entry in enumerate(self._entries):
            if entry.length == 0 and not _is_pad(entry):
                self._fd(i, create=True)

    def write_piece(self, index: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        for seg in self.layout.piece_segments(index):
            if seg.pad:
                continue
            fd = self._fd(seg.file_index, create=True)
            assert fd is not None
            chunk = view[seg.piece_offset : seg.piece_offset + seg.length]
            try:
                written = 0
                while written < seg.length:
                    written += os.pwrite(fd, chunk[written:], seg.file_offset + written)
            except OSError as exc:
                raise StorageError(
                    f"storage: writing piece {index} to "
                    f"{self.path_of(seg.file_index)} failed: {exc.strerror}"
                ) from exc

    def verify_and_write(
        self, index: int, data: bytes | bytearray | memoryview
    ) -> bool:
        """Hash the piece; write it only if it matches. One thread hop each."""
        if hashlib.sha1(data).digest() != self.meta.piece_hashes[index]:
            return False
        self.write_piece(index, data)
        return True

    def read_piece(self, index: int, into: bytearray | None = None) -> bytearray | None:
        """The piece's bytes, or None if some of it is not on disk."""
        size = self.layout.piece_size(index)
        buf = into if into is not None and len(into) == size else bytearray(size)
        view = memoryview(buf)
        for seg in self.layout.piece_segments(index):
            part = view[seg.piece_offset : seg.piece_offset + seg.length]
            if seg.pad:
                part[:] = bytes(seg.length)
                continue
            fd = self._fd(seg.file_index, create=False)
            if fd is None:
                return None
            try:
                got = os.preadv(fd, [part], seg.file_offset)
            except OSError as exc:
                raise StorageError(
                    f"storage: reading {self.path_of(seg.file_index)} failed: "
                    f"{exc.strerror}"
                ) from exc
            if got != seg.length:
                return None
        return buf

    def recheck(
        self,
        pieces: Iterable[int] | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[int]:
        """Indices of pieces already on disk whose hash matches (resume).

        Pieces whose files are missing or too short are skipped without
        reading. Runs ``RECHECK_THREADS`` workers, each with a reused buffer.
        """
        todo = list(range(self.layout.num_pieces) if pieces is None else pieces)
        todo = [i for i in todo if self._present(i)]
        if not todo:
            return []
        chunks = [todo[k::RECHECK_THREADS] for k in range(RECHECK_THREADS)]

        def work(chunk: list[int]) -> list[int]:
            ok: list[int] = []
            buf = bytearray(self.meta.piece_length)
            for i in chunk:
                size = self.layout.piece_size(i)
                data = self.read_piece(i, buf if size == len(buf) else None)
                if (
                    data is not None
                    and hashlib.sha1(data).digest() == self.meta.piece_hashes[i]
                ):
                    ok.append(i)
                if on_progress is not None:
                    on_progress(i)
            return ok

        with ThreadPoolExecutor(RECHECK_THREADS) as pool:
            results = list(pool.map(work, chunks))
        return sorted(i for part in results for i in part)

    def _present(self, index: int) -> bool:
        for seg in self.layout.piece_segments(index):
            if seg.pad:
                continue
            try:
                size = os.stat(self.path_of(seg.file_index)).st_size
            except OSError:
                return False
            if size < seg.file_offset + seg.length:
                return False
        return True

    def close(self) -> None:
        with self._lock:
            self._closed = True
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            try:
                os.close(fd)
            except OSError:
                log.debug("close failed", exc_info=True)
