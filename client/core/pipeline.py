"""Per-peer request pipeline depth and snub detection.

BEP 3 says nothing about how many requests to keep outstanding beyond "a
number of requests at once"; with one request in flight a connection moves
one 16 KiB block per round trip. The pipeline is sized to the
bandwidth-delay product: ``rate * target_latency_s / block_size`` blocks, so a
fast peer always has a second's worth of blocks queued and a slow one does
not hoard blocks other peers could fetch. The depth is clamped to
``[min_depth, max_depth]`` and to the peer's ``reqq`` (BEP 10 extension
handshake: "the number of outstanding request messages this client supports
without dropping any").

The rate is measured over a sliding window of ``rate_window_s`` seconds of
received blocks; until the connection has been measured for a whole window
the divisor is the time measured so far (at least ``MIN_SPAN_S``), so a fast
peer ramps up within a second instead of a whole window.

A peer is *snubbed* (libtorrent's term, after the reference client) when
requests have been outstanding at it and no block arrived for
``snub_timeout_s``. The flag is sticky until a block arrives or
:meth:`RequestPipeline.reset_snub`; the session releases the peer's blocks to
others and the choker stops giving it a regular slot.
"""

from __future__ import annotations

from collections import deque

__all__ = ["RequestPipeline"]

# Seconds: shortest span a rate is averaged over, so one early block doesn't
# read as an enormous rate.
MIN_SPAN_S = 0.5
# Seconds of received blocks the rate is averaged over.
RATE_WINDOW_S = 3.0


class RequestPipeline:
    """Request queue depth for one peer, from its measured throughput.

    Args:
        min_depth: fewest requests to keep outstanding.
        max_depth: most requests to keep outstanding.
        target_latency_s: how many seconds of data to keep in flight.
        block_size: bytes per request.
        snub_timeout_s: seconds without a block, with requests outstanding,
            before the peer counts as snubbed.
        rate_window_s: seconds the rate is averaged over.
        now: when the connection started (the start of the first window);
            if omitted, the first requests or block start it.
    """

    def __init__(
        self,
        *,
        min_depth: int = 4,
        max_depth: int = 256,
        target_latency_s: float = 1.0,
        block_size: int = 16384,
        snub_timeout_s: float = 30.0,
        rate_window_s: float = RATE_WINDOW_S,
        now: float | None = None,
    ) -> None:
        self._min_depth = max(1, min_depth)
        self._max_depth = max(self._min_depth, max_depth)
        self._peer_limit: int | None = None
        self._target_latency_s = target_latency_s
        self._block_size = block_size
        self._snub_timeout_s = snub_timeout_s
        self._window_s = rate_window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._window_bytes = 0
        self._start: float | None = now
        self._total_bytes = 0
        # snub bookkeeping: a hint of requests in flight, and when the current
        # wait for a block began (last block, or requests sent to an idle peer)
        self._in_flight = 0
        self._wait_start: float | None = None
        self._snubbed = False

    # -- configuration -------------------------------------------------------

    def set_peer_limit(self, reqq: int | None) -> None:
        """Cap the depth at the peer's advertised ``reqq`` (None: no cap)."""
        self._peer_limit = None if reqq is None else max(1, reqq)

    @property
    def max_depth(self) -> int:
        """The effective cap: ``max_depth`` and the peer's ``reqq``."""
        if self._peer_limit is None:
            return self._max_depth
        return min(self._max_depth, self._peer_limit)

    # -- rate ----------------------------------------------------------------

    def _expire(self, now: float) -> None:
        horizon = now - self._window_s
        samples = self._samples
        while samples and samples[0][0] <= horizon:
            self._window_bytes -= samples.popleft()[1]

    def record_block(self, nbytes: int, now: float) -> None:
        """A block of ``nbytes`` arrived from the peer."""
        self.record_blocks(1, nbytes, now)

    def record_blocks(self, blocks: int, nbytes: int, now: float) -> None:
        """``blocks`` blocks of ``nbytes`` in all arrived together (one read);
        the session counts a read's blocks and records them in one step."""
        if self._start is None:
            self._start = now
        self._samples.append((now, nbytes))
        self._window_bytes += nbytes
        self._total_bytes += nbytes
        self._expire(now)
        self._in_flight = max(0, self._in_flight - blocks)
        self._wait_start = now
        self._snubbed = False

    def rate(self, now: float) -> float:
        """Bytes/s received from the peer over the recent window."""
        self._expire(now)
        if self._start is None or not self._window_bytes:
            return 0.0
        span = min(self._window_s, max(now - self._start, MIN_SPAN_S))
        return self._window_bytes / span

    @property
    def total_bytes(self) -> int:
        """Bytes recorded since the pipeline was created."""
        return self._total_bytes

    def depth(self, now: float) -> int:
        """How many requests to keep outstanding at the peer now."""
        blocks = int(self.rate(now) * self._target_latency_s / self._block_size)
        return min(max(blocks, self._min_depth), self.max_depth)

    # -- snub ----------------------------------------------------------------

    def requests_sent(self, n: int, now: float) -> None:
        """``n`` requests went out; an idle peer starts the snub clock."""
        if n <= 0:
            return
        if self._start is None:
            self._start = now
        if self._in_flight == 0 or self._wait_start is None:
            self._wait_start = now
        self._in_flight += n

    def requests_done(self, n: int) -> None:
        """``n`` requests ended without a block (cancelled, rejected, choked)."""
        self._in_flight = max(0, self._in_flight - n)

    def is_snubbed(self, now: float, outstanding: int) -> bool:
        """Whether the peer is snubbing us.

        Args:
            now: the current time.
            outstanding: requests currently outstanding at the peer (the
                caller's count is authoritative; it corrects the hint kept
                from :meth:`requests_sent`).
        """
        self._in_flight = max(0, outstanding)
        if self._snubbed:
            return True
        if outstanding <= 0 or self._wait_start is None:
            return False
        if now - self._wait_start >= self._snub_timeout_s:
            self._snubbed = True
        return self._snubbed

    @property
    def snubbed(self) -> bool:
        """The sticky result of the last :meth:`is_snubbed`."""
        return self._snubbed

    def reset_snub(self) -> None:
        """Forget the snub and the snub clock (e.g. after we were choked)."""
        self._snubbed = False
        self._wait_start = None
        self._in_flight = 0
