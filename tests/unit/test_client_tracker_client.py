"""The tracker announce driver (client/tracker_client.py) over loopback."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

import bencodepy
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

import tracker
from client.tracker_client import TrackerClient, TrackerClientConfig, TransferStats
from dht import PeerAddr
from tracker.core.request import AnnounceRequest, Event, parse_announce

MakeServer = Callable[[web.Application], Awaitable[TestServer]]

INFO_HASH = bytes([0x00, 0xFF, 0x80, 0x25, 0x26, 0x3D, 0x2B, 0x20]) + bytes(range(12))
PEER_A = b"-BS0100-" + b"\x00\xff" * 6
PEER_B = b"-BS0100-" + b"\x80%" * 6
SERVED_PEER = PeerAddr("127.0.0.9", 6999)

FAST = TrackerClientConfig(
    timeout_s=0.5,
    backoff_base_s=0.05,
    backoff_cap_s=5.0,
    min_announce_interval_s=0.05,
    stopped_timeout_s=2.0,
)


def stats() -> TransferStats:
    return TransferStats(uploaded=1, downloaded=2, left=3)


class FakeTracker:
    """A scripted tracker: per path, a list of behaviours, then 'ok'."""

    def __init__(self, interval: int = 3600) -> None:
        self.interval = interval
        self.scripts: dict[str, list[str]] = {}
        self.seen: list[tuple[float, str, AnnounceRequest]] = []
        self.release = asyncio.Event()  # frees hanging handlers at teardown
        self._arrived = asyncio.Event()
        self.app = web.Application()
        self.app.router.add_get("/{name}/announce", self._handle)

    def url(self, server: TestServer, name: str) -> str:
        return str(server.make_url(f"/{name}/announce"))

    async def wait_requests(self, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.seen) < count:
                self._arrived.clear()
                await self._arrived.wait()

    def gaps(self) -> list[float]:
        times = [t for t, _, _ in self.seen]
        return [b - a for a, b in itertools.pairwise(times)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        req = parse_announce(
            request.rel_url.raw_query_string,
            default_numwant=50,
            max_numwant=200,
            trust_ip=False,
        )
        script = self.scripts.get(request.path.split("/")[1], [])
        behaviour = script.pop(0) if script else "ok"
        self.seen.append((asyncio.get_running_loop().time(), request.path, req))
        self._arrived.set()
        if behaviour == "500":
            return web.Response(status=500, text="boom")
        if behaviour == "failure":
            return web.Response(body=bencodepy.encode({b"failure reason": b"go away"}))
        if behaviour == "junk":
            return web.Response(body=b"<html>not bencode</html>")
        if behaviour == "hang":
            await self.release.wait()
        body = {
            b"interval": self.interval,
            b"complete": 1,
            b"incomplete": 2,
            b"peers": bytes([127, 0, 0, 9]) + (6999).to_bytes(2, "big"),
        }
        return web.Response(body=bencodepy.encode(body))


class Events:
    """Collects (name, fields) events; lets a test wait for the n-th one."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self._arrived = asyncio.Event()

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        self.items.append((name, fields))
        self._arrived.set()

    def named(self, name: str) -> list[dict[str, Any]]:
        return [f for n, f in self.items if n == name]

    async def wait_for(self, name: str, count: int) -> None:
        async with asyncio.timeout(10):
            while len(self.named(name)) < count:
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
async def fake(aiohttp_server: Any) -> Any:
    tracker_ = FakeTracker()
    server: TestServer = await aiohttp_server(tracker_.app)
    yield tracker_, server
    tracker_.release.set()


def make_client(
    tiers: list[list[str]],
    *,
    peer_id: bytes = PEER_A,
    port: int = 7001,
    on_peers: Callable[[list[PeerAddr]], None] = lambda _: None,
    events: Events | None = None,
    config: TrackerClientConfig = FAST,
) -> TrackerClient:
    return TrackerClient(
        INFO_HASH,
        peer_id,
        port,
        tiers,
        stats,
        on_peers,
        config,
        random.Random(5),
        on_event=events,
    )


