"""Token-bucket rate limiting for upload and download (``--max-up`` style flags).

A bucket refills at ``rate`` bytes/s up to ``burst`` bytes. It uses a *debt*
model: :meth:`TokenBucket.reserve` always takes the tokens at once, letting
the balance go negative, and returns how long the caller must wait until the
debt it added is paid off. Each reservation therefore queues behind every
earlier one, so concurrent peers are served first come, first served and no
one starves; the alternative (callers poll until enough tokens are present)
lets a sender of small messages overtake a sender of large ones forever.

Default burst: ``max(rate * DEFAULT_BURST_S, MIN_BURST_BYTES)``. A tenth of a
second of bandwidth absorbs event-loop wake-up jitter (a sender that wakes a
few ms late doesn't lose its allowance) while bounding the overshoot after an
idle spell to 100 ms worth of data (1% over a 10 s measurement); the floor of
one 16 KiB block lets a very slow limit still pass a whole block without
making the first one wait.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from client.errors import ClientError

__all__ = ["RateLimiter", "TokenBucket", "parse_rate"]

# Seconds of bandwidth the default burst holds.
DEFAULT_BURST_S = 0.1
# Bytes: the default burst is at least one 16 KiB block (BEP 3 request size).
MIN_BURST_BYTES = 16384

_RATE_RE = re.compile(
    r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kKmMgG]?)(?:i?[bB])?(?:/s)?",
)
_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024, "g": 1024 * 1024 * 1024}


def parse_rate(text: str) -> int:
    """Parse a rate flag into bytes/s: ``"500K"``, ``"1.5M"``, ``"2048"``.

    Units are binary (K = 1024, M = 1024², G = 1024³), case-insensitive, and
    may be followed by ``B``/``iB`` and ``/s``.

    Raises:
        ClientError: the text is not a positive rate.
    """
    match = _RATE_RE.fullmatch(text.strip())
    if match is None:
        raise ClientError(
            f"rate {text!r} is not a number of bytes/s like 500K, 1.5M or 65536"
        )
    value = round(float(match["num"]) * _UNITS[match["unit"].lower()])
    if value < 1:
        raise ClientError(f"rate {text!r} must be at least 1 byte/s")
    return value


class TokenBucket:
    """A token bucket with debt: reservations are granted in FIFO order.

    Args:
        rate: bytes/s, or None for unlimited.
        burst: bucket size in bytes; default ``max(rate * 0.1 s, 16 KiB)``.
        now: the current time; the bucket starts full.

    Raises:
        ClientError: ``rate`` or ``burst`` is not positive.
    """

    def __init__(
        self, rate: float | None, *, burst: int | None = None, now: float
    ) -> None:
        self._explicit_burst = burst
        if burst is not None and burst <= 0:
            raise ClientError(f"rate limit: burst {burst} must be positive")
        self._rate: float | None = None
        self._burst = 0.0
        self._tokens = 0.0
        self._last = now
        self._configure(rate)
        self._tokens = self._burst

    def _configure(self, rate: float | None) -> None:
        if rate is not None and not rate > 0:
            raise ClientError(f"rate limit: rate {rate} must be positive or unlimited")
        self._rate = rate
        if rate is None:
            self._burst = 0.0
        elif self._explicit_burst is not None:
            self._burst = float(self._explicit_burst)
        else:
            self._burst = max(rate * DEFAULT_BURST_S, float(MIN_BURST_BYTES))

    @property
    def rate(self) -> float | None:
        """Bytes/s, or None when unlimited."""
        return self._rate

    @property
    def burst(self) -> float:
        return self._burst

    def _refill(self, now: float) -> None:
        if self._rate is not None and now > self._last:
            self._tokens = min(
                self._burst, self._tokens + (now - self._last) * self._rate
            )
        self._last = max(self._last, now)

    def set_rate(self, rate: float | None, now: float) -> None:
        """Change the rate; tokens earned so far are kept, debt is carried over."""
        was_unlimited = self._rate is None
        self._refill(now)
        self._configure(rate)
        if self._rate is None:
            self._tokens = 0.0
        elif was_unlimited:
            self._tokens = self._burst
        else:
            self._tokens = min(self._tokens, self._burst)

    def reserve(self, nbytes: int, now: float) -> float:
        """Take ``nbytes`` of allowance; returns seconds to wait before using it.

        The caller must wait the returned time before sending (or reading)
        the bytes; the allowance is already taken, so it must not ask again.
        """
        if self._rate is None:
            return 0.0
        self._refill(now)
        self._tokens -= nbytes
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self._rate


class RateLimiter:
    """Several buckets at once (e.g. global and per-torrent): the slowest wins.

    Args:
        buckets: the buckets every reservation is charged to.
    """

    def __init__(self, buckets: Iterable[TokenBucket] = ()) -> None:
        self._buckets = list(buckets)

    def add(self, bucket: TokenBucket) -> None:
        self._buckets.append(bucket)

    @property
    def buckets(self) -> tuple[TokenBucket, ...]:
        return tuple(self._buckets)

    def reserve(self, nbytes: int, now: float) -> float:
        """Reserve in every bucket; returns the longest wait."""
        return max((b.reserve(nbytes, now) for b in self._buckets), default=0.0)
