"""PiecePicker and BEP 47 pad files: blocks wholly inside pads are zeros by
definition and never requested (issue 4: libtorrent's hybrid torrents pad
every file to a piece boundary, and we asked its seeder for the padding)."""

from __future__ import annotations

import random

import pytest

from client.core.bitfield import Bitfield
from client.core.picker import BLOCK_SIZE, BlockRequest, PiecePicker
from client.errors import ClientError

B = BLOCK_SIZE


def picker(
    pieces: int, blocks: int, pads: list[tuple[int, int]], total: int | None = None
) -> PiecePicker:
    piece_length = blocks * B
    return PiecePicker(
        pieces,
        piece_length,
        pieces * piece_length if total is None else total,
        rng=random.Random(0),
        random_first_pieces=0,
        pad_ranges=pads,
    )


def pick_all(p: PiecePicker) -> list[BlockRequest]:
    return p.pick("peer", Bitfield.full(p.num_pieces), 1000)


def test_issue_4_pad_blocks_are_never_requested() -> None:
    # piece 0: data in block 0, then a pad over blocks 1..3 (and a bit of 0)
    p = picker(2, 4, [(B - 100, 3 * B + 100)])
    assert p.pad_blocks(0) == frozenset({1, 2, 3})
    assert p.pad_blocks(1) == frozenset()
    reqs = pick_all(p)
    assert BlockRequest(0, 0, B) in reqs
    assert not [r for r in reqs if r.index == 0 and r.begin > 0]
    assert len(reqs) == 1 + 4


def test_issue_4_piece_is_done_when_its_data_blocks_arrive() -> None:
    p = picker(1, 4, [(2 * B, 2 * B)])
    reqs = pick_all(p)
    assert [r.begin for r in reqs] == [0, B]
    assert not p.block_received("peer", 0, 0, B).piece_done
    assert p.block_received("peer", 0, B, B).piece_done


def test_issue_4_partial_pad_block_is_still_requested() -> None:
    # the pad starts halfway into block 1: block 1 holds data and is asked for
    p = picker(1, 4, [(B + B // 2, 2 * B + B // 2)])
    assert p.pad_blocks(0) == frozenset({2, 3})
    assert [r.begin for r in pick_all(p)] == [0, B]


def test_issue_4_adjacent_pads_merge_and_the_short_last_piece() -> None:
    # two pads side by side cover block 1 together; the last piece is short
    total = 2 * 4 * B - B // 2
    p = picker(2, 4, [(B, B // 2), (B + B // 2, B // 2), (6 * B, B + B // 2)], total)
    assert p.pad_blocks(0) == frozenset({1})
    assert p.pad_blocks(1) == frozenset({2, 3})  # block 3 is the short tail
    picked = sorted((r.index, r.begin // B) for r in pick_all(p))
    assert picked == [(0, 0), (0, 2), (0, 3), (1, 0), (1, 1)]


def test_issue_4_released_piece_with_pads_becomes_fresh_again() -> None:
    p = picker(1, 2, [(B, B)])
    (req,) = pick_all(p)
    p.release("peer")
    assert p.pick("other", Bitfield.full(1), 10) == [req]


def test_issue_4_failed_piece_asks_only_for_data_blocks_again() -> None:
    p = picker(1, 3, [(B, 2 * B)])
    (req,) = pick_all(p)
    assert p.block_received("peer", 0, 0, B).piece_done
    assert p.piece_failed(0) == frozenset({"peer"})
    assert p.pick("peer", Bitfield.full(1), 10) == [req]


def test_issue_4_endgame_ignores_pad_blocks() -> None:
    p = picker(1, 3, [(B, 2 * B)])
    pick_all(p)
    assert p.in_endgame
    dup = p.pick("other", Bitfield.full(1), 10)
    assert dup == [BlockRequest(0, 0, B)]


def test_issue_4_piece_made_only_of_padding_is_requested() -> None:
    p = picker(2, 2, [(2 * B, 2 * B)])
    assert p.pad_blocks(1) == frozenset()
    assert len(pick_all(p)) == 4


def test_issue_4_pad_outside_the_torrent_is_a_caller_error() -> None:
    with pytest.raises(ClientError, match="outside"):
        picker(1, 2, [(B, 2 * B)])