async def test_announce_to_real_tracker_server_gets_peers_back() -> None:
    cfg = tracker.testing_config(interval_s=3600.0)
    async with tracker.TrackerServer(cfg) as server, asyncio.TaskGroup() as tg:
        got: asyncio.Queue[list[PeerAddr]] = asyncio.Queue(maxsize=10)
        first_events = Events()
        first = make_client(
            [[server.url]], peer_id=PEER_A, port=7001, events=first_events
        )
        second = make_client(
            [[server.url]], peer_id=PEER_B, port=7002, on_peers=got.put_nowait
        )
        first_task = tg.create_task(first.run())
        await first_events.wait_for("tracker_announce", 1)
        second_task = tg.create_task(second.run())
        async with asyncio.timeout(10):
            peers = await got.get()
        assert peers == [PeerAddr("127.0.0.1", 7001)]
        snap = second.statistics()
        assert (snap.tracker_url, snap.announces, snap.peers_received) == (
            server.url,
            1,
            1,
        )
        assert (snap.complete, snap.incomplete) == (0, 2)
        assert snap.next_announce_delay_s == 3600
        first_task.cancel()
        second_task.cancel()
        await first.announce_stopped()
        assert server.statistics().leechers == 1
        await second.announce_stopped()
        assert server.statistics().torrents == 0


async def test_failing_tracker_retried_with_growing_backoff(fake: Any) -> None:
    fake_tracker, server = fake
    fake_tracker.interval = 0  # re-announce at the client's floor after a success
    fake_tracker.scripts["t"] = ["500", "failure", "hang", "junk", "ok", "500", "ok"]
    events = Events()
    client = make_client([[fake_tracker.url(server, "t")]], events=events)
    ticks = 0

    async def keep_working() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(client.run())
        worker = tg.create_task(keep_working())
        await fake_tracker.wait_requests(4)
        snap = client.statistics()
        assert snap.failures_in_row >= 3
        assert snap.tracker_url is None
        await fake_tracker.wait_requests(8)
        assert not run.done()
        run.cancel()
        worker.cancel()
    assert ticks > 0

    errors = events.named("tracker_error")
    retries = [f["retry_in_s"] for f in errors]
    # 4 failures (HTTP 500, failure reason, timeout, junk): delays double ...
    assert retries[:4] == [0.05, 0.1, 0.2, 0.4]
    # ... then a success resets the backoff, and the next failure starts over
    assert retries[4] == 0.05
    reasons = [f["reason"] for f in errors[:4]]
    assert reasons[0].startswith("HTTP 500")
    assert reasons[1] == "go away"
    assert reasons[2] == "no answer within 0.5 s"
    assert reasons[3].startswith("tracker response is not valid bencode")
    # the tracker saw the attempts spaced at least that far apart, growing
    gaps = fake_tracker.gaps()
    for gap, delay in zip(gaps[:4], [0.05, 0.1, 0.2, 0.4], strict=True):
        assert gap >= delay * 0.9
    assert gaps[3] > gaps[0]
    assert events.named("tracker_announce")[0]["peers"] == 1
    # 'started' is repeated until a tracker takes it, then regular announces
    seen_events = [r.event for _, _, r in fake_tracker.seen]
    assert seen_events[:5] == [Event.STARTED] * 5
    assert seen_events[5:8] == [Event.EMPTY] * 3


