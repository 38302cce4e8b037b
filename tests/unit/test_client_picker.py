"""PiecePicker: rarest first, random first pieces, partial pieces first, endgame."""

from __future__ import annotations

import random

import pytest

from client.core.bitfield import Bitfield
from client.core.picker import BLOCK_SIZE, BlockRequest, PiecePicker
from client.errors import ClientError, RemotePeerProtocolError

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


def test_outstanding_count_follows_outstanding() -> None:
    picker = make("11", blocks_per_piece=4)
    assert picker.outstanding_count("a") == 0
    reqs = picker.pick("a", full(picker), 5)
    assert picker.outstanding_count("a") == 5
    picker.block_received("a", reqs[0].index, reqs[0].begin, reqs[0].length)
    assert picker.outstanding_count("a") == 4
    picker.release("a", reqs[1:3])
    assert picker.outstanding_count("a") == 2
    picker.peer_gone("a")
    assert picker.outstanding_count("a") == 0


def test_rarest_first_follows_have_and_peer_gone() -> None:
    picker = make("2222")
    picker.peer_have("x", 0)
    picker.peer_have("x", 1)
    picker.peer_have("x", 3)
    # piece 2 is now the only one with availability 2
    assert picker.pick("me", full(picker), 1)[0].index == 2
    picker.release("me")
    picker.peer_gone("x")
    picker.peer_bitfield("y", Bitfield.from_string("0111"))
    assert picker.pick("me", full(picker), 1)[0].index == 0


def test_pick_with_a_bitfield_other_than_the_announced_one() -> None:
    picker = make("1111")
    picker.peer_bitfield("x", Bitfield.from_string("1111"))
    # the bitfield passed to pick wins over what "x" announced
    assert pieces(picker.pick("x", Bitfield.from_string("0010"), 10)) == [2]
    assert pieces(picker.pick("x", Bitfield.from_string("0100"), 10)) == [1]
    assert picker.availability(1) == 2


def test_pick_rejects_a_bitfield_of_another_size() -> None:
    picker = make("11")
    with pytest.raises(ClientError, match="3 pieces"):
        picker.pick("a", Bitfield(3), 1)


def test_endgame_starts_when_the_last_free_block_is_requested() -> None:
    picker = make("11", blocks_per_piece=3)
    picker.pick("a", full(picker), 5)
    assert not picker.in_endgame
    last = picker.pick("b", full(picker), 1)
    assert picker.in_endgame
    picker.release("b", last)
    assert not picker.in_endgame
    assert picker.pick("c", full(picker), 1) == last
    assert picker.in_endgame


def test_released_block_of_an_older_piece_comes_before_newer_pieces() -> None:
    picker = make("111", blocks_per_piece=2)
    first = picker.pick("a", full(picker), 4)  # two whole pieces
    older = first[0]
    picker.block_received("a", first[1].index, first[1].begin, first[1].length)
    picker.pick("b", full(picker), 1)  # starts the third piece
    picker.release("a", [older])
    # oldest started piece first, even though it was fully requested before
    assert picker.pick("c", full(picker), 2)[0] == older


# -- model check: the picker against a direct transcription of its rules ------


