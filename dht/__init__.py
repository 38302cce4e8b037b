"""bitswarm's trackerless discovery: Mainline DHT (BEP 5) and the Chord ring.

Other packages use only the names listed in ``__all__``.

Importing this package is cheap: the compact formats and the errors load at
once; everything else (the sans-I/O cores, the asyncio nodes) loads on first
use of its name, so that a command that only needs ``PeerAddr`` does not pay
for the DHT and Chord nodes (issue 7, process start).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
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
    from dht.core.config import DhtConfig, testing_config
    from dht.core.events import AnnounceDone, LookupDone, LookupKind, PeersFound
    from dht.core.kademlia.routing import NodeInfo
    from dht.core.mainline import DhtCore, DhtStatistics
    from dht.node import DEFAULT_BOOTSTRAP_NODES, DhtNode

# name -> the module that defines it, imported on first access
_LAZY = {
    "ChordNode": "dht.chord_node",
    "ChordConfig": "dht.core.chord.config",
    "chord_testing_config": "dht.core.chord.config",
    "ChordAnnounceDone": "dht.core.chord.events",
    "ChordJoined": "dht.core.chord.events",
    "ChordLeft": "dht.core.chord.events",
    "ChordLookupDone": "dht.core.chord.events",
    "ChordPeersFound": "dht.core.chord.events",
    "ChordPeer": "dht.core.chord.messages",
    "ChordCore": "dht.core.chord.node",
    "ChordStatistics": "dht.core.chord.node",
    "ChordRing": "dht.core.chord.ring",
    "LookupPath": "dht.core.chord.ring",
    "key_id": "dht.core.chord.ring",
    "peer_id_for": "dht.core.chord.ring",
    "DhtConfig": "dht.core.config",
    "testing_config": "dht.core.config",
    "AnnounceDone": "dht.core.events",
    "LookupDone": "dht.core.events",
    "LookupKind": "dht.core.events",
    "PeersFound": "dht.core.events",
    "NodeInfo": "dht.core.kademlia.routing",
    "DhtCore": "dht.core.mainline",
    "DhtStatistics": "dht.core.mainline",
    "DEFAULT_BOOTSTRAP_NODES": "dht.node",
    "DhtNode": "dht.node",
}


if not TYPE_CHECKING:  # mypy sees the imports above and checks every name

    def __getattr__(name: str) -> Any:
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'dht' has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        globals()[name] = value  # later lookups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_LAZY))


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
