"""The Mainline DHT routing table (BEP 5 "Routing Table").

Theory of operation. Buckets hold at most ``k`` nodes each. Bucket ``i`` holds
the nodes whose ids share exactly ``i`` leading bits with our own id; the last
bucket holds every id sharing at least ``len(buckets) - 1`` bits, i.e. the
range that contains our own id. Only that last bucket ever splits (BEP 5: "a
full bucket is split only if our own id falls in its range"), which is the
same tree BEP 5 draws, indexed by prefix length.

Node states (BEP 5): *good* if it answered one of our queries in the last
15 minutes, or has answered at some time and sent us a query in the last 15
minutes; *bad* after ``bad_after_failures`` queries in a row went unanswered;
*questionable* otherwise. A node enters the table only by answering a query
(the caller pings unknown queriers first), so every entry has answered once.

When a node answers and its bucket is full and cannot split: a bad entry is
replaced at once; otherwise, if some entries are questionable, the caller is
told to ping them (least recently seen first) and the newcomer waits in the
bucket's replacement cache, taking the place of the first entry that turns
bad. If every entry is good the newcomer only goes to the replacement cache.

Address rules: one entry per public IP, one per (ip, port) on loopback and
private addresses (see ``limits``). An answer whose id differs from the id we
hold for that address (or an id we hold at another address) is not stored.

Deliberately left out: BEP 42 node-id verification, IPv6 tables (BEP 32).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from dht.core.compact import PeerAddr
from dht.core.distance import (
    ID_BITS,
    NodeId,
    common_prefix_bits,
    id_to_int,
    random_id_with_prefix,
)
from dht.core.kademlia.limits import address_key

__all__ = ["NodeInfo", "NodeState", "RoutingTable"]

REPLACEMENTS_PER_BUCKET = 8  # waiting candidates kept per bucket


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeInfo:
    """A DHT node's id and UDP address (one BEP 5 "compact node info")."""

    id: NodeId
    addr: PeerAddr


class NodeState(Enum):
    GOOD = "good"  #: answered within the window, or answered once and queried us lately
    QUESTIONABLE = "questionable"  #: silent for a window; ping before trusting
    BAD = "bad"  #: failed several queries in a row; replace when possible


@dataclass(slots=True)
class _Entry:
    id: NodeId
    id_int: int
    addr: PeerAddr
    last_response: float
    last_query: float | None = None
    failures: int = 0
    pinging: bool = False
    last_upkeep: float = 0.0

    def info(self) -> NodeInfo:
        return NodeInfo(id=self.id, addr=self.addr)


@dataclass(slots=True)
class _Bucket:
    entries: list[_Entry]
    replacements: list[_Entry]
    last_changed: float


