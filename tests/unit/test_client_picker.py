"""PiecePicker: rarest first, random first pieces, partial pieces first, endgame."""

from __future__ import annotations

import random

import pytest

from client.core.bitfield import Bitfield
from client.core.picker import BLOCK_SIZE, BlockRequest, PiecePicker
from client.errors import RemotePeerProtocolError

B = BLOCK_SIZE


def make(
    availability: str,
    *,
    blocks_per_piece: int = 2,
    seed: int = 0,
    random_first: int = 0,
) -> PiecePicker:
    """A picker whose piece i is announced by ``availability[i]`` peers.

    Peer ``"a<k>"`` has piece i when ``int(availability[i]) > k``.
    """
    n = len(availability)
    piece_length = blocks_per_piece * B
    picker = PiecePicker(
        n,
        piece_length,
        n * piece_length,
        rng=random.Random(seed),
        random_first_pieces=random_first,
    )
    for k in range(max((int(c) for c in availability), default=0)):
        bf = Bitfield(n)
        for i, c in enumerate(availability):
            if int(c) > k:
                bf.set(i)
        picker.peer_bitfield(f"a{k}", bf)
    return picker


def pieces(reqs: list[BlockRequest]) -> list[int]:
    """Piece indices in pick order, each once."""
    return list(dict.fromkeys(r.index for r in reqs))


def full(picker: PiecePicker) -> Bitfield:
    return Bitfield.full(picker.num_pieces)


def test_availability_helper_counts() -> None:
    picker = make("2203")
    assert [picker.availability(i) for i in range(4)] == [2, 2, 0, 3]


def test_rarest_first() -> None:
    picker = make("3123")
    reqs = picker.pick("me", full(picker), 6)
    assert pieces(reqs) == [1, 2, 0] or pieces(reqs) == [1, 2, 3]


def test_rarest_first_only_among_pieces_the_peer_has() -> None:
    picker = make("3123")
    reqs = picker.pick("me", Bitfield.from_string("1.01"), 2)
    assert pieces(reqs) == [0] or pieces(reqs) == [3]


def test_random_among_equally_rare() -> None:
    first = {
        make("2222", seed=s).pick("me", Bitfield.full(4), 1)[0].index for s in range(40)
    }
    assert first == {0, 1, 2, 3}


def test_same_seed_same_choice() -> None:
    a = make("2222", seed=7).pick("me", Bitfield.full(4), 8)
    b = make("2222", seed=7).pick("me", Bitfield.full(4), 8)
    assert a == b


def test_first_pieces_are_random_not_rarest() -> None:
    first = set()
    for s in range(40):
        picker = make("19999999", seed=s, random_first=4)
        first.add(picker.pick("me", Bitfield.full(8), 1)[0].index)
    assert len(first) > 3  # rarest-first would always take piece 0


def test_rarest_first_once_enough_pieces_are_had() -> None:
    for s in range(20):
        picker = make("19999999", seed=s, random_first=4)
        for i in (4, 5, 6, 7):
            picker.mark_have(i)
        assert picker.pick("me", Bitfield.full(8), 1)[0].index == 0


def test_partial_pieces_are_finished_first() -> None:
    picker = make("9991", blocks_per_piece=4)
    started = picker.pick("a", Bitfield.from_string("1..."), 1)
    assert started == [BlockRequest(0, 0, B)]
    # piece 3 is rarest, but piece 0's remaining blocks come first
    reqs = picker.pick("b", full(picker), 4)
    assert reqs == [BlockRequest(0, k * B, B) for k in (1, 2, 3)] + [
        BlockRequest(3, 0, B)
    ]


def test_requests_are_recorded_as_outstanding() -> None:
    picker = make("11")
    reqs = picker.pick("a", full(picker), 3)
    assert picker.outstanding("a") == set(reqs)
    assert picker.outstanding("b") == set()
    assert picker.is_outstanding("a", reqs[0])
    assert not picker.is_outstanding("b", reqs[0])
    picker.block_received("a", reqs[0].index, reqs[0].begin, reqs[0].length)
    assert not picker.is_outstanding("a", reqs[0])


