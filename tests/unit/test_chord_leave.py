"""A graceful leave, message by message: what the peer that left still does.

Three ring peers (m = 6) with preset, converged pointers exchange datagrams
through a FIFO wire with no loss and no timers, so every interleaving below
is exact. The e2e test ``test_chord_udp_ring_join_announce_lookup_leave``
failed whenever its seeker happened to be the owner that had just left.
"""

from __future__ import annotations

import random
from collections import deque

from dht.core.chord.config import chord_testing_config
from dht.core.chord.events import (
    ChordLeft,
    ChordLookupDone,
    ChordOutput,
    ChordPeersFound,
    SendDatagram,
)
from dht.core.chord.messages import Notify, decode_message
from dht.core.chord.node import ChordCore
from dht.core.chord.ring import ChordRing, key_id
from dht.core.compact import PeerAddr

M = 6
PRED, OWNER, SUCC = 10, 30, 50  # OWNER owns (10, 30]; SUCC succeeds it
KEY = (25).to_bytes(20, "big")
SEED = PeerAddr("192.0.2.9", 51413)


class Wire:
    """Datagrams delivered one at a time, in the order they were sent."""

    def __init__(self, ids: list[int]) -> None:
        cfg = chord_testing_config(m=M, successors=2)
        self.cores = {
            i: ChordCore(i, PeerAddr("127.0.0.1", 7000 + i), random.Random(i), cfg)
            for i in ids
        }
        model = ChordRing(ids, m=M, r=2)
        for i, core in self.cores.items():
            core.preset(
                predecessor=self.cores[model.predecessor_of_peer(i)].me,
                successors=[self.cores[s].me for s in model.successors(i)],
                fingers=[self.cores[f].me for f in model.fingers(i)],
            )
        self._by_addr = {c.me.addr: c for c in self.cores.values()}
        self.queue: deque[tuple[PeerAddr, PeerAddr, bytes]] = deque()
        self.events: dict[int, list[ChordOutput]] = {i: [] for i in ids}
        self.sent: list[tuple[int, object]] = []  # (sender id, decoded message)
        self.now = 0.0

    def feed(self, core: ChordCore, outs: list[ChordOutput]) -> None:
        for o in outs:
            if isinstance(o, SendDatagram):
                self.queue.append((core.me.addr, o.addr, o.payload))
                self.sent.append((core.node_id, decode_message(o.payload, M)))
            else:
                self.events[core.node_id].append(o)

    def run(self) -> None:
        while self.queue:
            src, dst, payload = self.queue.popleft()
            core = self._by_addr[dst]
            self.feed(core, core.handle_datagram(payload, src, self.now))


def _leave(wire: Wire, leaver: ChordCore) -> ChordLeft:
    op, outs = leaver.start_leave(wire.now)
    wire.feed(leaver, outs)
    wire.run()
    left = [e for e in wire.events[leaver.node_id] if isinstance(e, ChordLeft)]
    assert [e.op_id for e in left] == [op]
    return left[0]


def test_chord_peer_that_left_finds_its_old_key_at_its_successor() -> None:
    # The owner hands its key to SUCC and leaves; asked for that key
    # afterwards, it used to answer from its own (now empty) store, because
    # its old predecessor pointer still said the key was its own.
    assert key_id(KEY, M) == 25
    wire = Wire([PRED, OWNER, SUCC])
    owner = wire.cores[OWNER]
    owner.store_local(KEY, SEED, wire.now)
    left = _leave(wire, owner)
    assert left.handed == 1
    assert len(owner.store) == 0
    assert len(wire.cores[SUCC].store) == 1

    op, outs = owner.start_get_peers(KEY, wire.now)
    wire.feed(owner, outs)
    wire.run()
    events = wire.events[OWNER]
    done = [e for e in events if isinstance(e, ChordLookupDone) and e.op_id == op]
    assert len(done) == 1
    assert done[0].owner is not None
    assert done[0].owner.id == SUCC
    found = [e for e in events if isinstance(e, ChordPeersFound) and e.op_id == op]
    assert [e.peers for e in found] == [(SEED,)]
    # and a plain lookup names the successor too, never the departed peer
    op, outs = owner.start_lookup(25, wire.now)
    wire.feed(owner, outs)
    wire.run()
    done = [e for e in events if isinstance(e, ChordLookupDone) and e.op_id == op]
    assert done[0].owner is not None
    assert done[0].owner.id == SUCC


def test_chord_stabilize_answered_after_leave_sends_no_notify() -> None:
    # OWNER's stabilize query to SUCC is in flight when OWNER leaves; SUCC
    # answers it after handling OWNER's leave (predecessor forgotten). OWNER
    # used to notify SUCC then, and SUCC took the departed OWNER back as its
    # predecessor (and sent it the key it had just been handed).
    wire = Wire([PRED, OWNER, SUCC])
    owner = wire.cores[OWNER]
    owner.store_local(KEY, SEED, wire.now)
    owner.tick(0.0)
    wire.feed(owner, owner.tick(1.0))  # stabilize: get_neighbors to SUCC
    assert wire.queue
    left = _leave(wire, owner)
    assert left.handed == 1
    from_owner = [msg for sender, msg in wire.sent if sender == OWNER]
    assert not any(isinstance(msg, Notify) for msg in from_owner)
    s = wire.cores[SUCC]
    assert s.table.predecessor is not None
    assert s.table.predecessor.id == PRED
    assert len(s.store) == 1
