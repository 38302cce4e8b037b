"""The tracker's lean HTTP/1.1 server (tracker/http.py) over real loopback
sockets: keep-alive, pipelining, status codes, limits, idle timeout, and
the aiohttp fallback for a customised app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import bencodepy
import pytest
from aiohttp import web

import tracker.http
from tracker import TrackerServer, testing_config

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def enc(data: bytes) -> str:
    return "".join(f"%{b:02X}" for b in data)


def announce_target(n: int, **extra: str) -> str:
    query = (
        f"info_hash={enc(b'h' * 20)}&peer_id={enc(n.to_bytes(20, 'big'))}"
        f"&port={1000 + n}&uploaded=0&downloaded=0&left=1"
    )
    query += "".join(f"&{k}={v}" for k, v in extra.items())
    return f"/announce?{query}"


@pytest.fixture
async def server() -> AsyncIterator[TrackerServer]:
    async with TrackerServer(testing_config()) as s:
        yield s


async def connect(server: TrackerServer) -> Streams:
    return await asyncio.open_connection("127.0.0.1", server.address.port)


async def read_response(
    reader: asyncio.StreamReader,
) -> tuple[int, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), 5)
    return status, headers, body


async def finish(writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def closed(reader: asyncio.StreamReader) -> bool:
    return await asyncio.wait_for(reader.read(1), 5) == b""


async def test_keep_alive_and_pipelined_requests_answered_in_order(
    server: TrackerServer,
) -> None:
    reader, writer = await connect(server)
    requests = b"".join(
        f"GET {announce_target(n)} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        for n in range(1, 4)
    )
    writer.write(requests[:37])  # a head split over two reads
    await writer.drain()
    writer.write(requests[37:])
    for n in range(1, 4):
        status, headers, body = await read_response(reader)
        assert status == 200
        assert headers["content-type"] == "text/plain"
        assert headers["cache-control"] == "no-cache"
        assert "date" in headers
        reply = bencodepy.decode(body)
        assert reply[b"incomplete"] == n
        assert len(reply[b"peers"]) == 6 * (n - 1)
    writer.write(b"GET /stats.json HTTP/1.1\r\n\r\n")
    status, headers, body = await read_response(reader)
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["leechers"] == 3
    await finish(writer)


async def test_failure_reason_is_a_200(server: TrackerServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /announce?info_hash=x HTTP/1.1\r\n\r\n")
    status, _, body = await read_response(reader)
    assert status == 200
    assert b"failure reason" in bencodepy.decode(body)
    await finish(writer)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /nowhere HTTP/1.1\r\n\r\n", 404),
        (b"POST /announce HTTP/1.1\r\n\r\n", 405),
        (b"GET /announce HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 400),
        (b"GET /announce HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"GET /announce HTTP/2.0\r\n\r\n", 505),
        (b"garbage\r\n\r\n", 400),
    ],
)
async def test_bad_requests_get_a_status(
    server: TrackerServer, request_bytes: bytes, status: int
) -> None:
    reader, writer = await connect(server)
    writer.write(request_bytes)
    got, headers, _ = await read_response(reader)
    assert got == status
    if status != 404:
        assert headers["connection"] == "close"
        assert await closed(reader)
    await finish(writer)


async def test_oversized_head_is_refused(server: TrackerServer) -> None:
    reader, writer = await connect(server)
    writer.write(b"GET /" + b"a" * (tracker.http.MAX_HEAD_BYTES + 10))
    status, _, _ = await read_response(reader)
    assert status == 431
    assert await closed(reader)
    await finish(writer)


async def test_http10_closes_unless_kept_alive(server: TrackerServer) -> None:
    reader, writer = await connect(server)
    writer.write(f"GET {announce_target(1)} HTTP/1.0\r\n\r\n".encode())
    status, headers, _ = await read_response(reader)
    assert (status, headers["connection"]) == (200, "close")
    assert await closed(reader)
    await finish(writer)
    reader, writer = await connect(server)
    writer.write(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n" * 2)
    for _ in range(2):
        status, headers, body = await read_response(reader)
        assert status == 200
        assert "connection" not in headers
        assert b"bitswarm tracker" in body
    writer.write(b"GET /scrape HTTP/1.1\r\nConnection: close\r\n\r\n")
    status, _, body = await read_response(reader)
    assert list(bencodepy.decode(body)[b"files"]) == [b"h" * 20]
    assert await closed(reader)
    await finish(writer)


async def test_head_and_absolute_form(server: TrackerServer) -> None:
    reader, writer = await connect(server)
    target = f"http://127.0.0.1:{server.address.port}{announce_target(1)}"
    writer.write(
        f"HEAD {target} HTTP/1.1\r\n\r\nGET /stats.json HTTP/1.1\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    _, _, body = await read_response(reader)  # no body came in between
    assert json.loads(body)["leechers"] == 1
    await finish(writer)


async def test_idle_connection_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracker.http, "IDLE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(tracker.http, "SWEEP_S", 0.05)
    async with TrackerServer(testing_config()) as server:
        reader, writer = await connect(server)
        writer.write(b"GET /stats.json HTT")  # a head that never completes
        assert await closed(reader)
        await finish(writer)


async def test_customised_app_is_served_by_aiohttp() -> None:
    server = TrackerServer(testing_config())
    seen: list[str] = []

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        seen.append(request.path)

    server.app.on_response_prepare.append(hook)
    assert server.customised
    async with (
        server,
        aiohttp.ClientSession() as session,
        session.get(f"http://{server.address}/stats.json") as resp,
    ):
        assert (await resp.json())["torrents"] == 0
    assert seen == ["/stats.json"]
