"""announce_peer write tokens (BEP 5 "get_peers" / "announce_peer").

BEP 5 leaves the token opaque; it suggests, and bitswarm does, the SHA-1 of
the querier's IP address and a secret that changes every five minutes, with
tokens up to ten minutes old accepted (the current or the previous secret).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import random

__all__ = ["TOKEN_BYTES", "TokenManager"]

TOKEN_BYTES = 8  # bytes of the SHA-1 kept; libtorrent sends 4
SECRET_BYTES = 16  # bytes of secret per rotation


def _ip_bytes(host: str) -> bytes:
    try:
        return ipaddress.ip_address(host).packed
    except ValueError:
        return host.encode("utf-8", "replace")


class TokenManager:
    def __init__(self, rng: random.Random, rotate_s: float = 5 * 60) -> None:
        self._rng = rng
        self._rotate_s = rotate_s
        self._current = rng.randbytes(SECRET_BYTES)
        self._previous = rng.randbytes(SECRET_BYTES)
        self._rotate_at: float | None = None

    def _rotate(self, now: float) -> None:
        if self._rotate_at is None:
            self._rotate_at = now + self._rotate_s
            return
        while now >= self._rotate_at:
            self._previous = self._current
            self._current = self._rng.randbytes(SECRET_BYTES)
            self._rotate_at += self._rotate_s

    def next_rotation(self) -> float | None:
        return self._rotate_at

    @staticmethod
    def _token(secret: bytes, host: str) -> bytes:
        return hashlib.sha1(secret + _ip_bytes(host)).digest()[:TOKEN_BYTES]

    def make(self, host: str, now: float) -> bytes:
        """The token to hand a get_peers querier at ``host``."""
        self._rotate(now)
        return self._token(self._current, host)

    def check(self, token: bytes, host: str, now: float) -> bool:
        """Whether ``token`` is one we gave ``host`` in the last two secrets."""
        self._rotate(now)
        return any(
            hmac.compare_digest(token, self._token(s, host))
            for s in (self._current, self._previous)
        )
