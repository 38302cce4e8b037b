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
from dht.errors import CompactFormatError, DhtError

__all__ = [
    "CompactFormatError",
    "DhtError",
    "PeerAddr",
    "decode_nodes",
    "decode_peer",
    "decode_peers",
    "decode_peers6",
    "encode_nodes",
    "encode_peer",
    "encode_peers",
]
