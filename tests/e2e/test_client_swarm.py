"""A real swarm over loopback: tracker, a rate-limited seeder, three leechers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers.swarm import (
    complete_all,
    engine,
    fast_session,
    make_torrent,
    tree_bytes,
    wait_for,
    write_random_file,
)
from tracker import TrackerServer, testing_config

SEEDER_RATE = 400 * 1024  # bytes/s: slow enough that leechers must trade


def _make_single(src: Path) -> Path:
    path = src / "data.bin"
    # not a multiple of the piece size (32 KiB) nor of the block size
    write_random_file(path, 1_500_000 + 1234, seed=7)
    return path


def _make_multi(src: Path) -> Path:
    root = src / "album"
    write_random_file(root / "a.bin", 700_001, seed=1)
    write_random_file(root / "nested" / "b.bin", 500_000, seed=2)
    (root / "nested" / "empty.txt").write_bytes(b"")
    write_random_file(root / "c.txt", 300_007, seed=3)
    return root


@pytest.mark.parametrize("make", [_make_single, _make_multi], ids=["single", "multi"])
async def test_swarm_of_three_leechers_trades_and_copies_are_identical(
    tmp_path: Path, make: object
) -> None:
    src = tmp_path / "seed"
    path = make(src)  # type: ignore[operator]
    async with TrackerServer(testing_config()) as tracker:
        meta = make_torrent(path, [tracker.url])
        async with engine(max_upload_rate=SEEDER_RATE) as seed_engine:
            seeder = seed_engine.add_torrent(meta, src, config=fast_session())
            leechers = []
            engines = []
            try:
                for i in range(3):
                    eng = engine()
                    e = await eng.__aenter__()
                    engines.append(eng)
                    leechers.append(
                        e.add_torrent(
                            meta, tmp_path / f"leech{i}", config=fast_session()
                        )
                    )
                await complete_all(leechers, timeout_s=90)
                seeder_id = seeder.peer_id.hex()
                for i in range(len(leechers)):
                    got = tree_bytes(tmp_path / f"leech{i}")
                    want = tree_bytes(src)
                    assert got == want
                # Leechers also fetched from each other, not only from the seeder.
                from_others = sum(
                    n
                    for leecher in leechers
                    for pid, n in leecher.statistics().downloaded_from.items()
                    if pid != seeder_id
                )
                assert from_others > 0
            finally:
                for eng in engines:
                    await eng.__aexit__(None, None, None)
        # Every peer announced, and each said 'stopped' on the way out.
        stats = tracker.statistics()
        assert stats.announces >= 4
        assert stats.torrents == 0


async def test_download_by_peer_address_without_tracker(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    path = _make_single(src)
    meta = make_torrent(path, [])
    async with engine() as seed_engine, engine() as leech_engine:
        seed_engine.add_torrent(meta, src, config=fast_session())
        leecher = leech_engine.add_torrent(
            meta, tmp_path / "out", config=fast_session(), peers=[seed_engine.address]
        )
        async with asyncio.timeout(30):
            await leecher.wait_complete()
        assert (tmp_path / "out" / "data.bin").read_bytes() == path.read_bytes()


async def test_never_connects_to_itself_and_caps_peers(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    path = _make_single(src)
    meta = make_torrent(path, [])
    # Upload-limited, so that the first leecher holds the one slot a while.
    async with engine(max_upload_rate=300_000) as seed_engine, engine() as b:
        seeder = seed_engine.add_torrent(meta, src, config=fast_session(max_peers=1))
        # Its own listening address is given to it as a peer: ignored.
        seeder.add_peers([seed_engine.address], "manual")
        async with engine() as a:
            first = a.add_torrent(
                meta, tmp_path / "a", config=fast_session(), peers=[seed_engine.address]
            )
            await wait_for(lambda: first.statistics().pieces_have > 0, timeout_s=20)
            assert len(seeder.peers) == 1
            assert all(p.peer_id != seeder.peer_id for p in seeder.peers)
            # A second leecher is refused while the one peer slot is taken...
            second = b.add_torrent(
                meta, tmp_path / "b", config=fast_session(), peers=[seed_engine.address]
            )
            await wait_for(
                lambda: second._pool.failures(seed_engine.address) > 0, timeout_s=10
            )
            assert not first.is_complete
            assert len(seeder.peers) == 1
            assert not second.peers
        # ...and gets in once the first one leaves.
        async with asyncio.timeout(30):
            await second.wait_complete()
