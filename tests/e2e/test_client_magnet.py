"""Magnet links end to end: metadata over ut_metadata, peers from x.pe, the
DHT and PEX, all on loopback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from client.core.magnet import Magnet, magnet_from_metainfo
from client.engine import Engine
from dht import DhtNode, testing_config
from tests.helpers.swarm import (
    engine,
    engine_config,
    fast_session,
    make_torrent,
    wait_for,
    write_random_file,
)


def _bare(magnet: Magnet) -> Magnet:
    """Only the infohash: no tracker, no peer."""
    return Magnet(
        info_hash=magnet.info_hash,
        display_name=None,
        trackers=(),
        peers=(),
        exact_length=None,
    )


async def test_magnet_with_x_pe_fetches_metadata_and_downloads(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    path = src / "album"
    write_random_file(path / "a.bin", 400_001, seed=1)
    write_random_file(path / "sub" / "b.bin", 300_000, seed=2)
    meta = make_torrent(path, [])
    async with engine() as seed_engine, engine() as leech:
        seed_engine.add_torrent(meta, src, config=fast_session())
        m = magnet_from_metainfo(meta)
        magnet = Magnet(
            info_hash=m.info_hash,
            display_name=m.display_name,
            trackers=(),
            peers=(seed_engine.address,),
            exact_length=None,
        )
        async with asyncio.timeout(30):
            session = await leech.open_magnet(
                magnet, tmp_path / "out", config=fast_session()
            )
            assert session.meta.info_hash == meta.info_hash
            await session.wait_complete()
    for rel in ("a.bin", "sub/b.bin"):
        assert (tmp_path / "out" / "album" / rel).read_bytes() == (
            path / rel
        ).read_bytes()


async def test_bare_magnet_finds_peers_through_the_dht(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    path = src / "data.bin"
    data = write_random_file(path, 500_000, seed=3)
    meta = make_torrent(path, [])
    events: list[tuple[str, dict[str, Any]]] = []
    async with DhtNode(config=testing_config()) as boot:
        dht = {
            "dht_port": 0,
            "dht_bootstrap": (str(boot.address),),
            "dht_config": testing_config(),
            "dht_retry_s": 0.5,
        }
        async with engine(**dht) as seed_engine:
            seeder = seed_engine.add_torrent(meta, src, config=fast_session())
            await seeder.wait_started()
            async with Engine(
                engine_config(**dht), on_event=lambda n, f: events.append((n, f))
            ) as leech:
                async with asyncio.timeout(45):
                    session = await leech.open_magnet(
                        _bare(magnet_from_metainfo(meta)),
                        tmp_path / "out",
                        config=fast_session(),
                    )
                    await session.wait_complete()
    assert (tmp_path / "out" / "data.bin").read_bytes() == data
    sources = {f["source"] for n, f in events if n == "peer_connected"}
    assert "dht" in sources
    assert not sources & {"tracker", "manual", "magnet"}


async def test_pex_alone_lets_a_third_peer_find_a_second_through_a_first(
    tmp_path: Path,
) -> None:
    """No tracker, no DHT: C knows only A; A tells C about B by ut_pex."""
    src = tmp_path / "seed"
    path = src / "data.bin"
    data = write_random_file(path, 300_000, seed=4)
    meta = make_torrent(path, [])
    events: list[tuple[str, dict[str, Any]]] = []
    async with (
        engine(max_upload_rate=100_000) as a_engine,  # B is still leeching...
        engine() as b_engine,
        Engine(
            engine_config(), on_event=lambda n, f: events.append((n, f))
        ) as c_engine,
    ):
        a_engine.add_torrent(meta, src, config=fast_session())
        b = b_engine.add_torrent(
            meta, tmp_path / "b", config=fast_session(), peers=[a_engine.address]
        )
        await wait_for(lambda: b.statistics().pieces_have > 0, timeout_s=20)
        # ...when C arrives knowing only A.
        c = c_engine.add_torrent(
            meta, tmp_path / "c", config=fast_session(), peers=[a_engine.address]
        )
        await wait_for(
            lambda: any(
                n == "peer_connected" and f["source"] == "pex" for n, f in events
            ),
            timeout_s=20,
        )
        pex_peers = [
            f["addr"]
            for n, f in events
            if n == "peer_connected" and f["source"] == "pex"
        ]
        assert str(b_engine.address) in pex_peers
        async with asyncio.timeout(30):
            await c.wait_complete()
            await b.wait_complete()
    assert (tmp_path / "c" / "data.bin").read_bytes() == data
