"""Announced peers per infohash (BEP 5 "announce_peer").

Entries expire ``ttl_s`` after their last announce (30 minutes by default, as
libtorrent does). Memory is capped per infohash and in total: a full swarm
drops its stalest entry for a newcomer; when the whole store is full, new
entries are refused until some expire.
"""

from __future__ import annotations

import random

from dht.core.compact import PeerAddr

__all__ = ["PeerStore"]


class PeerStore:
    def __init__(self, *, ttl_s: float, max_per_swarm: int, max_total: int) -> None:
        self._ttl = ttl_s
        self._max_per_swarm = max_per_swarm
        self._max_total = max_total
        self._swarms: dict[bytes, dict[PeerAddr, float]] = {}
        self._total = 0

    def __len__(self) -> int:
        return self._total

    @property
    def swarm_count(self) -> int:
        return len(self._swarms)

    def add(self, info_hash: bytes, peer: PeerAddr, now: float) -> bool:
        """Store or refresh one peer; False if the store is full."""
        swarm = self._swarms.get(info_hash)
        if swarm is not None and peer in swarm:
            swarm[peer] = now + self._ttl
            return True
        if self._total >= self._max_total:
            self.expire(now)
            if self._total >= self._max_total:
                return False
        if swarm is None:
            swarm = self._swarms[info_hash] = {}
        if len(swarm) >= self._max_per_swarm:
            stalest = min(swarm, key=swarm.__getitem__)
            del swarm[stalest]
            self._total -= 1
        swarm[peer] = now + self._ttl
        self._total += 1
        return True

    def get(
        self, info_hash: bytes, now: float, limit: int, rng: random.Random
    ) -> list[PeerAddr]:
        """Up to ``limit`` live peers of one swarm, a random sample if more."""
        swarm = self._swarms.get(info_hash)
        if not swarm:
            return []
        live = [p for p, expires in swarm.items() if expires > now]
        if len(live) <= limit:
            return live
        return rng.sample(live, limit)

    def expire(self, now: float) -> None:
        for info_hash in list(self._swarms):
            swarm = self._swarms[info_hash]
            for peer in [p for p, expires in swarm.items() if expires <= now]:
                del swarm[peer]
                self._total -= 1
            if not swarm:
                del self._swarms[info_hash]
