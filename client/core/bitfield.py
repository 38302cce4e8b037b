"""A fixed-size set of piece indices with the BEP 3 ``bitfield`` wire format.

BEP 3: "The high bit in the first byte corresponds to piece index 0. Bits that
are cleared indicated a missing piece, and set bits indicate a valid and
available piece. Spare bits at the end are set to zero." A peer that sends the
wrong length or sets a spare bit is misbehaving, so :meth:`Bitfield.from_bytes`
raises :class:`~client.errors.RemotePeerProtocolError`.

Bits live in a ``bytearray`` in wire order, so encoding is a copy and
``set``/``clear``/lookup are O(1); counting uses ``int.bit_count``.
"""

from __future__ import annotations

from collections.abc import Iterator

from client.errors import RemotePeerProtocolError

__all__ = ["Bitfield"]

# Characters accepted by Bitfield.from_string (test helper); whitespace is ignored.
_SET_CHARS = frozenset("1*xX")
_CLEAR_CHARS = frozenset("0.-")


class Bitfield:
    """A mutable set of piece indices in ``range(num_pieces)``.

    Iterating a ``Bitfield`` yields one ``bool`` per piece; :meth:`indices`
    yields the indices of the set bits.
    """

    __slots__ = ("_bits", "_n")

    def __init__(self, num_pieces: int) -> None:
        if num_pieces < 0:
            raise ValueError(f"bitfield: negative piece count {num_pieces}")
        self._n = num_pieces
        self._bits = bytearray((num_pieces + 7) // 8)

    # -- constructors -------------------------------------------------------

    @classmethod
    def from_bytes(
        cls, data: bytes | bytearray | memoryview, num_pieces: int
    ) -> Bitfield:
        """Decode a BEP 3 ``bitfield`` payload.

        Args:
            data: the payload, high bit of the first byte = piece 0.
            num_pieces: the torrent's piece count.

        Raises:
            RemotePeerProtocolError: the length is not ``ceil(num_pieces / 8)``
                or a spare bit past the last piece is set.
        """
        expected = (num_pieces + 7) // 8
        if len(data) != expected:
            raise RemotePeerProtocolError(
                f"bitfield: payload is {len(data)} bytes, expected {expected} "
                f"for {num_pieces} pieces"
            )
        bf = cls(num_pieces)
        bf._bits[:] = data
        spare = expected * 8 - num_pieces
        if spare and bf._bits[-1] & ((1 << spare) - 1):
            raise RemotePeerProtocolError(
                f"bitfield: spare bits after piece {num_pieces - 1} are set "
                f"(last byte {bf._bits[-1]:#04x})"
            )
        return bf

    @classmethod
    def full(cls, num_pieces: int) -> Bitfield:
        """A bitfield with every piece set (a seed; BEP 6 ``have all``)."""
        bf = cls(num_pieces)
        if num_pieces:
            bf._bits[:] = b"\xff" * len(bf._bits)
            spare = len(bf._bits) * 8 - num_pieces
            bf._bits[-1] &= (0xFF << spare) & 0xFF
        return bf

    @classmethod
    def from_string(cls, text: str) -> Bitfield:
        """Parse a compact test string: ``1 * x`` set, ``0 . -`` clear.

        Whitespace is ignored, so ``"1 0 1"``, ``"101"`` and ``"*.*"`` are the
        same three-piece bitfield.
        """
        flags: list[bool] = []
        for ch in text:
            if ch.isspace():
                continue
            if ch in _SET_CHARS:
                flags.append(True)
            elif ch in _CLEAR_CHARS:
                flags.append(False)
            else:
                raise ValueError(f"bitfield: unexpected character {ch!r} in {text!r}")
        bf = cls(len(flags))
        for i, flag in enumerate(flags):
            if flag:
                bf.set(i)
        return bf

    def copy(self) -> Bitfield:
        bf = Bitfield(self._n)
        bf._bits[:] = self._bits
        return bf

    # -- encoding -----------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The BEP 3 ``bitfield`` payload (spare bits zero)."""
        return bytes(self._bits)

    def to_string(self) -> str:
        """``"1"``/``"0"`` per piece, the inverse of :meth:`from_string`."""
        return "".join("1" if self[i] else "0" for i in range(self._n))

    # -- access -------------------------------------------------------------

    def _check(self, index: int) -> None:
        if not 0 <= index < self._n:
            raise IndexError(f"bitfield: piece {index} out of range 0..{self._n - 1}")

    def __getitem__(self, index: int) -> bool:
        self._check(index)
        return bool(self._bits[index >> 3] & (0x80 >> (index & 7)))

    def __len__(self) -> int:
        return self._n

    def __iter__(self) -> Iterator[bool]:
        """One ``bool`` per piece, in index order."""
        for i in range(self._n):
            yield bool(self._bits[i >> 3] & (0x80 >> (i & 7)))

    def set(self, index: int) -> None:
        self._check(index)
        self._bits[index >> 3] |= 0x80 >> (index & 7)

    def clear(self, index: int) -> None:
        self._check(index)
        self._bits[index >> 3] &= ~(0x80 >> (index & 7)) & 0xFF

    def count(self) -> int:
        """Number of set bits."""
        return int.from_bytes(self._bits, "big").bit_count()

    def all(self) -> bool:
        return self.count() == self._n

    def any(self) -> bool:
        return any(self._bits)

    def indices(self) -> Iterator[int]:
        """Indices of set bits, ascending (skips zero bytes cheaply)."""
        for byte_index, byte in enumerate(self._bits):
            if not byte:
                continue
            base = byte_index << 3
            for bit in range(8):
                if byte & (0x80 >> bit):
                    yield base + bit

    def has_any_not_in(self, other: Bitfield) -> bool:
        """True if some piece set here is clear in ``other``.

        With ``self`` a peer's bitfield and ``other`` ours, this is BEP 3
        "interested": the peer has something we lack.
        """
        if other._n != self._n:
            raise ValueError(f"bitfield: sizes differ ({self._n} vs {other._n})")
        return any(a & ~b for a, b in zip(self._bits, other._bits, strict=True))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Bitfield):
            return NotImplemented
        return self._n == other._n and self._bits == other._bits

    __hash__ = None  # type: ignore[assignment]  # mutable, so unhashable

    def __repr__(self) -> str:
        if self._n <= 64:
            return f"Bitfield.from_string({self.to_string()!r})"
        return f"<Bitfield {self.count()}/{self._n}>"
