"""The UDP tracker client (BEP 15): the pure core, then the asyncio driver and
TrackerClient over loopback against a scripted UDP tracker."""

from __future__ import annotations

import asyncio
import itertools
import random
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from client.core.announce import (
    AnnounceEvent,
    ScrapeStats,
    is_supported_tracker_url,
    is_udp_tracker_url,
)
from client.core.udp_tracker import (
    PROTOCOL_ID,
    AnnounceDone,
    Connection,
    ConnectionCache,
    ScrapeDone,
    SendPacket,
    UdpAnnounceParams,
    UdpAnnounceReply,
    UdpConnectReply,
    UdpErrorReply,
    UdpOutput,
    UdpScrapeParams,
    UdpScrapeReply,
    UdpTrackerTransaction,
    encode_announce_request,
    encode_connect_request,
    encode_scrape_request,
    parse_reply,
    parse_udp_tracker_url,
    retransmit_timeout,
)
from client.errors import TrackerFailure
from client.tracker_client import TrackerClient, TrackerClientConfig, TransferStats
from client.udp_tracker_client import UdpTrackerConfig, udp_announce, udp_scrape
from dht import PeerAddr
from tracker.core.addr import PeerAddr as TrackerAddr
from tracker.core.registry import SwarmRegistry
from tracker.core.udp import UdpTracker

IH = b"\xaa" * 20
PEER_ID = b"-BS0100-" + b"\x00\xff" * 6
PARAMS = UdpAnnounceParams(
    info_hash=IH,
    peer_id=PEER_ID,
    downloaded=1,
    left=2,
    uploaded=3,
    event=AnnounceEvent.STARTED,
    key=0xDEADBEEF,
    num_want=-1,
    port=6881,
)
FAST_UDP = UdpTrackerConfig(retransmit_base_s=0.05, max_retransmits=8, timeout_s=3.0)


def tid_of(packet: bytes) -> int:
    return int(struct.unpack_from(">I", packet, 12)[0])


def action_of(packet: bytes) -> int:
    return int(struct.unpack_from(">I", packet, 8)[0])


def sent(outputs: list[UdpOutput]) -> bytes:
    assert len(outputs) == 1
    assert isinstance(outputs[0], SendPacket)
    return outputs[0].payload


def connect_reply(tid: int, cid: int = 0x1122334455667788) -> bytes:
    return struct.pack(">IIQ", 0, tid, cid)


# -- codec ---------------------------------------------------------------------


def test_connect_request_exact_bytes() -> None:
    assert encode_connect_request(0x01020304) == bytes.fromhex(
        "00000417271019800000000001020304"
    )


def test_announce_request_layout_follows_bep_15() -> None:
    packet = encode_announce_request(7, 9, PARAMS)
    assert len(packet) == 98
    assert struct.unpack_from(">QII", packet) == (7, 1, 9)
    assert packet[16:36] == IH
    assert packet[36:56] == PEER_ID
    # downloaded, left, uploaded, event (2 = started), IP 0, key, num_want, port
    assert struct.unpack_from(">qqqIIIiH", packet, 56) == (
        1,
        2,
        3,
        2,
        0,
        0xDEADBEEF,
        -1,
        6881,
    )


@pytest.mark.parametrize(
    ("event", "code"),
    [
        (AnnounceEvent.EMPTY, 0),
        (AnnounceEvent.COMPLETED, 1),
        (AnnounceEvent.STARTED, 2),
        (AnnounceEvent.STOPPED, 3),
    ],
)
def test_event_codes(event: AnnounceEvent, code: int) -> None:
    params = UdpAnnounceParams(
        info_hash=IH,
        peer_id=PEER_ID,
        downloaded=0,
        left=0,
        uploaded=0,
        event=event,
        key=0,
        num_want=0,
        port=1,
    )
    assert struct.unpack_from(">I", encode_announce_request(1, 1, params), 80) == (
        code,
    )


def test_scrape_request_exact_bytes() -> None:
    packet = encode_scrape_request(5, 6, [IH, b"\xbb" * 20])
    assert packet == struct.pack(">QII", 5, 2, 6) + IH + b"\xbb" * 20


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"info_hash": b"x"}, "info_hash is 1 bytes"),
        ({"port": 0}, "port 0"),
        ({"left": -1}, "left -1"),
        ({"key": 1 << 32}, "key"),
        ({"num_want": -2}, "num_want"),
    ],
)
def test_bad_announce_params(kwargs: dict[str, Any], fragment: str) -> None:
    fields = {
        "info_hash": IH,
        "peer_id": PEER_ID,
        "downloaded": 0,
        "left": 0,
        "uploaded": 0,
        "event": AnnounceEvent.EMPTY,
        "key": 0,
        "num_want": 0,
        "port": 1,
        **kwargs,
    }
    with pytest.raises(TrackerFailure, match=fragment):
        UdpAnnounceParams(**fields)


