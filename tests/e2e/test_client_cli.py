"""The ``bitswarm`` command as a user runs it: real processes on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.helpers.swarm import write_random_file

REPO = Path(__file__).resolve().parents[2]


class Proc:
    """A ``python -m client ...`` process whose --json events we read."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            with suppress(ValueError):
                self.events.append(json.loads(line))
                self._changed.set()
        self._changed.set()

    def count(self, name: str) -> int:
        return sum(1 for e in self.events if e.get("event") == name)

    async def wait_event(
        self, name: str, n: int = 1, timeout_s: float = 30
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                found = [e for e in self.events if e.get("event") == name]
                if len(found) >= n:
                    return found[n - 1]
                if self._reader.done():
                    raise AssertionError(f"process ended before {name} x{n}")
                self._changed.clear()
                await self._changed.wait()

    async def wait(self, timeout_s: float = 30) -> int:
        async with asyncio.timeout(timeout_s):
            await self._reader
            return await self.proc.wait()


@asynccontextmanager
async def bitswarm(*args: str) -> AsyncIterator[Proc]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    p = Proc(proc)
    try:
        yield p
    finally:
        if proc.returncode is None:
            with suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
        p._reader.cancel()


async def run(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_bad_torrent_is_one_error_line(tmp_path: Path) -> None:
    code, _, err = await run(
        "download",
        str(REPO / "sample_files" / "bad" / "not_bencode.torrent"),
        "-o",
        str(tmp_path),
    )
    assert code == 1
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


async def test_sigkill_mid_download_resumes_without_refetching_verified_pieces(
    tmp_path: Path,
) -> None:
    src = tmp_path / "seed"
    data = write_random_file(src / "big.bin", 3_000_000 + 17, seed=11)
    torrent = tmp_path / "big.torrent"
    code, _, err = await run(
        "create", str(src / "big.bin"), "-o", str(torrent), "--piece-length", "32K"
    )
    assert code == 0, err
    pieces = (len(data) + 32767) // 32768
    out = tmp_path / "out"
    async with bitswarm(
        "seed",
        str(src / "big.bin"),
        "--torrent",
        str(torrent),
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--max-upload-rate",
        "400K",
        "--json",
    ) as seeder:
        started = await seeder.wait_event("started")
        peer = f"127.0.0.1:{started['port']}"
        async with bitswarm(
            "download",
            str(torrent),
            "-o",
            str(out),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--peer",
            peer,
            "--json",
        ) as first:
            await first.wait_event("piece_verified", n=15)
            first.proc.send_signal(signal.SIGKILL)  # no chance to clean up
            await first.proc.wait()
            verified_before = first.count("piece_verified")
        assert verified_before < pieces
        async with bitswarm(
            "download",
            str(torrent),
            "-o",
            str(out),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--peer",
            peer,
            "--json",
        ) as second:
            checked = await second.wait_event("checked")
            assert checked["have"] >= verified_before
            assert await second.wait(timeout_s=60) == 0
            fetched_again = second.count("piece_verified")
        # Only the missing pieces were downloaded the second time.
        assert fetched_again == pieces - checked["have"]
    assert (out / "big.bin").read_bytes() == data


async def test_sigint_sends_stopped_to_the_tracker(tmp_path: Path) -> None:
    queries: list[str] = []

    async def announce(request: web.Request) -> web.Response:
        queries.append(request.rel_url.raw_query_string)
        return web.Response(body=b"d8:intervali60e5:peers0:e")

    app = web.Application()
    app.router.add_get("/announce", announce)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        src = tmp_path / "seed"
        write_random_file(src / "f.bin", 100_000, seed=2)
        torrent = tmp_path / "f.torrent"
        code, _, err = await run(
            "create",
            str(src / "f.bin"),
            "-o",
            str(torrent),
            "--tracker",
            f"http://127.0.0.1:{port}/announce",
        )
        assert code == 0, err
        async with bitswarm(
            "download",
            str(torrent),
            "-o",
            str(tmp_path / "out"),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--json",
        ) as leecher:
            await leecher.wait_event("tracker_announce")
            assert any("event=started" in q for q in queries)
            leecher.proc.send_signal(signal.SIGINT)
            code = await leecher.wait()
        assert code == 130
        assert any("event=stopped" in q for q in queries), queries
    finally:
        await runner.cleanup()


async def test_info_json_reports_the_infohash() -> None:
    code, out, _ = await run(
        "info", str(REPO / "sample_files" / "random.bin.torrent"), "--json"
    )
    assert code == 0
    info = json.loads(out)
    assert len(info["infohash"]) == 40
    assert info["infohash"] == info["infohash"].lower()
    assert os.path.basename(info["name"]) == "random.bin"
