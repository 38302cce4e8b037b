"""The tracker's aiohttp app over pytest-aiohttp's test client."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import bencodepy
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from yarl import URL

import tracker
from tracker import make_app
from tracker.config import TrackerConfig

Client = TestClient[web.Request, web.Application]
MakeClient = Callable[[web.Application], Awaitable[Client]]

# high bits, NUL, '%', '&', '=' and '+': everything a text decoder would mangle
INFO_HASH = bytes([0x00, 0xFF, 0x80, 0x25, 0x26, 0x3D, 0x2B, 0xC3]) + bytes(range(12))


def enc(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


def peer_id(n: int) -> bytes:
    return b"-BS0001-" + bytes([0x80 + n]) * 12


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def announce_query(n: int, *, info_hash: bytes = INFO_HASH, **extra: str) -> str:
    params = {
        "info_hash": enc(info_hash),
        "peer_id": enc(peer_id(n)),
        "port": str(7000 + n),
        "uploaded": "0",
        "downloaded": "0",
        "left": "1000",
    }
    params.update(extra)
    return "&".join(f"{k}={v}" for k, v in params.items())


async def get(client: Client, path: str, raw_query: str = "") -> dict[bytes, Any]:
    # encoded=True: the query goes on the wire exactly as written, as a client sends it
    resp = await client.get(URL(f"{path}?{raw_query}", encoded=True))
    assert resp.status == 200
    body = await resp.read()
    decoded = bencodepy.decode(body)
    assert isinstance(decoded, dict)
    return decoded


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def client(aiohttp_client: Any, clock: FakeClock) -> Client:
    cfg = tracker.testing_config(
        interval_s=5.0, min_interval_s=2.0, peer_timeout_s=30.0
    )
    app = make_app(cfg, clock=clock, rng=random.Random(3))
    c: Client = await aiohttp_client(app)
    return c


async def test_announce_binary_info_hash_compact(client: Client) -> None:
    first = await get(client, "/announce", announce_query(1, event="started"))
    assert first[b"interval"] == 5
    assert first[b"min interval"] == 2
    assert first[b"peers"] == b""
    assert (first[b"complete"], first[b"incomplete"]) == (0, 1)
    second = await get(client, "/announce", announce_query(2, left="0"))
    assert second[b"peers"] == bytes([127, 0, 0, 1]) + (7001).to_bytes(2, "big")
    assert (second[b"complete"], second[b"incomplete"]) == (1, 1)
    assert b"peers6" not in second
    # the swarm is keyed by the exact 20 bytes: scrape finds it under them
    scrape = await get(client, "/scrape", f"info_hash={enc(INFO_HASH)}")
    assert scrape[b"files"] == {
        INFO_HASH: {b"complete": 1, b"downloaded": 0, b"incomplete": 1}
    }


async def test_announce_dictionary_model(client: Client) -> None:
    await get(client, "/announce", announce_query(1))
    body = await get(client, "/announce", announce_query(2, compact="0"))
    assert body[b"peers"] == [
        {b"ip": b"127.0.0.1", b"port": 7001, b"peer id": peer_id(1)}
    ]
    body = await get(
        client, "/announce", announce_query(2, compact="0", no_peer_id="1")
    )
    assert body[b"peers"] == [{b"ip": b"127.0.0.1", b"port": 7001}]


async def test_peer_never_returned_to_itself(client: Client) -> None:
    await get(client, "/announce", announce_query(1))
    again = await get(client, "/announce", announce_query(1, compact="0"))
    assert again[b"peers"] == []
    # another peer_id at the same ip:port (a restarted client) is not handed back either
    same_addr = announce_query(2).replace("port=7002", "port=7001")
    assert (await get(client, "/announce", same_addr))[b"peers"] == b""


async def test_expiry_uses_injected_clock(client: Client, clock: FakeClock) -> None:
    await get(client, "/announce", announce_query(1))
    clock.now += 20
    await get(client, "/announce", announce_query(2))
    clock.now += 15  # peer 1 is 35 s old (past 30), peer 2 15 s
    body = await get(client, "/announce", announce_query(3, compact="0"))
    assert [p[b"peer id"] for p in body[b"peers"]] == [peer_id(2)]
    assert (body[b"complete"], body[b"incomplete"]) == (0, 2)


async def test_completed_and_stopped(client: Client) -> None:
    await get(client, "/announce", announce_query(1, event="started"))
    await get(client, "/announce", announce_query(1, event="completed", left="0"))
    await get(client, "/announce", announce_query(2))
    stopped = await get(client, "/announce", announce_query(2, event="stopped"))
    assert (stopped[b"complete"], stopped[b"incomplete"]) == (1, 0)
    scrape = await get(client, "/scrape", f"info_hash={enc(INFO_HASH)}")
    assert scrape[b"files"][INFO_HASH][b"downloaded"] == 1


async def test_scrape_several_and_all(client: Client) -> None:
    other = b"\x00" * 20
    unknown = b"\xfe" * 20
    await get(client, "/announce", announce_query(1))
    await get(client, "/announce", announce_query(2, info_hash=other, left="0"))
    several = await get(
        client,
        "/scrape",
        f"info_hash={enc(INFO_HASH)}&info_hash={enc(other)}&info_hash={enc(unknown)}",
    )
    assert several[b"files"] == {
        INFO_HASH: {b"complete": 0, b"downloaded": 0, b"incomplete": 1},
        other: {b"complete": 1, b"downloaded": 0, b"incomplete": 0},
    }
    everything = await get(client, "/scrape")
    assert set(everything[b"files"]) == {INFO_HASH, other}


BAD_REQUESTS = [
    (
        "/announce",
        announce_query(1).replace(enc(INFO_HASH), enc(INFO_HASH[:19])),
        "info_hash is 19 bytes, not 20",
    ),
    (
        "/announce",
        announce_query(1).replace("port=7001", "port=70000"),
        "port 70000 is out of range",
    ),
    (
        "/announce",
        announce_query(1).replace("uploaded=0", "uploaded=abc"),
        "uploaded is not a number: 'abc'",
    ),
    (
        "/announce",
        announce_query(1).replace("left=1000", "left=-1"),
        "left -1 is negative",
    ),
    (
        "/announce",
        announce_query(1, event="paused"),
        "event 'paused' is not one of started, completed, stopped or empty",
    ),
    ("/announce", announce_query(1, compact="2"), "compact must be 0 or 1, not '2'"),
    ("/announce", "", "info_hash is missing"),
    ("/announce", f"info_hash={enc(INFO_HASH)}", "peer_id is missing"),
    ("/announce", "info_hash=%G0", "info_hash has a malformed percent-escape: '%G0'"),
    ("/scrape", "info_hash=short", "info_hash is 5 bytes, not 20"),
]


@pytest.mark.parametrize(("path", "raw_query", "reason"), BAD_REQUESTS)
async def test_bad_requests_get_failure_reason(
    client: Client, path: str, raw_query: str, reason: str
) -> None:
    body = await get(client, path, raw_query)
    assert body == {b"failure reason": reason.encode()}


async def test_trusted_ip_and_peers6(aiohttp_client: Any) -> None:
    cfg = tracker.testing_config(trust_ip=True)
    client: Client = await aiohttp_client(make_app(cfg, rng=random.Random(1)))
    await get(client, "/announce", announce_query(1, ip="127.0.0.9"))
    await get(client, "/announce", announce_query(2, ip="%3A%3A1"))
    body = await get(client, "/announce", announce_query(3))
    assert body[b"peers"] == bytes([127, 0, 0, 9]) + (7001).to_bytes(2, "big")
    assert body[b"peers6"] == bytes(15) + b"\x01" + (7002).to_bytes(2, "big")
    listed = await get(
        client, "/announce", announce_query(3, compact="0", no_peer_id="1")
    )
    assert sorted(p[b"ip"] for p in listed[b"peers"]) == [b"127.0.0.9", b"::1"]


async def test_ip_ignored_when_not_trusted(client: Client) -> None:
    await get(client, "/announce", announce_query(1, ip="127.0.0.9"))
    body = await get(client, "/announce", announce_query(2))
    assert body[b"peers"][:4] == bytes([127, 0, 0, 1])


async def test_numwant_is_capped(aiohttp_client: Any) -> None:
    cfg: TrackerConfig = tracker.testing_config(max_numwant=3)
    client: Client = await aiohttp_client(make_app(cfg, rng=random.Random(1)))
    for n in range(1, 8):
        await get(client, "/announce", announce_query(n))
    body = await get(client, "/announce", announce_query(9, numwant="100"))
    assert len(body[b"peers"]) == 3 * 6


async def test_stats_json_and_page(client: Client) -> None:
    await get(client, "/announce", announce_query(1, left="0"))
    await get(client, "/announce", announce_query(2))
    await get(client, "/scrape")
    resp = await client.get("/stats.json")
    assert resp.status == 200
    stats = await resp.json()
    assert stats["torrents"] == 1
    assert (stats["seeders"], stats["leechers"], stats["peers"]) == (1, 1, 2)
    assert (stats["announces"], stats["scrapes"]) == (2, 1)
    page = await client.get("/")
    assert page.status == 200
    assert page.content_type == "text/html"
    text = await page.text()
    assert "bitswarm tracker" in text
    assert INFO_HASH.hex() in text
