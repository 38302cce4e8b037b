"""The tracker's swarm bookkeeping: who is in which swarm (BEP 3, BEP 48).

Theory of operation: one :class:`_Swarm` per infohash maps peer_id to the
peer's address, bytes left and the time it last announced. ``now`` is passed
in on every call; peers silent for longer than ``peer_timeout_s`` are dropped
lazily (from the swarm being touched, plus a sweep of every swarm at most once
per timeout), so there is no background task. A swarm's peers are kept in
last-seen order (a re-announce moves the peer to the end), so expiry stops at
the first live peer. Empty swarms are forgotten, their ``downloaded`` count
with them: that keeps memory bounded by live peers.

Deliberately left out: per-swarm peer caps and preferring leechers for
seeders; a seeder gets a random sample of everyone like a leecher does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from tracker.core.addr import PeerAddr
from tracker.core.request import AnnounceRequest, Event, InfoHash, PeerId
from tracker.errors import AnnounceRequestError

__all__ = [
    "MAX_SCRAPE_ALL",
    "MAX_TORRENTS",
    "AnnounceResult",
    "PeerEntry",
    "RegistryStats",
    "SwarmCounts",
    "SwarmRegistry",
]

MAX_TORRENTS = 100_000  # swarms tracked at once; a new one past this is refused
MAX_SCRAPE_ALL = 1000  # swarms reported by a scrape that names no info_hash


@dataclass(slots=True)
class _Peer:
    addr: PeerAddr
    left: int
    last_seen: float


@dataclass(slots=True)
class _Swarm:
    peers: dict[PeerId, _Peer] = field(default_factory=dict)
    seeders: int = 0
    downloaded: int = 0

    def put(self, peer_id: PeerId, peer: _Peer) -> _Peer | None:
        old = self.remove(peer_id)
        self.peers[peer_id] = peer  # (re)inserted last: keeps last-seen order
        if peer.left == 0:
            self.seeders += 1
        return old

    def remove(self, peer_id: PeerId) -> _Peer | None:
        old = self.peers.pop(peer_id, None)
        if old is not None and old.left == 0:
            self.seeders -= 1
        return old

    def expire(self, deadline: float) -> None:
        while self.peers:
            peer_id, peer = next(iter(self.peers.items()))
            if peer.last_seen >= deadline:
                return
            self.remove(peer_id)

    def counts(self) -> SwarmCounts:
        return SwarmCounts(
            complete=self.seeders,
            incomplete=len(self.peers) - self.seeders,
            downloaded=self.downloaded,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class SwarmCounts:
    """One swarm's scrape numbers (BEP 48)."""

    complete: int
    incomplete: int
    downloaded: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerEntry:
    """A peer handed out in an announce response."""

    peer_id: bytes
    addr: PeerAddr


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceResult:
    """What an announce returns: a peer sample and the swarm's counts."""

    peers: tuple[PeerEntry, ...]
    complete: int
    incomplete: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryStats:
    """A snapshot of the whole tracker."""

    torrents: int
    seeders: int
    leechers: int
    downloaded: int
    announces: int
    scrapes: int


class SwarmRegistry:
    """Every swarm the tracker knows, with lazy expiry driven by ``now``."""

    def __init__(
        self,
        *,
        peer_timeout_s: float,
        rng: random.Random,
        max_torrents: int = MAX_TORRENTS,
    ) -> None:
        self._peer_timeout_s = peer_timeout_s
        self._rng = rng
        self._max_torrents = max_torrents
        self._swarms: dict[InfoHash, _Swarm] = {}
        self._last_sweep: float | None = None
        self._announces = 0
        self._scrapes = 0

    def announce(
        self, request: AnnounceRequest, addr: PeerAddr, now: float
    ) -> AnnounceResult:
        """Record an announce and pick up to ``request.numwant`` other peers.

        The announcing peer never gets itself back, neither by peer_id nor by
        address. A ``stopped`` peer is removed and gets no peers.

        Raises:
            AnnounceRequestError: if this would start a swarm past the cap.
        """
        self._sweep(now)
        swarm = self._swarms.get(request.info_hash)
        if swarm is None:
            if request.event is Event.STOPPED:
                return AnnounceResult(peers=(), complete=0, incomplete=0)
            if len(self._swarms) >= self._max_torrents:
                raise AnnounceRequestError(
                    f"tracker already tracks {len(self._swarms)} torrents, its cap"
                )
            swarm = self._swarms[request.info_hash] = _Swarm()
        swarm.expire(now - self._peer_timeout_s)
        self._announces += 1

        if request.event is Event.STOPPED:
            swarm.remove(request.peer_id)
            counts = swarm.counts()
            if not swarm.peers:
                del self._swarms[request.info_hash]
            return AnnounceResult(
                peers=(), complete=counts.complete, incomplete=counts.incomplete
            )

        old = swarm.put(
            request.peer_id, _Peer(addr=addr, left=request.left, last_seen=now)
        )
        was_seeder = old is not None and old.left == 0
        if request.event is Event.COMPLETED and not was_seeder:
            swarm.downloaded += 1

        candidates = [
            PeerEntry(peer_id=peer_id, addr=peer.addr)
            for peer_id, peer in swarm.peers.items()
            if peer_id != request.peer_id and peer.addr != addr
        ]
        count = min(request.numwant, len(candidates))
        counts = swarm.counts()
        return AnnounceResult(
            peers=tuple(self._rng.sample(candidates, count)),
            complete=counts.complete,
            incomplete=counts.incomplete,
        )

    def scrape(
        self, info_hashes: Sequence[InfoHash], now: float
    ) -> dict[InfoHash, SwarmCounts]:
        """Counts for the named swarms, or for up to :data:`MAX_SCRAPE_ALL`
        swarms when none is named. Unknown infohashes are left out (BEP 48)."""
        self._scrapes += 1
        if not info_hashes:
            self._sweep(now, force=True)
            chosen = list(self._swarms)[:MAX_SCRAPE_ALL]
        else:
            deadline = now - self._peer_timeout_s
            chosen = []
            for info_hash in info_hashes:
                swarm = self._swarms.get(info_hash)
                if swarm is not None:
                    swarm.expire(deadline)
                    chosen.append(info_hash)
        return {h: self._swarms[h].counts() for h in chosen}

    def swarms(self, now: float, limit: int) -> list[tuple[InfoHash, SwarmCounts]]:
        """The ``limit`` largest swarms, for the stats page."""
        self._sweep(now, force=True)
        largest = sorted(
            self._swarms.items(), key=lambda item: len(item[1].peers), reverse=True
        )
        return [(h, s.counts()) for h, s in largest[:limit]]

    def statistics(self, now: float) -> RegistryStats:
        """A snapshot of the whole tracker, after dropping expired peers."""
        self._sweep(now, force=True)
        seeders = sum(s.seeders for s in self._swarms.values())
        peers = sum(len(s.peers) for s in self._swarms.values())
        return RegistryStats(
            torrents=len(self._swarms),
            seeders=seeders,
            leechers=peers - seeders,
            downloaded=sum(s.downloaded for s in self._swarms.values()),
            announces=self._announces,
            scrapes=self._scrapes,
        )

    def _sweep(self, now: float, *, force: bool = False) -> None:
        """Expire every swarm, at most once per peer timeout unless forced."""
        if (
            not force
            and self._last_sweep is not None
            and now - self._last_sweep < self._peer_timeout_s
        ):
            return
        self._last_sweep = now
        deadline = now - self._peer_timeout_s
        for info_hash, swarm in list(self._swarms.items()):
            swarm.expire(deadline)
            if not swarm.peers:
                del self._swarms[info_hash]