def test_bad_scrape_params() -> None:
    with pytest.raises(TrackerFailure, match="1 to 74"):
        UdpScrapeParams(info_hashes=())
    with pytest.raises(TrackerFailure, match="1 to 74"):
        UdpScrapeParams(info_hashes=(IH,) * 75)
    with pytest.raises(TrackerFailure, match="19 bytes"):
        UdpScrapeParams(info_hashes=(b"x" * 19,))


PEER_BYTES = bytes([127, 0, 0, 1, 0x1A, 0xE1, 127, 0, 0, 2, 0, 0])  # 2nd has port 0


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (connect_reply(3, 9), UdpConnectReply(transaction_id=3, connection_id=9)),
        (
            struct.pack(">IIIII", 1, 3, 1800, 4, 5) + PEER_BYTES + b"\x7f",
            UdpAnnounceReply(
                transaction_id=3,
                interval=1800,
                leechers=4,
                seeders=5,
                peers=(PeerAddr("127.0.0.1", 6881),),
            ),
        ),
        (
            struct.pack(">IIIII", 2, 3, 1, 2, 3) + b"\x00",
            UdpScrapeReply(
                transaction_id=3,
                entries=(ScrapeStats(complete=1, downloaded=2, incomplete=3),),
            ),
        ),
        (
            struct.pack(">II", 3, 3) + "nope é".encode(),
            UdpErrorReply(transaction_id=3, message="nope é"),
        ),
        (
            struct.pack(">II", 3, 3),
            UdpErrorReply(transaction_id=3, message="(no message)"),
        ),
    ],
)
def test_parse_reply(data: bytes, expected: object) -> None:
    assert parse_reply(data) == expected


def test_parse_reply_ipv6_stride() -> None:
    data = struct.pack(">IIIII", 1, 3, 60, 0, 1) + bytes(15) + b"\x01\x1a\xe1"
    reply = parse_reply(data, ipv6=True)
    assert isinstance(reply, UdpAnnounceReply)
    assert reply.peers == (PeerAddr("::1", 6881),)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"\x00" * 7, "7 bytes"),
        (struct.pack(">II", 0, 1) + b"\x00" * 4, "connect response is 12 bytes"),
        (struct.pack(">II", 1, 1) + b"\x00" * 4, "announce response is 12 bytes"),
        (struct.pack(">II", 9, 1), "unknown action 9"),
    ],
)
def test_parse_reply_rejects(data: bytes, fragment: str) -> None:
    with pytest.raises(TrackerFailure, match=fragment):
        parse_reply(data)


@given(st.binary(max_size=120), st.booleans())
def test_parse_reply_returns_or_raises_tracker_failure(data: bytes, v6: bool) -> None:
    with suppress(TrackerFailure):
        parse_reply(data, ipv6=v6)


def test_retransmit_schedule_is_15_times_2_to_the_n_up_to_8() -> None:
    assert [retransmit_timeout(n, 15.0) for n in range(10)] == [
        15,
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3840,
        3840,
    ]
    assert retransmit_timeout(2, 0.01) == pytest.approx(0.04)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("udp://127.0.0.1:6969/announce", ("127.0.0.1", 6969)),
        ("UDP://tracker.example:80", ("tracker.example", 80)),
        ("udp://[::1]:6969/announce?x=1", ("::1", 6969)),
    ],
)
def test_parse_udp_tracker_url(url: str, expected: tuple[str, int]) -> None:
    assert parse_udp_tracker_url(url) == expected
    assert is_supported_tracker_url(url)
    assert is_udp_tracker_url(url)


@pytest.mark.parametrize(
    "url", ["udp://127.0.0.1/announce", "udp://:80", "http://t:1/a", "udp://h:99999"]
)
def test_bad_udp_tracker_urls(url: str) -> None:
    with pytest.raises(TrackerFailure):
        parse_udp_tracker_url(url)
    if url.startswith("udp"):
        assert not is_supported_tracker_url(url)


# -- one transaction -------------------------------------------------------------


