"""Chord ring maintenance: stabilize, notify, fix_fingers, key handoff, leave.

Chord paper figure 6 with Zave's corrections; see
:mod:`dht.core.chord.node` for the theory of operation. Every pointer a
peer adopts has answered it first.
"""

from __future__ import annotations

from dht.core.chord.base import ITEMS_PER_STORE, Kind, Op, Purpose, remaining_ttl
from dht.core.chord.events import ChordLeft, ChordOutput
from dht.core.chord.lookup import ChordLookups
from dht.core.chord.messages import ChordPeer, GetNeighbors, Leave, StoredItem
from dht.core.chord.ring import between as _between
from dht.core.chord.ring import between_right, key_id

__all__ = ["ChordMaintenance"]


class ChordMaintenance(ChordLookups):
    """Pointer upkeep and key handoff of a ring peer."""

    def _stabilize(
        self, out: list[ChordOutput], now: float, force: bool = False
    ) -> None:
        if (self._stabilizing and not force) or self._left:
            return
        t = self._table
        if t.successors:
            self._stabilizing = True
            self._query(out, t.successor, GetNeighbors, Purpose.NEIGHBORS, now)
            return
        # Every successor failed: the closest finger may be our successor. A
        # peer alone has only its predecessor (whoever joined through it).
        # Never the predecessor otherwise: that would point backwards and
        # could split the ring into loops (Zave). It must answer first.
        pool = list(t.known()) or [p for p in (t.predecessor,) if p is not None]
        if pool:
            best = min(pool, key=lambda p: (p.id - self._me.id) % t.modulus)
            self._stabilizing = True
            self._query(out, best, GetNeighbors, Purpose.CANDIDATE, now)
        else:
            self._stabilizing = False

    def _fix_fingers(self, out: list[ChordOutput], now: float) -> None:
        if self._finger_op is not None:
            return
        t = self._table
        if not t.successors:
            return
        for _ in range(t.m):
            i = self._next_finger
            self._next_finger = (i + 1) % t.m
            start = t.finger_start(i)
            if t.successor_owns(start):
                if t.finger(i) != t.successor:
                    t.set_finger(i, t.successor)
                continue
            if t.owns(start):
                t.set_finger(i, None)
                continue
            op = self._new_op(Kind.FINGER, start, now, finger=i)
            self._finger_op = op.op_id
            self._route(out, op, now)
            return

    def _on_notify(self, out: list[ChordOutput], sender: ChordPeer, now: float) -> None:
        t = self._table
        if sender.id == self._me.id:
            return
        pred = t.predecessor
        if pred is None or _between(sender.id, pred.id, self._me.id):
            # The notifier is alive (it just spoke): Zave's rule holds.
            t.set_predecessor(sender)
            self._hand_off(out, sender, now)
        if not t.successors and not self._stabilizing:
            # Alone until now: the notifier may be our successor; stabilize
            # confirms it (or a closer finger) before adopting it.
            self._stabilize(out, now)

    def _hand_off(self, out: list[ChordOutput], pred: ChordPeer, now: float) -> None:
        """Keys outside (pred, me] now belong to ``pred``."""
        items = [
            StoredItem(info_hash=ih, peer=p, ttl_s=remaining_ttl(exp, now))
            for ih, p, exp in self._store.items(now)
            if not between_right(key_id(ih, self._cfg.m), pred.id, self._me.id)
        ]
        for i in range(0, len(items), ITEMS_PER_STORE):
            chunk = tuple(items[i : i + ITEMS_PER_STORE])
            self._query_store(out, pred, chunk, Purpose.HANDOFF, 0, now)

    def _on_leave(self, out: list[ChordOutput], msg: Leave, now: float) -> None:
        t = self._table
        leaver = msg.sender_id
        was_successor = any(p.id == leaver for p in t.successors)
        t.forget(leaver)
        if was_successor:
            if t.successors:
                self._stabilize(out, now, force=True)
            else:
                hints = [p for p in msg.successors if p.id not in (leaver, self._me.id)]
                if hints:
                    self._stabilizing = True
                    self._query(out, hints[0], GetNeighbors, Purpose.CANDIDATE, now)

    def _leave_step(self, out: list[ChordOutput], op: Op) -> None:
        op.pending -= 1
        if op.pending <= 0:
            succ = self._table.successors[0] if self._table.successors else None
            self._finish_leave(out, op, succ)

    def _finish_leave(
        self, out: list[ChordOutput], op: Op, succ: ChordPeer | None
    ) -> None:
        self._ops.pop(op.op_id, None)
        out.append(ChordLeft(op_id=op.op_id, successor=succ, handed=op.handed))
