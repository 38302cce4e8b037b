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
IPv4 as an IPv4-mapped IPv6 address, in the last 4), the port, a flags byte
and the last-seen time as a double: :data:`RECORD_BYTES` bytes. The IP is
followed by the port, so a peer's compact form (BEP 23: 6 bytes for IPv4, 18
for IPv6) is one slice of its record, and :meth:`SwarmRegistry.announce_compact`
builds a reply straight from the records without an object per peer.

Sampling (issue 7): a peer sample of k from n other peers is systematic
(opentracker samples alike): one random start, then every (n // k)-th
record in last-seen order, wrapping, so every peer has the same chance k/n
of being handed out and the sample spreads over old and new peers; it
costs one random number instead of one per pick, and in an IPv4-only swarm
the compact string is cut out of the records with six extended slices. A
swarm no bigger than the sample wanted is handed out whole, drawing nothing.

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
    "CompactPeers",
    "PeerEntry",
    "RegistryStats",
    "SwarmCounts",
    "SwarmRegistry",
    "pack_ip",
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
_V4_MAPPED = bytes(10) + b"\xff\xff"  # prefix of an IPv4 address in a record
_V4_AT = _ADDR_AT + 12  # offset of an IPv4 address (its compact form) in a record
_V6_AT = _ADDR_AT  # offset of an IPv6 address (its compact form)
_OWN_ADDR_BYTES = 18  # IP and port: what "the same address" compares
_FLAGS_AT = _ADDR_AT + 18
# A swarm's buffer never gets shorter than this (bytes): CPython serves
# requests of at most 512 bytes from its object arenas, longer ones from the
# C allocator, which can hand freed memory back to the system.
MIN_SWARM_BYTES = 12 * RECORD_BYTES  # 576
_PAD = bytes(RECORD_BYTES)


def pack_ip(host: str) -> bytes:
    """The packed form of an IP literal: 4 bytes for IPv4, 16 for IPv6.

    Raises:
        ValueError: if ``host`` is not an IP literal.
    """
    return ipaddress.ip_address(host).packed


def _pack_addr(ip: bytes, port: int, seeder: bool) -> bytes:
    """The address part of a record; ``ip`` is 4 or 16 packed bytes."""
    if len(ip) == 4:
        return _ADDR.pack(_V4_MAPPED + ip, port, _FLAG_SEEDER if seeder else 0)
    if len(ip) != 16:
        raise AnnounceRequestError(f"a packed IP is {len(ip)} bytes, not 4 or 16")
    return _ADDR.pack(ip, port, _FLAG_IPV6 | (_FLAG_SEEDER if seeder else 0))


def _unpack_addr(buf: bytearray, offset: int) -> PeerAddr:
    ip, port, flags = _ADDR.unpack_from(buf, offset + _ADDR_AT)
    if flags & _FLAG_IPV6:
        return PeerAddr(str(ipaddress.IPv6Address(ip)), port)
    return PeerAddr(f"{ip[12]}.{ip[13]}.{ip[14]}.{ip[15]}", port)


class _Swarm:
    """One swarm's peers, packed: records ``[0, count)`` of ``buf`` in
    last-seen order, zero padding after them up to :data:`MIN_SWARM_BYTES`."""

    __slots__ = ("buf", "count", "downloaded", "seeders", "v6")

    def __init__(self) -> None:
        self.buf = bytearray(MIN_SWARM_BYTES)
        self.count = 0
        self.seeders = 0
        self.v6 = 0  # IPv6 peers among them
        self.downloaded = 0

    def find(self, peer_id: bytes) -> int:
        """The record index of ``peer_id``, or -1."""
        buf, end = self.buf, self.count * RECORD_BYTES
        pos = buf.find(peer_id, 0, end)
        while pos > 0 and pos % RECORD_BYTES:  # a hit inside another field
            pos = buf.find(peer_id, pos + 1, end)
        return pos // RECORD_BYTES if pos >= 0 else -1

    def is_seeder(self, index: int) -> bool:
        return bool(self.buf[index * RECORD_BYTES + _FLAGS_AT] & _FLAG_SEEDER)

    def _forget_flags(self, index: int) -> None:
        flags = self.buf[index * RECORD_BYTES + _FLAGS_AT]
        if flags & _FLAG_SEEDER:
            self.seeders -= 1
        if flags & _FLAG_IPV6:
            self.v6 -= 1

    def last_seen(self, index: int) -> float:
        seen: float = _SEEN.unpack_from(self.buf, index * RECORD_BYTES + _SEEN_AT)[0]
        return seen

    def remove_at(self, index: int) -> None:
        self._forget_flags(index)
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
        if addr[-1] & _FLAG_IPV6:
            self.v6 += 1

    def expire(self, deadline: float) -> int:
        """Drop the peers last seen before ``deadline``; returns how many."""
        gone = 0
        while gone < self.count and self.last_seen(gone) < deadline:
            self._forget_flags(gone)
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
class CompactPeers:
    """What :meth:`SwarmRegistry.announce_compact` returns: the sampled
    peers' compact forms (``peers`` IPv4, 6 bytes each; ``peers6`` IPv6, 18
    bytes each) and the swarm's counts."""

    peers: bytes
    peers6: bytes
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
        try:
            ip = pack_ip(addr.host)
        except ValueError:
            raise AnnounceRequestError(f"{addr.host!r} is not an IP address") from None
        swarm, complete, incomplete = self._record(request, ip, addr.port, now)
        if swarm is None:
            return AnnounceResult(peers=(), complete=complete, incomplete=incomplete)
        picks = self._sample(swarm, request.numwant)
        return AnnounceResult(
            peers=tuple(swarm.entry(i) for i in picks),
            complete=complete,
            incomplete=incomplete,
        )

    def announce_compact(
        self, request: AnnounceRequest, ip: bytes, port: int, now: float
    ) -> CompactPeers:
        """:meth:`announce` for a peer at the packed ``ip`` (4 or 16 bytes)
        and ``port``, answered with the peers' compact forms (BEP 23, BEP 7),
        built straight from the records: what the HTTP and UDP hot paths use.

        Raises:
            AnnounceRequestError: if this would start a swarm past the cap,
                or ``ip`` is not 4 or 16 bytes.
        """
        swarm, complete, incomplete = self._record(request, ip, port, now)
        if swarm is None:
            return CompactPeers(
                peers=b"", peers6=b"", complete=complete, incomplete=incomplete
            )
        buf = swarm.buf
        if not swarm.v6:  # the common case: one slice per peer, no index list
            peers = self._sample_v4(swarm, request.numwant)
            if peers is not None:
                return CompactPeers(
                    peers=peers, peers6=b"", complete=complete, incomplete=incomplete
                )
        v4: list[bytearray] = []
        v6: list[bytearray] = []
        for i in self._sample(swarm, request.numwant):
            start = i * RECORD_BYTES
            if buf[start + _FLAGS_AT] & _FLAG_IPV6:
                v6.append(buf[start + _V6_AT : start + _V6_AT + 18])
            else:
                v4.append(buf[start + _V4_AT : start + _V4_AT + 6])
        return CompactPeers(
            peers=b"".join(v4),
            peers6=b"".join(v6),
            complete=complete,
            incomplete=incomplete,
        )

    def _record(
        self, request: AnnounceRequest, ip: bytes, port: int, now: float
    ) -> tuple[_Swarm | None, int, int]:
        """Apply an announce: the swarm to sample from (None for a
        ``stopped`` one, which gets no peers) with its seeders and leechers.
        The asker's record, if kept, is the swarm's last."""
        packed = _pack_addr(ip, port, seeder=request.left == 0)
        self._sweep(now)
        info_hash = request.info_hash
        swarm = self._swarms.get(info_hash)
        stopped = request.event is Event.STOPPED
        if swarm is None:
            if stopped:
                return None, 0, 0
            if len(self._swarms) >= self._max_torrents:
                raise AnnounceRequestError(
                    f"tracker already tracks {len(self._swarms)} torrents, its cap"
                )
            swarm = self._swarms[info_hash] = _Swarm()
            if len(self._swarms) > self._swarms_peak:
                self._swarms_peak = len(self._swarms)
        elif swarm.count and swarm.last_seen(0) < now - self._peer_timeout_s:
            self._peers -= swarm.expire(now - self._peer_timeout_s)
        self._announces += 1

        index = swarm.find(request.peer_id)
        was_seeder = False
        if index >= 0:
            was_seeder = swarm.is_seeder(index)
            swarm.remove_at(index)
            self._peers -= 1
        if stopped:
            complete, incomplete = swarm.seeders, swarm.count - swarm.seeders
            if not swarm.count:
                self._forget(info_hash)
            return None, complete, incomplete

        swarm.append(request.peer_id, packed, now)  # last: keeps last-seen order
        self._peers += 1
        if request.event is Event.COMPLETED and not was_seeder:
            swarm.downloaded += 1
        return swarm, swarm.seeders, swarm.count - swarm.seeders

    def _sample_v4(self, swarm: _Swarm, numwant: int) -> bytes | None:
        """:meth:`_sample` of an IPv4-only swarm as its compact peer string,
        or None when someone else shares the asker's address (then
        :meth:`_sample` sorts it out).

        The sample's records sit ``step`` records apart (one run, or two
        when it wraps), so each of the six bytes of a compact entry is
        copied for every pick at once by one extended-slice assignment.
        """
        others = swarm.count - 1
        if numwant <= 0 or others <= 0:
            return b""
        buf = swarm.buf
        mine = others * RECORD_BYTES + _V4_AT
        own = buf[mine : mine + 6]
        if others <= numwant:
            k, step, start = others, 1, 0
        else:
            k, step, start = self._systematic(others, numwant)
        out = bytearray(6 * k)
        stride = step * RECORD_BYTES
        first = min(k, (others - start + step - 1) // step)  # picks before the wrap
        for at, picks, offset in (
            (start * RECORD_BYTES + _V4_AT, first, 0),
            (
                (start + first * step - others) * RECORD_BYTES + _V4_AT,
                k - first,
                6 * first,
            ),
        ):
            if picks:
                last = at + (picks - 1) * stride
                for c in range(6):
                    out[offset + c : offset + 6 * picks : 6] = buf[
                        at + c : last + c + 1 : stride
                    ]
        pos = out.find(own)
        while pos >= 0 and pos % 6:  # a hit across two entries
            pos = out.find(own, pos + 1)
        if pos >= 0:
            return None
        return bytes(out)

    def _sample(self, swarm: _Swarm, numwant: int) -> list[int]:
        """Record indices of up to ``numwant`` random peers of ``swarm`` other
        than the asker (its record is the last one) and other than its
        address (IP and port)."""
        others = swarm.count - 1
        if numwant <= 0 or others <= 0:
            return []
        buf = swarm.buf
        mine = others * RECORD_BYTES + _ADDR_AT
        own = buf[mine : mine + _OWN_ADDR_BYTES]

        def usable(i: int) -> bool:
            at = i * RECORD_BYTES + _ADDR_AT
            return buf[at : at + _OWN_ADDR_BYTES] != own

        picks = (
            list(range(others)) if others <= numwant else self._pick(others, numwant)
        )
        if all(usable(i) for i in picks):  # the common case: nobody shares it
            return picks
        picks = [i for i in range(others) if usable(i)]
        if len(picks) <= numwant:
            return picks
        return [picks[i] for i in self._pick(len(picks), numwant)]

    def _systematic(self, n: int, k: int) -> tuple[int, int, int]:
        """A systematic sample of ``k`` of ``n`` indices (``0 < k < n``):
        ``(k, step, start)`` for indices ``(start + j * step) % n``,
        ``j < k``, with ``step = n // k`` (so they are distinct) and a
        random start, so every index is picked with the same chance k/n
        from one random number."""
        return k, n // k, self._rng.randrange(n)

    def _pick(self, n: int, k: int) -> list[int]:
        """The indices of :meth:`_systematic`'s sample."""
        k, step, start = self._systematic(n, k)
        return [(start + j * step) % n for j in range(k)]

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
