"""Iterative Kademlia lookup (BEP 5 "Overview"; Kademlia paper section 2.3).

Theory of operation. Candidates are kept sorted by XOR distance to the
target. The lookup queries the closest candidates that have not been asked,
keeping ``alpha`` queries in flight; a query outstanding longer than the
"slow" threshold stops counting against ``alpha``, so a dead node costs one
extra query slot rather than a stall. A query that times out marks its
candidate failed. The lookup is done when the ``k`` closest candidates that
have not failed have all answered (or when nothing is left to ask).

Seeds come in two kinds: nodes with known ids (from the routing table) are
ordinary candidates; bare addresses (bootstrap routers) are asked at once,
outside ``alpha``, and join the candidates under the id their answer carries.

Paging past dead entries. A node answers with the ``k`` entries of its
table closest to the target, and it cannot know which of them have just
died; after many nodes vanish at once, dead entries fill slots of every
answer, and a live node among the true ``k`` closest may sit 9th or 10th in
every responder's table, so that no answer names it. So the lookup keeps,
per responder, how far (in distance to the target) it has seen that
responder's table: an answer of ``k`` nodes whose farthest lies at
distance ``r`` shows every entry up to ``r``. When the lookup has
converged but failed candidates lie closer than its ``k``-th live answer
``b``, it asks the closest responders whose tables it has seen only up to
some ``c < b`` for the next page: a ``find_node`` for ``target ^ (c + 1)``.
By distance to that id, the entries just past ``c`` come first; if the
page's farthest entry is at ``r'`` from that id, every entry within the
aligned block of size ``2**floor(log2 r')`` around ``c + 1`` was listed,
so the table is now seen up to that block's end. Pages repeat (within a
per-lookup budget) until the closest responders' tables are seen up to
``b``; nodes they name join the candidates as usual. Pages are ordinary
BEP 5 queries with ordinary (bounded) answers.

A lookup never sends anything: ``next_queries`` and ``next_pages`` say whom
to ask, and the owner reports answers, slowness and timeouts.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import Enum

from dht.core.compact import PeerAddr
from dht.core.distance import ID_BITS, NodeId, id_from_int, id_to_int
from dht.core.kademlia.routing import NodeInfo

__all__ = ["Candidate", "CandidateState", "Lookup"]

PAGE_PARALLEL = 3  # pages in flight at once
_ALL = 1 << ID_BITS  # "seen up to" value of a table seen whole


class CandidateState(Enum):
    FRESH = "fresh"  #: known, not asked yet
    IN_FLIGHT = "in_flight"  #: asked, counts against alpha
    SLOW = "slow"  #: asked, past the slow threshold; no longer counts against alpha
    RESPONDED = "responded"  #: answered
    FAILED = "failed"  #: timed out, answered with an error or with the wrong id


@dataclass(slots=True)
class Candidate:
    distance: int
    addr: PeerAddr
    id: NodeId | None
    depth: int
    state: CandidateState = CandidateState.FRESH
    token: bytes | None = None
    seen_to: int = -1  #: its table's entries up to this distance are known to us
    page_from: int | None = None  #: start of the page asked for, while in flight
    page_failed: bool = False
    pages: int = 0  #: pages asked of it

    def __lt__(self, other: Candidate) -> bool:
        return self.distance < other.distance


@dataclass(slots=True)
class Lookup:
    """One iterative find_node or get_peers lookup toward ``target``."""

    target: NodeId
    own_id: NodeId
    k: int = 8
    alpha: int = 3
    max_candidates: int = 256
    max_pages: int = 16
    queries: int = 0
    pages: int = 0
    _target_int: int = 0
    _own_int: int = 0
    _sorted: list[Candidate] = field(default_factory=list)
    _by_addr: dict[PeerAddr, Candidate] = field(default_factory=dict)
    _seeds: dict[PeerAddr, CandidateState] = field(default_factory=dict)
    peers: dict[PeerAddr, None] = field(default_factory=dict)
    _pages_in_flight: int = 0

    def __post_init__(self) -> None:
        self._target_int = id_to_int(self.target)
        self._own_int = id_to_int(self.own_id)

    # -- feeding -------------------------------------------------------------------

    def add_nodes(
        self, nodes: list[NodeInfo] | tuple[NodeInfo, ...], depth: int
    ) -> None:
        for n in nodes:
            self._add(n.id, n.addr, depth)

    def add_seed_addresses(self, addrs: list[PeerAddr]) -> None:
        for a in addrs:
            if a not in self._by_addr and a not in self._seeds:
                self._seeds[a] = CandidateState.FRESH

    def _add(self, nid: NodeId, addr: PeerAddr, depth: int) -> Candidate | None:
        n = id_to_int(nid)
        if n == self._own_int or addr in self._by_addr:
            return None
        c = Candidate(distance=n ^ self._target_int, addr=addr, id=nid, depth=depth)
        if len(self._sorted) >= self.max_candidates:
            if c.distance >= self._sorted[-1].distance:
                return None
            dropped = self._sorted[-1]
            if dropped.state in (CandidateState.FRESH, CandidateState.FAILED):
                self._sorted.pop()
                del self._by_addr[dropped.addr]
        bisect.insort(self._sorted, c)
        self._by_addr[addr] = c
        return c

    # -- driving -------------------------------------------------------------------

    def next_queries(self) -> list[Candidate]:
        """Candidates to ask now; each is marked in flight."""
        out: list[Candidate] = []
        for addr, state in self._seeds.items():
            if state is CandidateState.FRESH:
                self._seeds[addr] = CandidateState.IN_FLIGHT
                out.append(Candidate(distance=-1, addr=addr, id=None, depth=0))
        active = sum(1 for c in self._sorted if c.state is CandidateState.IN_FLIGHT)
        live = 0
        for c in self._sorted:
            if active >= self.alpha or live >= self.k:
                break
            if c.state is CandidateState.FAILED:
                continue
            live += 1
            if c.state is CandidateState.FRESH:
                c.state = CandidateState.IN_FLIGHT
                active += 1
                out.append(c)
        self.queries += len(out)
        return out

    def next_pages(self) -> list[tuple[Candidate, NodeId]]:
        """``find_node`` queries (responder, target) to send now, each
        asking for the next page of a responder's table; the owner reports
        each with ``on_page_answer``."""
        due = self._pages_due()
        for c in due:
            c.page_from = c.seen_to + 1
            c.pages += 1
        self.pages += len(due)
        self.queries += len(due)
        self._pages_in_flight += len(due)
        return [(c, id_from_int(self._target_int ^ (c.seen_to + 1))) for c in due]

    def _pages_due(self) -> list[Candidate]:
        if self._pages_in_flight or self.pages >= self.max_pages:
            return []
        live: list[Candidate] = []
        crowded = False
        for c in self._sorted:
            if c.state is CandidateState.FAILED:
                crowded = True
                continue
            if c.state is not CandidateState.RESPONDED:
                return []  # not converged yet
            live.append(c)
            if len(live) >= self.k:
                break
        if not crowded or not live:
            return []
        b = live[-1].distance if len(live) >= self.k else _ALL
        due = [c for c in live if c.seen_to < b and not c.page_failed]
        due.sort(key=lambda c: c.pages)  # stable: closest first among equals
        return due[: min(PAGE_PARALLEL, self.max_pages - self.pages)]

    def on_page_answer(
        self,
        addr: PeerAddr,
        nodes: tuple[tuple[NodeId, PeerAddr], ...],
        *,
        answered: bool = True,
    ) -> None:
        """A page query ended: ``nodes`` from its answer, or
        ``answered=False`` if it failed."""
        self._pages_in_flight = max(0, self._pages_in_flight - 1)
        c = self._by_addr.get(addr)
        if c is None or c.page_from is None:
            return
        start, c.page_from = c.page_from, None
        if not answered:
            c.page_failed = True
            return
        if len(nodes) < self.k:
            c.seen_to = _ALL
        else:
            far = max((id_to_int(n) ^ self._target_int) ^ start for n, _ in nodes)
            # (a hostile answer may repeat one node: far == 0, block 0)
            block = (1 << max(far.bit_length() - 1, 0)) - 1
            c.seen_to = max(c.seen_to, start | block)
        for nid, naddr in nodes:
            self._add(nid, naddr, c.depth + 1)

    def on_response(
        self,
        addr: PeerAddr,
        sender_id: NodeId,
        nodes: tuple[tuple[NodeId, PeerAddr], ...],
        values: tuple[PeerAddr, ...],
        token: bytes | None,
    ) -> list[PeerAddr]:
        """Record an answer. Returns the peers in it not seen before."""
        c = self._by_addr.get(addr)
        depth = 0
        if c is None:
            if self._seeds.get(addr) is None:
                return []
            del self._seeds[addr]
            c = self._add(sender_id, addr, 0)
            if c is None:
                return []
        elif c.id != sender_id:
            c.state = CandidateState.FAILED
            return []
        c.state = CandidateState.RESPONDED
        c.token = token
        depth = c.depth + 1
        if len(nodes) < self.k:
            c.seen_to = _ALL
        else:
            far = max(id_to_int(n) ^ self._target_int for n, _ in nodes)
            c.seen_to = max(c.seen_to, far)
        for nid, naddr in nodes:
            self._add(nid, naddr, depth)
        new = [p for p in values if p not in self.peers]
        for p in new:
            self.peers[p] = None
        return new

    def on_slow(self, addr: PeerAddr) -> None:
        c = self._by_addr.get(addr)
        if c is not None and c.state is CandidateState.IN_FLIGHT:
            c.state = CandidateState.SLOW

    def on_failure(self, addr: PeerAddr) -> None:
        if addr in self._seeds:
            self._seeds[addr] = CandidateState.FAILED
        c = self._by_addr.get(addr)
        if c is not None and c.state is not CandidateState.RESPONDED:
            c.state = CandidateState.FAILED

    # -- results -------------------------------------------------------------------

    @property
    def done(self) -> bool:
        if self._pages_in_flight or self._pages_due():
            return False
        seeds_pending = any(s is CandidateState.IN_FLIGHT for s in self._seeds.values())
        if seeds_pending and not self._sorted:
            return False
        live = 0
        for c in self._sorted:
            if c.state is CandidateState.FAILED:
                continue
            if c.state is not CandidateState.RESPONDED:
                return False
            live += 1
            if live >= self.k:
                return True
        return not seeds_pending

    def closest(self) -> list[Candidate]:
        """The (up to) ``k`` closest candidates that answered."""
        out: list[Candidate] = []
        for c in self._sorted:
            if c.state is CandidateState.RESPONDED:
                out.append(c)
                if len(out) >= self.k:
                    break
        return out

    @property
    def hops(self) -> int:
        """Depth of the deepest answer in the result: 1 means the first nodes
        asked were already the closest."""
        return max((c.depth + 1 for c in self.closest()), default=0)
