"""bitswarm's trackerless discovery: Mainline DHT (BEP 5) and the Chord ring.

Other packages use only the names listed in ``__all__``.
"""

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
    "NodeInfo",
    "PeerAddr",
    "PeersFound",
    "RemoteKrpcError",
    "decode_nodes",
    "decode_peer",
    "decode_peers",
    "decode_peers6",
    "encode_nodes",
    "encode_peer",
    "encode_peers",
    "testing_config",
]
