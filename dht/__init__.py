"""bitswarm's trackerless discovery: Mainline DHT (BEP 5) and the Chord ring.

Other packages use only the names listed in ``__all__``.
"""

from dht.chord_node import ChordNode
from dht.core.chord.config import ChordConfig, chord_testing_config
from dht.core.chord.events import (
    ChordAnnounceDone,
    ChordJoined,
    ChordLeft,
    ChordLookupDone,
    ChordPeersFound,
)
from dht.core.chord.messages import ChordPeer
from dht.core.chord.node import ChordCore, ChordStatistics
from dht.core.chord.ring import ChordRing, LookupPath, key_id, peer_id_for
from dht.core.compact import (
    PeerAddr,
    decode_nodes,
    decode_peer,
    decode_peers,
    decode_peers6,
    encode_nodes,
    encode_peer,
    encode_peers,
)
from dht.core.config import DhtConfig, testing_config
from dht.core.events import AnnounceDone, LookupDone, LookupKind, PeersFound
from dht.core.kademlia.routing import NodeInfo
from dht.core.mainline import DhtCore, DhtStatistics
from dht.errors import (
    BadQuery,
    CompactFormatError,
    DhtError,
    KrpcError,
    KrpcErrorReply,
    LocalKrpcError,
    LookupFailed,
    RemoteKrpcError,
)
from dht.node import DEFAULT_BOOTSTRAP_NODES, DhtNode

__all__ = [
    "DEFAULT_BOOTSTRAP_NODES",
    "AnnounceDone",
    "BadQuery",
    "ChordAnnounceDone",
    "ChordConfig",
    "ChordCore",
    "ChordJoined",
    "ChordLeft",
    "ChordLookupDone",
    "ChordNode",
    "ChordPeer",
    "ChordPeersFound",
    "ChordRing",
    "ChordStatistics",
    "CompactFormatError",
    "DhtConfig",
    "DhtCore",
    "DhtError",
    "DhtNode",
    "DhtStatistics",
    "KrpcError",
    "KrpcErrorReply",
    "LocalKrpcError",
    "LookupDone",
    "LookupFailed",
    "LookupKind",
    "LookupPath",
    "NodeInfo",
    "PeerAddr",
    "PeersFound",
    "RemoteKrpcError",
    "chord_testing_config",
    "decode_nodes",
    "decode_peer",
    "decode_peers",
    "decode_peers6",
    "encode_nodes",
    "encode_peer",
    "encode_peers",
    "key_id",
    "peer_id_for",
    "testing_config",
]
