"""The fallback story: the tracker dies mid-download and the swarm carries
on through the DHT and PEX (issue: trackerless)."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

from client.core.magnet import Magnet
from client.engine import Engine
from dht import DhtNode, testing_config
from tests.helpers.swarm import (
    engine_config,
    fast_session,
    make_torrent,
    wait_for,
    write_random_file,
)

REPO = Path(__file__).resolve().parents[2]


async def test_tracker_sigkill_mid_download_then_bare_magnet_leecher_completes(
    tmp_path: Path,
) -> None:
    tracker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client",
        "tracker",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--interval",
        "2",
        "--json",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert tracker.stdout is not None
        async with asyncio.timeout(20):
            first = json.loads(await tracker.stdout.readline())
        url = first["url"]
        src = tmp_path / "seed"
        path = src / "data.bin"
        data = write_random_file(path, 3_000_000 + 5, seed=21)
        meta = make_torrent(path, [url])
        events: list[tuple[str, dict[str, Any]]] = []
        async with DhtNode(config=testing_config()) as boot:
            dht = {
                "dht_port": 0,
                "dht_bootstrap": (str(boot.address),),
                "dht_config": testing_config(),
                "dht_retry_s": 0.5,
            }
            async with (
                Engine(engine_config(max_upload_rate=500_000, **dht)) as seed_engine,
                Engine(engine_config(**dht)) as l1,
                Engine(engine_config(**dht)) as l2,
                Engine(
                    engine_config(**dht), on_event=lambda n, f: events.append((n, f))
                ) as late_engine,
            ):
                seed_engine.add_torrent(meta, src, config=fast_session())
                leechers = [
                    e.add_torrent(meta, tmp_path / f"l{i}", config=fast_session())
                    for i, e in enumerate((l1, l2))
                ]
                await wait_for(
                    lambda: all(s.statistics().pieces_have >= 5 for s in leechers),
                    timeout_s=30,
                )
                tracker.send_signal(signal.SIGKILL)
                await tracker.wait()
                assert not any(s.is_complete for s in leechers), "kill came too late"
                bare = Magnet(
                    info_hash=meta.info_hash,
                    display_name=None,
                    trackers=(),
                    peers=(),
                    exact_length=None,
                )
                async with asyncio.timeout(60):
                    late = await late_engine.open_magnet(
                        bare, tmp_path / "late", config=fast_session()
                    )
                    await late.wait_complete()
                    for s in leechers:
                        await s.wait_complete()
        for d in ("l0", "l1", "late"):
            assert (tmp_path / d / "data.bin").read_bytes() == data
        sources = {f["source"] for n, f in events if n == "peer_connected"}
        assert sources & {"dht", "pex"}
        assert not sources & {"tracker", "manual", "magnet"}
    finally:
        if tracker.returncode is None:
            tracker.kill()
            await tracker.wait()


async def test_demo_json_tells_the_whole_story_within_90_seconds() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client",
        "demo",
        "--json",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(90):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    events = [json.loads(line) for line in out.decode().splitlines() if line.strip()]
    names = [e["event"] for e in events]
    assert "tracker_killed" in names
    summary = next(e for e in events if e["event"] == "summary")
    assert summary["ok"] is True
    late = summary["late_sources_after_kill"]
    assert set(late) & {"dht", "pex"}
    assert not set(late) & {"tracker", "manual", "magnet"}
    verified = [e for e in events if e["event"] == "verified"]
    assert len(verified) == 3
    assert all(e["identical"] for e in verified)