def transaction(
    request: UdpAnnounceParams | UdpScrapeParams = PARAMS, **kw: Any
) -> UdpTrackerTransaction:
    kw.setdefault("retransmit_base_s", 15.0)
    return UdpTrackerTransaction(request, rng=random.Random(3), **kw)


def test_normal_announce() -> None:
    txn = transaction()
    connect = sent(txn.start(0.0))
    assert connect[:12] == struct.pack(">QI", PROTOCOL_ID, 0)
    announce = sent(txn.handle_datagram(connect_reply(tid_of(connect), 42), 1.0))
    assert struct.unpack_from(">QI", announce) == (42, 1)
    assert tid_of(announce) != tid_of(connect)
    reply = struct.pack(">IIIII", 1, tid_of(announce), 900, 1, 2) + PEER_BYTES[:6]
    (done,) = txn.handle_datagram(reply, 2.0)
    assert isinstance(done, AnnounceDone)
    assert done.response.interval == 900
    assert (done.response.complete, done.response.incomplete) == (2, 1)
    assert done.response.peers == (PeerAddr("127.0.0.1", 6881),)
    assert txn.done
    assert txn.connection == Connection(connection_id=42, obtained_at=1.0)
    assert txn.next_deadline() == float("inf")


def test_connect_times_out_per_bep_15() -> None:
    # BEP 15 example: connect requests at t = 0, 15, 45, 105, ...
    txn = transaction()
    times = [0.0]
    first = sent(txn.start(0.0))
    for _ in range(4):
        assert txn.tick(txn.next_deadline() - 0.001) == []
        now = txn.next_deadline()
        packet = sent(txn.tick(now))
        assert action_of(packet) == 0
        times.append(now)
    assert times == [0, 15, 45, 105, 225]
    assert packet == first  # the same request is resent


def test_announce_times_out_per_bep_15() -> None:
    # BEP 15 example (shifted by 1 s: we announce as soon as we connect):
    # announce at 1, 16, 46, then a new connect at 106 (id older than a
    # minute), connect again at 226
    txn = transaction()
    connect = sent(txn.start(0.0))
    log = [
        (1.0, action_of(sent(txn.handle_datagram(connect_reply(tid_of(connect)), 1))))
    ]
    for _ in range(4):
        now = txn.next_deadline()
        log.append((now, action_of(sent(txn.tick(now)))))
    assert log == [(1, 1), (16, 1), (46, 1), (106, 0), (226, 0)]


def test_gives_up_after_max_retransmits() -> None:
    txn = transaction(retransmit_base_s=1.0, max_retransmits=2)
    txn.start(0.0)
    txn.tick(1.0)
    txn.tick(3.0)
    with pytest.raises(TrackerFailure, match="after 3 packets"):
        txn.tick(7.0)


def test_foreign_transaction_ids_and_short_packets_are_ignored() -> None:
    txn = transaction()
    connect = sent(txn.start(0.0))
    assert txn.handle_datagram(connect_reply(tid_of(connect) ^ 1), 1.0) == []
    assert txn.handle_datagram(b"\x00\x00\x00", 1.0) == []
    assert not txn.done


def test_late_answer_to_a_replaced_transaction_id_is_ignored() -> None:
    txn = transaction()
    connect = sent(txn.start(0.0))
    txn.handle_datagram(connect_reply(tid_of(connect)), 1.0)
    # a duplicate connect response (from a retransmission) arrives late
    assert txn.handle_datagram(connect_reply(tid_of(connect)), 1.5) == []


def test_error_reply_fails_with_the_trackers_message() -> None:
    txn = transaction()
    connect = sent(txn.start(0.0))
    with pytest.raises(TrackerFailure, match="torrent not registered"):
        txn.handle_datagram(
            struct.pack(">II", 3, tid_of(connect)) + b"torrent not registered", 1.0
        )


def test_cached_connection_id_skips_connect() -> None:
    cached = Connection(connection_id=77, obtained_at=0.0)
    txn = transaction(connection=cached)
    packet = sent(txn.start(59.0))
    assert struct.unpack_from(">QI", packet) == (77, 1)
    stale = transaction(connection=cached)
    assert action_of(sent(stale.start(60.0))) == 0


