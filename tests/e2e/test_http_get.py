"""The plain-HTTP tracker GET (client/http_get.py) on loopback: against our
own tracker, and against a tiny asyncio server that redirects, chunks and
closes early; and announcing over http:// never imports aiohttp."""

from __future__ import annotations

import asyncio
import json
import random
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import bencodepy
import pytest

from client.errors import TrackerFailure
from client.http_get import http_get
from client.tracker_client import (
    MAX_RESPONSE_BYTES,
    TrackerClient,
    TrackerClientConfig,
    TransferStats,
    http_scrape,
)
from tracker import TrackerServer, testing_config

REPO = Path(__file__).resolve().parents[2]
INFO_HASH = bytes([0x00, 0xFF, 0x80, 0x25, 0x26, 0x3D, 0x2B, 0x20]) + bytes(range(12))
PEER_ID = b"-BS0100-" + b"\x00%" * 6
ANNOUNCE_BODY = bencodepy.encode(
    {
        b"interval": 3600,
        b"complete": 1,
        b"incomplete": 2,
        b"peers": bytes([127, 0, 0, 9]) + (6999).to_bytes(2, "big"),
    }
)
FAST = TrackerClientConfig(
    timeout_s=2.0,
    backoff_base_s=0.05,
    min_announce_interval_s=0.05,
    stopped_timeout_s=2.0,
)


async def no_https(url: str) -> bytes:
    raise AssertionError(f"https_get called for {url}")


