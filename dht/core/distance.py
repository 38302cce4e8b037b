"""Node ids and the Kademlia XOR metric (BEP 5 "Overview").

Node ids and infohashes share one 160-bit space; the distance between two ids
is their XOR read as an unsigned integer. Ids stay ``bytes`` on the wire and
in events; the routing table and lookups work on their integer value.
"""

from __future__ import annotations

import random
from typing import NewType

from dht.errors import LocalKrpcError, RemoteKrpcError

__all__ = [
    "ID_BITS",
    "ID_BYTES",
    "NodeId",
    "common_prefix_bits",
    "distance",
    "id_from_int",
    "id_to_int",
    "local_node_id",
    "node_id",
    "random_id",
    "random_id_with_prefix",
]

ID_BYTES = 20  # BEP 5: ids are SHA-1 sized
ID_BITS = ID_BYTES * 8

NodeId = NewType("NodeId", bytes)


def node_id(data: bytes) -> NodeId:
    """Length-check a node id or infohash that arrived from the network.

    Raises:
        RemoteKrpcError: if ``data`` is not 20 bytes.
    """
    if len(data) != ID_BYTES:
        raise RemoteKrpcError(f"krpc: id is {len(data)} bytes, not {ID_BYTES}")
    return NodeId(bytes(data))


def local_node_id(data: bytes) -> NodeId:
    """Length-check an id our own code supplies.

    Raises:
        LocalKrpcError: if ``data`` is not 20 bytes.
    """
    if len(data) != ID_BYTES:
        raise LocalKrpcError(f"dht: id is {len(data)} bytes, not {ID_BYTES}")
    return NodeId(bytes(data))


def id_to_int(value: bytes) -> int:
    return int.from_bytes(value, "big")


def id_from_int(value: int) -> NodeId:
    return NodeId(value.to_bytes(ID_BYTES, "big"))


def distance(a: bytes, b: bytes) -> int:
    """XOR distance of two ids as an unsigned integer (smaller is closer)."""
    return id_to_int(a) ^ id_to_int(b)


def common_prefix_bits(a: int, b: int) -> int:
    """How many leading bits two integer ids share (160 when equal)."""
    return ID_BITS - (a ^ b).bit_length()


def random_id(rng: random.Random) -> NodeId:
    return NodeId(rng.randbytes(ID_BYTES))


def random_id_with_prefix(base: int, prefix_bits: int, rng: random.Random) -> NodeId:
    """A random id sharing the first ``prefix_bits`` bits with ``base``."""
    if prefix_bits >= ID_BITS:
        return id_from_int(base)
    low_bits = ID_BITS - prefix_bits
    high = (base >> low_bits) << low_bits
    return id_from_int(high | rng.getrandbits(low_bits))
