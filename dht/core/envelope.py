"""The KRPC envelope (BEP 5 "KRPC Protocol"), shared by Mainline and Chord.

Every datagram of both overlays is one bencoded dictionary with a
transaction id ``t``, a type ``y`` (``q`` query, ``r`` response, ``e``
error), the type's body (``q`` and ``a``; ``r``; ``e`` = ``[code,
message]``) and an optional client version ``v``. This module frames and
unframes that envelope; each overlay's message module parses the bodies.

Decoding is bencode.py's, with the caller's depth limit; every failure maps
to :class:`~dht.errors.RemoteKrpcError`, prefixed with the caller's name for
the protocol (``krpc``, ``chord``).
"""

from __future__ import annotations

from enum import IntEnum

import bencodepy

from dht.errors import LocalKrpcError, RemoteKrpcError

__all__ = [
    "DECODE_ERRORS",
    "MAX_DATAGRAM_BYTES",
    "MAX_ERROR_TEXT_BYTES",
    "MAX_TRANSACTION_ID_BYTES",
    "MAX_VERSION_BYTES",
    "ErrorCode",
    "StrictDecoder",
    "decode_envelope",
    "decode_error_body",
    "decode_version",
    "encode_envelope",
    "error_body",
]

MAX_DATAGRAM_BYTES = 2048  # bytes; BEP 5 messages fit one unfragmented datagram
MAX_TRANSACTION_ID_BYTES = 16  # bytes; BEP 5 suggests 2, libtorrent sends 2-4
MAX_VERSION_BYTES = 16  # bytes; BEP 5 'v' is 4 (two-letter client id + version)
MAX_ERROR_TEXT_BYTES = 256  # bytes kept of an error reply's message

# bencode.py maps most junk to BencodeDecodeError, but its contract does not
# promise that, so every exception a decoder can raise on bytes is mapped.
DECODE_ERRORS = (
    bencodepy.BencodeDecodeError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    RecursionError,
    OverflowError,
)


class StrictDecoder(bencodepy.BencodeDecoder):  # type: ignore[misc]  # untyped base
    """bencode.py's decoder, refusing a string length that is not plain
    digits. bencode.py reads a dictionary key's length with ``int()``, so a
    key like ``-6:`` moves the read position backwards; ``d1:a1:b-6:e``
    loops forever, and one datagram would hang the node (issue 8)."""

    def decode_string(
        self, x: bytes, f: int, kind: str = "value", **kwargs: object
    ) -> tuple[bytes, int]:
        colon = x.find(b":", f, f + 21)
        if colon <= f or not x[f:colon].isdigit():
            raise bencodepy.BencodeDecodeError(f"bad string length at byte {f}")
        result: tuple[bytes, int] = super().decode_string(x, f, kind, **kwargs)
        return result


class ErrorCode(IntEnum):
    """BEP 5 error codes carried in an ``e`` message."""

    GENERIC = 201
    SERVER = 202
    PROTOCOL = 203
    METHOD_UNKNOWN = 204


def encode_envelope(
    tid: bytes, kind: bytes, body: dict[bytes, object], version: bytes | None
) -> bytes:
    """Bencode one message: ``t``, ``y`` = ``kind``, the body's keys, and
    ``v`` when ``version`` is given."""
    out: dict[bytes, object] = {b"t": tid, b"y": kind, **body}
    if version is not None:
        out[b"v"] = version
    result: bytes = bencodepy.encode(out)  # sorts keys, as bencoding requires
    return result


def error_body(code: int, message: str) -> dict[bytes, object]:
    """The body of a ``y = e`` message."""
    return {b"e": [int(code), message.encode("utf-8", "replace")]}


def decode_envelope(
    data: bytes, decoder: bencodepy.BencodeDecoder, what: str
) -> tuple[dict[bytes, object], bytes]:
    """Check the size, bdecode, and return the top dictionary and its ``t``.

    Raises:
        RemoteKrpcError: too large, not bencode, not a dictionary, or no
            usable transaction id.
    """
    if len(data) > MAX_DATAGRAM_BYTES:
        raise RemoteKrpcError(
            f"{what}: datagram is {len(data)} bytes, "
            f"over the {MAX_DATAGRAM_BYTES}-byte cap"
        )
    if not isinstance(decoder, StrictDecoder):  # a plain one can hang (above)
        raise LocalKrpcError(f"{what}: decode_envelope needs a StrictDecoder")
    try:
        top = decoder.decode(data)
    except DECODE_ERRORS as exc:
        raise RemoteKrpcError(f"{what}: datagram is not bencode ({exc})") from exc
    if not isinstance(top, dict):
        raise RemoteKrpcError(f"{what}: message is not a dictionary")
    tid = top.get(b"t")
    if not isinstance(tid, bytes) or len(tid) > MAX_TRANSACTION_ID_BYTES:
        raise RemoteKrpcError(f"{what}: 't' is missing, not a string or too long")
    return top, tid


def decode_version(top: dict[bytes, object]) -> bytes | None:
    """The sender's ``v``, or None when absent or implausibly long."""
    v = top.get(b"v")
    return v if isinstance(v, bytes) and len(v) <= MAX_VERSION_BYTES else None


def decode_error_body(top: dict[bytes, object], what: str) -> tuple[int, str]:
    """``(code, message)`` of a ``y = e`` message; the message is cut to
    :data:`MAX_ERROR_TEXT_BYTES` and decoded leniently.

    Raises:
        RemoteKrpcError: ``e`` is not a ``[code, message]`` list.
    """
    e = top.get(b"e")
    if not isinstance(e, list) or len(e) < 2 or not isinstance(e[0], int):
        raise RemoteKrpcError(f"{what}: 'e' is not a [code, message] list")
    text = e[1]
    message = (
        text[:MAX_ERROR_TEXT_BYTES].decode("utf-8", "replace")
        if isinstance(text, bytes)
        else ""
    )
    return e[0], message
