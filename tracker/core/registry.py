"""The tracker's swarm bookkeeping: who is in which swarm (BEP 3, BEP 48).

Theory of operation: one :class:`_Swarm` per infohash holds its peers'
peer_id, address, seeder flag and last-announce time. ``now`` is passed in on
every call; peers silent for longer than ``peer_timeout_s`` are dropped
lazily (from the swarm being touched, plus :meth:`SwarmRegistry.expire` of
every swarm at most once per timeout, run by the next announce), so there is
no background task. A swarm's peers are kept in last-seen order (a
re-announce moves the peer to the end), so expiry stops at the first live
peer. Empty swarms are forgotten, their ``downloaded`` count with them: that
keeps memory bounded by live peers.

Memory (issue 8): peers are not Python objects. A swarm packs its peers into
one ``bytearray`` of fixed-size records, at least :data:`MIN_SWARM_BYTES`
long so that it is allocated by the C allocator, never in CPython's small
object arenas. With an object (or five) per peer, 100,000 peers filled ~35
MiB of arenas, and the few long-lived objects aiohttp and yarl allocate
meanwhile (their URL caches) pinned most of those arenas after the peers
expired: the tracker never gave the memory back. Now a swarm costs three
small objects (its key, a :class:`_Swarm`, the bytearray header) and the
peers live in buffers the C allocator can return. The swarm table is rebuilt
when it shrinks to a quarter, because dicts never shrink by themselves.

A record is ``peer_id`` (20 bytes, first, so ``bytearray.find`` locates a
peer; a hit not on a record boundary is skipped), the packed IP (16 bytes;
IPv4 in the first 4), the port, a flags byte and the last-seen time as a
double: :data:`RECORD_BYTES` bytes.

Deliberately left out: per-swarm peer caps and preferring leechers for
seeders; a seeder gets a random sample of everyone like a leecher does.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from tracker.core.addr import PeerAddr
from tracker.core.request import ID_BYTES, AnnounceRequest, Event, InfoHash
from tracker.errors import AnnounceRequestError

__all__ = [
    "MAX_SCRAPE_ALL",
    "MAX_TORRENTS",
    "MIN_SWARM_BYTES",
    "RECORD_BYTES",
    "AnnounceResult",
    "PeerEntry",
    "RegistryStats",
    "SwarmCounts",
    "SwarmRegistry",
]

MAX_TORRENTS = 100_000  # swarms tracked at once; a new one past this is refused
MAX_SCRAPE_ALL = 1000  # swarms reported by a scrape that names no info_hash

# peer_id, IP (16 bytes, IPv4 in the first 4), port, flags, pad, last seen (s)
_RECORD = struct.Struct(">20s16sHBxd")
RECORD_BYTES = _RECORD.size  # 48
_ADDR = struct.Struct(">16sHB")  # the IP, port and flags part of a record
_ADDR_AT = ID_BYTES  # offset of the address part in a record
_SEEN = struct.Struct(">d")
_SEEN_AT = RECORD_BYTES - _SEEN.size  # offset of last seen in a record
_FLAG_IPV6 = 1
_FLAG_SEEDER = 2
# A swarm's buffer never gets shorter than this (bytes): CPython serves
# requests of at most 512 bytes from its object arenas, longer ones from the
# C allocator, which can hand freed memory back to the system.
MIN_SWARM_BYTES = 12 * RECORD_BYTES  # 576
_PAD = bytes(RECORD_BYTES)
SAMPLE_SLACK = 4  # extra picks drawn from a big swarm, to skip the asker


def _pack_addr(addr: PeerAddr, seeder: bool) -> bytes:
    packed = ipaddress.ip_address(addr.host).packed
    flags = (_FLAG_IPV6 if len(packed) == 16 else 0) | (_FLAG_SEEDER if seeder else 0)
    return _ADDR.pack(packed, addr.port, flags)


def _unpack_addr(buf: bytearray, offset: int) -> PeerAddr:
    ip, port, flags = _ADDR.unpack_from(buf, offset + _ADDR_AT)
    if flags & _FLAG_IPV6:
        return PeerAddr(str(ipaddress.IPv6Address(ip)), port)
    return PeerAddr(f"{ip[0]}.{ip[1]}.{ip[2]}.{ip[3]}", port)


class _Swarm:
    """One swarm's peers, packed: records ``[0, count)`` of ``buf`` in
    last-seen order, zero padding after them up to :data:`MIN_SWARM_BYTES`."""

    __slots__ = ("buf", "count", "downloaded", "seeders")

    def __init__(self) -> None:
        self.buf = bytearray(MIN_SWARM_BYTES)
        self.count = 0
        self.seeders = 0
        self.downloaded = 0

    def find(self, peer_id: bytes) -> int:
        """The record index of ``peer_id``, or -1."""
        buf, end = self.buf, self.count * RECORD_BYTES
        pos = buf.find(peer_id, 0, end)
        while pos > 0 and pos % RECORD_BYTES:  # a hit inside another field
            pos = buf.find(peer_id, pos + 1, end)
        return pos // RECORD_BYTES if pos >= 0 else -1

    def is_seeder(self, index: int) -> bool:
        return bool(self.buf[index * RECORD_BYTES + _ADDR_AT + 18] & _FLAG_SEEDER)

    def last_seen(self, index: int) -> float:
        seen: float = _SEEN.unpack_from(self.buf, index * RECORD_BYTES + _SEEN_AT)[0]
        return seen

    def remove_at(self, index: int) -> None:
        if self.is_seeder(index):
            self.seeders -= 1
        start = index * RECORD_BYTES
        del self.buf[start : start + RECORD_BYTES]
        self.count -= 1
        if len(self.buf) < MIN_SWARM_BYTES:
            self.buf += _PAD

    def append(self, peer_id: bytes, addr: bytes, now: float) -> None:
        """Add a record last; ``addr`` is :func:`_pack_addr`'s output."""
        record = peer_id + addr + b"\0" + _SEEN.pack(now)
        start = self.count * RECORD_BYTES
        if start + RECORD_BYTES <= len(self.buf):
            self.buf[start : start + RECORD_BYTES] = record
        else:
            self.buf += record
        self.count += 1
        if addr[-1] & _FLAG_SEEDER:
            self.seeders += 1

    def expire(self, deadline: float) -> int:
        """Drop the peers last seen before ``deadline``; returns how many."""
        gone = 0
        while gone < self.count and self.last_seen(gone) < deadline:
            if self.is_seeder(gone):
                self.seeders -= 1
            gone += 1
        if gone:
            del self.buf[: gone * RECORD_BYTES]
            self.count -= gone
            short = MIN_SWARM_BYTES - len(self.buf)
            if short > 0:
                self.buf += bytes(short)
        return gone

    def entry(self, index: int) -> PeerEntry:
        start = index * RECORD_BYTES
        return PeerEntry(
            peer_id=bytes(self.buf[start : start + ID_BYTES]),
            addr=_unpack_addr(self.buf, start),
        )

    def counts(self) -> SwarmCounts:
        return SwarmCounts(
            complete=self.seeders,
            incomplete=self.count - self.seeders,
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
        self._swarms_peak = 0  # most swarms since the table was last rebuilt
        self._peers = 0  # peers in every swarm together
        self._last_sweep: float | None = None
        self._announces = 0
        self._scrapes = 0

    @property
    def torrents(self) -> int:
        """Swarms held right now (no expiry is run to answer)."""
        return len(self._swarms)

    @property
    def peers(self) -> int:
        """Peers held right now, in all swarms (no expiry is run to answer)."""
        return self._peers

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
            self._swarms_peak = max(self._swarms_peak, len(self._swarms))
        self._peers -= swarm.expire(now - self._peer_timeout_s)
        self._announces += 1

        index = swarm.find(request.peer_id)
        was_seeder = index >= 0 and swarm.is_seeder(index)
        if index >= 0:
            swarm.remove_at(index)
            self._peers -= 1
        if request.event is Event.STOPPED:
            counts = swarm.counts()
            if not swarm.count:
                self._forget(request.info_hash)
            return AnnounceResult(
                peers=(), complete=counts.complete, incomplete=counts.incomplete
            )

        packed = _pack_addr(addr, seeder=request.left == 0)
        swarm.append(request.peer_id, packed, now)  # last: keeps last-seen order
        self._peers += 1
        if request.event is Event.COMPLETED and not was_seeder:
            swarm.downloaded += 1
        counts = swarm.counts()
        return AnnounceResult(
            peers=self._sample(swarm, request.numwant, packed[:-1]),
            complete=counts.complete,
            incomplete=counts.incomplete,
        )

    def _sample(
        self, swarm: _Swarm, numwant: int, own_addr: bytes
    ) -> tuple[PeerEntry, ...]:
        """Up to ``numwant`` random peers of ``swarm`` other than the asker
        (its record is the last one) and other than its address."""
        others = swarm.count - 1
        if numwant <= 0 or others <= 0:
            return ()
        buf = swarm.buf

        def usable(i: int) -> bool:
            at = i * RECORD_BYTES + _ADDR_AT
            return buf[at : at + len(own_addr)] != own_addr

        if others <= numwant + SAMPLE_SLACK:
            picks = [i for i in range(others) if usable(i)]
            picks = self._rng.sample(picks, min(numwant, len(picks)))
        else:  # O(numwant), not O(swarm): a rare same-address peer may cost one
            drawn = self._rng.sample(range(others), numwant + SAMPLE_SLACK)
            picks = [i for i in drawn if usable(i)][:numwant]
        return tuple(swarm.entry(i) for i in picks)

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
                    self._peers -= swarm.expire(deadline)
                    chosen.append(info_hash)
        return {h: self._swarms[h].counts() for h in chosen}

    def swarms(self, now: float, limit: int) -> list[tuple[InfoHash, SwarmCounts]]:
        """The ``limit`` largest swarms, for the stats page."""
        self._sweep(now, force=True)
        largest = sorted(
            self._swarms.items(), key=lambda item: item[1].count, reverse=True
        )
        return [(h, s.counts()) for h, s in largest[:limit]]

    def statistics(self, now: float) -> RegistryStats:
        """A snapshot of the whole tracker, after dropping expired peers."""
        self._sweep(now, force=True)
        seeders = sum(s.seeders for s in self._swarms.values())
        return RegistryStats(
            torrents=len(self._swarms),
            seeders=seeders,
            leechers=self._peers - seeders,
            downloaded=sum(s.downloaded for s in self._swarms.values()),
            announces=self._announces,
            scrapes=self._scrapes,
        )

    def expire(self, now: float) -> int:
        """Drop every peer silent for longer than the timeout, in every swarm,
        and forget the swarms left empty; returns how many peers went.
        O(swarms); :meth:`announce` runs it at most once per timeout."""
        self._last_sweep = now
        deadline = now - self._peer_timeout_s
        gone = 0
        for info_hash, swarm in list(self._swarms.items()):
            gone += swarm.expire(deadline)
            if not swarm.count:
                del self._swarms[info_hash]
        self._peers -= gone
        self._compact()
        return gone

    def _sweep(self, now: float, *, force: bool = False) -> None:
        """:meth:`expire`, at most once per peer timeout unless forced."""
        if (
            force
            or self._last_sweep is None
            or now - self._last_sweep >= self._peer_timeout_s
        ):
            self.expire(now)

    def _forget(self, info_hash: InfoHash) -> None:
        del self._swarms[info_hash]
        self._compact()

    def _compact(self) -> None:
        """Rebuild the swarm table once it holds a quarter of its peak:
        a dict keeps its largest size until rebuilt."""
        if len(self._swarms) * 4 <= self._swarms_peak and self._swarms_peak > 64:
            self._swarms = dict(self._swarms.items())
            self._swarms_peak = len(self._swarms)
