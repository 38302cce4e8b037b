"""Choker: tit-for-tat with a rotating optimistic unchoke (BEP 3 "Choking").

BEP 3: unchoke the peers with the best rates (a fixed number of regular
slots), re-evaluated every ten seconds so the choice doesn't flap; one extra
"optimistic unchoke" goes to a peer regardless of its rate and rotates every
30 seconds, which lets new peers prove themselves and finds better partners.
While leeching the rate that counts is how fast a peer uploads *to us*; a seed
has nothing to download, so it ranks peers by how fast it uploads to them
(libtorrent's "fastest upload" seeding mode: it spreads data to the peers who
can take it fastest).

Theory of operation. :meth:`Choker.rechoke` is a pure function of the
candidates plus one piece of state, the current optimistic peer and when it
was chosen. Only interested peers take slots (an uninterested peer would not
request anything). Snubbed peers (no block for a while) lose their regular
slot while leeching but may still win the optimistic one. The optimistic
peer is re-chosen when its 30 s are up, when it left or lost interest, or
when it earned a regular slot; a new choice avoids the previous holder if any
other peer is eligible, and a newly connected peer is three times as likely
to be chosen (BEP 3's reference client did the same, so that a fresh peer
gets its first pieces to trade).

Deliberately left out: BEP 3's "unchoke uninterested peers that are faster
than the slowest downloader" refinement, and rate-based slot counts.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

__all__ = ["ChokeCandidate", "Choker"]

# Seconds after connecting during which a peer counts as new for the optimistic
# draw (three optimistic rounds at the default 30 s).
NEW_PEER_WINDOW_S = 90.0
# Weight of a new peer in the optimistic draw (BEP 3's reference client: 3x).
NEW_PEER_WEIGHT = 3.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ChokeCandidate:
    """One connected peer as the choker sees it.

    Attributes:
        peer: any hashable key identifying the peer.
        interested: the peer is interested in us.
        download_rate: bytes/s we receive from it.
        upload_rate: bytes/s we send to it.
        snubbed: it has not sent a requested block for a while.
        connected_at: when it connected (same clock as ``now``).
    """

    peer: Hashable
    interested: bool
    download_rate: float
    upload_rate: float
    snubbed: bool = False
    connected_at: float = 0.0


class Choker:
    """Decides which peers to unchoke.

    Args:
        regular_slots: unchokes given by rate.
        optimistic_interval_s: how long one optimistic unchoke lasts.
        rechoke_interval_s: how often :meth:`due` asks for a re-evaluation.
        rng: source of the optimistic draw and of tie-breaks.
        new_peer_window_s: how long after connecting a peer counts as new.
    """

    def __init__(
        self,
        *,
        regular_slots: int = 3,
        optimistic_interval_s: float = 30.0,
        rechoke_interval_s: float = 10.0,
        rng: random.Random,
        new_peer_window_s: float = NEW_PEER_WINDOW_S,
    ) -> None:
        self._slots = max(0, regular_slots)
        self._optimistic_interval_s = optimistic_interval_s
        self._rechoke_interval_s = rechoke_interval_s
        self._rng = rng
        self._new_peer_window_s = new_peer_window_s
        self._optimistic: Hashable | None = None
        self._optimistic_since = 0.0
        self._last_rechoke: float | None = None
        self._unchoked: frozenset[Hashable] = frozenset()

    @property
    def optimistic(self) -> Hashable | None:
        """The current optimistic unchoke, if any."""
        return self._optimistic

    @property
    def unchoked(self) -> frozenset[Hashable]:
        """The result of the last :meth:`rechoke`."""
        return self._unchoked

    def due(self, now: float) -> bool:
        """Whether a re-evaluation is due (never run, or the interval passed)."""
        return (
            self._last_rechoke is None
            or now - self._last_rechoke >= self._rechoke_interval_s
        )

    def rechoke(
        self, candidates: Sequence[ChokeCandidate], *, seeding: bool, now: float
    ) -> frozenset[Hashable]:
        """Choose the peers to have unchoked; every other peer gets choked.

        Args:
            candidates: every connected peer.
            seeding: we have the whole torrent (rank by upload rate).
            now: the current time.

        Returns:
            The peers that should be unchoked.
        """
        self._last_rechoke = now
        interested = [c for c in candidates if c.interested]
        eligible = interested if seeding else [c for c in interested if not c.snubbed]
        # shuffle first so the stable sort breaks rate ties at random, not by
        # connection order (at start-up every rate is zero)
        eligible = list(eligible)
        self._rng.shuffle(eligible)
        if seeding:
            eligible.sort(key=lambda c: c.upload_rate, reverse=True)
        else:
            eligible.sort(key=lambda c: c.download_rate, reverse=True)
        regular = {c.peer for c in eligible[: self._slots]}

        pool = [c for c in interested if c.peer not in regular]
        current = self._optimistic
        keep = (
            current is not None
            and now - self._optimistic_since < self._optimistic_interval_s
            and any(c.peer == current for c in pool)
        )
        if not keep:
            self._optimistic = self._draw(pool, avoid=current, now=now)
            self._optimistic_since = now
        unchoked = set(regular)
        if self._optimistic is not None:
            unchoked.add(self._optimistic)
        self._unchoked = frozenset(unchoked)
        return self._unchoked

    def _draw(
        self, pool: list[ChokeCandidate], *, avoid: Hashable | None, now: float
    ) -> Hashable | None:
        choices = [c for c in pool if c.peer != avoid] or pool
        if not choices:
            return None
        weights = [
            NEW_PEER_WEIGHT if now - c.connected_at < self._new_peer_window_s else 1.0
            for c in choices
        ]
        return self._rng.choices(choices, weights=weights)[0].peer
