"""Issue 8, load (bounded forms for CI; the long tracker run is
``tests/bench/tracker_load.py``).

- The tracker takes 5,000 distinct peers over 500 torrents with no error,
  counts them right, and empties its registry once they expire (an injected
  clock, so nobody waits out the timeout).
- One seeder serves 50 concurrent leechers on loopback; every copy is
  byte-identical.
- A DHT node flooded at 10x its per-source query rate keeps answering good
  nodes: in the sans-I/O core with a public-looking source *label* (nothing
  is sent anywhere), and over real UDP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from pathlib import Path

from dht import DhtCore, DhtNode, PeerAddr, testing_config
from dht.core.distance import NodeId
from dht.core.events import SendDatagram
from dht.core.krpc import GetPeers, Ping, Response, decode_message, encode_message
from tests.bench.tracker_load import (
    Announce,
    get_json,
    make_swarms,
    plan,
    run_load,
)
from tests.helpers.swarm import (
    complete_all,
    engine,
    fast_session,
    make_torrent,
    tree_bytes,
    write_random_file,
)
from tracker import TrackerServer
from tracker import testing_config as tracker_testing_config
from tracker.app import REGISTRY_KEY

# -- the tracker -----------------------------------------------------------------------
PEERS = 5000
TORRENTS = 500
CONNECTIONS = 32
PEER_TIMEOUT_S = 100.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_tracker_load_5000_peers_counted_then_expired() -> None:
    clock = FakeClock()
    cfg = tracker_testing_config(peer_timeout_s=PEER_TIMEOUT_S, interval_s=50.0)
    rng = random.Random(8)
    _, rows = make_swarms(PEERS, TORRENTS, rng)
    seeders = sum(1 for _, _, left in rows if left == 0)
    async with TrackerServer(cfg, clock=clock, rng=random.Random(1)) as tracker:
        host, port = tracker.address.host, tracker.address.port
        load = await run_load(host, port, plan(rows, CONNECTIONS))
        assert load.errors == []
        assert load.ok == PEERS
        # every swarm has 10 peers; each announce saw the ones before it
        assert 0 < load.peers_returned <= PEERS * (PEERS // TORRENTS - 1)

        stats = tracker.statistics()
        assert stats.torrents == TORRENTS
        assert (stats.seeders, stats.leechers) == (seeders, PEERS - seeders)
        assert stats.announces == PEERS
        page = await get_json(host, port, "/stats.json")
        assert page["peers"] == PEERS

        # Nobody re-announces. Past the timeout, a few announces that start
        # no swarm ('stopped' for unknown torrents) sweep every silent swarm.
        clock.now += PEER_TIMEOUT_S + 1
        triggers = [
            Announce(
                info_hash=rng.randbytes(20),
                peer_id=rng.randbytes(20),
                port=9,
                left=1,
                event="stopped",
            )
            for _ in range(3)
        ]
        trig = await run_load(host, port, [triggers], distinct_sources=False)
        assert trig.errors == []
        registry = tracker.app[REGISTRY_KEY]
        assert (registry.torrents, registry.peers) == (0, 0)  # before any stats
        stats = tracker.statistics()
        assert (stats.torrents, stats.seeders, stats.leechers) == (0, 0, 0)


# -- one seeder, 50 leechers -----------------------------------------------------------
LEECHERS = 50
FILE_BYTES = 512 * 1024 + 777  # 17 pieces of 32 KiB, the last one short
SWARM_TIMEOUT_S = 50.0
# Plain connections: with MSE ('prefer') each of the thousands of handshakes
# among 51 peers costs two 768-bit modexps and the run takes ~3x the CPU.
# Encryption has its own tests (test_client_encryption.py).
SWARM_ENCRYPTION = "off"


async def test_one_seeder_serves_50_leechers(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    data = write_random_file(src / "data.bin", FILE_BYTES, seed=50)
    async with TrackerServer(tracker_testing_config()) as tracker:
        meta = make_torrent(src / "data.bin", [tracker.url], piece_length=32768)
        async with contextlib.AsyncExitStack() as stack:
            seed_engine = await stack.enter_async_context(
                engine(encryption=SWARM_ENCRYPTION)
            )
            seed_engine.add_torrent(meta, src, config=fast_session())
            seeder_addr = PeerAddr("127.0.0.1", seed_engine.address.port)
            leechers = []
            t0 = time.monotonic()  # leechers start working as soon as added
            for i in range(LEECHERS):
                eng = await stack.enter_async_context(
                    engine(encryption=SWARM_ENCRYPTION)
                )
                leechers.append(
                    eng.add_torrent(
                        meta,
                        tmp_path / f"leech{i}",
                        config=fast_session(),
                        peers=[seeder_addr],
                    )
                )
            left_s = SWARM_TIMEOUT_S - (time.monotonic() - t0)
            await complete_all(leechers, timeout_s=left_s)
            elapsed = time.monotonic() - t0
            print(f"{LEECHERS} leechers complete in {elapsed:.1f} s")
            assert all(s.statistics().pieces_have == meta.num_pieces for s in leechers)
            want = {"data.bin": data}
            for i in range(LEECHERS):
                assert tree_bytes(tmp_path / f"leech{i}") == want


# -- a DHT node under a flood ----------------------------------------------------------
FLOOD_FACTOR = 10  # times the per-source rate limit (DhtConfig.rate_limit_per_s)
FLOOD_SECONDS = 10.0
GOOD_PINGS_PER_S = 2.0
# Documentation ranges (RFC 5737): labels fed to the in-memory core, never sent.
FLOODER = PeerAddr("203.0.113.7", 6881)
GOOD = PeerAddr("198.51.100.9", 6881)


def _nid(seed: int) -> NodeId:
    return NodeId(random.Random(seed).randbytes(20))


def test_dht_core_flooded_at_10x_keeps_answering_a_good_node() -> None:
    cfg = testing_config()
    core = DhtCore(_nid(1), random.Random(1), cfg)
    flood_rate = FLOOD_FACTOR * cfg.rate_limit_per_s
    rng = random.Random(2)
    # Events in time order: the flood's get_peers and the good node's pings.
    events = [
        (i / flood_rate, FLOODER, "flood")
        for i in range(int(FLOOD_SECONDS * flood_rate))
    ] + [
        (i / GOOD_PINGS_PER_S + 0.01, GOOD, "good")
        for i in range(int(FLOOD_SECONDS * GOOD_PINGS_PER_S))
    ]
    events.sort(key=lambda e: e[0])
    answered = {"flood": 0, "good": 0}
    sent = {"flood": 0, "good": 0}
    for n, (now, source, kind) in enumerate(events):
        tid = n.to_bytes(4, "big")
        if kind == "flood":
            query: Ping | GetPeers = GetPeers(
                transaction_id=tid,
                sender_id=NodeId(rng.randbytes(20)),
                info_hash=NodeId(rng.randbytes(20)),
            )
        else:
            query = Ping(transaction_id=tid, sender_id=_nid(3))
        sent[kind] += 1
        for out in core.handle_datagram(encode_message(query), source, now):
            if not isinstance(out, SendDatagram) or out.addr != source:
                continue
            reply = decode_message(out.payload)
            if isinstance(reply, Response) and reply.transaction_id == tid:
                answered[kind] += 1
    # every good query answered
    assert answered["good"] == sent["good"] == FLOOD_SECONDS * GOOD_PINGS_PER_S
    # the flood answered only up to its bucket: burst + rate x time
    allowed = cfg.rate_limit_burst + cfg.rate_limit_per_s * FLOOD_SECONDS
    assert answered["flood"] <= allowed + 1
    assert answered["flood"] >= allowed - cfg.rate_limit_per_s  # not starved either
    stats = core.statistics(FLOOD_SECONDS)
    assert stats.dropped_in >= sent["flood"] - allowed - 1


UDP_FLOOD_SOURCES = 4
UDP_FLOOD_SECONDS = 3.0
UDP_GOOD_QUERIES = 30


class _Client(asyncio.DatagramProtocol):
    """A bare KRPC client socket: sends what it is told, keeps the replies."""

    def __init__(self) -> None:
        self.replies: dict[bytes, asyncio.Future[Response]] = {}
        self.received = 0

    def datagram_received(self, data: bytes, addr: tuple[object, ...]) -> None:
        self.received += 1
        msg = decode_message(data)
        fut = self.replies.pop(msg.transaction_id, None)
        if fut is not None and not fut.done() and isinstance(msg, Response):
            fut.set_result(msg)


async def _flood(
    transport: asyncio.DatagramTransport,
    target: PeerAddr,
    rate: float,
    seconds: float,
    rng: random.Random,
) -> int:
    """get_peers at ``rate`` per second for ``seconds``, in 10 ms batches."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    sent = 0
    while (elapsed := loop.time() - start) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            query = GetPeers(
                transaction_id=sent.to_bytes(4, "big"),
                sender_id=NodeId(rng.randbytes(20)),
                info_hash=NodeId(rng.randbytes(20)),
            )
            transport.sendto(encode_message(query), target.as_tuple())
            sent += 1
        await asyncio.sleep(0.01)
    return sent