def test_no_block_is_requested_twice_outside_endgame() -> None:
    picker = make("1111", blocks_per_piece=3)
    a = picker.pick("a", full(picker), 5)
    b = picker.pick("b", full(picker), 5)
    assert not set(a) & set(b)
    assert len(a) == len(b) == 5


def test_endgame_duplicates_last_blocks_and_cancels_the_copy() -> None:
    picker = make("2")
    a = picker.pick("a", full(picker), 10)
    assert a == [BlockRequest(0, 0, B), BlockRequest(0, B, B)]
    assert picker.in_endgame
    b = picker.pick("b", full(picker), 10)
    assert set(b) == set(a)
    # a third peer gets nothing: two requesters per block is the cap
    assert picker.pick("c", full(picker), 10) == []
    # the peer that already has a block outstanding never gets it twice
    assert picker.pick("a", full(picker), 10) == []

    first = picker.block_received("a", 0, 0, B)
    assert first.accepted
    assert not first.piece_done
    assert first.cancels == [("b", BlockRequest(0, 0, B))]
    assert picker.outstanding("b") == {BlockRequest(0, B, B)}

    second = picker.block_received("b", 0, B, B)
    assert second.accepted
    assert second.piece_done
    assert second.cancels == [("a", BlockRequest(0, B, B))]
    assert picker.outstanding("a") == set()

    late = picker.block_received("a", 0, B, B)
    assert not late.accepted
    assert late.duplicate


def test_no_endgame_while_some_block_is_unrequested() -> None:
    picker = make("11")
    picker.pick("a", Bitfield.from_string("10"), 10)
    assert not picker.in_endgame
    # b has piece 0 only; piece 1 is still unrequested, so no duplicates
    assert picker.pick("b", Bitfield.from_string("10"), 10) == []


def test_released_blocks_are_picked_by_another_peer() -> None:
    picker = make("11", blocks_per_piece=4)
    snubbed = picker.pick("slow", full(picker), 3)
    picker.release("slow")
    assert picker.outstanding("slow") == set()
    assert picker.pick("fast", full(picker), 3) == snubbed


def test_release_some_requests_only() -> None:
    picker = make("1", blocks_per_piece=4)
    reqs = picker.pick("a", full(picker), 3)
    picker.release("a", [reqs[1]])
    assert picker.outstanding("a") == {reqs[0], reqs[2]}
    assert picker.pick("b", full(picker), 1) == [reqs[1]]


def test_fully_released_piece_is_fresh_again() -> None:
    picker = make("31")
    picker.pick("a", Bitfield.from_string("10"), 1)  # starts piece 0
    picker.release("a")
    # piece 0 is no longer "started", so rarest first picks piece 1
    assert picker.pick("b", full(picker), 1)[0].index == 1


def test_peer_gone_returns_blocks_and_availability() -> None:
    picker = make("11")
    picker.peer_bitfield("x", Bitfield.from_string("11"))
    assert picker.availability(0) == 2
    reqs = picker.pick("x", full(picker), 2)
    picker.peer_gone("x", None)
    assert picker.availability(0) == 1
    assert picker.outstanding("x") == set()
    assert picker.pick("y", full(picker), 2) == reqs


def test_peer_have_and_repeated_bitfield() -> None:
    picker = make("00")
    picker.peer_have("x", 1)
    picker.peer_have("x", 1)
    assert picker.availability(1) == 1
    picker.peer_bitfield("x", Bitfield.from_string("10"))
    assert [picker.availability(0), picker.availability(1)] == [1, 0]
    with pytest.raises(RemotePeerProtocolError, match="piece 2"):
        picker.peer_have("x", 2)
    with pytest.raises(RemotePeerProtocolError, match="3 pieces"):
        picker.peer_bitfield("x", Bitfield(3))


