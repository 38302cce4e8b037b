"""What the Chord core returns: datagrams to send and domain events."""

from __future__ import annotations

from dataclasses import dataclass

from dht.core.chord.messages import ChordPeer
from dht.core.compact import PeerAddr
from dht.core.events import SendDatagram

__all__ = [
    "ChordAnnounceDone",
    "ChordJoined",
    "ChordLeft",
    "ChordLookupDone",
    "ChordOutput",
    "ChordPeersFound",
    "SendDatagram",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChordLookupDone:
    """A lookup ended. ``owner`` is successor(key) (None: the lookup failed),
    ``successors`` the owner and the peers after it as its predecessor knows
    them; ``path`` the peers that answered find_successor, ending at the
    key's predecessor, so ``hops = len(path)`` is the Chord paper's path
    length (0 when the asking peer is itself the predecessor or owner)."""

    op_id: int
    key: int
    owner: ChordPeer | None
    successors: tuple[ChordPeer, ...]
    path: tuple[ChordPeer, ...]
    queries: int
    duration_s: float

    @property
    def hops(self) -> int:
        return len(self.path)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChordPeersFound:
    """The owner of ``info_hash`` answered get_peers with ``peers``."""

    op_id: int
    info_hash: bytes
    peers: tuple[PeerAddr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChordAnnounceDone:
    """announce_peer reached ``stored_at`` (None: no owner answered)."""

    op_id: int
    info_hash: bytes
    stored_at: ChordPeer | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChordJoined:
    """Join ended; ``successor`` is the confirmed successor (None: failed)."""

    op_id: int
    successor: ChordPeer | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChordLeft:
    """Graceful leave ended: ``handed`` entries acknowledged by ``successor``."""

    op_id: int
    successor: ChordPeer | None
    handed: int


ChordOutput = (
    SendDatagram
    | ChordLookupDone
    | ChordPeersFound
    | ChordAnnounceDone
    | ChordJoined
    | ChordLeft
)