class RoutingTable:
    """BEP 5 buckets of known nodes, keyed by XOR prefix with our own id."""

    def __init__(
        self,
        own_id: NodeId,
        *,
        k: int = 8,
        good_window_s: float = 15 * 60,
        bad_after_failures: int = 2,
        refresh_after_s: float = 15 * 60,
        now: float = 0.0,
    ) -> None:
        self.own_id = own_id
        self._own = id_to_int(own_id)
        self._k = k
        self._window = good_window_s
        self._bad_after = bad_after_failures
        self._refresh_after = refresh_after_s
        self._buckets = [_Bucket([], [], now)]
        self._by_key: dict[tuple[str, int], _Entry] = {}
        self._by_id: dict[int, _Entry] = {}

    # -- queries about the table --------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_id)

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    def state(self, entry_id: bytes, now: float) -> NodeState | None:
        entry = self._by_id.get(id_to_int(entry_id))
        return None if entry is None else self._state(entry, now)

    def _state(self, e: _Entry, now: float) -> NodeState:
        if e.failures >= self._bad_after:
            return NodeState.BAD
        if now - e.last_response <= self._window:
            return NodeState.GOOD
        if e.last_query is not None and now - e.last_query <= self._window:
            return NodeState.GOOD
        return NodeState.QUESTIONABLE

    def good_count(self, now: float) -> int:
        return sum(
            1 for e in self._by_id.values() if self._state(e, now) is NodeState.GOOD
        )

    def nodes(self) -> list[NodeInfo]:
        """Every entry, bucket by bucket (for saving the table)."""
        return [e.info() for b in self._buckets for e in b.entries]

    def contains(self, addr: PeerAddr) -> bool:
        return address_key(addr) in self._by_key

    def id_at(self, addr: PeerAddr) -> NodeId | None:
        entry = self._by_key.get(address_key(addr))
        return None if entry is None else entry.id

    def _index(self, id_int: int) -> int:
        return min(common_prefix_bits(self._own, id_int), len(self._buckets) - 1)

    def closest(
        self, target: bytes, count: int, *, include_failing: bool = True
    ) -> list[NodeInfo]:
        """Up to ``count`` non-bad entries closest to ``target`` by XOR.

        Replies to other nodes pass ``include_failing=False`` and so leave out
        entries whose last query went unanswered, as libtorrent does: after
        a mass failure, that keeps dead nodes from crowding live ones out of
        the 8 slots of a reply.

        Buckets are visited in distance order (the target's own bucket, then
        all deeper buckets together, then shallower ones one by one), so only
        the buckets that can matter are sorted.
        """
        t = id_to_int(target)
        last = len(self._buckets) - 1
        c = self._index(t)
        groups: list[range] = [range(c, c + 1)]
        if c < last:
            groups.append(range(c + 1, last + 1))
        groups.extend(range(j, j + 1) for j in range(c - 1, -1, -1))
        limit = self._bad_after if include_failing else 1
        found: list[_Entry] = []
        for group in groups:
            for j in group:
                found.extend(e for e in self._buckets[j].entries if e.failures < limit)
            if len(found) >= count:
                break
        found.sort(key=lambda e: e.id_int ^ t)
        return [e.info() for e in found[:count]]

    # -- updates -------------------------------------------------------------------

    def would_accept(self, new_id: bytes, addr: PeerAddr, now: float) -> bool:
        """Whether an answer from this unknown node could change the table
        (the caller pings unknown queriers only when this holds)."""
        n = id_to_int(new_id)
        if n == self._own or n in self._by_id or address_key(addr) in self._by_key:
            return False
        i = self._index(n)
        bucket = self._buckets[i]
        if len(bucket.entries) < self._k:
            return True
        if i == len(self._buckets) - 1 and len(self._buckets) < ID_BITS:
            return True
        return any(self._state(e, now) is not NodeState.GOOD for e in bucket.entries)

    def heard_query(self, sender_id: bytes, addr: PeerAddr, now: float) -> bool:
        """A node sent us a query. Returns True if it is in the table (and
        refreshes it); False if unknown, or its id or address conflicts."""
        entry = self._by_key.get(address_key(addr))
        if entry is None or entry.id != sender_id or entry.addr != addr:
            return False
        entry.last_query = now
        self._buckets[self._index(entry.id_int)].last_changed = now
        return True

    def heard_response(
        self, sender_id: NodeId, addr: PeerAddr, now: float
    ) -> list[NodeInfo]:
        """A node answered one of our queries: add or refresh it.

        Returns:
            Questionable entries the caller should ping now (BEP 5: ping
            before evicting); the newcomer waits as their replacement.
        """
        n = id_to_int(sender_id)
        if n == self._own:
            return []
        key = address_key(addr)
        entry = self._by_key.get(key)
        if entry is not None:
            if entry.id_int != n or entry.addr != addr:
                return []  # a different id from the one we hold for this address
            entry.last_response = now
            entry.failures = 0
            entry.pinging = False
            self._buckets[self._index(n)].last_changed = now
            return []
        if n in self._by_id:
            return []  # this id is held at another address: keep the old one
        new = _Entry(id=sender_id, id_int=n, addr=addr, last_response=now)
        while True:
            i = self._index(n)
            bucket = self._buckets[i]
            if len(bucket.entries) < self._k:
                self._insert(bucket, new, now)
                return []
            if i == len(self._buckets) - 1 and len(self._buckets) < ID_BITS:
                self._split(now)
                continue
            break
        for old in bucket.entries:
            if self._state(old, now) is NodeState.BAD:
                self._remove(bucket, old)
                self._insert(bucket, new, now)
                return []
        self._add_replacement(bucket, new)
        stale = sorted(
            (
                e
                for e in bucket.entries
                if not e.pinging and self._state(e, now) is NodeState.QUESTIONABLE
            ),
            key=lambda e: max(e.last_response, e.last_query or 0.0),
        )
        for e in stale:
            e.pinging = True
        return [e.info() for e in stale]

    def failed(self, addr: PeerAddr, expected_id: bytes | None, now: float) -> None:
        """A query to ``addr`` went unanswered. After enough failures in a row
        the entry is bad and the newest waiting replacement takes its place."""
        entry = self._by_key.get(address_key(addr))
        if entry is None or entry.addr != addr:
            return
        if expected_id is not None and entry.id != expected_id:
            return
        entry.failures += 1
        entry.pinging = False
        if entry.failures < self._bad_after:
            return
        bucket = self._buckets[self._index(entry.id_int)]
        while bucket.replacements:
            candidate = bucket.replacements.pop()
            if (
                candidate.id_int in self._by_id
                or address_key(candidate.addr) in self._by_key
            ):
                continue
            self._remove(bucket, entry)
            self._insert(bucket, candidate, now)
            return

    def _insert(self, bucket: _Bucket, entry: _Entry, now: float) -> None:
        bucket.entries.append(entry)
        bucket.replacements = [
            r for r in bucket.replacements if r.id_int != entry.id_int
        ]
        bucket.last_changed = now
        self._by_id[entry.id_int] = entry
        self._by_key[address_key(entry.addr)] = entry

    def _remove(self, bucket: _Bucket, entry: _Entry) -> None:
        bucket.entries.remove(entry)
        del self._by_id[entry.id_int]
        del self._by_key[address_key(entry.addr)]

    def _add_replacement(self, bucket: _Bucket, entry: _Entry) -> None:
        bucket.replacements = [
            r
            for r in bucket.replacements
            if r.id_int != entry.id_int
            and address_key(r.addr) != address_key(entry.addr)
        ]
        bucket.replacements.append(entry)
        del bucket.replacements[:-REPLACEMENTS_PER_BUCKET]

    def _split(self, now: float) -> None:
        depth = len(self._buckets)
        old = self._buckets[-1]
        deeper = _Bucket([], [], now)
        keep: list[_Entry] = []
        for e in old.entries:
            (
                deeper.entries
                if common_prefix_bits(self._own, e.id_int) >= depth
                else keep
            ).append(e)
        old.entries = keep
        moved = [
            r
            for r in old.replacements
            if common_prefix_bits(self._own, r.id_int) >= depth
        ]
        old.replacements = [r for r in old.replacements if r not in moved]
        deeper.replacements = moved
        self._buckets.append(deeper)

    # -- maintenance ---------------------------------------------------------------

    def refresh_targets(
        self, now: float, rng: random.Random, *, force: bool = False
    ) -> list[NodeId]:
        """Random ids in the range of every bucket unchanged for the refresh
        interval (BEP 5: refresh with find_node on a random id in range), or
        of every bucket when ``force`` (after bootstrap, to fill the table).
        Each such bucket counts as changed now, so it is refreshed once."""
        targets: list[NodeId] = []
        last = len(self._buckets) - 1
        for i, bucket in enumerate(self._buckets):
            if not force and now - bucket.last_changed < self._refresh_after:
                continue
            bucket.last_changed = now
            if i == last:
                targets.append(random_id_with_prefix(self._own, i, rng))
            else:
                flipped = self._own ^ (1 << (ID_BITS - 1 - i))
                targets.append(random_id_with_prefix(flipped, i + 1, rng))
        return targets

    def stalest(self, now: float, older_than_s: float) -> NodeInfo | None:
        """The entry heard from least recently, if not heard for
        ``older_than_s`` and not already being pinged; it is marked as being
        pinged. Pinging one such entry at a time finds dead entries before
        a lookup trips over them."""
        best: _Entry | None = None
        best_at = 0.0
        for e in self._by_id.values():
            if e.pinging or e.failures >= self._bad_after:
                continue
            at = max(e.last_response, e.last_upkeep)
            if now - at < older_than_s:
                continue
            if best is None or at < best_at:
                best, best_at = e, at
        if best is None:
            return None
        best.last_upkeep = now
        best.pinging = True
        return best.info()

    def next_refresh_at(self) -> float:
        return min(b.last_changed for b in self._buckets) + self._refresh_after