class ScriptedServer:
    """A tiny HTTP/1.x server on 127.0.0.1:0; the path picks the answer."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []
        self.release = asyncio.Event()  # frees hanging handlers at teardown
        self.port = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            self.requests.append(head)
            path = head.split(b" ")[1].split(b"?")[0].decode()
            for piece in self.answer(path):
                if piece is None:
                    await self.release.wait()
                    continue
                writer.write(piece)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def answer(self, path: str) -> list[bytes | None]:
        ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(ANNOUNCE_BODY)
        if path == "/announce":
            return [ok + ANNOUNCE_BODY]
        if path == "/scrape":
            files = {INFO_HASH: {b"complete": 3, b"downloaded": 4, b"incomplete": 5}}
            body = bencodepy.encode({b"files": files})
            return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body]
        if path == "/chunked/announce":
            body = ANNOUNCE_BODY
            return [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"%x;ext=1\r\n%s\r\n" % (10, body[:10]),
                b"%X\r\n%s\r\n" % (len(body) - 10, body[10:]),
                b"0\r\nX-Trailer: y\r\n\r\n",
            ]
        if path == "/http10":
            return [b"HTTP/1.0 200 OK\r\nServer: old\r\n\r\n", ANNOUNCE_BODY]
        if path.startswith("/hop/"):
            left = int(path.split("/")[2])
            if left == 0:
                return [ok + ANNOUNCE_BODY]
            status = (301, 302, 303, 307, 308)[left % 5]
            location = b"../%d/announce" % (left - 1)  # relative
            return [
                b"HTTP/1.1 %d Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
                % (status, location)
            ]
        if path == "/loop":
            return [b"HTTP/1.1 302 Found\r\nLocation: /loop\r\n\r\n"]
        if path == "/to-https":
            return [
                b"HTTP/1.1 307 Temporary Redirect\r\n"
                b"Location: https://127.0.0.1:1/announce?info_hash=%00%FF\r\n\r\n"
            ]
        if path == "/404":
            return [b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nnope!"]
        if path == "/early":
            return [b"HTTP/1.1 200 OK\r\nContent-Le"]
        if path == "/short":
            return [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"]
        if path == "/big":
            size = MAX_RESPONSE_BYTES + 1
            return [b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size]
        if path == "/big-close":
            return [b"HTTP/1.0 200 OK\r\n\r\n", *[b"x" * 65536] * 17]
        if path == "/hang":
            return [None]
        return [b"HTTP/1.1 500 Internal Server Error\r\n\r\n"]


@pytest.fixture
async def scripted() -> AsyncIterator[ScriptedServer]:
    script = ScriptedServer()
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    script.port = server.sockets[0].getsockname()[1]
    async with server:
        yield script
        script.release.set()


async def test_content_length_answer_and_the_request_sent(
    scripted: ScriptedServer,
) -> None:
    url = scripted.url("/announce?info_hash=%00%FF%80%25&x=1")
    body = await http_get(url, max_body_bytes=MAX_RESPONSE_BYTES, https_get=no_https)
    assert body == ANNOUNCE_BODY
    assert scripted.requests == [
        b"GET /announce?info_hash=%00%FF%80%25&x=1 HTTP/1.1\r\n"
        + b"Host: 127.0.0.1:%d\r\n" % scripted.port
        + b"User-Agent: bitswarm\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    ]


@pytest.mark.parametrize("path", ["/chunked/announce", "/http10", "/hop/5/announce"])
async def test_chunked_close_delimited_and_redirected_answers(
    scripted: ScriptedServer, path: str
) -> None:
    body = await http_get(
        scripted.url(path), max_body_bytes=MAX_RESPONSE_BYTES, https_get=no_https
    )
    assert body == ANNOUNCE_BODY


async def test_five_redirects_are_followed_with_every_status(
    scripted: ScriptedServer,
) -> None:
    await http_get(
        scripted.url("/hop/5/announce?q=%00"),
        max_body_bytes=MAX_RESPONSE_BYTES,
        https_get=no_https,
    )
    targets = [r.split(b" ")[1] for r in scripted.requests]
    assert targets == [b"/hop/5/announce?q=%00"] + [
        b"/hop/%d/announce" % n for n in (4, 3, 2, 1, 0)
    ]


async def test_a_sixth_redirect_is_a_failure(scripted: ScriptedServer) -> None:
    with pytest.raises(TrackerFailure, match="more than 5 redirects"):
        await http_get(
            scripted.url("/hop/6/announce"),
            max_body_bytes=MAX_RESPONSE_BYTES,
            https_get=no_https,
        )
    assert len(scripted.requests) == 6


async def test_redirect_loop_is_a_failure(scripted: ScriptedServer) -> None:
    with pytest.raises(TrackerFailure, match="more than 5 redirects"):
        await http_get(
            scripted.url("/loop"), max_body_bytes=MAX_RESPONSE_BYTES, https_get=no_https
        )


async def test_https_redirect_target_goes_to_https_get(
    scripted: ScriptedServer,
) -> None:
    asked: list[str] = []

    async def https_get(url: str) -> bytes:
        asked.append(url)
        return b"from https"

    body = await http_get(
        scripted.url("/to-https"),
        max_body_bytes=MAX_RESPONSE_BYTES,
        https_get=https_get,
    )
    assert body == b"from https"
    assert asked == ["https://127.0.0.1:1/announce?info_hash=%00%FF"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/404", "HTTP 404 Not Found"),
        ("/other", "HTTP 500 Internal Server Error"),
        ("/early", "server closed the connection within the head"),
        ("/short", "server closed the connection after 10 of 100 body bytes"),
        (
            "/big",
            f"response of {MAX_RESPONSE_BYTES + 1} bytes exceeds the "
            f"{MAX_RESPONSE_BYTES}-byte cap",
        ),
        ("/big-close", f"response exceeds the {MAX_RESPONSE_BYTES}-byte cap"),
    ],
)
async def test_failures_have_readable_reasons(
    scripted: ScriptedServer, path: str, reason: str
) -> None:
    with pytest.raises(TrackerFailure) as info:
        await http_get(
            scripted.url(path), max_body_bytes=MAX_RESPONSE_BYTES, https_get=no_https
        )
    assert info.value.reason == reason


async def test_unreachable_port_is_a_failure() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(TrackerFailure) as info:
        await http_get(
            f"http://127.0.0.1:{port}/announce",
            max_body_bytes=MAX_RESPONSE_BYTES,
            https_get=no_https,
        )
    assert info.value.reason == (
        f"cannot connect to 127.0.0.1:{port}: "
        "ConnectionRefusedError: Connection refused"
    )


def make_client(
    url: str, events: list[tuple[str, dict[str, object]]], done: asyncio.Event
) -> TrackerClient:
    def on_event(name: str, fields: dict[str, object]) -> None:
        events.append((name, fields))
        done.set()

    return TrackerClient(
        INFO_HASH,
        PEER_ID,
        7001,
        [[url]],
        lambda: TransferStats(uploaded=1, downloaded=2, left=3),
        lambda peers: None,
        FAST,
        random.Random(1),
        on_event=on_event,
    )


@pytest.mark.parametrize("path", ["/chunked/announce", "/hop/3/announce"])
async def test_tracker_client_through_chunks_and_redirects(
    scripted: ScriptedServer, path: str
) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    done = asyncio.Event()
    client = make_client(scripted.url(path), events, done)
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(client.run())
        async with asyncio.timeout(10):
            await done.wait()
        run.cancel()
    assert [name for name, _ in events] == ["tracker_announce"]
    assert events[0][1]["peers"] == 1
    # the binary info_hash went out percent-encoded once, never re-quoted
    assert b"info_hash=%00%FF%80%25%26%3D%2B%20%00%01" in scripted.requests[0]


async def test_tracker_client_timeout_reason_is_unchanged(
    scripted: ScriptedServer,
) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    done = asyncio.Event()
    client = make_client(scripted.url("/hang"), events, done)
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(client.run())
        async with asyncio.timeout(10):
            await done.wait()
        run.cancel()
    assert events[0][0] == "tracker_error"
    assert events[0][1]["reason"] == "no answer within 2 s"


async def test_announce_and_scrape_against_our_tracker() -> None:
    async with TrackerServer(testing_config(interval_s=3600.0)) as server:
        events: list[tuple[str, dict[str, object]]] = []
        done = asyncio.Event()
        client = make_client(server.url, events, done)
        await client.announce_completed()
        assert [name for name, _ in events] == ["tracker_announce"]
        stats = await http_scrape(server.url, [INFO_HASH, bytes(20)], timeout_s=5)
        assert list(stats) == [INFO_HASH]
        assert (stats[INFO_HASH].complete, stats[INFO_HASH].incomplete) == (0, 1)
        await client.announce_stopped()
        assert server.statistics().torrents == 0


async def test_scrape_through_the_scripted_server(scripted: ScriptedServer) -> None:
    stats = await http_scrape(scripted.url("/announce"), [INFO_HASH], timeout_s=5)
    assert (stats[INFO_HASH].complete, stats[INFO_HASH].downloaded) == (3, 4)
    with pytest.raises(TrackerFailure, match="no scrape URL"):
        await http_scrape(scripted.url("/x/tracker"), [INFO_HASH])


# -- aiohttp stays out of http:// announcing ------------------------------------

CHILD = textwrap.dedent(
    """
    import asyncio, json, sys
    from client.tracker_client import TrackerClient, TrackerClientConfig, TransferStats

    async def main(url):
        events = []
        done = asyncio.Event()
        def on_event(name, fields):
            events.append(name)
            done.set()
        client = TrackerClient(
            bytes(range(20)), b"-BS0100-aaaaaaaaaaaa", 7001, [[url]],
            lambda: TransferStats(uploaded=0, downloaded=0, left=1),
            lambda peers: None, TrackerClientConfig(timeout_s=5.0),
            on_event=on_event,
        )
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(client.run())
            await asyncio.wait_for(done.wait(), 10)
            run.cancel()
        await client.announce_stopped()
        loaded = [m for m in ("aiohttp", "yarl", "multidict") if m in sys.modules]
        print(json.dumps({"events": events, "loaded": loaded}))

    asyncio.run(main(sys.argv[1]))
    """
)


async def run_child(url: str) -> dict[str, list[str]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        url,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result: dict[str, list[str]] = json.loads(out)
    return result


async def test_announcing_over_http_does_not_import_aiohttp() -> None:
    async with TrackerServer(testing_config(interval_s=3600.0)) as server:
        result = await run_child(server.url)
        # 'started', then 'stopped'
        assert result == {"events": ["tracker_announce"] * 2, "loaded": []}
        assert server.statistics().torrents == 0  # 'stopped' arrived too


async def test_an_https_tracker_still_uses_aiohttp() -> None:
    # the control for the test above: nothing listens there, but the
    # attempt goes through aiohttp
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    result = await run_child(f"https://127.0.0.1:{port}/announce")
    assert result["events"] == ["tracker_error"]
    assert "aiohttp" in result["loaded"]