class _ModelPicker:
    """The picking rules written out plainly, scanning everything each time.

    ``pick`` takes the real picker's choice of each new piece and checks it
    is allowed: among the candidates (the peer has it, we lack it, it is not
    started), the least available once ``random_first`` pieces are had.
    """

    def __init__(self, picker: PiecePicker, random_first: int) -> None:
        self.real = picker
        self.n = picker.num_pieces
        self.random_first = random_first
        self.have: set[int] = set()
        self.announced: dict[str, set[int]] = {}
        # index -> (received per block, requesters per block, senders)
        self.partial: dict[int, tuple[list[bool], list[set[str]], set[str]]] = {}
        self.outstanding: dict[str, set[BlockRequest]] = {}

    def avail(self, index: int) -> int:
        return sum(index in s for s in self.announced.values())

    def start(self, index: int) -> None:
        blocks = self.real.blocks_in(index)
        pad = self.real.pad_blocks(index)
        self.partial[index] = (
            [b in pad for b in range(blocks)],
            [set() for _ in range(blocks)],
            set(),
        )

    def assign(self, peer: str, index: int, b: int) -> BlockRequest:
        req = self.real.block(index, b)
        self.partial[index][1][b].add(peer)
        self.outstanding.setdefault(peer, set()).add(req)
        return req

    def idle(self, index: int) -> bool:
        received, requesters, _ = self.partial[index]
        pad = self.real.pad_blocks(index)
        return all(not r or b in pad for b, r in enumerate(received)) and not any(
            requesters
        )

    def in_endgame(self) -> bool:
        missing = self.n - len(self.have)
        return (
            missing > 0
            and missing == len(self.partial)
            and all(
                r or q
                for received, requesters, _ in self.partial.values()
                for r, q in zip(received, requesters, strict=True)
            )
        )

    def pick(
        self, peer: str, has: set[int], n: int, real: list[BlockRequest]
    ) -> list[BlockRequest]:
        picked: list[BlockRequest] = []
        if n <= 0:
            return picked
        started = set(self.partial)
        new_pieces = [i for i in dict.fromkeys(r.index for r in real)]
        new_pieces = [i for i in new_pieces if i not in started]
        for index, (received, requesters, _) in self.partial.items():
            if index not in has:
                continue
            for b in range(len(received)):
                if not received[b] and not requesters[b]:
                    picked.append(self.assign(peer, index, b))
                    if len(picked) == n:
                        return picked
        candidates = {i for i in has if i not in self.have and i not in self.partial}
        while candidates:
            allowed = candidates
            if len(self.have) >= self.random_first:
                least = min(self.avail(i) for i in candidates)
                allowed = {i for i in candidates if self.avail(i) == least}
            assert new_pieces, f"picker stopped, but could start {sorted(allowed)}"
            index = new_pieces.pop(0)
            assert index in allowed, f"started {index}, allowed {sorted(allowed)}"
            candidates.discard(index)
            self.start(index)
            received = self.partial[index][0]
            for b in range(len(received)):
                if not received[b]:
                    picked.append(self.assign(peer, index, b))
                    if len(picked) == n:
                        return picked
        if self.in_endgame():
            for index, (received, requesters, _) in self.partial.items():
                if index not in has:
                    continue
                for b in range(len(received)):
                    peers = requesters[b]
                    if not received[b] and peer not in peers and 0 < len(peers) < 2:
                        picked.append(self.assign(peer, index, b))
                        if len(picked) == n:
                            return picked
        return picked

    def block_received(
        self, peer: str, req: BlockRequest
    ) -> tuple[bool, bool, bool, set[tuple[str, BlockRequest]]]:
        """(accepted, duplicate, piece_done, cancels)"""
        if req.index in self.have:
            return False, True, False, set()
        if req.index not in self.partial:
            return False, False, False, set()
        received, requesters, senders = self.partial[req.index]
        b = req.begin // B
        self.outstanding.get(peer, set()).discard(req)
        if received[b] or peer not in requesters[b]:
            requesters[b].discard(peer)
            if self.idle(req.index):
                del self.partial[req.index]
            return False, received[b], False, set()
        requesters[b].discard(peer)
        cancels = {(p, req) for p in requesters[b]}
        for p in requesters[b]:
            self.outstanding[p].discard(req)
        requesters[b].clear()
        received[b] = True
        senders.add(peer)
        return True, False, all(received), cancels

    def drop_piece(self, index: int) -> set[tuple[str, BlockRequest]]:
        cancels = set()
        if index in self.partial:
            for b, peers in enumerate(self.partial.pop(index)[1]):
                req = self.real.block(index, b)
                for p in peers:
                    self.outstanding[p].discard(req)
                    cancels.add((p, req))
        return cancels

    def release(self, peer: str, reqs: list[BlockRequest] | None) -> None:
        mine = self.outstanding.get(peer, set())
        chosen = list(mine) if reqs is None else [r for r in reqs if r in mine]
        for req in chosen:
            mine.discard(req)
            if req.index in self.partial:
                self.partial[req.index][1][req.begin // B].discard(peer)
                if self.idle(req.index):
                    del self.partial[req.index]

    def check(self, picker: PiecePicker, peers: list[str]) -> None:
        assert picker.in_endgame == self.in_endgame()
        assert picker.have_count == len(self.have)
        assert picker.is_complete == (len(self.have) == self.n)
        assert picker.missing_pieces() == sorted(set(range(self.n)) - self.have)
        assert [picker.availability(i) for i in range(self.n)] == [
            self.avail(i) for i in range(self.n)
        ]
        for p in peers:
            mine = self.outstanding.get(p, set())
            assert picker.outstanding(p) == mine
            assert picker.outstanding_count(p) == len(mine)
        for i in range(self.n):
            senders = self.partial[i][2] if i in self.partial else set()
            assert picker.contributors(i) == senders


def _run_model(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 12)
    blocks = rng.randint(1, 4)
    total = n * blocks * B - rng.choice([0, 1, B // 2, B])
    total = max(total, (n - 1) * blocks * B + 1)
    random_first = rng.choice([0, 0, 2])
    pad_ranges = [(B, B)] if rng.random() < 0.3 and total > 2 * B else []
    picker = PiecePicker(
        n,
        blocks * B,
        total,
        rng=random.Random(seed),
        random_first_pieces=random_first,
        pad_ranges=pad_ranges,
    )
    model = _ModelPicker(picker, random_first)
    peers = [f"p{k}" for k in range(rng.randint(1, 4))]
    bfs = {p: Bitfield(n) for p in peers}
    for _ in range(steps):
        op = rng.random()
        peer = rng.choice(peers)
        if op < 0.1:
            bf = Bitfield(n)
            for i in range(n):
                if rng.random() < 0.6:
                    bf.set(i)
            bfs[peer] = bf
            picker.peer_bitfield(peer, bf)
            model.announced[peer] = set(bf.indices())
        elif op < 0.2:
            i = rng.randrange(n)
            bfs[peer].set(i)
            picker.peer_have(peer, i)
            model.announced.setdefault(peer, set()).add(i)
        elif op < 0.25:
            picker.peer_gone(peer)
            model.release(peer, None)
            model.outstanding.pop(peer, None)
            model.announced.pop(peer, None)
            bfs[peer] = Bitfield(n)
        elif op < 0.55:
            room = rng.randint(0, 6)
            # sometimes pick with a bitfield the peer never announced
            bf = bfs[peer] if rng.random() < 0.8 else Bitfield.full(n)
            real = picker.pick(peer, bf, room)
            assert real == model.pick(peer, set(bf.indices()), room, real)
        elif op < 0.85:
            mine = sorted(model.outstanding.get(peer, set()), key=str)
            if mine and rng.random() < 0.9:
                req = rng.choice(mine)
            else:
                i = rng.randrange(n)
                req = picker.block(i, rng.randrange(picker.blocks_in(i)))
            got = picker.block_received(peer, req.index, req.begin, req.length)
            want = model.block_received(peer, req)
            assert (got.accepted, got.duplicate, got.piece_done, set(got.cancels)) == (
                want
            )
            if got.piece_done:
                if rng.random() < 0.8:
                    got_cancels = set(picker.piece_verified(req.index))
                    assert got_cancels == model.drop_piece(req.index)
                    model.have.add(req.index)
                else:
                    senders = model.partial[req.index][2]
                    assert picker.piece_failed(req.index) == senders
                    model.drop_piece(req.index)
        elif op < 0.95:
            mine = sorted(model.outstanding.get(peer, set()), key=str)
            some = None if rng.random() < 0.5 else rng.sample(mine, len(mine) // 2)
            picker.release(peer, some)
            model.release(peer, some)
        else:
            i = rng.randrange(n)
            assert set(picker.mark_have(i)) == model.drop_piece(i)
            model.have.add(i)
        model.check(picker, peers)


@pytest.mark.parametrize("seed", range(150))
def test_model_check_random_operations(seed: int) -> None:
    _run_model(seed, 250)
