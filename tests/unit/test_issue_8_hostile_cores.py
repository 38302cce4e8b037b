"""Hostile input against pure cores, found while writing issue 8's hostile
peer tests."""

from __future__ import annotations

import random

import pytest

from client.core.bitfield import Bitfield
from client.core.picker import PiecePicker


@pytest.mark.xfail(
    strict=True,
    reason=(
        "issue 8: PiecePicker.block_received accepts a block from a peer that "
        "never requested it whenever another peer has it outstanding (it only "
        "checks that the block has *some* requester), and cancels the honest "
        "peer's request: a hostile peer can slip garbage into pieces honest "
        "peers are sending, failing the hash and putting a strike on the "
        "honest sender. Fix: 'if received or peer not in requesters:'"
    ),
)
def test_issue_8_block_from_a_peer_that_did_not_request_it_is_refused() -> None:
    picker = PiecePicker(2, 32768, 65536, rng=random.Random(1))
    have = Bitfield(2)
    have.set(0)
    have.set(1)
    picker.peer_bitfield("honest", have)
    picker.peer_bitfield("hostile", have)
    (req,) = picker.pick("honest", have, 1)
    outcome = picker.block_received("hostile", req.index, req.begin, req.length)
    assert not outcome.accepted
    assert not outcome.duplicate  # counted against the hostile peer
    # The honest peer's request still stands and its block is taken.
    assert picker.block_received("honest", req.index, req.begin, req.length).accepted
