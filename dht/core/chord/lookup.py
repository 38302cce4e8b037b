"""Chord lookups: iterative find_successor, then the owner's part.

A lookup (Chord paper 4.3, iterative style) starts from our own pointers
and asks the known peer that most closely precedes the key; each answer
either ends it (``found`` with the owner's successor list) or offers
closer preceding peers. The second stage asks the owner (or, if it is
dead, the next successor) for peers, stores an announce there, or confirms
a joining peer's successor. See :mod:`dht.core.chord.node` for the whole
theory of operation.
"""

from __future__ import annotations

from typing import assert_never

from dht.core.chord.base import ChordBase, Kind, Op, Purpose
from dht.core.chord.events import (
    ChordAnnounceDone,
    ChordJoined,
    ChordLookupDone,
    ChordOutput,
    ChordPeersFound,
)
from dht.core.chord.messages import (
    AnnouncePeer,
    ChordPeer,
    FindSuccessor,
    GetNeighbors,
    GetPeers,
    Ping,
    Query,
    Response,
)
from dht.core.chord.ring import between as _between
from dht.core.compact import PeerAddr

__all__ = ["ChordLookups"]


class ChordLookups(ChordBase):
    """Lookup operations of a ring peer."""

    def _begin(
        self,
        kind: Kind,
        key: int,
        now: float,
        *,
        info_hash: bytes = b"",
        port: int = 0,
    ) -> tuple[int, list[ChordOutput]]:
        self._start(now)
        op = self._new_op(kind, key, now, info_hash=info_hash, port=port)
        out: list[ChordOutput] = []
        self._route(out, op, now)
        return op.op_id, out

    def _route(self, out: list[ChordOutput], op: Op, now: float) -> None:
        """First step of a lookup, from our own pointers."""
        t = self._table
        if t.owns(op.key) and not self._left:
            self._found(out, op, (self._me, *t.successors), now)
        elif t.successor_owns(op.key) or (self._left and t.owns(op.key)):
            # After a graceful leave our keys are our successor's: a peer
            # that left owns nothing, though its old pointers still say so.
            self._found(out, op, t.successors, now)
        else:
            for p in t.closest_preceding(op.key, self._cfg.max_next_nodes):
                op.candidates[p.id] = p
            self._next_candidate(out, op, now)

    def _next_candidate(self, out: list[ChordOutput], op: Op, now: float) -> None:
        pool = [p for p in op.candidates.values() if p.id not in op.tried]
        if not pool or len(op.path) >= self._cfg.max_lookup_hops:
            self._found(out, op, (), now)
            return
        best = min(pool, key=lambda p: self._table.closeness(p.id, op.key))
        self._query_find(out, op, best, best.addr, now)

    def _query_find(
        self,
        out: list[ChordOutput],
        op: Op,
        peer: ChordPeer | None,
        addr: PeerAddr,
        now: float,
    ) -> None:
        if peer is not None:
            op.tried.add(peer.id)
        op.queries += 1
        msg = FindSuccessor(transaction_id=b"", sender_id=self._me.id, target=op.key)
        self._query_msg(
            out,
            peer or ChordPeer(id=-1, addr=addr),
            msg,
            Purpose.FIND,
            now,
            op.op_id,
        )

    def _on_find_reply(
        self,
        out: list[ChordOutput],
        op: Op,
        peer: ChordPeer,
        msg: Response,
        now: float,
    ) -> None:
        op.tried.add(peer.id)
        op.path.append(peer)
        if msg.found and msg.successors:
            self._found(out, op, msg.successors, now)
            return
        for p in msg.nodes:
            if p.id != self._me.id and _between(p.id, peer.id, op.key):
                op.candidates.setdefault(p.id, p)
        self._next_candidate(out, op, now)

    def _found(
        self,
        out: list[ChordOutput],
        op: Op,
        owners: tuple[ChordPeer, ...],
        now: float,
    ) -> None:
        """The lookup part ended; ``owners`` (owner first) is empty on failure."""
        op.found = owners
        op.owners = list(owners)
        match op.kind:
            case Kind.LOOKUP:
                self._finish_lookup(out, op, now)
            case Kind.GET_PEERS | Kind.ANNOUNCE | Kind.JOIN:
                self._ask_owner(out, op, now)
            case Kind.FINGER:
                if owners and owners[0].id != self._me.id:
                    self._query(
                        out, owners[0], Ping, Purpose.FINGER, now, op_id=op.op_id
                    )
                else:
                    if not owners:
                        self._table.set_finger(op.finger, None)
                    self._ops.pop(op.op_id, None)
                    self._finger_op = None
            case Kind.LEAVE:
                pass
            case _:
                assert_never(op.kind)

    def _ask_owner(self, out: list[ChordOutput], op: Op, now: float) -> None:
        """Second stage: the owner (or, if it is dead, the next successor)."""
        while op.owners:
            owner = op.owners.pop(0)
            if owner.id == self._me.id:
                if op.kind is Kind.JOIN or self._left:
                    continue  # not a ring member (yet, or any more)
                if op.kind is Kind.GET_PEERS:
                    peers = self._store.get(
                        op.info_hash, now, self._cfg.max_values_per_reply, self._rng
                    )
                    self._peers_found(out, op, tuple(peers))
                    self._finish_lookup(out, op, now, owner)
                else:
                    mine = PeerAddr(self._me.addr.host, op.port)
                    self._store.add(op.info_hash, mine, now)
                    self._finish_announce(out, op, owner)
                return
            if op.kind is Kind.GET_PEERS:
                msg: Query = GetPeers(
                    transaction_id=b"", sender_id=self._me.id, info_hash=op.info_hash
                )
                purpose = Purpose.GET_PEERS
            elif op.kind is Kind.ANNOUNCE:
                msg = AnnouncePeer(
                    transaction_id=b"",
                    sender_id=self._me.id,
                    info_hash=op.info_hash,
                    port=op.port,
                )
                purpose = Purpose.ANNOUNCE
            else:
                msg = GetNeighbors(transaction_id=b"", sender_id=self._me.id)
                purpose = Purpose.CANDIDATE
            self._query_msg(out, owner, msg, purpose, now, op.op_id)
            return
        # nobody left to ask
        if op.kind is Kind.GET_PEERS:
            self._finish_lookup(out, op, now, None)
        elif op.kind is Kind.ANNOUNCE:
            self._finish_announce(out, op, None)
        else:
            self._ops.pop(op.op_id, None)
            out.append(ChordJoined(op_id=op.op_id, successor=None))

    def _peers_found(
        self, out: list[ChordOutput], op: Op, peers: tuple[PeerAddr, ...]
    ) -> None:
        if peers:
            out.append(
                ChordPeersFound(op_id=op.op_id, info_hash=op.info_hash, peers=peers)
            )

    def _finish_lookup(
        self,
        out: list[ChordOutput],
        op: Op,
        now: float,
        owner: ChordPeer | None = None,
    ) -> None:
        self._ops.pop(op.op_id, None)
        if op.kind is Kind.LOOKUP:
            owner = op.found[0] if op.found else None
        if owner is None:
            self._counts["lookups_failed"] += 1
        else:
            self._counts["lookups_done"] += 1
            self._counts["lookup_hops"] += len(op.path)
        out.append(
            ChordLookupDone(
                op_id=op.op_id,
                key=op.key,
                owner=owner,
                successors=op.found,
                path=tuple(op.path),
                queries=op.queries,
                duration_s=now - op.started,
            )
        )

    def _finish_announce(
        self, out: list[ChordOutput], op: Op, owner: ChordPeer | None
    ) -> None:
        self._ops.pop(op.op_id, None)
        out.append(
            ChordAnnounceDone(op_id=op.op_id, info_hash=op.info_hash, stored_at=owner)
        )
