"""RequestPipeline: bandwidth-delay sized queue depth and snub detection."""

from __future__ import annotations

import pytest

from client.core.pipeline import RequestPipeline

BLOCK = 16384


def feed(p: RequestPipeline, rate: float, start: float, seconds: float) -> float:
    """Blocks arriving at ``rate`` bytes/s from ``start``; returns the end time."""
    interval = BLOCK / rate
    t = start
    while t < start + seconds:
        t += interval
        p.record_block(BLOCK, t)
    return t


def test_depth_grows_with_throughput_and_shrinks_back() -> None:
    p = RequestPipeline()
    assert p.depth(0.0) == 4
    t = feed(p, 64 * 1024, 0.0, 5.0)  # 4 blocks/s
    slow = p.depth(t)
    assert slow == 4
    t = feed(p, 1024 * 1024, t, 5.0)  # 64 blocks/s
    fast = p.depth(t)
    assert 60 <= fast <= 66
    t = feed(p, 3 * 1024 * 1024, t, 5.0)  # 192 blocks/s
    faster = p.depth(t)
    assert 185 <= faster <= 196
    t = feed(p, 256 * 1024, t, 5.0)  # 16 blocks/s
    assert 15 <= p.depth(t) <= 17
    # silence: the rate decays to nothing and the depth to the minimum
    assert p.depth(t + 10.0) == 4
    assert p.rate(t + 10.0) == 0.0


def test_rate_estimate() -> None:
    p = RequestPipeline()
    t = feed(p, 500_000, 0.0, 10.0)
    assert p.rate(t) == pytest.approx(500_000, rel=0.03)


def test_fast_peer_ramps_up_within_a_second() -> None:
    p = RequestPipeline(now=0.0)
    t = feed(p, 2 * 1024 * 1024, 0.0, 1.0)  # 128 blocks/s
    assert p.depth(t) >= 100


def test_depth_is_capped_by_max_and_by_peer_reqq() -> None:
    p = RequestPipeline(max_depth=100)
    t = feed(p, 10 * 1024 * 1024, 0.0, 4.0)
    assert p.depth(t) == 100
    p.set_peer_limit(50)
    assert p.depth(t) == 50
    p.set_peer_limit(2)  # below min_depth: the peer's limit still wins
    assert p.depth(t) == 2
    p.set_peer_limit(None)
    assert p.depth(t) == 100


def test_latency_target_scales_depth() -> None:
    short = RequestPipeline(target_latency_s=0.5)
    long = RequestPipeline(target_latency_s=2.0)
    t = feed(short, 1024 * 1024, 0.0, 4.0)
    feed(long, 1024 * 1024, 0.0, 4.0)
    assert long.depth(t) == pytest.approx(4 * short.depth(t), abs=2)


def test_snubbed_after_timeout_with_outstanding_requests() -> None:
    p = RequestPipeline(snub_timeout_s=30.0)
    p.requests_sent(4, now=100.0)
    assert not p.is_snubbed(129.9, outstanding=4)
    assert p.is_snubbed(130.0, outstanding=4)
    assert p.snubbed


def test_not_snubbed_without_outstanding_requests() -> None:
    p = RequestPipeline(snub_timeout_s=30.0)
    assert not p.is_snubbed(1000.0, outstanding=0)
    p.requests_sent(4, now=0.0)
    assert not p.is_snubbed(1000.0, outstanding=0)


def test_a_block_restarts_the_snub_clock() -> None:
    p = RequestPipeline(snub_timeout_s=30.0)
    p.requests_sent(4, now=0.0)
    p.record_block(BLOCK, 20.0)
    assert not p.is_snubbed(49.0, outstanding=3)
    assert p.is_snubbed(50.0, outstanding=3)
    # snubbed stays set until the peer delivers
    assert p.is_snubbed(51.0, outstanding=0)
    p.record_block(BLOCK, 52.0)
    assert not p.is_snubbed(52.0, outstanding=2)


def test_idle_peer_starts_a_fresh_clock_when_asked_again() -> None:
    p = RequestPipeline(snub_timeout_s=30.0)
    p.requests_sent(1, now=0.0)
    p.record_block(BLOCK, 1.0)
    assert not p.is_snubbed(2.0, outstanding=0)
    p.requests_sent(4, now=100.0)
    assert not p.is_snubbed(101.0, outstanding=4)
    assert p.is_snubbed(130.0, outstanding=4)


def test_reset_snub() -> None:
    p = RequestPipeline(snub_timeout_s=30.0)
    p.requests_sent(4, now=0.0)
    assert p.is_snubbed(31.0, outstanding=4)
    p.reset_snub()
    assert not p.is_snubbed(32.0, outstanding=4)
    p.requests_sent(4, now=40.0)
    assert not p.is_snubbed(69.0, outstanding=4)
    assert p.is_snubbed(70.0, outstanding=4)
