"""Piece and block picker: rarest first, random first pieces, endgame (BEP 3).

BEP 3 leaves piece selection to the client; this follows the strategy it
describes and that the reference client used:

* **Strict priority.** Blocks of pieces already started (some block requested
  or received) go first, so pieces complete and can be hashed and shared soon.
* **Rarest first.** A new piece is the one the fewest connected peers have,
  random among equals so peers spread out over the rare pieces.
* **Random first pieces.** Until we have ``random_first_pieces`` complete
  pieces, a new piece is chosen at random: a rare piece is slow to get, and a
  newcomer needs *something* to trade quickly.
* **Endgame.** Once every missing block is requested (or received), a peer
  with spare pipeline gets requests for blocks that are outstanding at OTHER
  peers; when one copy arrives the others are cancelled.

Theory of operation. Each piece is in one of three states: *fresh* (no block
requested or received), *partial* (an entry in ``_partial``: per block, whether
it was received and which peers it is outstanding at) or *have* (verified).
A partial piece whose blocks are all received waits for the caller's hash
check: :meth:`PiecePicker.piece_verified` moves it to *have*, and
:meth:`PiecePicker.piece_failed` back to *fresh*. A partial piece that loses
its last request without having received anything goes back to *fresh* too.
Availability is a per-piece count of the connected peers that announced it;
the picker keeps its own copy of each peer's announced pieces so a departing
peer's contribution is subtracted exactly.

Cost. ``pick`` runs once per few blocks on every connection, so it must not
touch every piece: on a 4096-piece torrent, rebuilding, shuffling and sorting
the candidate list per call took 20 of 28 CPU seconds of a download. Instead:

* Piece sets are Python ``int`` bitmasks (one AND over 16384 pieces is well
  under a microsecond). They are kept in *slot order*: each piece gets a random
  slot once, at construction, and bit ``s`` of a mask is the piece in slot
  ``s``. The lowest set bit of a candidate mask is then a random choice among
  the candidates, with no shuffle per call. (The rejected alternative, a fresh
  uniform choice per call by counting set bits, costs a binary search over
  the whole mask per piece.) A peer's announced pieces are kept in slot order
  too, updated on ``have``; a bitfield passed to ``pick`` that differs from
  the announced one is converted once and cached.
* Availability is bit-sliced: ``_planes[j]`` holds bit ``j`` of every piece's
  count, so adding or removing a peer's whole bitfield is a ripple-carry add
  over a few ints, and the rarest candidates are found with one AND-NOT per
  plane, from the highest plane down.
* Partial pieces with unrequested blocks (``_open``, in start order) and, per
  partial piece, a mask of its unrequested blocks, so finishing started pieces
  visits only blocks that can be requested. A running total of those blocks
  makes :attr:`PiecePicker.in_endgame` O(1).

So ``pick`` costs a few mask operations per call plus a constant per block
returned; only endgame visits the (few) in-flight blocks.

Deliberately left out: piece priorities and file selection, sequential
(streaming) mode, speed classes ("fast" vs "slow" peers sharing a piece),
BEP 6 allowed-fast sets and suggest-piece.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

from client.core.bitfield import Bitfield
from client.errors import ClientError, RemotePeerProtocolError

__all__ = [
    "BLOCK_SIZE",
    "BlockOutcome",
    "BlockRequest",
    "PeerKey",
    "PiecePicker",
]

# Bytes per request; BEP 3: "currently 2^14 (16 kiB)", and peers may close on larger.
BLOCK_SIZE = 16384
# Peers a block may be outstanding at in endgame (the first request plus one copy).
ENDGAME_MAX_REQUESTERS = 2

PeerKey = Hashable


class BlockRequest(NamedTuple):
    """One ``request``/``cancel``/``piece`` triple: piece index, offset, length.

    A NamedTuple, not a frozen dataclass: one is built and hashed for every
    16 KiB block (outstanding sets, the block sink's check), and a tuple's
    constructor and hash run in C (0.23 vs 0.58 us a lookup here)."""

    # BEP 3's name; it shadows tuple.index, which nothing here uses.
    index: int  # type: ignore[assignment]
    begin: int
    length: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockOutcome:
    """What :meth:`PiecePicker.block_received` decided about a block.

    Attributes:
        accepted: the block was wanted; False means discard it (not requested
            from anyone, a duplicate, or a piece we already have).
        duplicate: not accepted because the block or its piece was already
            received: an expected endgame (or cancel) race, not peer abuse.
        piece_done: every block of the piece is now received; hash it.
        cancels: ``(peer, request)`` endgame duplicates to send ``cancel`` for.
    """

    accepted: bool
    duplicate: bool = False
    piece_done: bool = False
    cancels: list[tuple[PeerKey, BlockRequest]] = field(default_factory=list)


# The common outcomes, shared (their empty ``cancels`` is never mutated):
# one per block received, so not built each time.
_ACCEPTED = BlockOutcome(accepted=True)
_ACCEPTED_DONE = BlockOutcome(accepted=True, piece_done=True)


class _Partial:
    """Per-block state of a started piece.

    Blocks that lie wholly inside BEP 47 pad files count as received from the
    start: their bytes are zeros by definition, so they are never requested.
    ``received`` and ``free`` are block masks (bit ``b`` = block ``b``);
    ``free`` holds the blocks neither received nor outstanding anywhere, and
    ``nreq`` counts (block, peer) requests outstanding.
    """

    __slots__ = (
        "free",
        "fresh_unreceived",
        "nreq",
        "received",
        "requesters",
        "senders",
        "seq",
        "unreceived",
    )

    def __init__(self, blocks: int, pad_mask: int, seq: int) -> None:
        self.received = pad_mask
        self.free = ((1 << blocks) - 1) & ~pad_mask
        self.requesters: list[set[PeerKey]] = [set() for _ in range(blocks)]
        self.senders: set[PeerKey] = set()
        self.unreceived = self.free.bit_count()
        self.fresh_unreceived = self.unreceived
        self.nreq = 0
        self.seq = seq

    def idle(self) -> bool:
        """Nothing received and nothing outstanding: the piece is fresh again."""
        return self.unreceived == self.fresh_unreceived and not self.nreq


class _Announced:
    """A peer's pieces, as a wire-order int and as a slot-order mask."""

    __slots__ = ("slots", "wire")

    def __init__(self, wire: int, slots: int) -> None:
        self.wire = wire
        self.slots = slots


class PiecePicker:
    """Chooses which blocks to request from which peer.

    Peers are any hashable key (a connection object, an address).

    Args:
        num_pieces: pieces in the torrent.
        piece_length: bytes per piece (the info dict's ``piece length``).
        total_length: bytes in the torrent; the last piece holds the remainder.
        rng: source of the random choices (tie-breaks, first pieces).
        block_size: bytes per request.
        random_first_pieces: pick new pieces at random until this many are had.
        pad_ranges: ``(offset, length)`` of each BEP 47 pad file in the
            torrent's data. A block wholly inside pad files is zeros by
            definition: it is never requested and counts as received (the
            caller's piece buffer must start zeroed). A piece made only of
            pad blocks is requested like any other.

    Raises:
        ClientError: the sizes are inconsistent.
    """

    def __init__(
        self,
        num_pieces: int,
        piece_length: int,
        total_length: int,
        *,
        rng: random.Random,
        block_size: int = BLOCK_SIZE,
        random_first_pieces: int = 4,
        endgame_max_requesters: int = ENDGAME_MAX_REQUESTERS,
        pad_ranges: Iterable[tuple[int, int]] = (),
    ) -> None:
        if piece_length <= 0 or block_size <= 0 or total_length < 0:
            raise ClientError(
                f"picker: bad sizes (piece_length={piece_length}, "
                f"block_size={block_size}, total_length={total_length})"
            )
        expected = -(-total_length // piece_length)
        if num_pieces != expected:
            raise ClientError(
                f"picker: {num_pieces} pieces, but {total_length} bytes in "
                f"{piece_length}-byte pieces make {expected}"
            )
        self._n = num_pieces
        self._piece_length = piece_length
        self._total = total_length
        self._block = block_size
        self._rng = rng
        self._random_first = random_first_pieces
        self._endgame_max = max(2, endgame_max_requesters)
        self._have = Bitfield(num_pieces)
        self._have_count = 0
        # bits in a wire-order int (Bitfield.to_int): piece i is bit _wire_top - i
        self._wire_bits = -(-num_pieces // 8) * 8
        # random slot per piece, fixed: the lowest slot wins ties (see above)
        self._piece_at = list(range(num_pieces))
        rng.shuffle(self._piece_at)
        self._slot = [0] * num_pieces
        for slot, piece in enumerate(self._piece_at):
            self._slot[piece] = slot
        self._to_slot_digits: Callable[[str], Iterable[str]] | None = None
        # fresh pieces (neither had nor partial), slot order
        self._fresh = (1 << num_pieces) - 1
        # bit-sliced availability, slot order: count = sum(bit j of plane j << j)
        self._planes: list[int] = []
        self._peers: dict[PeerKey, _Announced] = {}
        # pick() bitfields that differ from what the peer announced, converted
        self._unannounced: dict[PeerKey, _Announced] = {}
        # insertion order = start order, so the oldest started piece is finished first
        self._partial: dict[int, _Partial] = {}
        self._seq = 0
        # (seq, index) of partial pieces with unrequested blocks, ascending
        self._open: list[tuple[int, int]] = []
        self._free_blocks = 0  # unrequested blocks over all partial pieces
        self._outstanding: dict[PeerKey, set[BlockRequest]] = {}
        self._pad_blocks = self._find_pad_blocks(pad_ranges)
        self._pad_masks = {
            piece: sum(1 << b for b in blocks)
            for piece, blocks in self._pad_blocks.items()
        }

    def _find_pad_blocks(
        self, pad_ranges: Iterable[tuple[int, int]]
    ) -> dict[int, frozenset[int]]:
        """Per piece, the blocks wholly inside (adjacent, merged) pad files."""
        merged: list[list[int]] = []
        for start, length in sorted(r for r in pad_ranges if r[1] > 0):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], start + length)
            else:
                merged.append([start, start + length])
        found: dict[int, set[int]] = {}
        for start, end in merged:
            if start < 0 or end > self._total:
                raise ClientError(
                    f"picker: pad range {start}..{end} is outside the "
                    f"{self._total}-byte torrent"
                )
            for piece in range(
                start // self._piece_length, -(-end // self._piece_length)
            ):
                base = piece * self._piece_length
                size = self.piece_size(piece)
                for b in range(self.blocks_in(piece)):
                    lo = base + b * self._block
                    hi = min(lo + self._block, base + size)
                    if start <= lo and hi <= end:
                        found.setdefault(piece, set()).add(b)
        return {
            piece: frozenset(blocks)
            for piece, blocks in found.items()
            if len(blocks) < self.blocks_in(piece)
        }

    def pad_blocks(self, index: int) -> frozenset[int]:
        """Blocks of piece ``index`` that are never requested (pad files)."""
        return self._pad_blocks.get(index, frozenset())

    # -- geometry ------------------------------------------------------------

    @property
    def num_pieces(self) -> int:
        return self._n

    def piece_size(self, index: int) -> int:
        """Bytes in piece ``index`` (the last one may be shorter)."""
        self._check_index(index)
        if index == self._n - 1:
            return self._total - self._piece_length * index
        return self._piece_length

    def blocks_in(self, index: int) -> int:
        """Number of blocks (requests) in piece ``index``."""
        return -(-self.piece_size(index) // self._block)

    def block(self, index: int, block_index: int) -> BlockRequest:
        """The request for block ``block_index`` of piece ``index``."""
        begin = block_index * self._block
        return BlockRequest(
            index, begin, min(self._block, self.piece_size(index) - begin)
        )

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self._n:
            raise IndexError(f"picker: piece {index} out of range 0..{self._n - 1}")

    # -- availability --------------------------------------------------------

    def _slots_of(self, bf: Bitfield) -> int:
        """``bf``'s pieces as a slot-order mask (O(pieces), in C loops)."""
        n = self._n
        if not n:
            return 0
        getter = self._to_slot_digits
        if getter is None:
            # digit k of the result is slot n-1-k; pick that slot's piece's digit
            getter = self._to_slot_digits = itemgetter(
                *[self._piece_at[n - 1 - k] for k in range(n)]
            )
        digits = format(bf.to_int(), f"0{self._wire_bits}b")
        return int("".join(getter(digits)), 2)

    def _add_availability(self, mask: int) -> None:
        """Add one to the count of every piece in slot mask ``mask``."""
        planes = self._planes
        carry = mask
        for j, plane in enumerate(planes):
            planes[j] = plane ^ carry
            carry &= plane
            if not carry:
                return
        if carry:
            planes.append(carry)

    def _sub_availability(self, mask: int) -> None:
        """Subtract one from the count of every piece in slot mask ``mask``."""
        planes = self._planes
        borrow = mask
        for j, plane in enumerate(planes):
            planes[j] = plane ^ borrow
            borrow &= ~plane
            if not borrow:
                break
        while planes and not planes[-1]:
            planes.pop()

    def peer_bitfield(self, peer: PeerKey, bf: Bitfield) -> None:
        """Record a peer's ``bitfield`` (or BEP 6 have-all/none) message."""
        if len(bf) != self._n:
            raise RemotePeerProtocolError(
                f"picker: bitfield has {len(bf)} pieces, torrent has {self._n}"
            )
        old = self._peers.get(peer)
        if old is not None:
            self._sub_availability(old.slots)
        slots = self._slots_of(bf)
        self._peers[peer] = _Announced(bf.to_int(), slots)
        self._add_availability(slots)

    def peer_have(self, peer: PeerKey, index: int) -> None:
        """Record a peer's ``have`` message.

        Raises:
            RemotePeerProtocolError: ``index`` is not a piece of this torrent.
        """
        if not 0 <= index < self._n:
            raise RemotePeerProtocolError(
                f"picker: have for piece {index}, torrent has {self._n} pieces"
            )
        ann = self._peers.get(peer)
        if ann is None:
            # BEP 3: a peer with nothing may skip the bitfield message.
            ann = self._peers[peer] = _Announced(0, 0)
        bit = 1 << (self._wire_bits - 1 - index)
        if not ann.wire & bit:
            ann.wire |= bit
            slot_bit = 1 << self._slot[index]
            ann.slots |= slot_bit
            self._add_availability(slot_bit)

    def peer_gone(self, peer: PeerKey, bf: Bitfield | None = None) -> None:
        """Forget a disconnected peer and return its outstanding blocks.

        Args:
            peer: the peer.
            bf: ignored; the picker subtracts what the peer announced to it.
        """
        del bf
        self.release(peer)
        self._outstanding.pop(peer, None)
        self._unannounced.pop(peer, None)
        old = self._peers.pop(peer, None)
        if old is not None:
            self._sub_availability(old.slots)

    def availability(self, index: int) -> int:
        """Connected peers that announced piece ``index``."""
        self._check_index(index)
        slot = self._slot[index]
        return sum(((p >> slot) & 1) << j for j, p in enumerate(self._planes))

    # -- our pieces ----------------------------------------------------------

    def have(self, index: int) -> bool:
        return self._have[index]

    def mark_have(self, index: int) -> list[tuple[PeerKey, BlockRequest]]:
        """Record a piece as had and verified (e.g. by the resume check).

        Returns:
            Requests for this piece still outstanding at peers (to cancel).
        """
        self._check_index(index)
        cancels: list[tuple[PeerKey, BlockRequest]] = []
        state = self._partial.pop(index, None)
        if state is not None:
            self._forget_partial(index, state)
            for b, peers in enumerate(state.requesters):
                if not peers:
                    continue
                req = self.block(index, b)
                for p in peers:
                    self._outstanding[p].discard(req)
                    cancels.append((p, req))
        if not self._have[index]:
            self._have.set(index)
            self._have_count += 1
            if state is None:
                self._fresh &= ~(1 << self._slot[index])
        return cancels

    @property
    def have_count(self) -> int:
        return self._have_count

    @property
    def is_complete(self) -> bool:
        return self._have_count == self._n

    def missing_pieces(self) -> list[int]:
        return [i for i, c in enumerate(self._have.to_string()) if c == "0"]

    def have_bitfield(self) -> Bitfield:
        """A copy of our bitfield, e.g. for the ``bitfield`` message."""
        return self._have.copy()

    def is_interesting(self, peer_bf: Bitfield) -> bool:
        """BEP 3 interest: the peer has a piece we lack."""
        return peer_bf.has_any_not_in(self._have)

    # -- partial pieces --------------------------------------------------------

    def _start(self, index: int) -> _Partial:
        """Move fresh piece ``index`` to partial (the newest)."""
        self._seq += 1
        state = self._partial[index] = _Partial(
            self.blocks_in(index), self._pad_masks.get(index, 0), self._seq
        )
        self._fresh &= ~(1 << self._slot[index])
        self._free_blocks += state.unreceived
        return state

    def _forget_partial(self, index: int, state: _Partial) -> None:
        """Undo ``state``'s share of the open list and the free-block count
        (``state`` was just popped from ``_partial``)."""
        if state.free:
            self._free_blocks -= state.free.bit_count()
            self._open.remove((state.seq, index))

    def _drop_if_idle(self, index: int, state: _Partial) -> None:
        if state.idle():
            del self._partial[index]
            self._forget_partial(index, state)
            self._fresh |= 1 << self._slot[index]

    def _take(
        self,
        peer: PeerKey,
        mine: set[BlockRequest],
        state: _Partial,
        index: int,
        room: int,
        picked: list[BlockRequest],
    ) -> None:
        """Assign up to ``room`` of ``state``'s free blocks to ``peer``, lowest
        first; the caller keeps ``_open`` in step with ``state.free``."""
        free = state.free
        size = self.piece_size(index)
        block = self._block
        requesters = state.requesters
        taken = 0
        while free and taken < room:
            low = free & -free
            free ^= low
            b = low.bit_length() - 1
            begin = b * block
            req = BlockRequest(index, begin, min(block, size - begin))
            requesters[b].add(peer)
            mine.add(req)
            picked.append(req)
            taken += 1
        state.free = free
        state.nreq += taken
        self._free_blocks -= taken

    # -- picking -------------------------------------------------------------

    def outstanding(self, peer: PeerKey) -> set[BlockRequest]:
        """A copy of the requests outstanding at ``peer``."""
        return set(self._outstanding.get(peer, ()))

    def outstanding_count(self, peer: PeerKey) -> int:
        """How many requests are outstanding at ``peer`` (O(1))."""
        mine = self._outstanding.get(peer)
        return len(mine) if mine is not None else 0

    def is_outstanding(self, peer: PeerKey, req: BlockRequest) -> bool:
        """Whether ``req`` is outstanding at ``peer`` (cheaper than a copy)."""
        mine = self._outstanding.get(peer)
        return mine is not None and req in mine

    def _candidates(self, peer: PeerKey, peer_bf: Bitfield) -> int:
        """Slot mask of ``peer_bf``, from the announced copy when it matches."""
        if len(peer_bf) != self._n:
            raise ClientError(
                f"picker: bitfield has {len(peer_bf)} pieces, torrent has {self._n}"
            )
        wire = peer_bf.to_int()
        for known in (self._peers.get(peer), self._unannounced.get(peer)):
            if known is not None and known.wire == wire:
                return known.slots
        slots = self._slots_of(peer_bf)
        self._unannounced[peer] = _Announced(wire, slots)
        return slots

    def pick(self, peer: PeerKey, peer_bf: Bitfield, n: int) -> list[BlockRequest]:
        """Up to ``n`` new requests for ``peer``, recorded as outstanding there.

        Args:
            peer: who the requests will go to.
            peer_bf: the pieces that peer has.
            n: free slots in its request pipeline.

        Raises:
            ClientError: ``peer_bf`` is not this torrent's size (a bug).
        """
        picked: list[BlockRequest] = []
        if n <= 0:
            return picked
        mine = self._outstanding.get(peer)
        if mine is None:
            mine = self._outstanding[peer] = set()
        # 1. finish started pieces first
        if self._open:
            emptied: list[tuple[int, int]] = []
            for entry in self._open:
                index = entry[1]
                if not peer_bf[index]:
                    continue
                state = self._partial[index]
                self._take(peer, mine, state, index, n - len(picked), picked)
                if not state.free:
                    emptied.append(entry)
                if len(picked) == n:
                    break
            for entry in emptied:
                self._open.remove(entry)
            if len(picked) == n:
                return picked
        # 2. start new pieces, rarest (or random) first; the lowest slot is a
        # random choice among equals
        candidates = self._candidates(peer, peer_bf) & self._fresh
        rarest = self._have_count >= self._random_first
        while candidates:
            chosen = candidates
            if rarest:
                for plane in reversed(self._planes):
                    fewer = chosen & ~plane
                    if fewer:
                        chosen = fewer
            low = chosen & -chosen
            candidates ^= low
            index = self._piece_at[low.bit_length() - 1]
            state = self._start(index)
            self._take(peer, mine, state, index, n - len(picked), picked)
            if state.free:
                self._open.append((state.seq, index))  # the newest start
            if len(picked) == n:
                return picked
        # 3. endgame: duplicate blocks outstanding elsewhere
        if self.in_endgame:
            for index, state in self._partial.items():
                if not peer_bf[index]:
                    continue
                unreceived = ((1 << len(state.requesters)) - 1) & ~state.received
                while unreceived:
                    low = unreceived & -unreceived
                    unreceived ^= low
                    b = low.bit_length() - 1
                    peers = state.requesters[b]
                    if peer not in peers and 0 < len(peers) < self._endgame_max:
                        req = self.block(index, b)
                        peers.add(peer)
                        state.nreq += 1
                        mine.add(req)
                        picked.append(req)
                        if len(picked) == n:
                            return picked
        return picked

    @property
    def in_endgame(self) -> bool:
        """Every missing block is requested or received, and some are missing."""
        missing = self._n - self._have_count
        return missing != 0 and missing == len(self._partial) and not self._free_blocks

    # -- results -------------------------------------------------------------

    def block_received(
        self, peer: PeerKey, index: int, begin: int, length: int
    ) -> BlockOutcome:
        """Account for a ``piece`` message from ``peer``.

        Returns:
            Whether to keep the data, whether the piece is now complete, and
            which duplicate requests to cancel.
        """
        if not 0 <= index < self._n or begin % self._block or begin < 0:
            return BlockOutcome(accepted=False)
        state = self._partial.get(index)
        if state is None:  # a had piece is never partial
            return BlockOutcome(accepted=False, duplicate=self._have[index])
        b = begin // self._block
        if b >= len(state.requesters):
            return BlockOutcome(accepted=False)
        if index == self._n - 1:
            size = self._total - self._piece_length * index
        else:
            size = self._piece_length
        if min(self._block, size - begin) != length:
            return BlockOutcome(accepted=False)
        req = BlockRequest(index, begin, length)
        mine = self._outstanding.get(peer)
        if mine:
            mine.discard(req)
        requesters = state.requesters[b]
        received = bool(state.received >> b & 1)
        if received or peer not in requesters:
            # a received block has no requesters, and a block this peer was
            # not asked for is refused even if another peer was (else a
            # hostile peer could slip garbage into an honest peer's piece
            # and get the honest one struck for the hash failure; issue 8)
            self._drop_if_idle(index, state)
            return BlockOutcome(accepted=False, duplicate=received)
        state.nreq -= len(requesters)
        requesters.discard(peer)
        cancels = [(p, req) for p in requesters]
        for p in requesters:
            self._outstanding[p].discard(req)
        requesters.clear()
        state.received |= 1 << b
        state.unreceived -= 1
        state.senders.add(peer)
        if not cancels:
            return _ACCEPTED_DONE if not state.unreceived else _ACCEPTED
        return BlockOutcome(
            accepted=True, piece_done=not state.unreceived, cancels=cancels
        )

    def piece_verified(self, index: int) -> list[tuple[PeerKey, BlockRequest]]:
        """The hash matched: we have the piece. Returns requests to cancel."""
        return self.mark_have(index)

    def piece_failed(self, index: int) -> frozenset[PeerKey]:
        """The hash failed: every block of the piece is missing again.

        Returns:
            The peers that sent blocks of it (the caller decides whom to ban).
        """
        self._check_index(index)
        state = self._partial.pop(index, None)
        if state is None:
            return frozenset()
        self._forget_partial(index, state)
        self._fresh |= 1 << self._slot[index]
        for b, peers in enumerate(state.requesters):
            if not peers:
                continue
            req = self.block(index, b)
            for p in peers:
                self._outstanding[p].discard(req)
        return frozenset(state.senders)

    def contributors(self, index: int) -> frozenset[PeerKey]:
        """Peers that sent accepted blocks of the (unverified) piece ``index``."""
        state = self._partial.get(index)
        return frozenset(state.senders) if state is not None else frozenset()

    def release(
        self, peer: PeerKey, reqs: Iterable[BlockRequest] | None = None
    ) -> None:
        """Return outstanding requests to the pool (choke, reject, snub, gone).

        Args:
            peer: the peer they were outstanding at.
            reqs: which ones; all of the peer's if None. Others are ignored.
        """
        mine = self._outstanding.get(peer)
        if not mine:
            return
        chosen = list(mine) if reqs is None else [r for r in reqs if r in mine]
        for req in chosen:
            mine.discard(req)
            index = req.index
            state = self._partial.get(index)
            if state is None:
                continue
            b = req.begin // self._block
            requesters = state.requesters[b]
            if peer in requesters:
                requesters.discard(peer)
                state.nreq -= 1
                if not requesters and not state.received >> b & 1:
                    if not state.free:
                        bisect.insort(self._open, (state.seq, index))
                    state.free |= 1 << b
                    self._free_blocks += 1
            self._drop_if_idle(index, state)
