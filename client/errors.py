"""The client package's exception hierarchy (see shared STYLE.md section 5).

Every error a user can cause by bad input derives from :class:`ClientError`; the
CLI turns these into one line ``error: <message>`` and a non-zero exit.
"""

from __future__ import annotations

__all__ = [
    "BadPieceLengthError",
    "BencodeSyntaxError",
    "ClientError",
    "DuplicatePathError",
    "EmptyTorrentError",
    "LengthAndFilesError",
    "LocalPeerProtocolError",
    "MagnetConflictError",
    "MagnetError",
    "MagnetHashError",
    "MagnetLengthError",
    "MagnetMissingHashError",
    "MagnetPeerError",
    "MetainfoError",
    "MetainfoReadError",
    "MetainfoTooLargeError",
    "MissingKeyError",
    "NegativeLengthError",
    "NotADictError",
    "NotAMagnetError",
    "PeerProtocolError",
    "PieceCountMismatchError",
    "PiecesLengthError",
    "RemotePeerProtocolError",
    "StorageError",
    "TooManyFilesError",
    "TooManyPiecesError",
    "TrackerFailure",
    "TrailingDataError",
    "UnsafePathError",
    "UnsupportedV2Error",
    "WrongTypeError",
]


class ClientError(Exception):
    """Root of every error the client package raises on purpose."""


class MetainfoError(ClientError):
    """A .torrent file (or an info dictionary) is malformed or unsafe."""


class MagnetError(ClientError):
    """A magnet URI is malformed."""


class StorageError(ClientError):
    """Reading or writing torrent data on disk failed."""


class TrackerFailure(ClientError):
    """A tracker answered with a failure, or could not be reached."""

    def __init__(self, reason: str, *, url: str = "") -> None:
        super().__init__(f"tracker {url}: {reason}" if url else reason)
        self.reason = reason
        self.url = url


class PeerProtocolError(ClientError):
    """Something went wrong on a peer-wire connection."""


class LocalPeerProtocolError(PeerProtocolError):
    """Our code misused a protocol core (a bug; it propagates)."""


class RemotePeerProtocolError(PeerProtocolError):
    """The remote peer sent something illegal; the connection is closed."""


# --- Named metainfo failures (STYLE.md 5: one class per failure, each with a
# broken sample in sample_files/bad/). Messages name what, where and which limit.


class BencodeSyntaxError(MetainfoError):
    """The input is not well-formed bencode (or breaks a depth/size limit)."""

    def __init__(self, message: str, *, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class TrailingDataError(MetainfoError):
    """A bencoded value is followed by extra bytes."""

    def __init__(self, message: str, *, offset: int) -> None:
        super().__init__(message)
        self.offset = offset


class MetainfoTooLargeError(MetainfoError):
    """The .torrent (or info dictionary) is bigger than the size cap."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


class MetainfoReadError(MetainfoError):
    """A .torrent file could not be read from disk."""


class NotADictError(MetainfoError):
    """The top-level value (or the info value) is not a dictionary."""


class MissingKeyError(MetainfoError):
    """A required key is absent."""

    def __init__(self, message: str, *, key: str, where: str) -> None:
        super().__init__(message)
        self.key = key
        self.where = where


class WrongTypeError(MetainfoError):
    """A key holds a value of the wrong bencode type."""

    def __init__(self, message: str, *, key: str, where: str, expected: str) -> None:
        super().__init__(message)
        self.key = key
        self.where = where
        self.expected = expected


class BadPieceLengthError(MetainfoError):
    """'piece length' is not positive or is above the cap."""

    def __init__(self, message: str, *, piece_length: int) -> None:
        super().__init__(message)
        self.piece_length = piece_length


class PiecesLengthError(MetainfoError):
    """'pieces' is not a whole number of 20-byte SHA-1 hashes."""

    def __init__(self, message: str, *, size: int) -> None:
        super().__init__(message)
        self.size = size


class PieceCountMismatchError(MetainfoError):
    """The number of piece hashes does not fit the total length."""

    def __init__(self, message: str, *, expected: int, actual: int) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class NegativeLengthError(MetainfoError):
    """A file length is negative."""

    def __init__(self, message: str, *, length: int) -> None:
        super().__init__(message)
        self.length = length


class LengthAndFilesError(MetainfoError):
    """The info dictionary has both 'length' and 'files'."""


class EmptyTorrentError(MetainfoError):
    """The torrent holds no data: an empty 'files' list or total length 0."""


class UnsafePathError(MetainfoError):
    """A name or path component could escape or break the download folder."""

    def __init__(self, message: str, *, path: str, reason: str) -> None:
        super().__init__(message)
        self.path = path
        self.reason = reason


class DuplicatePathError(MetainfoError):
    """Two files map to the same path (or a file is also a folder)."""

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(message)
        self.path = path


class TooManyPiecesError(MetainfoError):
    """The piece count is above the cap."""

    def __init__(self, message: str, *, count: int, limit: int) -> None:
        super().__init__(message)
        self.count = count
        self.limit = limit


class TooManyFilesError(MetainfoError):
    """The file count is above the cap."""

    def __init__(self, message: str, *, count: int, limit: int) -> None:
        super().__init__(message)
        self.count = count
        self.limit = limit


class UnsupportedV2Error(MetainfoError):
    """A BitTorrent v2-only torrent (BEP 52) without v1 'pieces'."""


# --- Named magnet failures (BEP 9).


class NotAMagnetError(MagnetError):
    """The text is not a magnet: URI."""


class MagnetMissingHashError(MagnetError):
    """No xt=urn:btih: parameter."""


class MagnetHashError(MagnetError):
    """The btih value is not 40 hex or 32 base32 characters."""


class MagnetConflictError(MagnetError):
    """Several different btih values in one magnet."""


class MagnetPeerError(MagnetError):
    """An x.pe value is not HOST:PORT."""


class MagnetLengthError(MagnetError):
    """An xl value is not a non-negative integer."""
