"""TrackerServer and run_tracker over real loopback sockets."""

from __future__ import annotations

import asyncio

import aiohttp
import bencodepy
import pytest
from yarl import URL

import tracker
from tracker import TrackerError, TrackerServer, run_tracker


def enc(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


async def test_server_binds_port_zero_and_answers() -> None:
    server = TrackerServer(tracker.testing_config())
    with pytest.raises(TrackerError, match="not running"):
        _ = server.address
    async with server:
        assert server.address.host == "127.0.0.1"
        assert server.address.port > 0
        assert server.url == f"http://127.0.0.1:{server.address.port}/announce"
        query = (
            f"info_hash={enc(bytes(20))}&peer_id={enc(b'p' * 20)}&port=1"
            "&uploaded=0&downloaded=0&left=0"
        )
        async with (
            aiohttp.ClientSession() as session,
            session.get(URL(f"{server.url}?{query}", encoded=True)) as resp,
        ):
            body = bencodepy.decode(await resp.read())
        assert body[b"complete"] == 1
        assert server.statistics().seeders == 1


async def test_bind_error_reaches_caller() -> None:
    async with TrackerServer(tracker.testing_config()) as first:
        cfg = tracker.testing_config(port=first.address.port)
        with pytest.raises(OSError, match="address already in use"):
            async with TrackerServer(cfg):
                pass


async def test_run_tracker_serves_until_cancelled() -> None:
    ready: asyncio.Future[TrackerServer] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        run_tracker(tracker.testing_config(), ready=ready.set_result)
    )
    server = await asyncio.wait_for(ready, 5)
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://{server.address}/stats.json") as resp,
    ):
        assert (await resp.json())["torrents"] == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
