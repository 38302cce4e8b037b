"""Address hygiene for the routing table and the query handler.

BEP 42 exempts local addresses (10/8, 172.16/12, 192.168/16, 169.254/16,
127/8) from its node-id restriction; bitswarm applies the same exemption to
its one-entry-per-IP rule and its per-source-IP query rate limit, so a test
network of many nodes on 127.0.0.1 works. On exempt addresses a node is keyed
by (ip, port) instead of ip alone.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from dht.core.compact import PeerAddr

__all__ = ["SourceRateLimiter", "address_key", "is_exempt_address"]

# BEP 42 exempts these ranges (private, link-local, loopback) from its rules:
# they are network ranges we compare source addresses against, never targets.
_EXEMPT_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "127.0.0.0/8",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    )
)
MAX_TRACKED_SOURCES = 4096  # source IPs the rate limiter remembers at once


@lru_cache(maxsize=4096)
def is_exempt_address(host: str) -> bool:
    """True for loopback and private (BEP 42 exempt) addresses; False for
    public ones and for anything that is not an IP literal."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in _EXEMPT_NETWORKS)


def address_key(addr: PeerAddr) -> tuple[str, int]:
    """The routing table's uniqueness key: one entry per public IP, one per
    (ip, port) on exempt addresses. Port 0 stands for "any port"."""
    if is_exempt_address(addr.host):
        return (addr.host, addr.port)
    return (addr.host, 0)


class SourceRateLimiter:
    """A token bucket per public source IP (exempt addresses are never
    limited). Memory is bounded: past ``MAX_TRACKED_SOURCES`` the table is
    cleared, which at worst forgives some senders for one window."""

    def __init__(self, rate_per_s: float, burst: float) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def allow(self, host: str, now: float) -> bool:
        if is_exempt_address(host):
            return True
        tokens, last = self._buckets.get(host, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < 1.0:
            self._buckets[host] = (tokens, now)
            return False
        if len(self._buckets) >= MAX_TRACKED_SOURCES and host not in self._buckets:
            self._buckets.clear()
        self._buckets[host] = (tokens - 1.0, now)
        return True