def test_last_piece_is_shorter() -> None:
    picker = PiecePicker(3, 2 * B, 4 * B + 20000, rng=random.Random(0))
    assert [picker.piece_size(i) for i in range(3)] == [2 * B, 2 * B, 20000]
    assert picker.blocks_in(2) == 2
    reqs = picker.pick("a", Bitfield.from_string("001"), 10)
    assert reqs == [BlockRequest(2, 0, B), BlockRequest(2, B, 20000 - B)]
    # the wrong length for the short block is not accepted
    assert not picker.block_received("a", 2, B, B).accepted
    assert picker.block_received("a", 2, B, 20000 - B).accepted


def test_tiny_torrent_one_short_piece() -> None:
    picker = PiecePicker(1, 2 * B, 5, rng=random.Random(0))
    assert picker.pick("a", Bitfield.full(1), 4) == [BlockRequest(0, 0, 5)]


def test_piece_failed_rerequests_every_block() -> None:
    picker = make("1")
    reqs = picker.pick("liar", full(picker), 10)
    outcomes = [picker.block_received("liar", r.index, r.begin, r.length) for r in reqs]
    assert [o.piece_done for o in outcomes] == [False, True]
    assert picker.contributors(0) == {"liar"}
    assert picker.piece_failed(0) == {"liar"}
    assert not picker.have(0)
    assert picker.pick("honest", full(picker), 10) == reqs


def test_piece_verified_completes() -> None:
    picker = make("11")
    for r in picker.pick("a", full(picker), 10):
        picker.block_received("a", r.index, r.begin, r.length)
    picker.piece_verified(0)
    assert picker.have(0)
    assert picker.have_count == 1
    assert picker.missing_pieces() == [1]
    assert not picker.is_complete
    picker.piece_verified(1)
    assert picker.is_complete
    assert not picker.in_endgame
    assert picker.pick("a", full(picker), 10) == []


def test_unrequested_or_had_blocks_are_not_accepted() -> None:
    picker = make("11")
    unrequested = picker.block_received("a", 0, 0, B)
    assert not unrequested.accepted
    assert not unrequested.duplicate
    picker.mark_have(1)
    had = picker.block_received("a", 1, 0, B)
    assert not had.accepted
    assert had.duplicate
    assert not picker.block_received("a", 9, 0, B).accepted
    assert not picker.block_received("a", 0, 1, B).accepted


def test_mark_have_is_never_picked() -> None:
    picker = make("1111")
    for i in (0, 1, 3):
        picker.mark_have(i)
    assert pieces(picker.pick("a", full(picker), 10)) == [2]


def test_mark_have_returns_cancels_for_outstanding_requests() -> None:
    picker = make("1")
    reqs = picker.pick("a", full(picker), 10)
    cancels = picker.mark_have(0)
    assert sorted(cancels, key=lambda c: c[1].begin) == [("a", r) for r in reqs]
    assert picker.outstanding("a") == set()


def test_is_interesting() -> None:
    picker = make("11")
    picker.mark_have(0)
    assert picker.is_interesting(Bitfield.from_string("01"))
    assert not picker.is_interesting(Bitfield.from_string("10"))


def test_full_download_from_random_peers_terminates() -> None:
    rng = random.Random(3)
    picker = PiecePicker(20, 4 * B, 80 * B - 123, rng=random.Random(1))
    peers = {f"p{k}": Bitfield.full(20) for k in range(4)}
    for p, bf in peers.items():
        picker.peer_bitfield(p, bf)
    for _ in range(1000):
        if picker.is_complete:
            break
        p = rng.choice(sorted(peers))
        for r in picker.pick(p, peers[p], 3):
            out = picker.block_received(p, r.index, r.begin, r.length)
            if out.piece_done:
                picker.piece_verified(r.index)
    assert picker.is_complete
