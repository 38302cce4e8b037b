"""Real UDP on 127.0.0.1: DhtNodes bootstrap from each other, announce, find."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from dht import DhtNode, PeerAddr, testing_config

NODES = 32
REPO = str(Path(__file__).resolve().parents[2])


def _read_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


async def test_dht_udp_bootstrap_chain_announce_and_get_peers() -> None:
    cfg = testing_config()
    async with contextlib.AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(DhtNode(config=cfg)) for _ in range(NODES)
        ]
        async with asyncio.timeout(60):
            # A chain: each node joins through the one before it.
            for prev, node in itertools.pairwise(nodes):
                await node.bootstrap([prev.address], timeout_s=10)
            # A second round so early nodes learn about the later ones.
            await asyncio.gather(
                *(n.bootstrap([nodes[0].address], timeout_s=10) for n in nodes)
            )
            assert all(n.statistics().routing_table_size >= 8 for n in nodes)

            info_hash = secrets.token_bytes(20)
            announcer, seeker = nodes[5], nodes[-3]
            done = await announcer.announce(info_hash, 51413, timeout_s=10)
            assert len(done.stored_at) >= 4

            peers = await seeker.get_peers(info_hash, timeout_s=10)
            assert PeerAddr("127.0.0.1", 51413) in peers

            streamed: list[PeerAddr] = []
            async for batch in nodes[-1].iter_peers(info_hash, timeout_s=10):
                streamed.extend(batch)
            assert PeerAddr("127.0.0.1", 51413) in streamed

            implied = await nodes[7].announce(
                info_hash, 0, implied_port=True, timeout_s=10
            )
            assert implied.stored_at
            peers = await nodes[9].get_peers(info_hash, timeout_s=10)
            assert nodes[7].address in peers  # implied_port: the UDP source port

        stats = seeker.statistics()
        assert stats.queries_out > 0
        assert stats.bytes_in > 0


async def test_dht_udp_routing_table_saved_and_loaded(tmp_path: Path) -> None:
    cfg = testing_config()
    state = tmp_path / "dht.json"
    async with contextlib.AsyncExitStack() as stack:
        others = [
            await stack.enter_async_context(DhtNode(config=cfg)) for _ in range(10)
        ]
        async with asyncio.timeout(30):
            for prev, node in itertools.pairwise(others):
                await node.bootstrap([prev.address], timeout_s=10)
            async with DhtNode(config=cfg, state_path=state) as node:
                await node.bootstrap([others[0].address], timeout_s=10)
                saved_id = node.node_id
                assert node.statistics().routing_table_size >= 5
            data = _read_json(state)
            assert data["node_id"] == saved_id.hex()
            assert len(data["nodes"]) >= 5

            # A fresh node with the same state file: same id, and it rejoins
            # through the saved nodes without being told any bootstrap node.
            async with DhtNode(config=cfg, state_path=state) as again:
                assert again.node_id == saved_id
                await again.wait_table_size(5)


async def test_dht_cli_prints_port_first(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": REPO}
    code = (
        "import argparse,sys\n"
        "from client import cli_dht\n"
        "p=argparse.ArgumentParser();s=p.add_subparsers();cli_dht.register(s)\n"
        "a=p.parse_args(sys.argv[1:]);sys.exit(a.func(a))\n"
    )
    async with DhtNode(config=testing_config()) as node:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            code,
            "dht",
            "--port",
            "0",
            "--json",
            "--interval",
            "0.2",
            "--bootstrap",
            str(node.address),
            "--state",
            str(tmp_path / "s.json"),
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(20):
                first = json.loads(await proc.stdout.readline())
                assert first["event"] == "dht_listening"
                assert first["port"] > 0
                # The CLI node bootstraps from ours and answers our queries.
                seen = await node.bootstrap([PeerAddr("127.0.0.1", first["port"])])
                assert seen >= 1
                while True:
                    line = json.loads(await proc.stdout.readline())
                    if line["event"] == "dht_stats" and line["routing_table_size"] >= 1:
                        break
        finally:
            proc.terminate()
            await proc.wait()
        assert _read_json(tmp_path / "s.json")["nodes"]
