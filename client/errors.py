"""The client package's exception hierarchy (see shared STYLE.md section 5).

Every error a user can cause by bad input derives from :class:`ClientError`; the
CLI turns these into one line ``error: <message>`` and a non-zero exit.
"""

from __future__ import annotations

__all__ = [
    "ClientError",
    "LocalPeerProtocolError",
    "MagnetError",
    "MetainfoError",
    "PeerProtocolError",
    "RemotePeerProtocolError",
    "StorageError",
    "TrackerFailure",
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
