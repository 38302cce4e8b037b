"""The swarm registry (tracker/core/registry.py): pure, ``now`` passed in."""

from __future__ import annotations

import random

import pytest

from tracker.core.addr import PeerAddr
from tracker.core.registry import SwarmRegistry
from tracker.core.request import AnnounceRequest, Event, InfoHash, PeerId
from tracker.errors import AnnounceRequestError

IH = InfoHash(b"\xaa" * 20)


def pid(n: int) -> PeerId:
    return PeerId(bytes([n]) * 20)


def req(
    n: int,
    *,
    left: int = 10,
    event: Event = Event.EMPTY,
    numwant: int = 50,
    info_hash: InfoHash = IH,
) -> AnnounceRequest:
    return AnnounceRequest(
        info_hash=info_hash,
        peer_id=pid(n),
        port=6000 + n,
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


def addr(n: int) -> PeerAddr:
    return PeerAddr("127.0.0.1", 6000 + n)


def registry(timeout: float = 100.0, **kw: int) -> SwarmRegistry:
    return SwarmRegistry(peer_timeout_s=timeout, rng=random.Random(7), **kw)


def test_peers_see_each_other_but_never_themselves() -> None:
    reg = registry()
    assert reg.announce(req(1), addr(1), 0).peers == ()
    second = reg.announce(req(2), addr(2), 1)
    assert [p.peer_id for p in second.peers] == [pid(1)]
    again = reg.announce(req(1), addr(1), 2)
    assert [p.addr for p in again.peers] == [addr(2)]


def test_same_address_with_other_peer_id_is_not_returned() -> None:
    reg = registry()
    reg.announce(req(1), addr(1), 0)
    restarted = reg.announce(req(2), addr(1), 1)  # same ip:port, new peer_id
    assert restarted.peers == ()


def test_counts_seeders_leechers_and_completed() -> None:
    reg = registry()
    reg.announce(req(1, left=0), addr(1), 0)
    reg.announce(req(2, event=Event.STARTED), addr(2), 0)
    result = reg.announce(req(3), addr(3), 0)
    assert (result.complete, result.incomplete) == (1, 2)
    done = reg.announce(req(2, left=0, event=Event.COMPLETED), addr(2), 1)
    assert (done.complete, done.incomplete) == (2, 1)
    # a repeated 'completed' from a known seeder is not counted twice
    reg.announce(req(2, left=0, event=Event.COMPLETED), addr(2), 2)
    counts = reg.scrape([IH], 3)[IH]
    assert (counts.complete, counts.incomplete, counts.downloaded) == (2, 1, 1)


def test_stopped_removes_peer() -> None:
    reg = registry()
    reg.announce(req(1), addr(1), 0)
    reg.announce(req(2), addr(2), 0)
    gone = reg.announce(req(1, event=Event.STOPPED), addr(1), 1)
    assert gone.peers == ()
    assert (gone.complete, gone.incomplete) == (0, 1)
    assert reg.announce(req(3), addr(3), 2).peers[0].peer_id == pid(2)
    assert (
        reg.announce(
            req(9, event=Event.STOPPED, info_hash=InfoHash(b"\x01" * 20)), addr(9), 3
        ).peers
        == ()
    )


def test_peers_expire_lazily() -> None:
    reg = registry(timeout=10)
    reg.announce(req(1), addr(1), 0)
    reg.announce(req(2), addr(2), 5)
    assert {p.peer_id for p in reg.announce(req(3), addr(3), 10).peers} == {
        pid(1),
        pid(2),
    }
    # at t=10.5 peer 1 (last seen 0) is past the 10 s timeout; 2 and 3 live on
    assert {p.peer_id for p in reg.announce(req(4), addr(4), 10.5).peers} == {
        pid(2),
        pid(3),
    }
    stats = reg.statistics(100)
    assert (stats.torrents, stats.seeders, stats.leechers) == (0, 0, 0)
    assert stats.announces == 4


def test_reannounce_refreshes_last_seen() -> None:
    reg = registry(timeout=10)
    reg.announce(req(1), addr(1), 0)
    reg.announce(req(2), addr(2), 1)
    reg.announce(req(1), addr(1), 8)  # peer 1 is fresh again
    assert [p.peer_id for p in reg.announce(req(3), addr(3), 15).peers] == [pid(1)]


def test_numwant_samples_randomly_with_injected_rng() -> None:
    def run(seed: int) -> list[bytes]:
        reg = SwarmRegistry(peer_timeout_s=100, rng=random.Random(seed))
        for n in range(1, 30):
            reg.announce(req(n), addr(n), 0)
        return [p.peer_id for p in reg.announce(req(40, numwant=5), addr(40), 1).peers]

    assert len(run(1)) == 5
    assert run(1) == run(1)
    assert len({tuple(run(s)) for s in range(5)}) > 1
    assert pid(40) not in run(1)


def test_numwant_zero() -> None:
    reg = registry()
    reg.announce(req(1), addr(1), 0)
    assert reg.announce(req(2, numwant=0), addr(2), 0).peers == ()


def test_scrape_all_and_unknown() -> None:
    reg = registry()
    other = InfoHash(b"\xbb" * 20)
    reg.announce(req(1), addr(1), 0)
    reg.announce(req(2, info_hash=other, left=0), addr(2), 0)
    assert set(reg.scrape([], 1)) == {IH, other}
    assert set(reg.scrape([other, InfoHash(b"\xcc" * 20)], 1)) == {other}
    assert reg.statistics(1).scrapes == 2


def test_torrent_cap() -> None:
    reg = registry(max_torrents=1)
    reg.announce(req(1), addr(1), 0)
    with pytest.raises(AnnounceRequestError, match="tracker already tracks 1 torrents"):
        reg.announce(req(2, info_hash=InfoHash(b"\x02" * 20)), addr(2), 0)
