"""The tracker's peer address value and its compact encoding (BEP 23, BEP 7).

The tracker package is a leaf (it imports nothing from ``dht`` or
``client``), so it keeps its own small address type with the same shape as
``dht.PeerAddr`` and its own compact encoder.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from tracker.errors import TrackerError

__all__ = ["PeerAddr", "compact_peer", "normalize_host"]


@dataclass(frozen=True, slots=True)
class PeerAddr:
    """A peer's IP literal (v4 or v6) and port."""

    host: str
    port: int

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise TrackerError(f"address: port {self.port} is out of range")

    def __str__(self) -> str:
        if ":" in self.host:
            return f"[{self.host}]:{self.port}"
        return f"{self.host}:{self.port}"

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    def as_tuple(self) -> tuple[str, int]:
        return (self.host, self.port)


def normalize_host(host: str) -> str:
    """Canonical text of an IP literal; IPv4-mapped IPv6 becomes plain IPv4.

    Raises:
        ValueError: if ``host`` is not an IP literal.
    """
    ip = ipaddress.ip_address(host.partition("%")[0])  # drop an IPv6 zone id
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def compact_peer(addr: PeerAddr) -> bytes:
    """6 bytes for IPv4 or 18 for IPv6: the packed address, then the port."""
    return ipaddress.ip_address(addr.host).packed + addr.port.to_bytes(2, "big")
