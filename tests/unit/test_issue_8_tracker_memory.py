"""Issue 8 regressions: the tracker empties its registry and gives memory back.

Before: every peer was five small Python objects. After a 100,000-peer load
expired, the registry was empty but the tracker's RSS stayed at its peak,
because long-lived objects that aiohttp and yarl allocate meanwhile pinned
the object arenas the peers had filled. Now peers are packed records in one
C-allocated buffer per swarm.
"""

from __future__ import annotations

import gc
import random
import sys

from tracker.core.addr import PeerAddr
from tracker.core.registry import SwarmRegistry
from tracker.core.request import AnnounceRequest, Event, InfoHash, PeerId
from tracker.memory import TRIM_AFTER_PEERS, MemoryTrimmer

TIMEOUT_S = 100.0


def req(
    info_hash: bytes,
    peer_id: bytes,
    *,
    left: int = 10,
    event: Event = Event.EMPTY,
    numwant: int = 50,
) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=InfoHash(info_hash),
        peer_id=PeerId(peer_id),
        port=6881,
        uploaded=0,
        downloaded=0,
        left=left,
        event=event,
        numwant=numwant,
        compact=True,
        no_peer_id=False,
        ip=None,
        key=None,
        tracker_id=None,
    )


def fill(reg: SwarmRegistry, peers: int, torrents: int, now: float) -> None:
    rng = random.Random(3)
    hashes = [rng.randbytes(20) for _ in range(torrents)]
    for i in range(peers):
        addr = PeerAddr(f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1000 + i % 9)
        left = 0 if i % 4 == 0 else 5
        reg.announce(req(hashes[i % torrents], rng.randbytes(20), left=left), addr, now)


def blocks() -> int:
    """Small-object blocks in use; a full collection empties the free lists."""
    gc.collect()
    return sys.getallocatedblocks()


def test_issue_8_peers_are_not_python_objects() -> None:
    reg = SwarmRegistry(peer_timeout_s=TIMEOUT_S, rng=random.Random(1))
    peers, torrents = 20_000, 1000
    before = blocks()
    fill(reg, peers, torrents, 0.0)
    grown = blocks() - before
    # a swarm is its key, its _Swarm and a bytearray header; peers add nothing
    assert grown < 4 * torrents + 2000, grown
    assert (reg.torrents, reg.peers) == (torrents, peers)
    stats = reg.statistics(1.0)
    assert (stats.seeders, stats.leechers) == (peers // 4, peers - peers // 4)

    # expiry run by an announce for another torrent, after the timeout, drops
    # swarms that nobody announces again
    reg.announce(
        req(b"\x01" * 20, b"\x02" * 20, event=Event.STOPPED),
        PeerAddr("127.0.0.1", 9),
        TIMEOUT_S + 1,
    )
    assert (reg.torrents, reg.peers) == (0, 0)
    assert blocks() - before < 500


def test_issue_8_expire_is_public_and_counts() -> None:
    reg = SwarmRegistry(peer_timeout_s=TIMEOUT_S, rng=random.Random(1))
    fill(reg, 300, 30, 0.0)
    fill(reg, 0, 1, 0.0)
    assert reg.expire(TIMEOUT_S - 1) == 0
    assert reg.expire(TIMEOUT_S + 1) == 300
    assert reg.torrents == 0


def test_issue_8_peer_id_found_only_on_a_record_boundary() -> None:
    reg = SwarmRegistry(peer_timeout_s=TIMEOUT_S, rng=random.Random(1))
    ih = b"\xaa" * 20
    first = bytes(range(20))
    a = PeerAddr("127.0.0.1", 6881)
    reg.announce(req(ih, first), a, 0.0)
    # a peer_id equal to the bytes straddling first's id and its address
    # (stored IPv4-mapped: ::ffff:127.0.0.1 starts with ten zero bytes)
    straddle = first[10:] + bytes(10)
    b = PeerAddr("127.0.0.2", 7000)
    result = reg.announce(req(ih, straddle), b, 1.0)
    assert [(p.peer_id, p.addr) for p in result.peers] == [(first, a)]
    assert reg.peers == 2
    again = reg.announce(req(ih, straddle), b, 2.0)  # a re-announce, not a third
    assert [(p.peer_id, p.addr) for p in again.peers] == [(first, a)]
    assert reg.peers == 2


def test_issue_8_ipv6_and_ipv4_addresses_round_trip() -> None:
    reg = SwarmRegistry(peer_timeout_s=TIMEOUT_S, rng=random.Random(1))
    ih = b"\xbb" * 20
    addrs = [
        PeerAddr("::1", 1),
        PeerAddr("fe80::1:2", 65535),
        PeerAddr("10.0.0.255", 0),
    ]
    for n, addr in enumerate(addrs):
        reg.announce(req(ih, bytes([n]) * 20, left=0 if n == 1 else 5), addr, n)
    result = reg.announce(req(ih, b"\x09" * 20), PeerAddr("127.0.0.1", 5), 9.0)
    assert {p.addr for p in result.peers} == set(addrs)
    assert (result.complete, result.incomplete) == (1, 3)


def test_issue_8_big_swarm_samples_numwant_without_the_asker() -> None:
    reg = SwarmRegistry(peer_timeout_s=TIMEOUT_S, rng=random.Random(1))
    ih = b"\xcc" * 20
    for n in range(500):
        reg.announce(req(ih, n.to_bytes(20, "big")), PeerAddr("127.0.0.1", n + 1), 0.0)
    me = (7).to_bytes(20, "big")
    result = reg.announce(req(ih, me, numwant=50), PeerAddr("127.0.0.1", 8), 1.0)
    ids = [p.peer_id for p in result.peers]
    assert len(ids) == 50 == len(set(ids))
    assert me not in ids
    assert reg.peers == 500


def test_issue_8_trimmer_trims_once_after_a_big_drop() -> None:
    calls: list[int] = []

    def trim(pad: int) -> int:
        calls.append(pad)
        return 1

    trimmer = MemoryTrimmer(trim=trim)
    for peers in (0, 5, 3 * TRIM_AFTER_PEERS, 2 * TRIM_AFTER_PEERS):
        trimmer.observe(peers)
    assert calls == []  # a third gone: not yet half
    trimmer.observe(TRIM_AFTER_PEERS)
    assert calls == [0]
    trimmer.observe(0)  # only TRIM_AFTER_PEERS since the last trim: enough
    trimmer.observe(0)
    assert calls == [0, 0]
    trimmer.observe(TRIM_AFTER_PEERS - 1)
    trimmer.observe(0)  # a small swarm coming and going is no reason
    assert calls == [0, 0]
