"""One peer's ring pointers: predecessor, successor list and finger table.

Chord paper section 4 (fingers, closest preceding node) and section 5.2
(successor lists); the update rules follow Zave ("Reasoning about identifier
spaces: how to make Chord correct", 2017): the first successor is only ever
a peer that has just answered us; later entries are that peer's own
(confirmed) successor list; a predecessor is only adopted from a peer that
notified us; any entry that fails to answer is dropped, and the next
successor is promoted. Pure state: no messages, no time.
"""

from __future__ import annotations

from dht.core.chord.messages import ChordPeer
from dht.core.chord.ring import between, between_right, finger_start

__all__ = ["ChordTable"]


class ChordTable:
    """Pointers of peer ``me`` on a 2^m circle with successor lists of ``r``."""

    def __init__(self, me: ChordPeer, *, m: int, r: int) -> None:
        self.me = me
        self.m = m
        self.r = r
        self.modulus = 1 << m
        self.predecessor: ChordPeer | None = None
        self._successors: list[ChordPeer] = []
        # _fingers[i] is finger i+1 of the paper: successor(me + 2^i); None
        # when unknown or when it is ``me`` itself.
        self._fingers: list[ChordPeer | None] = [None] * m
        self._known: list[ChordPeer] | None = None  # distinct fingers + successors

    # -- reading -------------------------------------------------------------------

    @property
    def successors(self) -> tuple[ChordPeer, ...]:
        return tuple(self._successors)

    @property
    def successor(self) -> ChordPeer:
        """The first successor, or ``me`` while we are alone."""
        return self._successors[0] if self._successors else self.me

    @property
    def fingers(self) -> tuple[ChordPeer | None, ...]:
        return tuple(self._fingers)

    def finger(self, index: int) -> ChordPeer | None:
        return self._fingers[index]

    def finger_start(self, index: int) -> int:
        """Start of ``_fingers[index]`` (0-based): me + 2^index."""
        return finger_start(self.me.id, index + 1, self.m)

    def owns(self, key: int) -> bool:
        """key in (predecessor, me]; False while the predecessor is unknown
        and we are not alone."""
        if self.predecessor is None:
            return not self._successors
        return between_right(key, self.predecessor.id, self.me.id)

    def successor_owns(self, key: int) -> bool:
        """key in (me, successor]: we are the key's predecessor."""
        return bool(self._successors) and between_right(
            key, self.me.id, self._successors[0].id
        )

    def known(self) -> list[ChordPeer]:
        """Distinct peers in the fingers and successor list."""
        if self._known is None:
            seen: dict[int, ChordPeer] = {}
            for p in [*self._fingers, *self._successors]:
                if p is not None and p.id != self.me.id:
                    seen[p.id] = p
            self._known = list(seen.values())
        return self._known

    def closeness(self, peer_id: int, key: int) -> int:
        """Clockwise distance from ``peer_id`` to ``key``: smaller precedes
        the key more closely."""
        return (key - peer_id) % self.modulus

    def closest_preceding(self, key: int, limit: int) -> list[ChordPeer]:
        """Known peers strictly between us and ``key``, closest preceding
        first (Chord's closest_preceding_node, extended to a ranked list so
        an asker can fall back when the best one is dead). The successor
        list's entries in range are always included."""
        me = self.me.id
        ranked = sorted(
            (p for p in self.known() if between(p.id, me, key)),
            key=lambda p: self.closeness(p.id, key),
        )
        out = ranked[:limit]
        for s in self._successors:
            if between(s.id, me, key) and s not in out:
                out.append(s)
        return out

    # -- updating ------------------------------------------------------------------

    def adopt_successor(
        self, first: ChordPeer, their_list: tuple[ChordPeer, ...]
    ) -> None:
        """``first`` just answered us: it becomes our successor, followed by
        its own successor list (Zave's reconcile), cut to r entries."""
        if first.id == self.me.id:
            return
        merged = [first]
        for p in their_list:
            if p.id not in (self.me.id, *(q.id for q in merged)):
                merged.append(p)
        self._successors = merged[: self.r]
        self._fingers[0] = first
        self._known = None

    def set_predecessor(self, peer: ChordPeer | None) -> None:
        self.predecessor = peer

    def set_finger(self, index: int, peer: ChordPeer | None) -> None:
        """Set finger ``index`` to ``peer`` (confirmed alive by the caller),
        and every later finger whose start ``peer`` also succeeds."""
        start = self.finger_start(index)
        self._fingers[index] = peer if peer is None or peer.id != self.me.id else None
        if peer is not None:
            for j in range(index + 1, self.m):
                sj = self.finger_start(j)
                if sj != start and not between_right(sj, start, peer.id):
                    break
                self._fingers[j] = self._fingers[index]
        self._known = None

    def forget(self, peer_id: int) -> bool:
        """Drop a peer that failed to answer from every pointer; True if it
        was our first successor (the caller then stabilizes at once)."""
        was_first = bool(self._successors) and self._successors[0].id == peer_id
        self._successors = [p for p in self._successors if p.id != peer_id]
        if self._successors:
            self._fingers[0] = self._successors[0]
        for i, f in enumerate(self._fingers):
            if f is not None and f.id == peer_id:
                self._fingers[i] = None
        if self.predecessor is not None and self.predecessor.id == peer_id:
            self.predecessor = None
        self._known = None
        return was_first

    def preset(
        self,
        *,
        predecessor: ChordPeer | None,
        successors: list[ChordPeer],
        fingers: list[ChordPeer | None],
    ) -> None:
        """Install converged pointers directly (simulations that start from
        a stable ring; never used by the protocol itself)."""
        self.predecessor = predecessor
        self._successors = [p for p in successors if p.id != self.me.id][: self.r]
        padded = [*fingers, *([None] * self.m)][: self.m]
        self._fingers = [f if f is None or f.id != self.me.id else None for f in padded]
        self._known = None
