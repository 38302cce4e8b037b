"""The UDP tracker core (tracker/core/udp.py, BEP 15): bytes in, bytes out."""

from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tracker import TrackerServer, testing_config
from tracker.core.addr import PeerAddr
from tracker.core.registry import SwarmRegistry
from tracker.core.request import Event, InfoHash
from tracker.core.udp import (
    PROTOCOL_ID,
    Action,
    ConnectionIds,
    UdpAnnounceRequest,
    UdpConnectRequest,
    UdpScrapeRequest,
    UdpTracker,
    parse_request,
)
from tracker.errors import AnnounceRequestError, TrackerError

SECRET = b"s" * 32
IH = b"\xaa" * 20
CLIENT = PeerAddr("127.0.0.1", 40000)


def make_tracker(**kw: object) -> tuple[UdpTracker, SwarmRegistry]:
    registry = SwarmRegistry(peer_timeout_s=100.0, rng=random.Random(1))
    options: dict[str, object] = {
        "secret": SECRET,
        "interval_s": 1800.0,
        "default_numwant": 50,
        "max_numwant": 200,
        **kw,
    }
    return UdpTracker(registry, **options), registry  # type: ignore[arg-type]


def connect_packet(tid: int) -> bytes:
    return struct.pack(">QII", PROTOCOL_ID, 0, tid)


def announce_packet(
    cid: int,
    tid: int,
    *,
    peer: int = 1,
    left: int = 10,
    event: int = 2,
    ip: int = 0,
    key: int = 0x1234,
    num_want: int = -1,
    port: int = 6881,
    info_hash: bytes = IH,
) -> bytes:
    return struct.pack(
        ">QII20s20sqqqIIIiH",
        cid,
        1,
        tid,
        info_hash,
        bytes([peer]) * 20,
        0,
        left,
        0,
        event,
        ip,
        key,
        num_want,
        port,
    )


def connect(tracker: UdpTracker, addr: PeerAddr = CLIENT, now: float = 0.0) -> int:
    reply = tracker.handle_datagram(connect_packet(5), addr, now)
    assert reply is not None
    action, tid, cid = struct.unpack(">IIQ", reply)
    assert (action, tid) == (0, 5)
    return int(cid)


def error_text(reply: bytes | None, tid: int) -> str:
    assert reply is not None
    action, echoed = struct.unpack_from(">II", reply)
    assert (action, echoed) == (Action.ERROR, tid)
    return reply[8:].decode()


# -- parsing -------------------------------------------------------------------


def test_parse_connect_announce_and_scrape() -> None:
    assert parse_request(connect_packet(9)) == UdpConnectRequest(transaction_id=9)
    announce = parse_request(announce_packet(77, 3, event=3, num_want=20))
    assert isinstance(announce, UdpAnnounceRequest)
    assert (announce.connection_id, announce.transaction_id) == (77, 3)
    assert announce.event is Event.STOPPED
    assert (announce.num_want, announce.port, announce.key) == (20, 6881, 0x1234)
    scrape = parse_request(struct.pack(">QII", 77, 2, 4) + IH + b"\xbb" * 20)
    assert scrape == UdpScrapeRequest(
        connection_id=77,
        transaction_id=4,
        info_hashes=(InfoHash(IH), InfoHash(b"\xbb" * 20)),
    )


def test_announce_options_after_98_bytes_are_ignored() -> None:
    # BEP 15: sizes may grow (BEP 41 options follow the request)
    request = parse_request(announce_packet(1, 1) + b"\x02\x05/ann")
    assert isinstance(request, UdpAnnounceRequest)


@pytest.mark.parametrize(
    ("packet", "fragment"),
    [
        (struct.pack(">QII", 1, 0, 9), "protocol id"),
        (struct.pack(">QII", 1, 7, 9), "unknown action 7"),
        (announce_packet(1, 9)[:97], "97 bytes"),
        (announce_packet(1, 9, event=4), "event 4"),
        (announce_packet(1, 9, port=0), "port 0"),
        (announce_packet(1, 9, left=-1), "left -1 is negative"),
        (struct.pack(">QII", 1, 2, 9), "names no info_hash"),
        (struct.pack(">QII", 1, 2, 9) + IH + b"x", "1 stray bytes"),
        (struct.pack(">QII", 1, 2, 9) + IH * 75, "cap is 74"),
    ],
)
def test_bad_requests_get_an_error_packet(packet: bytes, fragment: str) -> None:
    tracker, _ = make_tracker()
    with pytest.raises(AnnounceRequestError, match=fragment):
        parse_request(packet)
    assert fragment in error_text(tracker.handle_datagram(packet, CLIENT, 0.0), 9)
    assert tracker.statistics().errors == 1