async def test_dht_udp_flood_at_10x_good_queries_still_answered() -> None:
    cfg = testing_config()
    # loopback sources are exempt from the per-IP limit, so every flood query
    # is answered: this shows the node keeps up, not that it drops the flood
    flood_rate = FLOOD_FACTOR * cfg.rate_limit_per_s  # per source
    loop = asyncio.get_running_loop()
    async with contextlib.AsyncExitStack() as stack:
        node = await stack.enter_async_context(DhtNode(config=cfg))
        target = node.address
        flooders = []
        for _ in range(UDP_FLOOD_SOURCES):
            transport, proto = await loop.create_datagram_endpoint(
                _Client, local_addr=("127.0.0.1", 0)
            )
            stack.callback(transport.close)
            flooders.append((transport, proto))
        good_transport, good = await loop.create_datagram_endpoint(
            _Client, local_addr=("127.0.0.1", 0)
        )
        stack.callback(good_transport.close)

        async def good_node() -> list[float]:
            latencies = []
            for n in range(UDP_GOOD_QUERIES):
                tid = b"g" + n.to_bytes(3, "big")
                fut: asyncio.Future[Response] = loop.create_future()
                good.replies[tid] = fut
                t0 = loop.time()
                ping = Ping(transaction_id=tid, sender_id=_nid(4))
                good_transport.sendto(encode_message(ping), target.as_tuple())
                async with asyncio.timeout(cfg.query_timeout_s):
                    await fut
                latencies.append(loop.time() - t0)
                await asyncio.sleep(UDP_FLOOD_SECONDS / UDP_GOOD_QUERIES)
            return latencies

        rng = random.Random(5)
        async with asyncio.TaskGroup() as group:
            floods = [
                group.create_task(_flood(t, target, flood_rate, UDP_FLOOD_SECONDS, rng))
                for t, _ in flooders
            ]
            good_task = group.create_task(good_node())
        latencies = good_task.result()
        assert len(latencies) == UDP_GOOD_QUERIES
        assert max(latencies) < cfg.query_timeout_s
        total = sum(f.result() for f in floods)
        assert total >= 0.8 * UDP_FLOOD_SOURCES * flood_rate * UDP_FLOOD_SECONDS
        print(
            f"flood {total / UDP_FLOOD_SECONDS:.0f} q/s; good ping max"
            f" {max(latencies) * 1000:.1f} ms"
        )
