"""The pool of peer addresses a torrent may dial, and when to dial them.

Every discovery source (trackers, DHT, PEX, magnet ``x.pe``, ``--peer``)
feeds one pool. The pool decides whom to dial next: never our own
addresses or banned ones, never an address already being dialled or
connected, an address that refused or dropped us only after an exponential
backoff (a seeder still checking its data, or restarted, comes back), and,
once we have everything, no peer known to be a seed (two seeds have
nothing to trade). Pure: time is passed in.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from dht import PeerAddr

__all__ = ["MAX_BACKOFF_DOUBLINGS", "PeerPool"]

# A failing address is retried after retry_s * 2**fails, at most 2**8 x.
MAX_BACKOFF_DOUBLINGS = 8


@dataclass(frozen=True, slots=True)
class _Dial:
    addr: PeerAddr
    source: str


class PeerPool:
    """Candidate addresses with their source, backoff and exclusions.

    Args:
        retry_s: the first retry delay after a failed or ended connection.
    """

    def __init__(self, *, retry_s: float) -> None:
        self._retry_s = retry_s
        self._candidates: collections.OrderedDict[PeerAddr, str] = (
            collections.OrderedDict()
        )
        self._last_try: dict[PeerAddr, float] = {}
        self._fails: dict[PeerAddr, int] = {}
        self._dialling: set[PeerAddr] = set()
        self._banned: set[PeerAddr] = set()
        self._own: set[PeerAddr] = set()
        self._seeds: set[PeerAddr] = set()

    def __bool__(self) -> bool:
        return bool(self._candidates)

    def add(self, addrs: list[PeerAddr], source: str) -> int:
        """New candidates; returns how many were new."""
        added = 0
        for addr in addrs:
            if addr in self._own or addr in self._banned:
                continue
            if addr not in self._candidates and addr not in self._dialling:
                self._candidates[addr] = source
                added += 1
        return added

    def own(self, addr: PeerAddr) -> None:
        """An address that reaches us: never dialled."""
        self._own.add(addr)
        self._candidates.pop(addr, None)

    def ban(self, addr: PeerAddr) -> None:
        self._banned.add(addr)
        self._candidates.pop(addr, None)

    def seed(self, addr: PeerAddr) -> None:
        """A peer seen to have every piece."""
        self._seeds.add(addr)

    def failures(self, addr: PeerAddr) -> int:
        """Connections to ``addr`` that ended since it last attached."""
        return self._fails.get(addr, 0)

    def to_dial(self, now: float, room: int, *, complete: bool) -> list[_Dial]:
        """Up to ``room`` addresses to dial now; they count as being dialled
        until :meth:`dial_ended`."""
        chosen: list[_Dial] = []
        for addr in list(self._candidates):
            if len(chosen) >= room:
                break
            if complete and addr in self._seeds:
                del self._candidates[addr]  # two seeds have nothing to trade
                continue
            last = self._last_try.get(addr)
            delay = self._retry_s * (
                1 << min(self._fails.get(addr, 0), MAX_BACKOFF_DOUBLINGS)
            )
            if addr in self._dialling or (last is not None and now - last < delay):
                continue
            chosen.append(_Dial(addr, self._candidates.pop(addr)))
            self._last_try[addr] = now
            self._dialling.add(addr)
        return chosen

    def attached(self, addr: PeerAddr) -> None:
        """The handshake succeeded: its backoff starts over."""
        self._fails[addr] = 0

    def dial_ended(self, addr: PeerAddr, source: str, now: float) -> None:
        """The connection failed or ended: keep the address as a candidate,
        to be retried after a longer backoff."""
        self._dialling.discard(addr)
        self._last_try[addr] = now
        self._fails[addr] = self._fails.get(addr, 0) + 1
        if addr not in self._banned and addr not in self._own:
            self._candidates.setdefault(addr, source)