async def test_failure_logs_one_line_with_url(
    fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake_tracker, server = fake
    fake_tracker.scripts["t"] = ["500", "500"]
    url = fake_tracker.url(server, "t")
    client = make_client([[url]])
    with caplog.at_level(logging.INFO, logger="client.tracker_client"):
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(client.run())
            await fake_tracker.wait_requests(3)
            run.cancel()
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 2
    assert failures[0].levelno == logging.WARNING
    assert failures[1].levelno == logging.INFO
    for record in failures:
        message = record.getMessage()
        assert url in message
        assert "HTTP 500" in message
        assert "\n" not in message


async def test_tiers_rotate_and_success_moves_to_front(fake: Any) -> None:
    fake_tracker, server = fake
    fake_tracker.interval = 0
    for name in ("dead1", "dead2", "flaky"):
        fake_tracker.scripts[name] = ["500"] * 100
    fake_tracker.scripts["flaky"] = ["500"]
    tiers = [
        [fake_tracker.url(server, "dead1"), fake_tracker.url(server, "dead2")],
        [fake_tracker.url(server, "flaky"), fake_tracker.url(server, "good")],
    ]
    client = make_client(tiers)
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(client.run())
        await fake_tracker.wait_requests(9)
        run.cancel()
    paths = [path.split("/")[1] for _, path, _ in fake_tracker.seen]
    # round 1: all of tier 1 (shuffled) before tier 2, stopping at 'good'
    first_tier_2 = next(i for i, p in enumerate(paths) if p in ("flaky", "good"))
    assert sorted(paths[:2]) == ["dead1", "dead2"]
    assert first_tier_2 == 2
    end_round_1 = paths.index("good")
    # later rounds: tier 1 again, then 'good' first in tier 2 (BEP 12)
    assert sorted(paths[end_round_1 + 1 : end_round_1 + 3]) == ["dead1", "dead2"]
    assert paths[end_round_1 + 3] == "good"


async def test_announce_completed_and_stopped(fake: Any) -> None:
    fake_tracker, server = fake
    client = make_client([[fake_tracker.url(server, "t")]])
    await client.announce_stopped()  # never announced: nothing to tell
    assert fake_tracker.seen == []
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(client.run())
        await fake_tracker.wait_requests(1)
        await client.announce_completed()
        assert len(fake_tracker.seen) == 2
        run.cancel()
    await client.announce_stopped()
    events = [r.event for _, _, r in fake_tracker.seen]
    assert events == [Event.STARTED, Event.COMPLETED, Event.STOPPED]
    stopped = fake_tracker.seen[-1][2]
    assert stopped.numwant == 0
    assert (stopped.uploaded, stopped.downloaded, stopped.left) == (1, 2, 3)
    assert stopped.info_hash == INFO_HASH
    assert stopped.peer_id == PEER_A


async def test_announce_stopped_is_bounded_by_its_timeout(fake: Any) -> None:
    fake_tracker, server = fake
    events = Events()
    client = make_client([[fake_tracker.url(server, "t")]], events=events)
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(client.run())
        await events.wait_for("tracker_announce", 1)
        run.cancel()
    fake_tracker.scripts["t"] = ["hang"]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await client.announce_stopped(timeout_s=0.5)
    assert loop.time() - started < 2
    assert fake_tracker.seen[-1][2].event is Event.STOPPED


async def test_completed_retried_when_tracker_down(fake: Any) -> None:
    fake_tracker, server = fake
    fake_tracker.interval = 0
    client = make_client([[fake_tracker.url(server, "t")]])
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(client.run())
        await fake_tracker.wait_requests(1)
        fake_tracker.scripts["t"] = ["500"]
        await client.announce_completed()
        await fake_tracker.wait_requests(3)
        run.cancel()
    events = [r.event for _, _, r in fake_tracker.seen[:3]]
    assert events == [Event.STARTED, Event.COMPLETED, Event.COMPLETED]


async def test_unsupported_trackers_are_skipped_with_one_warning(
    fake: Any, caplog: pytest.LogCaptureFixture
) -> None:
    fake_tracker, server = fake
    http_url = fake_tracker.url(server, "t")
    with caplog.at_level(logging.WARNING, logger="client.tracker_client"):
        client = make_client([[http_url], ["wss://x/y"]])
        async with asyncio.TaskGroup() as tg:
            run = tg.create_task(client.run())
            await fake_tracker.wait_requests(1)
            run.cancel()
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1
    assert "wss://x/y" in warnings[0]
    assert client.statistics().skipped_urls == ("wss://x/y",)


async def test_no_usable_tracker_run_returns() -> None:
    await asyncio.wait_for(make_client([]).run(), 1)
    await asyncio.wait_for(make_client([["wss://127.0.0.1:1/x"]]).run(), 1)


async def test_unreachable_tracker_is_a_failure_not_a_crash() -> None:
    # bind then close a socket: nothing listens on that loopback port
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    events = Events()
    client = make_client([[f"http://127.0.0.1:{port}/announce"]], events=events)
    async with asyncio.TaskGroup() as tg:
        run = tg.create_task(client.run())
        await events.wait_for("tracker_error", 2)
        run.cancel()
    snap = client.statistics()
    assert snap.last_error is not None
    assert snap.last_error == (
        f"cannot connect to 127.0.0.1:{port}: "
        "ConnectionRefusedError: Connection refused"
    )
    assert snap.last_error_url == f"http://127.0.0.1:{port}/announce"
