"""Hundreds of Mainline DHT cores on a lossy virtual network.

500 nodes join through one bootstrap node; one announces an infohash; 50
seeded-random nodes must find it with get_peers, and every lookup must return
the true closest live nodes (checked against all ids sorted by XOR distance),
before and straight after 20% of the nodes vanish at once, and again a
minute later. The median simulated lookup time and hop count go to stdout
and to a small JSON file in /tmp.

Seed 5 runs by default (~40 s); ``BITSWARM_DHT_SIM_SEEDS=5,11,23`` runs
more seeds (each builds its own network).
"""

from __future__ import annotations

import json
import os
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dht.core import config as dht_config
from dht.core.compact import PeerAddr
from dht.core.distance import NodeId, id_to_int, random_id
from dht.core.events import AnnounceDone, LookupDone, LookupKind, PeersFound
from dht.core.mainline import DhtCore
from tests.helpers.fakenet import FakeNetwork

NODES = 500
SEEKERS = 50
RANDOM_LOOKUPS = 50
K = 8
ANNOUNCE_PORT = 6881
RESULTS_PATH = Path("/tmp/bitswarm_dht_sim.json")
DEFAULT_SEED = 5
SEEDS = [
    int(s)
    for s in os.environ.get("BITSWARM_DHT_SIM_SEEDS", str(DEFAULT_SEED)).split(",")
]


@dataclass
class Swarm:
    net: FakeNetwork
    rng: random.Random
    cores: dict[PeerAddr, DhtCore]
    seed: int
    results: dict[str, dict[str, float]] = field(default_factory=dict)

    def live(self) -> list[PeerAddr]:
        return [a for a in self.cores if a in self.net.nodes]

    def done_event(self, addr: PeerAddr, lookup_id: int) -> LookupDone | None:
        for ev in self.net.events[addr]:
            if isinstance(ev, LookupDone) and ev.lookup_id == lookup_id:
                return ev
        return None

    def run_lookups(
        self, starts: list[tuple[PeerAddr, bytes, LookupKind]], max_s: float = 120.0
    ) -> list[tuple[PeerAddr, LookupDone]]:
        ids: list[tuple[PeerAddr, int]] = []
        for addr, target, kind in starts:
            lookup_id, outs = self.cores[addr].start_lookup(target, self.net.now, kind)
            self.net.feed(addr, outs)
            ids.append((addr, lookup_id))
        assert self.net.run_until(
            lambda: all(self.done_event(a, i) is not None for a, i in ids), max_s
        )
        out = []
        for a, i in ids:
            ev = self.done_event(a, i)
            assert ev is not None
            out.append((a, ev))
        return out

    def true_closest(self, target: bytes, exclude: PeerAddr) -> list[NodeId]:
        t = id_to_int(target)
        ids = [self.cores[a].node_id for a in self.live() if a != exclude]
        ids.sort(key=lambda i: id_to_int(i) ^ t)
        return ids[:K]


def _all_done(swarm: Swarm, pending: list[tuple[PeerAddr, int]]) -> Callable[[], bool]:
    return lambda: all(swarm.done_event(a, i) is not None for a, i in pending)


def build_swarm(seed: int) -> Swarm:
    rng = random.Random(seed)
    net = FakeNetwork(random.Random(seed + 1), latency_s=(0.010, 0.100), loss=0.05)
    cfg = dht_config.testing_config()
    cores: dict[PeerAddr, DhtCore] = {}
    addrs = [PeerAddr("127.0.0.1", 20000 + i) for i in range(NODES)]
    for addr in addrs:
        core = DhtCore(random_id(rng), random.Random(rng.getrandbits(64)), cfg)
        cores[addr] = core
        net.add(addr, core)
    swarm = Swarm(net=net, rng=rng, cores=cores, seed=seed)
    router = addrs[0]
    # Nodes join in waves, each bootstrapping from the first node (a router).
    wave = 50
    for start in range(1, NODES, wave):
        pending: list[tuple[PeerAddr, int]] = []
        for addr in addrs[start : start + wave]:
            lookup_id, outs = cores[addr].bootstrap([router], net.now)
            net.feed(addr, outs)
            pending.append((addr, lookup_id))
        assert net.run_until(_all_done(swarm, pending), 60.0)
    # A node whose every datagram to the router was lost joins again.
    for addr in addrs[1:]:
        if len(cores[addr].routing_table) < K:
            lookup_id, outs = cores[addr].bootstrap([router], net.now)
            net.feed(addr, outs)
            assert net.run_until(_all_done(swarm, [(addr, lookup_id)]), 60.0)
    # Early joiners saw a small network; one more bootstrap round each (own-id
    # lookup plus a refresh of every bucket, as BEP 5's 15-minute refresh
    # would do over time) lets every table see the whole network.
    for start in range(0, NODES, wave * 2):
        pending = []
        for addr in addrs[start : start + wave * 2]:
            lookup_id, outs = cores[addr].bootstrap([], net.now)
            net.feed(addr, outs)
            pending.append((addr, lookup_id))
        assert net.run_until(_all_done(swarm, pending), 60.0)
    net.run_for(5.0)  # let verification pings settle
    return swarm


