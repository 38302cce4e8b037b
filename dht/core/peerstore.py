"""Announced peers per infohash, with expiry and caps, for both overlays.

Mainline (BEP 5 "announce_peer") and Chord (``announce_peer`` and the keys
handed between owners) keep the same thing: infohash -> peer addresses, each
entry living until an absolute expiry. A new announce lives ``ttl_s`` (30
minutes by default, as libtorrent does); a handed-over Chord entry brings
the seconds it has left. Refreshing an entry keeps the later expiry.

Memory is capped per infohash and in total: a full swarm drops its stalest
entry for a newcomer; when the whole store is full, expired entries are
swept, and if it is still full new entries are refused until some expire.
"""

from __future__ import annotations

import random

from dht.core.compact import PeerAddr

__all__ = ["PeerStore"]


class PeerStore:
    """infohash -> {peer: expires_at}.

    Args:
        ttl_s: how long an announced entry lives, seconds.
        max_per_swarm: entries kept for one infohash.
        max_total: entries kept altogether.
    """

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

    def add(
        self,
        info_hash: bytes,
        peer: PeerAddr,
        now: float,
        *,
        ttl_s: float | None = None,
    ) -> bool:
        """Store or refresh one entry to expire ``ttl_s`` (default: the
        store's) after ``now``; the later expiry wins. False if full."""
        expires_at = now + (self._ttl if ttl_s is None else ttl_s)
        swarm = self._swarms.get(info_hash)
        if swarm is not None and peer in swarm:
            swarm[peer] = max(swarm[peer], expires_at)
            return True
        if self._total >= self._max_total:
            self.expire(now)
            if self._total >= self._max_total:
                return False
            swarm = self._swarms.get(info_hash)
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
        """Drop every entry whose expiry has passed."""
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

    def remove(self, info_hash: bytes, peer: PeerAddr) -> None:
        """Drop one entry (a Chord handoff the new owner acknowledged)."""
        swarm = self._swarms.get(info_hash)
        if swarm is not None and swarm.pop(peer, None) is not None:
            self._total -= 1
            if not swarm:
                del self._swarms[info_hash]
