"""Bencoded tracker responses: announce, scrape and failure (BEP 3, 23, 7, 48).

A compact announce response carries IPv4 peers as a string of 6-byte entries
in ``peers`` and IPv6 peers as 18-byte entries in ``peers6`` (BEP 23, BEP 7).
With ``compact=0`` the BEP 3 dictionary model lists every peer under
``peers`` as ``{'peer id', 'ip', 'port'}`` (``peer id`` left out on
``no_peer_id=1``).
"""

from __future__ import annotations

from collections.abc import Mapping

import bencodepy

from tracker.core.addr import compact_peer
from tracker.core.registry import AnnounceResult, CompactPeers, SwarmCounts
from tracker.core.request import InfoHash

__all__ = [
    "encode_announce",
    "encode_compact_announce",
    "encode_failure",
    "encode_scrape",
]


def encode_failure(reason: str) -> bytes:
    """``{'failure reason': reason}``, sent with HTTP 200 (BEP 3)."""
    return bytes(bencodepy.encode({b"failure reason": reason.encode("utf-8")}))


def encode_announce(
    result: AnnounceResult,
    *,
    compact: bool,
    no_peer_id: bool,
    interval_s: float,
    min_interval_s: float,
) -> bytes:
    """The announce response for ``result``; intervals are whole seconds."""
    body: dict[bytes, object] = {
        b"interval": round(interval_s),
        b"min interval": round(min_interval_s),
        b"complete": result.complete,
        b"incomplete": result.incomplete,
    }
    if compact:
        v4 = [p.addr for p in result.peers if not p.addr.is_ipv6]
        v6 = [p.addr for p in result.peers if p.addr.is_ipv6]
        body[b"peers"] = b"".join(compact_peer(a) for a in v4)
        if v6:
            body[b"peers6"] = b"".join(compact_peer(a) for a in v6)
    else:
        peers: list[dict[bytes, object]] = []
        for entry in result.peers:
            peer: dict[bytes, object] = {
                b"ip": entry.addr.host.encode("ascii"),
                b"port": entry.addr.port,
            }
            if not no_peer_id:
                peer[b"peer id"] = entry.peer_id
            peers.append(peer)
        body[b"peers"] = peers
    return bytes(bencodepy.encode(body))


def encode_compact_announce(
    result: CompactPeers, *, interval_s: float, min_interval_s: float
) -> bytes:
    """:func:`encode_announce` with ``compact=True`` for a
    :class:`CompactPeers`, written out directly (keys in bencode's sorted
    order) rather than through a dictionary: the HTTP hot path."""
    peers6 = result.peers6
    return b"".join(
        (
            b"d8:completei%de10:incompletei%de8:intervali%de12:min intervali%de"
            b"5:peers%d:"
            % (
                result.complete,
                result.incomplete,
                round(interval_s),
                round(min_interval_s),
                len(result.peers),
            ),
            result.peers,
            b"6:peers6%d:%se" % (len(peers6), peers6) if peers6 else b"e",
        )
    )


def encode_scrape(files: Mapping[InfoHash, SwarmCounts]) -> bytes:
    """``{'files': {info_hash: {complete, downloaded, incomplete}}}`` (BEP 48)."""
    return bytes(
        bencodepy.encode(
            {
                b"files": {
                    info_hash: {
                        b"complete": c.complete,
                        b"downloaded": c.downloaded,
                        b"incomplete": c.incomplete,
                    }
                    for info_hash, c in files.items()
                }
            }
        )
    )