def check_accuracy(
    swarm: Swarm, done: list[tuple[PeerAddr, LookupDone]], min_hit: int = K - 1
) -> int:
    """Every lookup finds >= ``min_hit`` of the true 8; returns how many found all 8."""
    perfect = 0
    for addr, ev in done:
        truth = set(swarm.true_closest(ev.target, addr))
        found = {n.id for n in ev.nodes}
        hit = len(truth & found)
        assert hit >= min_hit, (addr, hit)
        perfect += hit == K
    return perfect


def announce(swarm: Swarm, addr: PeerAddr, info_hash: NodeId) -> AnnounceDone:
    core = swarm.cores[addr]
    lookup_id, outs = core.start_announce(info_hash, ANNOUNCE_PORT, swarm.net.now)
    swarm.net.feed(addr, outs)

    def announced() -> AnnounceDone | None:
        for ev in swarm.net.events[addr]:
            if isinstance(ev, AnnounceDone) and ev.lookup_id == lookup_id:
                return ev
        return None

    assert swarm.net.run_until(lambda: announced() is not None, 60.0)
    result = announced()
    assert result is not None
    return result


def seek_and_check(
    swarm: Swarm, info_hash: NodeId, announcer: PeerAddr, label: str
) -> None:
    live = [a for a in swarm.live() if a != announcer]
    seekers = swarm.rng.sample(live, SEEKERS)
    starts = [(a, bytes(info_hash), LookupKind.GET_PEERS) for a in seekers]
    starts += [
        (swarm.rng.choice(live), bytes(random_id(swarm.rng)), LookupKind.FIND_NODE)
        for _ in range(RANDOM_LOOKUPS)
    ]
    done = swarm.run_lookups(starts)
    want = PeerAddr(announcer.host, ANNOUNCE_PORT)
    for addr, ev in done[:SEEKERS]:
        assert want in ev.peers, addr
        found = [
            p
            for e in swarm.net.events[addr]
            if isinstance(e, PeersFound) and e.lookup_id == ev.lookup_id
            for p in e.peers
        ]
        assert want in found  # reported as it arrived, not only at the end
    perfect = check_accuracy(swarm, done)
    assert perfect >= 0.95 * len(done), f"{perfect}/{len(done)} found all 8"
    times = [ev.duration_s for _, ev in done]
    hops = [ev.hops for _, ev in done]
    queries = [ev.queries for _, ev in done]
    if swarm.seed != DEFAULT_SEED:
        label = f"{label}_seed{swarm.seed}"
    swarm.results[label] = {
        "lookups": len(done),
        "all_8_found": perfect,
        "median_lookup_s": round(statistics.median(times), 3),
        "median_hops": statistics.median(hops),
        "median_queries": statistics.median(queries),
        "max_queries": max(queries),
    }
    print(f"\n{label}: {swarm.results[label]}")
    existing = json.loads(RESULTS_PATH.read_text()) if RESULTS_PATH.exists() else {}
    existing[label] = swarm.results[label]
    existing["nodes"] = NODES
    RESULTS_PATH.write_text(json.dumps(existing, indent=2))


@pytest.fixture(scope="module", params=SEEDS, ids=lambda s: f"seed{s}")
def swarm(request: pytest.FixtureRequest) -> Swarm:
    seed: int = request.param
    return build_swarm(seed)


def test_dht_sim_lookups_find_announcer_and_true_closest(swarm: Swarm) -> None:
    announcer = swarm.live()[123]
    info_hash = random_id(swarm.rng)
    result = announce(swarm, announcer, info_hash)
    assert len(result.stored_at) >= K - 1
    seek_and_check(swarm, info_hash, announcer, "healthy")


def test_dht_sim_survives_losing_a_fifth_of_nodes(swarm: Swarm) -> None:
    announcer = swarm.live()[321]
    info_hash = random_id(swarm.rng)
    announce(swarm, announcer, info_hash)
    candidates = [a for a in swarm.live() if a != announcer]
    for addr in swarm.rng.sample(candidates, NODES // 5):
        swarm.net.remove(addr)
    # At once: the survivors' tables still list the dead, who take slots of
    # every 8-node reply; lookups page past them (find_node for target ^
    # (seen + 1), see dht.core.kademlia.lookup) and so meet the full bar.
    seek_and_check(swarm, info_hash, announcer, "at_once_after_20pct_removed")
    # A minute later every node has pinged its stale entries (table upkeep)
    # and leaves the dead out of its replies.
    swarm.net.run_for(60.0)
    seek_and_check(swarm, info_hash, announcer, "minute_after_20pct_removed")
