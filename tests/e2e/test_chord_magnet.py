"""A magnet download that finds its peers through the Chord overlay only."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from client.core.magnet import Magnet
from client.engine import Engine
from dht import ChordNode, chord_testing_config
from tests.helpers.swarm import (
    engine_config,
    fast_session,
    make_torrent,
    write_random_file,
)

RING_PEERS = 18  # plus the seeder's and the leecher's ring peers: 20


async def test_bare_magnet_download_through_a_20_peer_chord_ring(
    tmp_path: Path,
) -> None:
    src = tmp_path / "seed"
    path = src / "data.bin"
    data = write_random_file(path, 600_000, seed=31)
    meta = make_torrent(path, [])
    config = chord_testing_config()
    events: list[tuple[str, dict[str, Any]]] = []
    async with contextlib.AsyncExitStack() as stack:
        ring = [await stack.enter_async_context(ChordNode(config=config))]
        for _ in range(RING_PEERS - 1):
            node = await stack.enter_async_context(ChordNode(config=config))
            await node.join(ring[0].address)
            ring.append(node)
        chord = {
            "dht_port": 0,
            "overlay": "chord",
            "chord_config": config,
            "dht_bootstrap": (str(ring[0].address),),
            "dht_retry_s": 0.5,
        }
        seed_engine = await stack.enter_async_context(Engine(engine_config(**chord)))
        seed_engine.add_torrent(meta, src, config=fast_session())
        leech = await stack.enter_async_context(
            Engine(engine_config(**chord), on_event=lambda n, f: events.append((n, f)))
        )
        bare = Magnet(
            info_hash=meta.info_hash,
            display_name=None,
            trackers=(),
            peers=(),
            exact_length=None,
        )
        async with asyncio.timeout(60):
            session = await leech.open_magnet(
                bare, tmp_path / "out", config=fast_session()
            )
            await session.wait_complete()
    assert (tmp_path / "out" / "data.bin").read_bytes() == data
    sources = {f["source"] for n, f in events if n == "peer_connected"}
    assert "chord" in sources
    assert not sources & {"tracker", "manual", "magnet"}
