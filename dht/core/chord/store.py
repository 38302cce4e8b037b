"""The key store: infohash -> peer addresses with expiry, and handoff.

Entries expire at an absolute time (re-announcing refreshes them). When a
peer joins between a key and its owner, the owner hands the entries the
newcomer now owns over (``outside``), and drops them once acknowledged
(``remove``); on a graceful leave everything goes to the successor.
"""

from __future__ import annotations

import random

from dht.core.chord.ring import between_right, key_id
from dht.core.compact import PeerAddr

__all__ = ["KeyStore"]


class KeyStore:
    def __init__(self, *, m: int, max_per_swarm: int, max_total: int) -> None:
        self._m = m
        self._max_per_swarm = max_per_swarm
        self._max_total = max_total
        self._swarms: dict[bytes, dict[PeerAddr, float]] = {}
        self._total = 0

    def __len__(self) -> int:
        return self._total

    @property
    def swarm_count(self) -> int:
        return len(self._swarms)

    def add(self, info_hash: bytes, peer: PeerAddr, expires_at: float) -> bool:
        """Store or refresh one entry (the later expiry wins); False if full."""
        swarm = self._swarms.get(info_hash)
        if swarm is not None and peer in swarm:
            swarm[peer] = max(swarm[peer], expires_at)
            return True
        if self._total >= self._max_total:
            return False
        if swarm is None:
            swarm = self._swarms[info_hash] = {}
        if len(swarm) >= self._max_per_swarm:
            stalest = min(swarm, key=swarm.__getitem__)
            del swarm[stalest]
            self._total -= 1
        swarm[peer] = expires_at
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
        return live if len(live) <= limit else rng.sample(live, limit)

    def expire(self, now: float) -> None:
        for info_hash in list(self._swarms):
            swarm = self._swarms[info_hash]
            for peer in [p for p, expires in swarm.items() if expires <= now]:
                del swarm[peer]
                self._total -= 1
            if not swarm:
                del self._swarms[info_hash]

    def items(self, now: float) -> list[tuple[bytes, PeerAddr, float]]:
        """Every live entry as (info_hash, peer, expires_at)."""
        return [
            (ih, p, exp)
            for ih, swarm in self._swarms.items()
            for p, exp in swarm.items()
            if exp > now
        ]

    def outside(
        self, lo: int, hi: int, now: float
    ) -> list[tuple[bytes, PeerAddr, float]]:
        """Live entries whose key is not in (lo, hi]: not ours when our
        predecessor is ``lo`` and we are ``hi``."""
        return [
            item
            for item in self.items(now)
            if not between_right(key_id(item[0], self._m), lo, hi)
        ]

    def remove(self, info_hash: bytes, peer: PeerAddr) -> None:
        swarm = self._swarms.get(info_hash)
        if swarm is not None and swarm.pop(peer, None) is not None:
            self._total -= 1
            if not swarm:
                del self._swarms[info_hash]
