"""TokenBucket and RateLimiter: exact long-run rate, FIFO fairness, bursts."""

from __future__ import annotations

import heapq
import itertools
from typing import Protocol

import pytest

from client.core.ratelimit import (
    DEFAULT_BURST_S,
    MIN_BURST_BYTES,
    RateLimiter,
    TokenBucket,
    parse_rate,
)
from client.errors import ClientError

KIB = 1024
MIB = 1024 * 1024
CHUNK = 16 * KIB


class Reserver(Protocol):
    def reserve(self, nbytes: int, now: float) -> float: ...


def simulate(
    limiter: Reserver,
    senders: dict[str, float],
    duration_s: float,
    chunk: int = CHUNK,
    *,
    count_from: float = 0.0,
) -> tuple[dict[str, int], dict[str, float]]:
    """Senders (name -> start time) each send ``chunk`` after waiting as told.

    Returns bytes each sender moved between ``count_from`` and ``duration_s``,
    and the longest wait any sender was told.
    """
    sent = dict.fromkeys(senders, 0)
    gaps = dict.fromkeys(senders, 0.0)
    queue = [(start, i, name) for i, (name, start) in enumerate(senders.items())]
    heapq.heapify(queue)
    while queue:
        now, i, name = heapq.heappop(queue)
        done = now + limiter.reserve(chunk, now)
        if done > duration_s:
            continue
        if done >= count_from:
            sent[name] += chunk
        gaps[name] = max(gaps[name], done - now)
        heapq.heappush(queue, (done, i, name))
    return sent, gaps


def test_many_senders_get_the_configured_rate() -> None:
    rate = 1 * MIB
    bucket = TokenBucket(rate, now=0.0)
    senders = {f"s{i}": 0.0 for i in range(25)}
    sent, _ = simulate(bucket, senders, 10.0)
    measured = sum(sent.values()) / 10.0
    assert measured == pytest.approx(rate, rel=0.02)


def test_no_sender_starves() -> None:
    rate = 2 * MIB
    bucket = TokenBucket(rate, now=0.0)
    senders = {f"s{i}": i * 0.01 for i in range(30)}
    senders["late"] = 5.0
    # whoever finds the bucket idle gets its burst, so count from 1 s on
    sent, gaps = simulate(bucket, senders, 10.0, count_from=1.0)
    early = [v for k, v in sent.items() if k != "late"]
    mean = sum(early) / len(early)
    for v in early:
        assert v == pytest.approx(mean, rel=0.03)
    # the latecomer runs 5 of the 9 counted seconds
    assert sent["late"] == pytest.approx(mean * 5 / 9, rel=0.05)
    # FIFO: nobody waits longer than everyone else's turn plus its own
    worst = (len(senders) + 1) * CHUNK / rate
    assert max(gaps.values()) <= worst


def test_burst_then_rate() -> None:
    bucket = TokenBucket(100 * KIB, burst=64 * KIB, now=0.0)
    waits = [bucket.reserve(16 * KIB, 0.0) for _ in range(6)]
    assert waits[:4] == [0.0] * 4
    assert waits[4] == pytest.approx(16 / 100)
    assert waits[5] == pytest.approx(32 / 100)


def test_idle_time_refills_only_up_to_the_burst() -> None:
    bucket = TokenBucket(100 * KIB, burst=64 * KIB, now=0.0)
    bucket.reserve(64 * KIB, 0.0)
    # a long idle spell does not bank more than one burst
    assert bucket.reserve(64 * KIB, 1000.0) == 0.0
    assert bucket.reserve(16 * KIB, 1000.0) == pytest.approx(0.16)


def test_default_burst() -> None:
    assert TokenBucket(10 * MIB, now=0.0).burst == 10 * MIB * DEFAULT_BURST_S
    assert TokenBucket(1 * KIB, now=0.0).burst == MIN_BURST_BYTES


def test_large_reservation_waits_proportionally() -> None:
    bucket = TokenBucket(1000.0, burst=1000, now=0.0)
    assert bucket.reserve(5000, 0.0) == pytest.approx(4.0)
    # the next caller queues behind that debt
    assert bucket.reserve(1000, 1.0) == pytest.approx(4.0)


