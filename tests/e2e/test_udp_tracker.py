"""The UDP tracker (BEP 15) end to end on loopback: one swarm state behind
HTTP and UDP, a download found through it, and ``bitswarm tracker --udp-port``."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import aiohttp
import bencodepy
from yarl import URL

from client.core.announce import AnnounceEvent, ScrapeStats
from client.udp_tracker_client import UdpTrackerConfig, udp_announce, udp_scrape
from dht import PeerAddr
from tests.helpers.swarm import (
    complete_all,
    engine,
    fast_session,
    make_torrent,
    tree_bytes,
    write_random_file,
)
from tracker import TrackerServer, testing_config

REPO = Path(__file__).resolve().parents[2]
IH = bytes(range(20))
FAST_UDP = UdpTrackerConfig(retransmit_base_s=0.2, timeout_s=5.0)


def enc(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


async def http_announce(url: str, peer: bytes, port: int, left: int) -> list[PeerAddr]:
    query = (
        f"info_hash={enc(IH)}&peer_id={enc(peer)}&port={port}"
        f"&uploaded=0&downloaded=0&left={left}&compact=1"
    )
    async with (
        aiohttp.ClientSession() as http,
        http.get(URL(f"{url}?{query}", encoded=True)) as resp,
    ):
        body = bencodepy.decode(await resp.read())
    raw = body[b"peers"]
    return [
        PeerAddr(".".join(map(str, raw[i : i + 4])), int.from_bytes(raw[i + 4 : i + 6]))
        for i in range(0, len(raw), 6)
    ]


async def test_udp_and_http_announcers_share_one_swarm() -> None:
    async with TrackerServer(testing_config(udp_port=0)) as server:
        assert server.udp_url == f"udp://127.0.0.1:{server.udp_address.port}/announce"
        first = await udp_announce(
            server.udp_url,
            IH,
            b"u" * 20,
            7001,
            0,
            0,
            0,
            AnnounceEvent.STARTED,
            50,
            1,
            config=FAST_UDP,
        )
        assert first.peers == ()
        # the HTTP announcer is handed the peer that announced over UDP ...
        seen = await http_announce(server.url, b"h" * 20, 7002, 100)
        assert seen == [PeerAddr("127.0.0.1", 7001)]
        # ... and the UDP announcer the one that announced over HTTP
        again = await udp_announce(
            server.udp_url,
            IH,
            b"u" * 20,
            7001,
            0,
            0,
            0,
            AnnounceEvent.EMPTY,
            50,
            1,
            config=FAST_UDP,
        )
        assert again.peers == (PeerAddr("127.0.0.1", 7002),)
        assert (again.complete, again.incomplete) == (1, 1)
        scraped = await udp_scrape(server.udp_url, [IH], config=FAST_UDP)
        assert scraped == {IH: ScrapeStats(complete=1, downloaded=0, incomplete=1)}
        stats = server.statistics()
        assert (stats.seeders, stats.leechers, stats.announces) == (1, 1, 3)
        udp = server.udp_statistics()
        assert udp is not None
        assert (udp.connects, udp.announces, udp.scrapes) == (3, 2, 1)


async def test_seeder_on_udp_and_leecher_on_http_find_each_other(
    tmp_path: Path,
) -> None:
    src = tmp_path / "seed"
    path = src / "data.bin"
    write_random_file(path, 200_001, seed=5)
    async with TrackerServer(testing_config(udp_port=0)) as server:
        seed_meta = make_torrent(path, [server.udp_url])
        leech_meta = make_torrent(path, [server.url])
        assert seed_meta.info_hash == leech_meta.info_hash
        async with engine() as seed_engine, engine() as leech_engine:
            seed_engine.add_torrent(seed_meta, src, config=fast_session())
            leecher = leech_engine.add_torrent(
                leech_meta, tmp_path / "out", config=fast_session()
            )
            await complete_all([leecher], timeout_s=30)
        udp = server.udp_statistics()
        assert udp is not None
        assert udp.announces >= 1
    assert tree_bytes(tmp_path / "out") == tree_bytes(src)


async def test_cli_tracker_serves_udp() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "client",
        "tracker",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--udp-port",
        "0",
        "--json",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(20):
            event = json.loads(await proc.stdout.readline())
        assert event["event"] == "tracker_listening"
        url = event["udp_url"]
        assert url == f"udp://127.0.0.1:{event['udp_port']}/announce"
        response = await udp_announce(
            url,
            IH,
            b"c" * 20,
            7003,
            0,
            0,
            5,
            AnnounceEvent.STARTED,
            50,
            3,
            config=FAST_UDP,
        )
        assert response.incomplete == 1
    finally:
        proc.kill()
        await proc.wait()
