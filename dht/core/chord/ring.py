"""Identifier arithmetic on Chord's 2^m circle and a converged-ring model.

Chord paper (Stoica et al. 2001) sections 4.2-4.3: identifiers live on a
circle modulo 2^m; key k is stored at successor(k), the first peer whose id
equals or follows k clockwise. Finger i of peer n (1 <= i <= m) is
successor(n + 2^(i-1)). A lookup steps through closest preceding fingers
until it reaches the key's predecessor p (k in (p, successor(p)]); the answer
is successor(p).

``ChordRing`` builds the state every peer would have once stabilization has
converged, straight from a sorted list of ids. It is the reference the
simulations check the protocol against, the source of ``bitswarm chord
ring``'s pictures, and the fast way to measure path lengths for thousands of
peers.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass

from dht.errors import LocalKrpcError

__all__ = [
    "DEFAULT_BITS",
    "MAX_BITS",
    "ChordRing",
    "LookupPath",
    "between",
    "between_right",
    "finger_start",
    "key_id",
    "peer_id_for",
]

DEFAULT_BITS = 160  # Chord paper: m = 160, ids from SHA-1
MAX_BITS = 160  # ids travel as 20-byte strings, so m cannot exceed 160


def _check_bits(m: int) -> None:
    if not 1 <= m <= MAX_BITS:
        raise LocalKrpcError(f"chord: m = {m} is not in 1..{MAX_BITS}")


def between(x: int, a: int, b: int) -> bool:
    """x in the open interval (a, b) going clockwise; (a, a) is all but a."""
    if a < b:
        return a < x < b
    return x > a or x < b if a != b else x != a


def between_right(x: int, a: int, b: int) -> bool:
    """x in the half-open interval (a, b] clockwise; (a, a] is the whole
    circle (a peer alone owns every key)."""
    if a < b:
        return a < x <= b
    return x > a or x <= b


def finger_start(n: int, i: int, m: int) -> int:
    """Start of finger i (1-based): (n + 2^(i-1)) mod 2^m."""
    return (n + (1 << (i - 1))) % (1 << m)


def key_id(data: bytes, m: int = DEFAULT_BITS) -> int:
    """A 20-byte infohash (or other key) as an id on the 2^m circle: its
    value modulo 2^m, so m = 160 keeps the whole SHA-1."""
    _check_bits(m)
    return int.from_bytes(data, "big") % (1 << m)


def peer_id_for(text: str | bytes, m: int = DEFAULT_BITS) -> int:
    """A peer's id: SHA-1 of its address (Chord paper 4.2), modulo 2^m."""
    raw = text.encode() if isinstance(text, str) else text
    return key_id(hashlib.sha1(raw).digest(), m)


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupPath:
    """One lookup through a converged ring.

    ``visited`` starts at the asking peer and ends at the key's predecessor;
    ``hops`` is ``len(visited) - 1``: the closest-preceding-finger steps it
    took to reach the predecessor (the Chord paper's path length).
    """

    key: int
    visited: tuple[int, ...]
    owner: int

    @property
    def hops(self) -> int:
        return len(self.visited) - 1


class ChordRing:
    """Every peer's pointers on a ring where stabilization has converged.

    Args:
        ids: peer ids (any order, duplicates dropped), each below 2^m.
        m: bits of the identifier circle.
        r: successor-list length.

    Raises:
        LocalKrpcError: no ids, or an id outside the circle.
    """

    def __init__(self, ids: list[int], *, m: int = DEFAULT_BITS, r: int = 2) -> None:
        _check_bits(m)
        self.m = m
        self.r = r
        self.ids = sorted(set(ids))
        if not self.ids:
            raise LocalKrpcError("chord: a ring needs at least one peer")
        if self.ids[0] < 0 or self.ids[-1] >= 1 << m:
            raise LocalKrpcError(f"chord: an id is outside 0..2^{m}-1")
        self._fingers: dict[int, tuple[int, ...]] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def successor(self, key: int) -> int:
        """The peer that stores ``key``: first id >= key, wrapping past 0."""
        i = bisect.bisect_left(self.ids, key % (1 << self.m))
        return self.ids[i % len(self.ids)]

    def predecessor_of_peer(self, n: int) -> int:
        i = bisect.bisect_left(self.ids, n)
        return self.ids[(i - 1) % len(self.ids)]

    def successors(self, n: int) -> tuple[int, ...]:
        """The r peers after ``n`` (fewer when the ring is smaller)."""
        i = bisect.bisect_right(self.ids, n)
        count = min(self.r, len(self.ids) - 1) or 1
        return tuple(self.ids[(i + j) % len(self.ids)] for j in range(count))

    def fingers(self, n: int) -> tuple[int, ...]:
        """Finger i-1 of the tuple is successor(n + 2^(i-1)), i = 1..m."""
        cached = self._fingers.get(n)
        if cached is None:
            cached = tuple(
                self.successor(finger_start(n, i, self.m)) for i in range(1, self.m + 1)
            )
            self._fingers[n] = cached
        return cached

    def closest_preceding(self, n: int, key: int) -> int:
        """Chord's closest_preceding_node: of n's fingers and successor list
        (paper section 5.2 adds the list), the one that most closely
        precedes ``key`` strictly between n and key; n itself when none does."""
        best = n
        best_gap = (key - n) % (1 << self.m)
        for f in (*self.fingers(n), *self.successors(n)):
            gap = (key - f) % (1 << self.m)
            if gap < best_gap and between(f, n, key):
                best, best_gap = f, gap
        return best

    def lookup(self, start: int, key: int) -> LookupPath:
        """Route ``key`` from peer ``start``: step to the closest preceding
        finger until the current peer p has key in (p, successor(p)]. A peer
        that owns the key itself answers at once (0 hops)."""
        key %= 1 << self.m
        if between_right(key, self.predecessor_of_peer(start), start):
            # the asking peer owns the key: no step at all (as ChordCore does)
            return LookupPath(key=key, visited=(start,), owner=start)
        visited = [start]
        p = start
        while not between_right(key, p, self.successors(p)[0]):
            nxt = self.closest_preceding(p, key)
            if nxt == p:  # only possible when the ring is one peer
                break
            visited.append(nxt)
            p = nxt
        return LookupPath(key=key, visited=tuple(visited), owner=self.successors(p)[0])
