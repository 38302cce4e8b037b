"""Compact peer and node encodings (BEP 5, BEP 11, BEP 23).

A compact peer is 6 bytes (IPv4 address, big-endian port) or 18 bytes
(IPv6, BEP 32); compact node info is a 20-byte node id followed by a compact
peer. These strings appear in tracker responses, DHT replies and PEX
messages, so both the client and the dht package use this one codec.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from dht.errors import CompactFormatError

__all__ = [
    "COMPACT_NODE_V4_BYTES",
    "COMPACT_PEER_V4_BYTES",
    "COMPACT_PEER_V6_BYTES",
    "PeerAddr",
    "decode_nodes",
    "decode_peer",
    "decode_peers",
    "decode_peers6",
    "encode_nodes",
    "encode_peer",
    "encode_peers",
]

COMPACT_PEER_V4_BYTES = 6  # 4-byte IPv4 + 2-byte port (BEP 23)
COMPACT_PEER_V6_BYTES = 18  # 16-byte IPv6 + 2-byte port (BEP 7/32)
NODE_ID_BYTES = 20
COMPACT_NODE_V4_BYTES = NODE_ID_BYTES + COMPACT_PEER_V4_BYTES  # 26 (BEP 5)


@dataclass(frozen=True, slots=True)
class PeerAddr:
    """A peer's address: an IP literal (v4 or v6) and a TCP/UDP port."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise CompactFormatError(f"compact: port {self.port} out of range")

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> PeerAddr:
        """Parse ``HOST:PORT`` or ``[V6]:PORT``.

        Raises:
            CompactFormatError: if the text is not of that form.
        """
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise CompactFormatError(f"address {text!r} is not HOST:PORT")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        return cls(host, int(port))

    def as_tuple(self) -> tuple[str, int]:
        return (self.host, self.port)


def encode_peer(addr: PeerAddr) -> bytes:
    """Encode one address as 6 (IPv4) or 18 (IPv6) bytes.

    Raises:
        CompactFormatError: if ``addr.host`` is not an IP literal.
    """
    try:
        ip = ipaddress.ip_address(addr.host)
    except ValueError as exc:
        raise CompactFormatError(
            f"compact: {addr.host!r} is not an IP address"
        ) from exc
    return ip.packed + struct.pack(">H", addr.port)


def decode_peer(data: bytes) -> PeerAddr:
    """Decode one 6- or 18-byte compact peer."""
    if len(data) == COMPACT_PEER_V4_BYTES:
        return PeerAddr(str(ipaddress.IPv4Address(data[:4])), (data[4] << 8) | data[5])
    if len(data) == COMPACT_PEER_V6_BYTES:
        return PeerAddr(
            str(ipaddress.IPv6Address(data[:16])), (data[16] << 8) | data[17]
        )
    raise CompactFormatError(f"compact: peer is {len(data)} bytes, not 6 or 18")


def encode_peers(addrs: list[PeerAddr]) -> bytes:
    """Concatenate compact peers (callers keep v4 and v6 lists apart)."""
    return b"".join(encode_peer(a) for a in addrs)


def _split(data: bytes, size: int, what: str) -> list[bytes]:
    if len(data) % size:
        raise CompactFormatError(
            f"compact: {what} string is {len(data)} bytes, not a multiple of {size}"
        )
    return [data[i : i + size] for i in range(0, len(data), size)]


def decode_peers(data: bytes) -> list[PeerAddr]:
    """Decode a BEP 23 compact IPv4 peer list (multiple of 6 bytes)."""
    return [decode_peer(c) for c in _split(data, COMPACT_PEER_V4_BYTES, "peers")]


def decode_peers6(data: bytes) -> list[PeerAddr]:
    """Decode a compact IPv6 peer list (multiple of 18 bytes)."""
    return [decode_peer(c) for c in _split(data, COMPACT_PEER_V6_BYTES, "peers6")]


def encode_nodes(nodes: list[tuple[bytes, PeerAddr]]) -> bytes:
    """Encode (node id, address) pairs as BEP 5 compact node info (IPv4 only)."""
    out = []
    for node_id, addr in nodes:
        if len(node_id) != NODE_ID_BYTES:
            raise CompactFormatError(
                f"compact: node id is {len(node_id)} bytes, not 20"
            )
        packed = encode_peer(addr)
        if len(packed) != COMPACT_PEER_V4_BYTES:
            continue  # BEP 5 'nodes' carries IPv4 only; IPv6 goes in 'nodes6'
        out.append(node_id + packed)
    return b"".join(out)


def decode_nodes(data: bytes) -> list[tuple[bytes, PeerAddr]]:
    """Decode BEP 5 compact node info (multiple of 26 bytes)."""
    return [
        (chunk[:NODE_ID_BYTES], decode_peer(chunk[NODE_ID_BYTES:]))
        for chunk in _split(data, COMPACT_NODE_V4_BYTES, "nodes")
    ]