def test_error_with_cached_id_reconnects_once() -> None:
    txn = transaction(connection=Connection(connection_id=77, obtained_at=0.0))
    announce = sent(txn.start(1.0))
    err = struct.pack(">II", 3, tid_of(announce)) + b"connection id is invalid"
    connect = sent(txn.handle_datagram(err, 2.0))
    assert action_of(connect) == 0
    announce = sent(txn.handle_datagram(connect_reply(tid_of(connect), 5), 3.0))
    with pytest.raises(TrackerFailure, match="invalid"):
        txn.handle_datagram(struct.pack(">II", 3, tid_of(announce)) + b"invalid", 4)


def test_scrape_transaction_maps_entries_to_hashes() -> None:
    other = b"\xbb" * 20
    txn = transaction(UdpScrapeParams(info_hashes=(IH, other)))
    connect = sent(txn.start(0.0))
    scrape = sent(txn.handle_datagram(connect_reply(tid_of(connect)), 0.5))
    assert action_of(scrape) == 2
    reply = struct.pack(">IIIIIIII", 2, tid_of(scrape), 1, 2, 3, 4, 5, 6)
    (done,) = txn.handle_datagram(reply, 1.0)
    assert done == ScrapeDone(
        stats={
            IH: ScrapeStats(complete=1, downloaded=2, incomplete=3),
            other: ScrapeStats(complete=4, downloaded=5, incomplete=6),
        }
    )


def test_short_scrape_answer_and_wrong_kind_fail() -> None:
    txn = transaction(UdpScrapeParams(info_hashes=(IH, IH)))
    scrape = sent(txn.handle_datagram(connect_reply(tid_of(sent(txn.start(0))), 1), 0))
    with pytest.raises(TrackerFailure, match="1 entries for 2"):
        txn.handle_datagram(struct.pack(">IIIII", 2, tid_of(scrape), 1, 2, 3), 1.0)
    txn = transaction()
    announce = sent(
        txn.handle_datagram(connect_reply(tid_of(sent(txn.start(0))), 1), 0)
    )
    with pytest.raises(TrackerFailure, match="as a scrape"):
        txn.handle_datagram(struct.pack(">II", 2, tid_of(announce)), 1.0)


@given(
    action=st.integers(min_value=0, max_value=4),
    body=st.binary(max_size=64),
    junk=st.binary(max_size=64),
)
def test_any_datagram_is_ignored_answered_or_a_tracker_failure(
    action: int, body: bytes, junk: bytes
) -> None:
    txn = transaction()
    connect = sent(txn.start(0.0))
    for payload in (junk, struct.pack(">II", action, tid_of(connect)) + body):
        with suppress(TrackerFailure):
            txn.handle_datagram(payload, 1.0)


def test_connection_cache_expires_and_is_bounded() -> None:
    cache = ConnectionCache(max_entries=2)
    cache.put("a:1", Connection(connection_id=1, obtained_at=0.0))
    assert cache.get("a:1", 59.9) == Connection(connection_id=1, obtained_at=0.0)
    assert cache.get("a:1", 60.0) is None
    assert cache.get("a:1", 1.0) is None  # dropped once expired
    for n in range(3):
        cache.put(f"h{n}:1", Connection(connection_id=n, obtained_at=0.0))
    assert cache.get("h0:1", 1.0) is None
    assert cache.get("h2:1", 1.0) is not None
    cache.forget("h2:1")
    assert cache.get("h2:1", 1.0) is None


def test_client_and_tracker_cores_joined_without_sockets() -> None:
    registry = SwarmRegistry(peer_timeout_s=100.0, rng=random.Random(1))
    tracker = UdpTracker(
        registry, secret=b"k" * 32, interval_s=60.0, default_numwant=50, max_numwant=50
    )
    addr = TrackerAddr("127.0.0.1", 5000)
    results = []
    for n, left in ((1, 0), (2, 5)):
        params = UdpAnnounceParams(
            info_hash=IH,
            peer_id=bytes([n]) * 20,
            downloaded=0,
            left=left,
            uploaded=0,
            event=AnnounceEvent.STARTED,
            key=n,
            num_want=-1,
            port=6000 + n,
        )
        txn = transaction(params)
        outputs = txn.start(0.0)
        while not txn.done:
            reply = tracker.handle_datagram(sent(outputs), addr, 1.0)
            assert reply is not None
            outputs = txn.handle_datagram(reply, 1.0)
        (done,) = outputs
        assert isinstance(done, AnnounceDone)
        results.append(done.response)
    assert results[1].peers == (PeerAddr("127.0.0.1", 6001),)
    assert (results[1].complete, results[1].incomplete) == (1, 1)
    assert results[1].interval == 60


# -- the asyncio driver over loopback ------------------------------------------------