def test_packet_without_a_transaction_id_is_dropped() -> None:
    tracker, _ = make_tracker()
    assert tracker.handle_datagram(b"\x00" * 15, CLIENT, 0.0) is None
    assert tracker.statistics().dropped == 1


# -- connection ids --------------------------------------------------------------


def test_connection_id_is_accepted_for_two_minutes_and_no_longer() -> None:
    ids = ConnectionIds(SECRET)
    cid = ids.issue("127.0.0.1", 59.9)  # the very end of a bucket
    assert ids.is_valid(cid, "127.0.0.1", 59.9 + 120.0)
    assert not ids.is_valid(cid, "127.0.0.1", 180.0)
    issued_early = ids.issue("127.0.0.1", 0.0)  # the start of a bucket
    assert ids.is_valid(issued_early, "127.0.0.1", 179.9)


def test_connection_id_is_bound_to_the_ip_and_the_secret() -> None:
    ids = ConnectionIds(SECRET)
    cid = ids.issue("127.0.0.1", 0.0)
    assert not ids.is_valid(cid, "127.0.0.2", 0.0)
    assert not ConnectionIds(b"t" * 32).is_valid(cid, "127.0.0.1", 0.0)
    assert not ids.is_valid(PROTOCOL_ID, "127.0.0.1", 0.0)


def test_short_secret_is_refused() -> None:
    with pytest.raises(AnnounceRequestError, match="at least 16"):
        ConnectionIds(b"short")


def test_request_with_unknown_or_expired_connection_id_gets_an_error() -> None:
    tracker, registry = make_tracker()
    cid = connect(tracker)
    text = error_text(
        tracker.handle_datagram(announce_packet(cid + 1, 8), CLIENT, 1), 8
    )
    assert "connection id" in text
    expired = tracker.handle_datagram(announce_packet(cid, 8), CLIENT, 200.0)
    assert "connection id" in error_text(expired, 8)
    assert registry.statistics(0).announces == 0


def test_connection_id_works_from_another_port_of_the_same_ip() -> None:
    tracker, _ = make_tracker()
    cid = connect(tracker)
    reply = tracker.handle_datagram(
        announce_packet(cid, 8), PeerAddr("127.0.0.1", 40001), 1.0
    )
    assert reply is not None
    assert reply[:4] == b"\x00\x00\x00\x01"


# -- answers ---------------------------------------------------------------------


def test_announce_answer_exact_bytes() -> None:
    tracker, _ = make_tracker()
    first = PeerAddr("127.0.0.1", 1)
    second = PeerAddr("127.0.0.2", 2)
    cid = connect(tracker, first)
    assert tracker.handle_datagram(announce_packet(cid, 1, left=0), first, 1.0) == (
        struct.pack(">IIIII", 1, 1, 1800, 0, 1)  # we were the first: no peers
    )
    cid2 = connect(tracker, second)
    reply = tracker.handle_datagram(
        announce_packet(cid2, 0xFFFFFFFF, peer=2, port=7000), second, 2.0
    )
    # action, tid echoed, interval, leechers 1, seeders 1, then 127.0.0.1:6881
    assert reply == (
        struct.pack(">IIIII", 1, 0xFFFFFFFF, 1800, 1, 1)
        + bytes([127, 0, 0, 1, 26, 225])
    )


def test_num_want_default_and_cap() -> None:
    tracker, _ = make_tracker(default_numwant=2, max_numwant=3)
    cids = {}
    for n in range(1, 7):
        addr = PeerAddr(f"127.0.0.{n}", 1000)
        cids[n] = connect(tracker, addr)
        tracker.handle_datagram(announce_packet(cids[n], 1, peer=n), addr, 1.0)
    addr = PeerAddr("127.0.0.1", 1000)

    def peers(num_want: int) -> int:
        reply = tracker.handle_datagram(
            announce_packet(cids[1], 1, num_want=num_want), addr, 2.0
        )
        assert reply is not None
        return (len(reply) - 20) // 6

    assert peers(-1) == 2
    assert peers(0) == 0
    assert peers(100) == 3


def test_ip_field_is_ignored_unless_trusted() -> None:
    for trust, expected in ((False, "127.0.0.1"), (True, "10.1.2.3")):
        tracker, _registry = make_tracker(trust_ip=trust)
        cid = connect(tracker)
        tracker.handle_datagram(announce_packet(cid, 1, ip=0x0A010203), CLIENT, 1)
        other = PeerAddr("127.0.0.9", 1)
        cid2 = connect(tracker, other)
        reply = tracker.handle_datagram(announce_packet(cid2, 1, peer=2), other, 1)
        assert reply is not None
        host = ".".join(str(b) for b in reply[20:24])
        assert host == expected


