"""Where a piece's bytes live on disk: pieces span file boundaries (BEP 3).

A torrent's data is the concatenation of its files in order; piece ``i``
covers bytes ``[i * piece_length, min((i + 1) * piece_length, total))`` of
it. :class:`PieceLayout` maps a piece (or a byte range) to the file segments
it touches. BEP 47 pad files occupy space in the concatenation but are never
written; their segments are marked so the storage zero-fills them on read.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["PieceLayout", "Segment"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Segment:
    """``length`` bytes at ``file_offset`` of file ``file_index``, which are
    bytes ``[piece_offset, piece_offset + length)`` of the piece."""

    file_index: int
    file_offset: int
    piece_offset: int
    length: int
    pad: bool = False


class PieceLayout:
    """Maps pieces to file segments.

    Args:
        file_lengths: the files' lengths in torrent order.
        piece_length: nominal piece size in bytes.
        pad_files: indices of BEP 47 pad files (never read from or written to
            disk; they read as zeros).
    """

    def __init__(
        self,
        file_lengths: Sequence[int],
        piece_length: int,
        pad_files: frozenset[int] = frozenset(),
    ) -> None:
        self.piece_length = piece_length
        self.file_lengths = tuple(file_lengths)
        self._starts: list[int] = []
        pos = 0
        for n in self.file_lengths:
            self._starts.append(pos)
            pos += n
        self.total_length = pos
        self.num_pieces = (pos + piece_length - 1) // piece_length
        self._pads = pad_files
        self._cache: dict[int, tuple[Segment, ...]] = {}

    def piece_size(self, index: int) -> int:
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range")
        return min(self.piece_length, self.total_length - index * self.piece_length)

    def piece_segments(self, index: int) -> tuple[Segment, ...]:
        """The file segments of piece ``index``, in order (cached)."""
        cached = self._cache.get(index)
        if cached is None:
            start = index * self.piece_length
            cached = self.range_segments(start, self.piece_size(index))
            if len(self._cache) < 4096:
                self._cache[index] = cached
        return cached

    def range_segments(self, start: int, length: int) -> tuple[Segment, ...]:
        """Segments covering torrent bytes ``[start, start + length)``."""
        out: list[Segment] = []
        i = max(0, bisect.bisect_right(self._starts, start) - 1)
        pos = start
        end = start + length
        while pos < end and i < len(self.file_lengths):
            fstart = self._starts[i]
            fend = fstart + self.file_lengths[i]
            if fend > pos:
                n = min(end, fend) - pos
                out.append(
                    Segment(
                        file_index=i,
                        file_offset=pos - fstart,
                        piece_offset=pos - start,
                        length=n,
                        pad=i in self._pads,
                    )
                )
                pos += n
            i += 1
        return tuple(out)

    def file_pieces(self, file_index: int) -> range:
        """The pieces that touch file ``file_index`` (empty for empty files)."""
        n = self.file_lengths[file_index]
        if n == 0:
            return range(0)
        start = self._starts[file_index]
        return range(
            start // self.piece_length, (start + n - 1) // self.piece_length + 1
        )