class ScriptedUdpTracker(asyncio.DatagramProtocol):
    """The real tracker core behind a socket that can drop the first packets."""

    def __init__(self, drop: int = 0, mute: bool = False) -> None:
        self.drop = drop
        self.mute = mute
        self.error: bytes | None = None  # answer every request with this error
        self.received: list[tuple[float, int]] = []  # (loop time, action)
        self.registry = SwarmRegistry(peer_timeout_s=100.0, rng=random.Random(1))
        self.core = UdpTracker(
            self.registry,
            secret=b"k" * 32,
            interval_s=1800.0,
            default_numwant=50,
            max_numwant=50,
        )
        self.transport: asyncio.DatagramTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        loop = asyncio.get_running_loop()
        self.received.append((loop.time(), action_of(data.ljust(12))))
        if self.mute or self.drop > 0:
            self.drop -= 1
            return
        reply = self.core.handle_datagram(
            data, TrackerAddr(addr[0], addr[1]), loop.time()
        )
        if self.error is not None and action_of(data) != 0:
            reply = struct.pack(">II", 3, tid_of(data)) + self.error
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def actions(self) -> list[int]:
        return [action for _, action in self.received]


@asynccontextmanager
async def scripted_tracker(**kw: Any) -> AsyncIterator[tuple[ScriptedUdpTracker, str]]:
    loop = asyncio.get_running_loop()
    protocol = ScriptedUdpTracker(**kw)
    transport, _ = await loop.create_datagram_endpoint(
        lambda: protocol, local_addr=("127.0.0.1", 0)
    )
    protocol.transport = transport
    port = transport.get_extra_info("sockname")[1]
    try:
        yield protocol, f"udp://127.0.0.1:{port}/announce"
    finally:
        transport.close()


async def announce(url: str, peer: int = 1, **kw: Any) -> Any:
    kw.setdefault("config", FAST_UDP)
    return await udp_announce(
        url,
        IH,
        bytes([peer]) * 20,
        6000 + peer,
        0,
        0,
        10,
        AnnounceEvent.STARTED,
        50,
        peer,
        **kw,
    )


async def test_announce_and_scrape_over_loopback() -> None:
    async with scripted_tracker() as (server, url):
        await announce(url, 1)
        response = await announce(url, 2)
        assert response.peers == (PeerAddr("127.0.0.1", 6001),)
        assert response.interval == 1800
        stats = await udp_scrape(url, [IH], config=FAST_UDP)
    assert stats == {IH: ScrapeStats(complete=0, downloaded=0, incomplete=2)}
    assert server.actions() == [0, 1, 0, 1, 0, 2]  # no cache given: connect each time


async def test_connection_id_is_cached_for_a_minute() -> None:
    cache = ConnectionCache()
    async with scripted_tracker() as (server, url):
        await announce(url, 1, cache=cache)
        await announce(url, 2, cache=cache)
        await udp_scrape(url, [IH], config=FAST_UDP, cache=cache)
    assert server.actions() == [0, 1, 1, 2]


async def test_dropped_packets_are_retransmitted_with_backoff() -> None:
    async with scripted_tracker(drop=3) as (server, url):
        response = await announce(url)
    assert response.incomplete == 1
    times = [t for t, _ in server.received]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # three connects dropped: resent after 0.05, 0.1, 0.2 s; then it flows
    assert server.actions() == [0, 0, 0, 0, 1]
    assert gaps[0] >= 0.045
    assert gaps[1] >= 0.095
    assert gaps[2] >= 0.195


async def test_silent_tracker_is_a_tracker_failure_after_the_timeout() -> None:
    config = UdpTrackerConfig(retransmit_base_s=0.05, timeout_s=0.3)
    async with scripted_tracker(mute=True) as (server, url):
        with pytest.raises(TrackerFailure, match=r"no answer within 0\.3 s") as info:
            await announce(url, config=config)
    assert info.value.url == url
    assert 2 <= len(server.received) <= 4  # 0, 0.05, 0.15 (then 0.35 is too late)


async def test_max_retransmits_fails_before_the_timeout() -> None:
    config = UdpTrackerConfig(retransmit_base_s=0.02, max_retransmits=1, timeout_s=5)
    async with scripted_tracker(mute=True) as (server, url):
        with pytest.raises(TrackerFailure, match="after 2 packets"):
            await announce(url, config=config)
    assert len(server.received) == 2


