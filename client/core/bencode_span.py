"""Bencode well-formedness check and the byte span of a torrent's info dict (BEP 3).

bencode.py (``bencodepy``) does the decoding, but it is lenient: it accepts
``i 1e``, ``i1_0e``, ``i+1e`` (Python ``int()`` rules) and repeated dictionary
keys, and it reports no offsets. The infohash must be the SHA-1 of the info
dictionary's exact bytes (BEP 3), so this module walks the structure once,
strictly, with depth and length limits (STYLE.md 5), and returns where the
top-level ``info`` value starts and ends. Only after that walk is the input
handed to bencode.py.

Strictness decisions:

* integers: ``i`` then ``0`` or an optional ``-`` and a digit string without
  leading zeros, at most :data:`MAX_INT_DIGITS` digits, then ``e``;
* strings: a length without leading zeros, at most :data:`MAX_STRING_DIGITS`
  digits, that fits in the rest of the input;
* dictionaries: keys must be strings and must not repeat (a repeated key is
  read differently by different clients); unsorted keys are accepted, because
  real torrents have them and the infohash comes from the original bytes;
* containers nest at most :data:`MAX_DEPTH` deep.
"""

from __future__ import annotations

import re

import bencodepy

from client.errors import (
    BencodeSyntaxError,
    MissingKeyError,
    NotADictError,
    TrailingDataError,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "MAX_STRING_DIGITS",
    "check_bencode",
    "decode",
    "info_span",
]

MAX_DEPTH = 100  # nested lists/dicts, as libtorrent's bdecode default
MAX_INT_DIGITS = 19  # digits of an integer: every int64 fits (STYLE.md 5)
MAX_STRING_DIGITS = 12  # digits of a string length prefix (< 1 TB)

_INT = re.compile(rb"i(0|-?[1-9][0-9]{0,%d})e" % (MAX_INT_DIGITS - 1))
_STR_LEN = re.compile(rb"(0|[1-9][0-9]{0,%d}):" % (MAX_STRING_DIGITS - 1))


def _fail(what: str, reason: str, pos: int) -> BencodeSyntaxError:
    return BencodeSyntaxError(
        f"{what}: not valid bencode: {reason} at byte {pos}", offset=pos
    )


def _skip_string(data: bytes, pos: int, what: str) -> int:
    m = _STR_LEN.match(data, pos)
    if m is None:
        raise _fail(what, "bad string length", pos)
    end = m.end() + int(m.group(1))
    if end > len(data):
        raise _fail(
            what,
            f"string of {int(m.group(1))} bytes runs past the end ({len(data)} bytes)",
            pos,
        )
    return end


def _skip(data: bytes, pos: int, depth: int, what: str) -> int:
    """Return the end offset of the value starting at ``pos``."""
    head = data[pos : pos + 1]
    if head == b"i":
        m = _INT.match(data, pos)
        if m is None:
            raise _fail(what, "bad integer", pos)
        return m.end()
    if head in (b"l", b"d"):
        if depth >= MAX_DEPTH:
            raise _fail(what, f"nesting deeper than {MAX_DEPTH} levels", pos)
        pos += 1
        keys: set[bytes] = set()
        while True:
            if pos >= len(data):
                raise _fail(what, "unterminated list or dictionary", pos)
            if data[pos] == 0x65:  # b"e"
                return pos + 1
            if head == b"d":
                key_end = _skip_string(data, pos, what)
                key = data[data.index(b":", pos) + 1 : key_end]
                if key in keys:
                    raise _fail(what, f"repeated dictionary key {key[:40]!r}", pos)
                keys.add(key)
                pos = key_end
            pos = _skip(data, pos, depth + 1, what)
    if head.isdigit():
        return _skip_string(data, pos, what)
    if not head:
        raise _fail(what, "unexpected end of input", pos)
    raise _fail(what, f"unexpected byte {head!r}", pos)


def check_bencode(data: bytes, *, what: str = "bencode") -> None:
    """Check that ``data`` is exactly one well-formed bencoded value.

    Args:
        data: the whole input.
        what: what is being decoded, for error messages ("torrent file").

    Raises:
        BencodeSyntaxError: the input is malformed or breaks a limit.
        TrailingDataError: bytes follow the first complete value.
    """
    end = _skip(data, 0, 0, what)
    if end != len(data):
        raise TrailingDataError(
            f"{what}: {len(data) - end} bytes of trailing data after the bencoded "
            f"value (at byte {end})",
            offset=end,
        )


def info_span(data: bytes, *, what: str = "torrent file") -> tuple[int, int]:
    """Validate a whole .torrent and find its top-level ``info`` value.

    Returns:
        ``(start, end)`` such that ``data[start:end]`` is the info value's exact
        bytes (its SHA-1 is the infohash).

    Raises:
        BencodeSyntaxError: the input is malformed or breaks a limit.
        TrailingDataError: bytes follow the top-level value.
        NotADictError: the top-level value is not a dictionary.
        MissingKeyError: there is no ``info`` key.
    """
    check_bencode(data, what=what)
    if data[:1] != b"d":
        raise NotADictError(f"{what}: top-level value is not a dictionary")
    pos = 1
    while data[pos] != 0x65:  # b"e"; check_bencode proved the structure
        key_end = _skip_string(data, pos, what)
        key = data[data.index(b":", pos) + 1 : key_end]
        value_end = _skip(data, key_end, 1, what)
        if key == b"info":
            return key_end, value_end
        pos = value_end
    raise MissingKeyError(
        f"{what}: missing required key 'info'", key="info", where=what
    )


def decode(data: bytes, *, what: str = "bencode") -> object:
    """Check ``data`` strictly, then decode it with bencode.py.

    Raises:
        BencodeSyntaxError: malformed input (also if bencode.py refuses it).
        TrailingDataError: bytes follow the value.
    """
    check_bencode(data, what=what)
    try:
        return bencodepy.decode(data)
    # bencode.py wraps most failures in BencodeDecodeError, but its own
    # to_binary raises TypeError and deep input can raise RecursionError.
    except (
        bencodepy.BencodeDecodeError,
        TypeError,
        ValueError,
        IndexError,
        KeyError,
        RecursionError,
    ) as exc:
        raise BencodeSyntaxError(f"{what}: not valid bencode: {exc}") from exc
