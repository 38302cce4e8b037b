"""Benchmark 7: get_peers on a loopback Mainline DHT of 200 bitswarm nodes
(30 with ``--quick``), real UDP, all nodes in this one process (one asyncio
loop), default ``DhtConfig`` (BEP 5's k=8, alpha=3).

The network is built by bootstrapping every node through already-joined
ones, then a second round through the first node, until every routing table
holds at least 8 nodes. Then, for each of 20 info hashes (3 quick), one
random node announces a peer (announce_peer to the closest nodes), and
``runs`` times a different random node looks it up, one lookup at a time:
the time from starting ``get_peers`` to the first reply carrying the peer,
and to the end of the lookup. The announced peer must be among those found.
There is no anchor: no other DHT implementation runs here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import statistics
import time

from dht import DhtConfig, DhtNode, PeerAddr
from tests.bench.common import Context, Metric, loadavg

MIN_TABLE = 8  # every node's routing table at least this (BEP 5 k)
BUILD_TIMEOUT_S = 180.0
LOOKUP_TIMEOUT_S = 30.0
MS = 1000.0


async def build(
    stack: contextlib.AsyncExitStack, n: int, rng: random.Random
) -> list[DhtNode]:
    cfg = DhtConfig()
    nodes = [await stack.enter_async_context(DhtNode(config=cfg)) for _ in range(n)]
    seed_count = min(8, n)
    for k in range(1, seed_count):
        await nodes[k].bootstrap([nodes[k - 1].address], timeout_s=10)
    batch = 25
    for start in range(seed_count, n, batch):
        joined = nodes[:start]
        await asyncio.gather(
            *(
                x.bootstrap(
                    [rng.choice(joined).address, nodes[0].address], timeout_s=10
                )
                for x in nodes[start : start + batch]
            )
        )
    await asyncio.gather(
        *(x.bootstrap([nodes[0].address], timeout_s=10) for x in nodes)
    )
    await asyncio.gather(*(x.wait_table_size(min(MIN_TABLE, n - 1)) for x in nodes))
    return nodes


async def measure(ctx: Context, first: Metric, done: Metric) -> dict[str, object]:
    n = 30 if ctx.quick else 200
    hashes = 3 if ctx.quick else 20
    rng = random.Random(7)
    loop = asyncio.get_running_loop()
    lookups: list[dict[str, object]] = []
    async with contextlib.AsyncExitStack() as stack:
        t0 = loop.time()
        async with asyncio.timeout(BUILD_TIMEOUT_S):
            nodes = await build(stack, n, rng)
        build_s = loop.time() - t0
        sizes = [x.statistics().routing_table_size for x in nodes]
        ctx.log(
            f"dht: {n} nodes up in {build_s:.1f} s, tables "
            f"{min(sizes)}..{max(sizes)} (median {statistics.median(sizes):.0f})"
        )
        for h in range(hashes):
            info_hash = hashlib.sha1(b"bench-dht-%d" % h).digest()
            announcer = rng.choice(nodes)
            port = 10000 + h
            await announcer.announce(info_hash, port, timeout_s=LOOKUP_TIMEOUT_S)
            want = PeerAddr("127.0.0.1", port)
            for _ in range(ctx.runs):
                searcher = rng.choice([x for x in nodes if x is not announcer])
                t_first: list[float] = []
                start = loop.time()

                def on_peers(
                    batch: list[PeerAddr],
                    start: float = start,
                    t_first: list[float] = t_first,
                    want: PeerAddr = want,
                ) -> None:
                    if not t_first and want in batch:
                        t_first.append(loop.time() - start)

                peers = await searcher.lookup_peers(
                    info_hash, on_peers, LOOKUP_TIMEOUT_S
                )
                elapsed = loop.time() - start
                ok = want in peers and bool(t_first)
                lookups.append(
                    {
                        "hash": h,
                        "first_peer_s": t_first[0] if t_first else None,
                        "done_s": elapsed,
                        "ok": ok,
                        "peers": len(peers),
                    }
                )
                if not ok:
                    ctx.error(f"dht lookup {h}: the announced peer was not found")
                    continue
                first.bitswarm.append(t_first[0])
                done.bitswarm.append(elapsed)
    return {
        "nodes": n,
        "build_s": build_s,
        "table_min": min(sizes),
        "table_median": statistics.median(sizes),
        "table_max": max(sizes),
        "lookups": lookups,
    }


def run(ctx: Context) -> list[Metric]:
    n = 30 if ctx.quick else 200
    first = Metric(
        bench="7 DHT",
        name=f"{n} nodes: get_peers start to first peer",
        unit="ms",
        scale=1 / MS,
        better="lower",
    )
    done = Metric(
        bench="7 DHT",
        name=f"{n} nodes: get_peers start to lookup done",
        unit="ms",
        scale=1 / MS,
        better="lower",
    )
    load = loadavg()
    t0 = time.monotonic()
    ctx.details["dht"] = asyncio.run(measure(ctx, first, done))
    for m in (first, done):
        m.load += [load, loadavg()]
    ctx.log(
        f"  {len(done.bitswarm)} lookups in {time.monotonic() - t0:.0f} s "
        f"(network build included)"
    )
    return [first, done]
