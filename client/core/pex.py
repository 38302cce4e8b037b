"""Peer exchange, ut_pex (BEP 11): the message codec and per-connection diffing.

A ut_pex payload is a bencoded dictionary of compact peer strings (BEP 23):
``added``/``added.f``/``dropped`` for IPv4 (6 bytes a peer) and
``added6``/``added6.f``/``dropped6`` for IPv6 (18 bytes a peer); the ``.f``
strings hold one flag byte per added peer (:data:`PEX_PREFERS_ENCRYPTION`,
:data:`PEX_SEED`, :data:`PEX_REACHABLE`...). Each message says what changed
since the sender's previous message on that connection. By convention
(libtorrent, µTorrent, Azureus; BEP 11 points to it) a message carries at most
50 added and 50 dropped peers and goes out at most once a minute.

PEX must not be used for private torrents (BEP 27): whether to send or
accept ut_pex at all is the caller's decision; these functions never check.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import bencodepy

from client.core.extensions import decode_ext_dict
from client.errors import LocalPeerProtocolError, RemotePeerProtocolError
from dht import CompactFormatError, PeerAddr, decode_peers, decode_peers6, encode_peers

__all__ = [
    "MAX_PEX_ADDED",
    "MAX_PEX_DROPPED",
    "MAX_PEX_PAYLOAD_BYTES",
    "PEX_HOLEPUNCH",
    "PEX_INTERVAL_S",
    "PEX_PREFERS_ENCRYPTION",
    "PEX_REACHABLE",
    "PEX_SEED",
    "PEX_UTP",
    "PexMessage",
    "PexState",
    "encode_pex",
    "parse_pex",
]

# added.f flag bits (BEP 11)
PEX_PREFERS_ENCRYPTION = 0x01  # prefers encryption (BEP 8 / MSE)
PEX_SEED = 0x02  # seed / upload only
PEX_UTP = 0x04  # supports uTP (BEP 29); we never set it
PEX_HOLEPUNCH = 0x08  # supports ut_holepunch (BEP 55); we never set it
PEX_REACHABLE = 0x10  # we reached it by an outgoing connection: it is connectable

COMPACT_PEER_V4_BYTES = 6  # IPv4 address + port (BEP 23)
COMPACT_PEER_V6_BYTES = 18  # IPv6 address + port (BEP 7)
MAX_PEX_ADDED = 50  # added peers per message, IPv4 and IPv6 together
MAX_PEX_DROPPED = 50  # dropped peers per message, IPv4 and IPv6 together
PEX_INTERVAL_S = 60.0  # at most one message a minute per connection
# Largest ut_pex payload we decode, bytes. 50+50 peers take ~2.5 kB even as
# IPv6; this leaves room for senders that ignore the 50-peer convention
# (we use the first 50 of each list) while bounding the decode.
MAX_PEX_PAYLOAD_BYTES = 64 * 1024
_WHAT = "ut_pex message"


@dataclass(frozen=True, slots=True, kw_only=True)
class PexMessage:
    """One ut_pex message; IPv4 entries come first, then IPv6.

    ``added_flags[i]`` belongs to ``added[i]`` (0 when the sender gave none).
    """

    added: tuple[PeerAddr, ...]
    added_flags: tuple[int, ...]
    dropped: tuple[PeerAddr, ...]


def _is_v6(addr: PeerAddr) -> bool:
    return ":" in addr.host


def _encodable(addr: PeerAddr) -> bool:
    """Whether ``addr`` can travel in a compact string (an IP literal, port > 0)."""
    if addr.port == 0:
        return False
    try:
        ipaddress.ip_address(addr.host)
    except ValueError:
        return False
    return True


def encode_pex(
    added: list[PeerAddr], added_flags: list[int], dropped: list[PeerAddr]
) -> bytes:
    """Encode a ut_pex payload; empty lists leave their keys out.

    Args:
        added: new peers (IP literals), IPv4 and IPv6 mixed.
        added_flags: one flag byte per ``added`` entry.
        dropped: peers gone since the previous message.

    Raises:
        LocalPeerProtocolError: more than 50 added or dropped peers, a flags
            list of the wrong length or out of 0..255, or an address that
            is not an IP literal.
    """
    if len(added_flags) != len(added):
        raise LocalPeerProtocolError(
            f"ut_pex: {len(added_flags)} flags for {len(added)} added peers"
        )
    if len(added) > MAX_PEX_ADDED or len(dropped) > MAX_PEX_DROPPED:
        raise LocalPeerProtocolError(
            f"ut_pex: {len(added)} added / {len(dropped)} dropped peers exceed "
            f"the {MAX_PEX_ADDED}/{MAX_PEX_DROPPED} cap"
        )
    if any(not 0 <= f <= 0xFF for f in added_flags):
        raise LocalPeerProtocolError("ut_pex: a flag is not one byte")
    d: dict[bytes, bytes] = {}
    try:
        for suffix, want_v6 in ((b"", False), (b"6", True)):
            pairs = [
                (a, f)
                for a, f in zip(added, added_flags, strict=True)
                if _is_v6(a) == want_v6
            ]
            gone = [a for a in dropped if _is_v6(a) == want_v6]
            if pairs:
                d[b"added" + suffix] = encode_peers([a for a, _ in pairs])
                d[b"added" + suffix + b".f"] = bytes(f for _, f in pairs)
            if gone:
                d[b"dropped" + suffix] = encode_peers(gone)
    except CompactFormatError as exc:
        raise LocalPeerProtocolError(f"ut_pex: {exc}") from exc
    out: bytes = bencodepy.encode(d)
    return out


def _compact(
    d: dict[bytes, object], key: bytes, limit: int
) -> tuple[list[PeerAddr], int]:
    """Decode the first ``limit`` peers of compact string ``key``.

    Returns:
        Those peers and how many the string holds in all (every entry is
        length-checked; only the first ``limit`` are decoded).
    """
    value = d.get(key)
    if value is None:
        return [], 0
    if not isinstance(value, bytes):
        raise RemotePeerProtocolError(
            f"{_WHAT}: {key.decode()!r} is a {type(value).__name__}, not a string"
        )
    v6 = key.endswith(b"6")
    size = COMPACT_PEER_V6_BYTES if v6 else COMPACT_PEER_V4_BYTES
    if len(value) % size:
        raise RemotePeerProtocolError(
            f"{_WHAT}: {key.decode()!r} is {len(value)} bytes, not a multiple of {size}"
        )
    head = value[: limit * size]
    try:
        peers = decode_peers6(head) if v6 else decode_peers(head)
    except CompactFormatError as exc:
        raise RemotePeerProtocolError(f"{_WHAT}: {exc}") from exc
    return peers, len(value) // size


def _added(d: dict[bytes, object], key: bytes) -> list[tuple[PeerAddr, int]]:
    # A few spare entries are decoded because port-0 ones are skipped.
    peers, total = _compact(d, key, 2 * MAX_PEX_ADDED)
    flags = d.get(key + b".f")
    if not isinstance(flags, bytes) or len(flags) != total:
        flags = bytes(total)  # absent or mismatched: flags unknown, as libtorrent
    return [(a, f) for a, f in zip(peers, flags, strict=False) if a.port != 0]


def parse_pex(payload: bytes) -> PexMessage:
    """Parse a ut_pex payload (the bytes after the extended message id).

    Missing keys mean empty lists, and flags whose length doesn't match
    their peers are ignored. Only the first 50 added and first 50 dropped
    peers (IPv4 first) are used; added entries with port 0 are left out.

    Raises:
        RemotePeerProtocolError: the payload is over
            :data:`MAX_PEX_PAYLOAD_BYTES`, not one bencoded dictionary, or a
            peer list is not a string of whole 6- (or 18-) byte entries.
    """
    if len(payload) > MAX_PEX_PAYLOAD_BYTES:
        raise RemotePeerProtocolError(
            f"{_WHAT}: {len(payload)} bytes exceeds the "
            f"{MAX_PEX_PAYLOAD_BYTES}-byte cap"
        )
    d = decode_ext_dict(payload, what=_WHAT)
    pairs = (_added(d, b"added") + _added(d, b"added6"))[:MAX_PEX_ADDED]
    dropped4, _ = _compact(d, b"dropped", MAX_PEX_DROPPED)
    dropped6, _ = _compact(d, b"dropped6", MAX_PEX_DROPPED)
    return PexMessage(
        added=tuple(a for a, _ in pairs),
        added_flags=tuple(f for _, f in pairs),
        dropped=tuple((dropped4 + dropped6)[:MAX_PEX_DROPPED]),
    )


def _order(addr: PeerAddr) -> tuple[int, bytes, int]:
    ip = ipaddress.ip_address(addr.host)
    return ip.version, ip.packed, addr.port


class PexState:
    """What we told one peer through ut_pex, to send it only the changes.

    Args:
        peer_addr: the peer's own address, never sent back to it.
        interval_s: the least time between two messages to this peer.
    """

    __slots__ = ("_interval_s", "_last_sent", "_peer_addr", "_sent")

    def __init__(
        self, peer_addr: PeerAddr, *, interval_s: float = PEX_INTERVAL_S
    ) -> None:
        self._peer_addr = peer_addr
        self._interval_s = interval_s
        self._sent: set[PeerAddr] = set()  # what the peer has from us
        self._last_sent: float | None = None

    @property
    def advertised(self) -> frozenset[PeerAddr]:
        """The peers this peer currently has from us (added, not dropped)."""
        return frozenset(self._sent)

    def due(self, now: float) -> bool:
        """Whether a message may go now: the first one at once (after the
        extension handshake), then at most one per ``interval_s``."""
        return self._last_sent is None or now - self._last_sent >= self._interval_s

    def build(
        self,
        current_peers: set[PeerAddr],
        now: float,
        flags: dict[PeerAddr, int] | None = None,
    ) -> bytes | None:
        """The next message for this peer, or None if not due or nothing changed.

        ``added`` is what is in ``current_peers`` but not yet sent, ``dropped``
        what was sent but is gone; each is capped at 50 and the rest waits for
        the next message. Addresses that aren't IP literals with a port, and
        the peer's own address, are never sent. A returned message counts as
        sent at ``now``.

        Args:
            current_peers: the peers we are connected to for this torrent.
            now: the current time.
            flags: ``added.f`` bits per peer (missing: 0).
        """
        if not self.due(now):
            return None
        current = {a for a in current_peers if a != self._peer_addr and _encodable(a)}
        added = sorted(current - self._sent, key=_order)[:MAX_PEX_ADDED]
        dropped = sorted(self._sent - current, key=_order)[:MAX_PEX_DROPPED]
        if not added and not dropped:
            return None
        flag_map = flags or {}
        payload = encode_pex(added, [flag_map.get(a, 0) for a in added], dropped)
        self._sent.update(added)
        self._sent.difference_update(dropped)
        self._last_sent = now
        return payload