def test_ipv6_requester_gets_18_byte_ipv6_peers_only() -> None:
    tracker, _ = make_tracker()
    v4, v6a, v6b = PeerAddr("127.0.0.1", 1), PeerAddr("::1", 2), PeerAddr("::2", 3)
    for n, addr in enumerate((v4, v6a, v6b), start=1):
        cid = connect(tracker, addr)
        reply = tracker.handle_datagram(announce_packet(cid, 1, peer=n), addr, 1)
    assert reply is not None
    assert len(reply) == 20 + 18  # ::1 only; the IPv4 peer is left out
    assert reply[20:36] == bytes(15) + b"\x01"


def test_scrape_answers_in_order_with_zeros_for_unknown() -> None:
    tracker, _ = make_tracker()
    cid = connect(tracker)
    tracker.handle_datagram(announce_packet(cid, 1, left=0, event=1), CLIENT, 1.0)
    unknown = b"\xcc" * 20
    reply = tracker.handle_datagram(
        struct.pack(">QII", cid, 2, 6) + unknown + IH + IH, CLIENT, 2.0
    )
    assert reply == struct.pack(
        ">II" + "III" * 3, 2, 6, 0, 0, 0, 1, 1, 0, 1, 1, 0
    )  # seeders, completed, leechers per infohash
    assert tracker.statistics().scrapes == 1


def test_stopped_peer_leaves_the_swarm() -> None:
    tracker, registry = make_tracker()
    cid = connect(tracker)
    tracker.handle_datagram(announce_packet(cid, 1), CLIENT, 1.0)
    assert registry.statistics(1.0).leechers == 1
    tracker.handle_datagram(announce_packet(cid, 2, event=3), CLIENT, 2.0)
    assert registry.statistics(2.0).torrents == 0


def test_registry_refusal_becomes_an_error_packet() -> None:
    registry = SwarmRegistry(peer_timeout_s=100.0, rng=random.Random(1), max_torrents=0)
    tracker = UdpTracker(
        registry, secret=SECRET, interval_s=1.0, default_numwant=5, max_numwant=5
    )
    cid = connect(tracker)
    text = error_text(tracker.handle_datagram(announce_packet(cid, 3), CLIENT, 1), 3)
    assert "cap" in text


# -- junk never crashes ------------------------------------------------------------


def check_reply(data: bytes, reply: bytes | None) -> None:
    if len(data) < 16:
        assert reply is None
        return
    assert reply is not None
    action, tid = struct.unpack_from(">II", reply)
    assert action in (0, 1, 2, 3)
    assert tid == struct.unpack_from(">I", data, 12)[0]


@given(st.binary(max_size=200))
def test_any_datagram_gets_a_reply_or_is_dropped(data: bytes) -> None:
    tracker, _ = make_tracker()
    check_reply(data, tracker.handle_datagram(data, CLIENT, 0.0))


@given(
    action=st.integers(min_value=0, max_value=4),
    tid=st.integers(min_value=0, max_value=0xFFFFFFFF),
    body=st.binary(max_size=1600),
)
def test_any_body_after_a_valid_connection_id(
    action: int, tid: int, body: bytes
) -> None:
    tracker, _ = make_tracker()
    cid = connect(tracker)
    data = struct.pack(">QII", cid, action, tid) + body
    check_reply(data, tracker.handle_datagram(data, CLIENT, 1.0))


# -- the TrackerServer wiring ---------------------------------------------------------


def test_udp_port_is_range_checked() -> None:
    with pytest.raises(TrackerError, match="udp_port 70000"):
        testing_config(udp_port=70000)


async def test_server_without_udp_port_has_no_udp_url() -> None:
    async with TrackerServer(testing_config()) as server:
        with pytest.raises(TrackerError, match="serves no UDP"):
            _ = server.udp_url
        assert server.udp_statistics() is None


async def test_udp_bind_error_reaches_the_caller() -> None:
    async with TrackerServer(testing_config(udp_port=0)) as first:
        taken = first.udp_address.port
        cfg = testing_config(udp_port=taken)
        with pytest.raises(OSError, match=r"(?i)address already in use"):
            async with TrackerServer(cfg):
                pass
    # the port is free again once its owner stops
    async with TrackerServer(testing_config(udp_port=taken)) as again:
        assert again.udp_address.port == taken
