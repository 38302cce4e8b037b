"""The dht package's exception hierarchy."""

from __future__ import annotations

__all__ = [
    "BadQuery",
    "CompactFormatError",
    "DhtError",
    "KrpcError",
    "KrpcErrorReply",
    "LocalKrpcError",
    "LookupFailed",
    "RemoteKrpcError",
]


class DhtError(Exception):
    """Root of every error the dht package raises on purpose."""


class CompactFormatError(DhtError):
    """A compact peer or node string has the wrong length."""


class KrpcError(DhtError):
    """A KRPC message could not be handled."""


class LocalKrpcError(KrpcError):
    """Our code misused the KRPC core (a bug)."""


class RemoteKrpcError(KrpcError):
    """A remote node sent a malformed KRPC message."""


class KrpcErrorReply(KrpcError):
    """A KRPC ``e`` reply: BEP 5 codes 201 generic, 202 server, 203 protocol,
    204 method unknown."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"KRPC error {code}: {message}")
        self.code = code
        self.message = message


class LookupFailed(DhtError):
    """An iterative lookup ended without reaching any live node."""


class BadQuery(RemoteKrpcError):
    """A KRPC query we can answer with an error reply: it carried a usable
    transaction id, but its method is unknown (204) or its arguments are
    malformed (203)."""

    def __init__(self, message: str, *, transaction_id: bytes, code: int) -> None:
        super().__init__(message)
        self.transaction_id = transaction_id
        self.code = code
