"""Chord ring peers joining, leaving and failing through the real protocol.

Small rings of ``ChordCore``s on a lossy ``FakeNetwork``: every pointer here
is built by join, stabilize, notify and fix_fingers messages, never preset.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable

from dht.core.chord.config import chord_testing_config
from dht.core.chord.events import (
    ChordAnnounceDone,
    ChordJoined,
    ChordLeft,
    ChordLookupDone,
    ChordPeersFound,
)
from dht.core.chord.node import ChordCore
from dht.core.chord.ring import ChordRing, key_id, peer_id_for
from dht.core.compact import PeerAddr
from tests.helpers.fakenet import FakeNetwork


class Sim:
    def __init__(self, m: int, r: int, loss: float = 0.02, seed: int = 1) -> None:
        self.m = m
        self.r = r
        self.cfg = dataclasses.replace(
            chord_testing_config(m=m, successors=r),
            stabilize_interval_s=0.5,
            fix_fingers_interval_s=0.25,
            check_predecessor_interval_s=1.0,
        )
        self.net = FakeNetwork(random.Random(seed), loss=loss)
        self.cores: dict[int, ChordCore] = {}

    def add(self, node_id: int) -> ChordCore:
        n = len(self.cores)
        addr = PeerAddr(f"10.0.{n // 250}.{n % 250 + 1}", 6881)
        core = ChordCore(node_id, addr, random.Random(node_id), self.cfg)
        self.cores[node_id] = core
        self.net.add(addr, core)
        return core

    def join(self, node_id: int, via: int) -> ChordCore:
        core = self.add(node_id)
        op, outs = core.start_join(self.cores[via].me.addr, self.net.now)
        self.net.feed(core.me.addr, outs)
        done = self.wait_event(core, ChordJoined, op)
        assert isinstance(done, ChordJoined)
        assert done.successor is not None
        return core

    def wait_event(self, core: ChordCore, kind: type, op: int) -> object:
        events = self.net.events[core.me.addr]

        def seen() -> bool:
            return any(isinstance(e, kind) and e.op_id == op for e in events)  # type: ignore[attr-defined]

        assert self.net.run_until(seen, 60)
        return next(e for e in events if isinstance(e, kind) and e.op_id == op)  # type: ignore[attr-defined]

    def live(self) -> list[int]:
        return sorted(i for i, c in self.cores.items() if c.me.addr in self.net.nodes)

    def correct(self) -> bool:
        model = ChordRing(self.live(), m=self.m, r=self.r)
        for i in self.live():
            t = self.cores[i].table
            if tuple(p.id for p in t.successors) != model.successors(i):
                return False
            if t.predecessor is None or t.predecessor.id != model.predecessor_of_peer(
                i
            ):
                return False
        return True

    def poll(self, pred: Callable[[], bool], max_s: float) -> bool:
        """Run until ``pred()``, checked every 0.2 virtual seconds: checking
        every pointer after every datagram would cost more than the sim."""
        end = self.net.now + max_s
        while not pred():
            if self.net.now >= end:
                return False
            self.net.run_for(0.2)
        return True

    def stabilize(self, max_s: float = 60) -> None:
        assert self.poll(self.correct, max_s)

    def lookup(self, start: int, key: int) -> ChordLookupDone:
        core = self.cores[start]
        op, outs = core.start_lookup(key, self.net.now)
        self.net.feed(core.me.addr, outs)
        done = self.wait_event(core, ChordLookupDone, op)
        assert isinstance(done, ChordLookupDone)
        return done


WORKED_PEERS = [1, 12, 13, 25, 32, 40, 48, 60]


def test_chord_worked_example_m6_keys_stored_at_successor() -> None:
    # The notes' example: m = 6, peers 1 12 13 25 32 40 48 60.
    ring = ChordRing(WORKED_PEERS, m=6)
    assert ring.successor(51) == 60
    assert ring.successor(60) == 60
    assert ring.successor(61) == 1
    # and through the protocol, from every peer, after real joins
    sim = Sim(m=6, r=2)
    sim.add(WORKED_PEERS[0])
    for p in WORKED_PEERS[1:]:
        sim.join(p, via=1)
    sim.stabilize()
    for start in WORKED_PEERS:
        for key, owner in ((51, 60), (60, 60), (61, 1)):
            done = sim.lookup(start, key)
            assert done.owner is not None
            assert done.owner.id == owner, (start, key)
    # and where an announced value actually lands
    ih = (51).to_bytes(20, "big")  # key_id(ih, 6) == 51
    assert key_id(ih, 6) == 51
    core = sim.cores[12]
    op, outs = core.start_announce(ih, 7000, sim.net.now)
    sim.net.feed(core.me.addr, outs)
    done = sim.wait_event(core, ChordAnnounceDone, op)
    assert isinstance(done, ChordAnnounceDone)
    assert done.stored_at is not None
    assert done.stored_at.id == 60
    assert len(sim.cores[60].store) == 1


def test_chord_churn_example_silent_departure_promotes_next_successor() -> None:
    # The notes' churn example: peer 4 has successors 5 and 8; 5 leaves
    # silently; after stabilization 4's successors are 8 and 8's successor.
    sim = Sim(m=6, r=2)
    peers = [4, 5, 8, 20, 33, 50]
    sim.add(peers[0])
    for p in peers[1:]:
        sim.join(p, via=4)
    sim.stabilize()
    assert [p.id for p in sim.cores[4].table.successors] == [5, 8]
    sim.net.remove(sim.cores[5].me.addr)  # no goodbye
    sim.stabilize()
    succ_of_8 = sim.cores[8].table.successor.id
    assert succ_of_8 == 20
    assert [p.id for p in sim.cores[4].table.successors] == [8, succ_of_8]
    assert sim.cores[8].table.predecessor is not None
    assert sim.cores[8].table.predecessor.id == 4


def test_chord_joins_build_correct_ring_fingers_and_lookups_64_peers() -> None:
    rng = random.Random(64)
    sim = Sim(m=160, r=3, loss=0.02, seed=64)
    ids = [peer_id_for(f"10.1.{i}.1:6881") for i in range(64)]
    sim.add(ids[0])
    for i, nid in enumerate(ids[1:], 1):
        sim.join(nid, via=ids[rng.randrange(i)])
    sim.stabilize(120)
    model = ChordRing(ids, r=3)

    def fingers_right() -> bool:
        for nid in ids:
            got = [f.id if f else nid for f in sim.cores[nid].table.fingers]
            if got != list(model.fingers(nid)):
                return False
        return True

    assert sim.poll(fingers_right, 120)
    for _ in range(200):
        start, key = rng.choice(ids), rng.getrandbits(160)
        done = sim.lookup(start, key)
        assert done.owner is not None
        assert done.owner.id == model.successor(key)
        assert done.hops == model.lookup(start, key).hops


def test_chord_join_hands_keys_to_the_new_owner() -> None:
    sim = Sim(m=6, r=2, loss=0.0)
    sim.add(10)
    for p in (30, 50):
        sim.join(p, via=10)
    sim.stabilize()
    # keys 35, 40, 45 belong to 50 until 42 joins: then 35 and 40 move to 42
    for k in (35, 40, 45):
        sim.cores[50].store_local(k.to_bytes(20, "big"), PeerAddr("192.0.2.9", k), 0.0)
    sim.join(42, via=10)
    sim.stabilize()
    assert sim.net.run_until(lambda: len(sim.cores[42].store) == 2, 10)
    assert len(sim.cores[50].store) == 1
    core = sim.cores[10]
    op, outs = core.start_get_peers((40).to_bytes(20, "big"), sim.net.now)
    sim.net.feed(core.me.addr, outs)
    done = sim.wait_event(core, ChordLookupDone, op)
    assert isinstance(done, ChordLookupDone)
    assert done.owner is not None
    assert done.owner.id == 42
    found = [
        e
        for e in sim.net.events[core.me.addr]
        if isinstance(e, ChordPeersFound) and e.op_id == op
    ]
    assert found[0].peers == (PeerAddr("192.0.2.9", 40),)


def test_chord_graceful_leave_hands_keys_to_successor_and_ring_heals() -> None:
    sim = Sim(m=6, r=2, loss=0.0)
    sim.add(10)
    for p in (20, 30, 40, 50):
        sim.join(p, via=10)
    sim.stabilize()
    sim.cores[30].store_local((25).to_bytes(20, "big"), PeerAddr("192.0.2.9", 1), 0.0)
    leaver = sim.cores[30]
    op, outs = leaver.start_leave(sim.net.now)
    sim.net.feed(leaver.me.addr, outs)
    left = sim.wait_event(leaver, ChordLeft, op)
    assert isinstance(left, ChordLeft)
    assert left.handed == 1
    assert left.successor is not None
    assert left.successor.id == 40
    sim.net.remove(leaver.me.addr)
    sim.stabilize()
    assert len(sim.cores[40].store) == 1
    assert [p.id for p in sim.cores[20].table.successors] == [40, 50]
    done = sim.lookup(10, 25)
    assert done.owner is not None
    assert done.owner.id == 40


def test_chord_concurrent_joins_and_failures_converge() -> None:
    rng = random.Random(5)
    sim = Sim(m=16, r=4, loss=0.03, seed=5)
    ids = rng.sample(range(1 << 16), 40)
    sim.add(ids[0])
    for nid in ids[1:10]:
        sim.join(nid, via=ids[0])
    # 30 more start joining at once, through random members
    ops = []
    for nid in ids[10:]:
        core = sim.add(nid)
        op, outs = core.start_join(sim.cores[rng.choice(ids[:10])].me.addr, sim.net.now)
        sim.net.feed(core.me.addr, outs)
        ops.append((core, op))
    for core, op in ops:
        sim.wait_event(core, ChordJoined, op)
    sim.stabilize(120)
    for nid in rng.sample(ids, 8):
        sim.net.remove(sim.cores[nid].me.addr)
    sim.stabilize(120)
    model = ChordRing(sim.live(), m=16)
    for _ in range(50):
        key = rng.randrange(1 << 16)
        done = sim.lookup(rng.choice(sim.live()), key)
        assert done.owner is not None
        assert done.owner.id == model.successor(key)
