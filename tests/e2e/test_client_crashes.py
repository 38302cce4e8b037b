"""Crashes and faults over loopback (issue 8): kill -9 at random points, a
seeder lost mid-transfer, the disk full, the tracker restarted."""

from __future__ import annotations

import asyncio
import json
import random
import resource
import signal
import sys
from pathlib import Path

from tests.e2e.test_client_cli import REPO, bitswarm, run
from tests.helpers.swarm import write_random_file

PIECE = 32768


async def _make(
    tmp_path: Path, size: int, seed: int, tracker: str = ""
) -> tuple[Path, bytes, Path]:
    src = tmp_path / "seed"
    data = write_random_file(src / "f.bin", size, seed=seed)
    torrent = tmp_path / "f.torrent"
    extra = ["--tracker", tracker] if tracker else []
    code, _, err = await run(
        "create",
        str(src / "f.bin"),
        "-o",
        str(torrent),
        "--piece-length",
        "32K",
        *extra,
    )
    assert code == 0, err
    return src, data, torrent


PEER_OPTS = ("--host", "127.0.0.1", "--port", "0", "--no-dht", "--json")


async def test_kill_9_at_ten_random_points_loses_no_verified_piece(
    tmp_path: Path,
) -> None:
    src, data, torrent = await _make(tmp_path, 3_200_000 + 3, seed=40)
    pieces = (len(data) + PIECE - 1) // PIECE
    rng = random.Random(8)
    out = tmp_path / "out"
    async with bitswarm(
        "seed",
        str(src / "f.bin"),
        "--torrent",
        str(torrent),
        "--max-upload-rate",
        "1M",
        *PEER_OPTS,
    ) as seeder:
        peer = f"127.0.0.1:{(await seeder.wait_event('started'))['port']}"
        have = 0
        for kill in range(10):
            async with bitswarm(
                "download", str(torrent), "-o", str(out), "--peer", peer, *PEER_OPTS
            ) as leecher:
                checked = await leecher.wait_event("checked")
                # Nothing verified before the last kill is fetched again.
                assert checked["have"] >= have, f"kill {kill}: lost verified pieces"
                have = checked["have"]
                left = pieces - have
                target = rng.randint(1, max(1, left // (10 - kill)))
                if left > target:
                    await leecher.wait_event("piece_verified", n=target)
                    leecher.proc.send_signal(signal.SIGKILL)
                    await leecher.proc.wait()
                    have += leecher.count("piece_verified")
                else:
                    assert await leecher.wait(timeout_s=60) == 0
                    break
        async with bitswarm(
            "download", str(torrent), "-o", str(out), "--peer", peer, *PEER_OPTS
        ) as last:
            checked = await last.wait_event("checked")
            assert checked["have"] >= have
            assert await last.wait(timeout_s=60) == 0
            assert last.count("piece_verified") == pieces - checked["have"]
    assert (out / "f.bin").read_bytes() == data


async def test_seeder_killed_mid_transfer_another_remains(tmp_path: Path) -> None:
    src, data, torrent = await _make(tmp_path, 2_000_000, seed=41)
    async with (
        bitswarm(
            "seed",
            str(src / "f.bin"),
            "--torrent",
            str(torrent),
            "--max-upload-rate",
            "300K",
            *PEER_OPTS,
        ) as s1,
        bitswarm(
            "seed",
            str(src / "f.bin"),
            "--torrent",
            str(torrent),
            "--max-upload-rate",
            "300K",
            *PEER_OPTS,
        ) as s2,
    ):
        p1 = (await s1.wait_event("started"))["port"]
        p2 = (await s2.wait_event("started"))["port"]
        async with bitswarm(
            "download",
            str(torrent),
            "-o",
            str(tmp_path / "out"),
            "--peer",
            f"127.0.0.1:{p1}",
            "--peer",
            f"127.0.0.1:{p2}",
            *PEER_OPTS,
        ) as leecher:
            await leecher.wait_event("piece_verified", n=10)
            s1.proc.send_signal(signal.SIGKILL)
            await s1.proc.wait()
            assert await leecher.wait(timeout_s=60) == 0
    assert (tmp_path / "out" / "f.bin").read_bytes() == data


def _small_disk() -> None:
    # A write limit stands in for a full disk: writes past 1 MiB fail with
    # EFBIG (CPython ignores SIGXFSZ, so the write returns the error).
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


async def test_disk_full_is_a_clear_error_and_resume_works(tmp_path: Path) -> None:
    src, data, torrent = await _make(tmp_path, 2_000_000, seed=42)
    out = tmp_path / "out"
    async with bitswarm(
        "seed",
        str(src / "f.bin"),
        "--torrent",
        str(torrent),
        "--max-upload-rate",
        "500K",
        *PEER_OPTS,
    ) as seeder:
        peer = f"127.0.0.1:{(await seeder.wait_event('started'))['port']}"
        fetch = ("download", str(torrent), "-o", str(out), "--peer", peer, *PEER_OPTS)
        # Some pieces on disk first (the write limit may hit any piece next).
        async with bitswarm(*fetch) as first:
            await first.wait_event("piece_verified", n=10)
            first.proc.send_signal(signal.SIGKILL)
            await first.proc.wait()
            before = first.count("piece_verified")
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "client",
            *fetch,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            preexec_fn=_small_disk,
        )
        async with asyncio.timeout(60):
            stdout, stderr = await proc.communicate()
        assert proc.returncode == 1
        err = stderr.decode().strip().splitlines()
        assert err[-1].startswith("error: storage: writing piece"), err
        assert "File too large" in err[-1]
        events = [json.loads(line) for line in stdout.decode().splitlines()]
        checked = next(e for e in events if e["event"] == "checked")
        assert checked["have"] >= before  # verified pieces were kept
        during = sum(1 for e in events if e["event"] == "piece_verified")
        async with bitswarm(*fetch) as again:
            checked = await again.wait_event("checked")
            assert checked["have"] >= before + during
            assert await again.wait(timeout_s=60) == 0
    assert (out / "f.bin").read_bytes() == data


async def test_tracker_restarted_clients_reannounce_and_swarm_recovers(
    tmp_path: Path,
) -> None:
    # Learn a free port, then run the tracker there twice.
    async with bitswarm(
        "tracker", "--host", "127.0.0.1", "--port", "0", "--interval", "1", "--json"
    ) as probe:
        port = (await probe.wait_event("tracker_listening"))["port"]
    url = f"http://127.0.0.1:{port}/announce"
    src, data, torrent = await _make(tmp_path, 500_000, seed=43, tracker=url)
    args = (
        "tracker",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--interval",
        "1",
        "--json",
    )
    async with bitswarm(*args) as first:
        await first.wait_event("tracker_listening")
        async with bitswarm(
            "seed", str(src / "f.bin"), "--torrent", str(torrent), *PEER_OPTS
        ) as seeder:
            await seeder.wait_event("tracker_announce")
            first.proc.send_signal(signal.SIGKILL)
            await first.proc.wait()
            await seeder.wait_event("tracker_error")
            async with bitswarm(*args) as second:
                await second.wait_event("tracker_listening")
                # The seeder re-announces to the new tracker on its own...
                n = seeder.count("tracker_announce")
                await seeder.wait_event("tracker_announce", n=n + 1)
                # ...so a new leecher finds it there.
                async with bitswarm(
                    "download", str(torrent), "-o", str(tmp_path / "out"), *PEER_OPTS
                ) as leecher:
                    assert await leecher.wait(timeout_s=60) == 0
    assert (tmp_path / "out" / "f.bin").read_bytes() == data
