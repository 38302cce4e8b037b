"""Choker: tit-for-tat regular slots and a rotating optimistic unchoke (BEP 3)."""

from __future__ import annotations

import random
from collections.abc import Hashable

from client.core.choker import ChokeCandidate, Choker


def cand(
    peer: str,
    down: float = 0.0,
    up: float = 0.0,
    *,
    interested: bool = True,
    snubbed: bool = False,
    connected_at: float = -1000.0,
) -> ChokeCandidate:
    return ChokeCandidate(
        peer=peer,
        interested=interested,
        download_rate=down,
        upload_rate=up,
        snubbed=snubbed,
        connected_at=connected_at,
    )


def choker(seed: int = 0, slots: int = 2) -> Choker:
    return Choker(regular_slots=slots, rng=random.Random(seed))


def test_prefers_the_faster_peers_while_leeching() -> None:
    peers = [cand("slow", 100), cand("fast", 400), cand("mid", 300), cand("slower", 50)]
    for seed in range(20):
        c = choker(seed)
        unchoked = c.rechoke(peers, seeding=False, now=0.0)
        assert {"fast", "mid"} <= unchoked
        assert len(unchoked) == 3  # two regular slots and one optimistic
        assert c.optimistic in {"slow", "slower"}


def test_seeding_ranks_by_upload_rate() -> None:
    peers = [
        cand("takes_fast", down=0, up=900),
        cand("gives_fast", down=900, up=10),
        cand("takes_mid", down=0, up=500),
    ]
    for seed in range(10):
        c = choker(seed)
        unchoked = c.rechoke(peers, seeding=True, now=0.0)
        assert {"takes_fast", "takes_mid"} <= unchoked
        assert c.optimistic == "gives_fast"


def test_uninterested_peers_take_no_slot() -> None:
    peers = [cand("fast_but_bored", 1000, interested=False), cand("keen", 1)]
    for seed in range(10):
        assert choker(seed).rechoke(peers, seeding=False, now=0.0) == {"keen"}


def test_snubbed_peers_lose_regular_slots_while_leeching() -> None:
    peers = [cand("snubber", 1000, snubbed=True), cand("ok1", 20), cand("ok2", 10)]
    for seed in range(10):
        c = choker(seed)
        unchoked = c.rechoke(peers, seeding=False, now=0.0)
        assert {"ok1", "ok2"} <= unchoked
        # it can still be the optimistic unchoke, never a regular one
        assert unchoked - {"ok1", "ok2"} <= {"snubber"}
        assert c.optimistic == "snubber"


def test_snubbed_does_not_matter_while_seeding() -> None:
    peers = [cand("s", up=1000, snubbed=True), cand("a", up=1), cand("b", up=2)]
    assert "s" in choker(0, slots=1).rechoke(peers, seeding=True, now=0.0)


def test_optimistic_rotates_to_a_new_peer_after_30_s_and_not_before() -> None:
    peers = [cand("regular", 1000)] + [cand(f"p{i}") for i in range(4)]
    for seed in range(10):
        c = choker(seed, slots=1)
        c.rechoke(peers, seeding=False, now=0.0)
        first = c.optimistic
        assert first is not None
        assert first != "regular"
        for now in (10.0, 20.0, 29.9):
            assert first in c.rechoke(peers, seeding=False, now=now)
            assert c.optimistic == first
        unchoked = c.rechoke(peers, seeding=False, now=30.0)
        assert c.optimistic not in (None, first, "regular")
        assert first not in unchoked


def test_optimistic_stays_if_it_is_the_only_choice() -> None:
    peers = [cand("regular", 1000), cand("only")]
    c = choker(0, slots=1)
    c.rechoke(peers, seeding=False, now=0.0)
    c.rechoke(peers, seeding=False, now=31.0)
    assert c.optimistic == "only"


def test_optimistic_replaced_when_it_loses_interest_or_leaves() -> None:
    peers = [cand("a"), cand("b")]
    c = choker(0, slots=0)
    c.rechoke(peers, seeding=False, now=0.0)
    first = c.optimistic
    other = "b" if first == "a" else "a"
    bored = [cand(str(first), interested=False), cand(other)]
    assert c.rechoke(bored, seeding=False, now=1.0) == {other}
    assert c.rechoke([], seeding=False, now=2.0) == frozenset()
    assert c.optimistic is None


def test_optimistic_that_earned_a_regular_slot_is_replaced() -> None:
    c = choker(0, slots=1)
    peers = [cand("a", 10), cand("b", 5), cand("c", 1)]
    c.rechoke(peers, seeding=False, now=0.0)
    opt = c.optimistic
    assert opt in {"b", "c"}
    faster = [cand(p, 100 if p == opt else 1) for p in ("a", "b", "c")]
    unchoked = c.rechoke(faster, seeding=False, now=10.0)
    assert opt in unchoked
    assert c.optimistic not in (None, opt)
    assert len(unchoked) == 2


def test_new_peers_are_three_times_as_likely_to_be_optimistic() -> None:
    peers = [cand("old", connected_at=-1000.0), cand("new", connected_at=-1.0)]
    draws = 600
    new = 0
    for seed in range(draws):
        c = choker(seed, slots=0)
        c.rechoke(peers, seeding=False, now=0.0)
        new += c.optimistic == "new"
    assert 0.68 < new / draws < 0.82  # 3:1 odds is 0.75


def test_due_every_rechoke_interval() -> None:
    c = Choker(rechoke_interval_s=10.0, rng=random.Random(0))
    assert c.due(0.0)
    c.rechoke([], seeding=False, now=0.0)
    assert not c.due(9.9)
    assert c.due(10.0)


def test_ties_are_broken_at_random() -> None:
    peers = [cand(f"p{i}") for i in range(6)]
    winners: set[Hashable] = set()
    for seed in range(30):
        winners |= choker(seed, slots=1).rechoke(peers, seeding=False, now=0.0)
    assert len(winners) == 6