def test_unlimited_never_waits() -> None:
    bucket = TokenBucket(None, now=0.0)
    assert bucket.rate is None
    assert all(bucket.reserve(10 * MIB, 0.0) == 0.0 for _ in range(100))


def test_set_rate_changes_the_measured_rate() -> None:
    bucket = TokenBucket(1 * MIB, now=0.0)
    senders = {f"s{i}": 0.0 for i in range(5)}
    simulate(bucket, senders, 5.0)
    bucket.set_rate(256 * KIB, 5.0)
    assert bucket.rate == 256 * KIB
    sent, _ = simulate(bucket, {k: 5.0 for k in senders}, 15.0)
    # the debt left at 5 s is paid at the new rate, so allow one burst
    assert sum(sent.values()) / 10.0 == pytest.approx(256 * KIB, rel=0.05)


def test_set_rate_to_and_from_unlimited() -> None:
    bucket = TokenBucket(1000.0, burst=1000, now=0.0)
    bucket.reserve(5000, 0.0)
    bucket.set_rate(None, 1.0)
    assert bucket.reserve(10**9, 1.0) == 0.0
    bucket.set_rate(1000.0, 2.0)
    assert bucket.reserve(1000, 2.0) == 0.0  # starts with a full burst
    assert bucket.reserve(1000, 2.0) == pytest.approx(1.0)


def test_limiter_is_bound_by_the_slowest_bucket() -> None:
    global_ = TokenBucket(1 * MIB, now=0.0)
    torrent = TokenBucket(256 * KIB, now=0.0)
    limiter = RateLimiter([global_, torrent])
    sent, _ = simulate(limiter, {f"s{i}": 0.0 for i in range(8)}, 10.0)
    assert sum(sent.values()) / 10.0 == pytest.approx(256 * KIB, rel=0.02)


def test_global_bucket_shared_by_two_torrents() -> None:
    global_ = TokenBucket(1 * MIB, now=0.0)
    a = RateLimiter([global_, TokenBucket(800 * KIB, now=0.0)])
    b = RateLimiter([global_, TokenBucket(800 * KIB, now=0.0)])

    turns = itertools.cycle([a, b])

    class Both:
        def reserve(self, nbytes: int, now: float) -> float:
            return next(turns).reserve(nbytes, now)

    sent, _ = simulate(Both(), {f"s{i}": 0.0 for i in range(10)}, 10.0)
    assert sum(sent.values()) / 10.0 == pytest.approx(1 * MIB, rel=0.02)


def test_limiter_reserves_in_every_bucket() -> None:
    x = TokenBucket(1000.0, burst=1000, now=0.0)
    y = TokenBucket(1000.0, burst=1000, now=0.0)
    assert RateLimiter([x, y]).reserve(3000, 0.0) == pytest.approx(2.0)
    assert x.reserve(1000, 0.0) == pytest.approx(3.0)
    assert y.reserve(1000, 0.0) == pytest.approx(3.0)
    assert RateLimiter().reserve(10**9, 0.0) == 0.0


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500K", 500 * KIB),
        ("500k", 500 * KIB),
        ("2048", 2048),
        ("1M", MIB),
        ("1.5M", 3 * MIB // 2),
        ("1G", 1024 * MIB),
        ("64KiB", 64 * KIB),
        ("64KB/s", 64 * KIB),
        (" 10 K ", 10 * KIB),
    ],
)
def test_parse_rate(text: str, value: int) -> None:
    assert parse_rate(text) == value


@pytest.mark.parametrize("text", ["", "fast", "-5K", "5X", "0", "0.0001", "1e3", "K"])
def test_parse_rate_rejects(text: str) -> None:
    with pytest.raises(ClientError, match="rate"):
        parse_rate(text)


@pytest.mark.parametrize("rate", [0, -1.0])
def test_bucket_rejects_non_positive_rate(rate: float) -> None:
    with pytest.raises(ClientError, match="positive"):
        TokenBucket(rate, now=0.0)