async def test_closed_port_is_a_tracker_failure() -> None:
    async with scripted_tracker() as (_, url):
        pass  # closed again: nothing listens there now
    with pytest.raises(TrackerFailure, match=r"ConnectionRefused|no answer"):
        await announce(
            url, config=UdpTrackerConfig(retransmit_base_s=0.05, timeout_s=1)
        )


async def test_error_packet_is_a_tracker_failure_and_forgets_the_id() -> None:
    cache = ConnectionCache()
    async with scripted_tracker() as (server, url):
        await announce(url, cache=cache)
        key = url[len("udp://") :].split("/")[0]
        assert cache.get(key, asyncio.get_running_loop().time()) is not None
        server.error = b"torrent not allowed here"
        with pytest.raises(TrackerFailure, match="torrent not allowed here"):
            await announce(url, cache=cache)
    assert cache.get(key, asyncio.get_running_loop().time()) is None
    # connect, announce; cached announce refused, so a fresh connect, refused
    assert server.actions() == [0, 1, 1, 0, 1]


# -- TrackerClient with udp:// and http:// in its tiers ----------------------------

FAST_CLIENT = TrackerClientConfig(
    timeout_s=0.5,
    udp_retransmit_base_s=0.05,
    backoff_base_s=0.05,
    backoff_cap_s=1.0,
    min_announce_interval_s=0.05,
)


def stats() -> TransferStats:
    return TransferStats(uploaded=0, downloaded=0, left=5)


async def test_tracker_client_announces_over_udp_and_gets_peers() -> None:
    got: list[list[PeerAddr]] = []
    arrived = asyncio.Event()

    def on_peers(peers: list[PeerAddr]) -> None:
        got.append(peers)
        arrived.set()

    async with scripted_tracker() as (server, url):
        await announce(url, 9)  # someone already in the swarm
        client = TrackerClient(
            IH, PEER_ID, 6881, [[url]], stats, on_peers, FAST_CLIENT, random.Random(1)
        )
        async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
            run = tg.create_task(client.run())
            await arrived.wait()
            run.cancel()
        await asyncio.wait_for(client.announce_stopped(), 5)
    assert got[0] == [PeerAddr("127.0.0.1", 6009)]
    assert client.statistics().tracker_url == url
    assert client.statistics().skipped_urls == ()
    # connect, announce (cached id), stopped (cached id)
    assert server.actions()[2:] == [0, 1, 1]
    assert server.registry.statistics(0).leechers == 1  # only the scripted peer


async def test_tracker_client_falls_through_a_dead_udp_tracker_and_backs_off() -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    announced = asyncio.Event()

    def on_event(name: str, fields: dict[str, Any]) -> None:
        events.append((name, fields))
        if name == "tracker_announce":
            announced.set()

    async with (
        scripted_tracker(mute=True) as (dead, dead_url),
        scripted_tracker() as (_, alive_url),
    ):
        client = TrackerClient(
            IH,
            PEER_ID,
            6881,
            [[dead_url], [alive_url, "wss://127.0.0.1:1/x"]],
            stats,
            lambda peers: None,
            FAST_CLIENT,
            random.Random(1),
            on_event=on_event,
        )
        async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
            run = tg.create_task(client.run())
            await announced.wait()
            run.cancel()
    assert [name for name, _ in events][:2] == ["tracker_error", "tracker_announce"]
    assert events[0][1]["url"] == dead_url
    assert events[1][1]["url"] == alive_url
    assert client.statistics().skipped_urls == ("wss://127.0.0.1:1/x",)
    assert len(dead.received) >= 2  # the dead one got retransmissions


async def test_tracker_client_backs_off_when_its_only_udp_tracker_fails() -> None:
    errors: list[dict[str, Any]] = []
    three = asyncio.Event()

    def on_event(name: str, fields: dict[str, Any]) -> None:
        errors.append(fields)
        if len(errors) == 3:
            three.set()

    async with scripted_tracker(mute=True) as (_, url):
        client = TrackerClient(
            IH,
            PEER_ID,
            6881,
            [[url]],
            stats,
            lambda peers: None,
            TrackerClientConfig(
                timeout_s=0.1,
                udp_retransmit_base_s=0.05,
                backoff_base_s=0.05,
                backoff_cap_s=1.0,
            ),
            random.Random(1),
            on_event=on_event,
        )
        async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
            run = tg.create_task(client.run())
            await three.wait()
            run.cancel()
    assert [e["retry_in_s"] for e in errors[:3]] == [0.05, 0.1, 0.2]
    assert client.statistics().failures_in_row >= 3
