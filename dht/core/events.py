"""What the DHT core returns: datagrams to send and domain events."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from dht.core.compact import PeerAddr
from dht.core.distance import NodeId
from dht.core.kademlia.routing import NodeInfo

__all__ = [
    "AnnounceDone",
    "LookupDone",
    "LookupKind",
    "Output",
    "PeerAnnounced",
    "PeersFound",
    "QueryTimedOut",
    "SendDatagram",
]


class LookupKind(Enum):
    FIND_NODE = "find_node"  #: BEP 5 find_node lookup (bootstrap, refresh)
    GET_PEERS = "get_peers"  #: BEP 5 get_peers lookup (also the first half of announce)


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDatagram:
    addr: PeerAddr
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class PeersFound:
    """New peers for ``info_hash`` arrived in a get_peers reply."""

    lookup_id: int
    info_hash: NodeId
    peers: tuple[PeerAddr, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class LookupDone:
    """A lookup ended: ``nodes`` are the closest that answered (closest first),
    ``peers`` every peer seen, ``hops`` the depth of the deepest of ``nodes``,
    ``queries`` how many queries it sent, ``duration_s`` start to end."""

    lookup_id: int
    target: NodeId
    kind: LookupKind
    nodes: tuple[NodeInfo, ...]
    peers: tuple[PeerAddr, ...]
    hops: int
    queries: int
    duration_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnounceDone:
    """announce_peer went to ``sent_to``; ``stored_at`` acknowledged it."""

    lookup_id: int
    info_hash: NodeId
    sent_to: tuple[NodeInfo, ...]
    stored_at: tuple[NodeInfo, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryTimedOut:
    addr: PeerAddr
    node_id: NodeId | None
    method: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAnnounced:
    """A remote node announced ``peer`` for ``info_hash`` to us."""

    info_hash: NodeId
    peer: PeerAddr


Output = (
    SendDatagram
    | PeersFound
    | LookupDone
    | AnnounceDone
    | QueryTimedOut
    | PeerAnnounced
)
