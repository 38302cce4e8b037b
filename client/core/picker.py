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

Deliberately left out: piece priorities and file selection, sequential
(streaming) mode, speed classes ("fast" vs "slow" peers sharing a piece),
BEP 6 allowed-fast sets and suggest-piece.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

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


@dataclass(frozen=True, slots=True)
class BlockRequest:
    """One ``request``/``cancel``/``piece`` triple: piece index, offset, length."""

    index: int
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


class _Partial:
    """Per-block state of a started piece.

    Blocks that lie wholly inside BEP 47 pad files count as received from the
    start: their bytes are zeros by definition, so they are never requested.
    """

    __slots__ = ("fresh_unreceived", "received", "requesters", "senders", "unreceived")

    def __init__(self, blocks: int, pad_blocks: frozenset[int] = frozenset()) -> None:
        self.received = [b in pad_blocks for b in range(blocks)]
        self.requesters: list[set[PeerKey]] = [set() for _ in range(blocks)]
        self.senders: set[PeerKey] = set()
        self.unreceived = blocks - len(pad_blocks)
        self.fresh_unreceived = self.unreceived

    def idle(self) -> bool:
        """Nothing received and nothing outstanding: the piece is fresh again."""
        return self.unreceived == self.fresh_unreceived and not any(self.requesters)


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
        self._avail = [0] * num_pieces
        self._peers: dict[PeerKey, Bitfield] = {}
        # insertion order = start order, so the oldest started piece is finished first
        self._partial: dict[int, _Partial] = {}
        self._outstanding: dict[PeerKey, set[BlockRequest]] = {}
        self._pad_blocks = self._find_pad_blocks(pad_ranges)

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

    def peer_bitfield(self, peer: PeerKey, bf: Bitfield) -> None:
        """Record a peer's ``bitfield`` (or BEP 6 have-all/none) message."""
        if len(bf) != self._n:
            raise RemotePeerProtocolError(
                f"picker: bitfield has {len(bf)} pieces, torrent has {self._n}"
            )
        old = self._peers.get(peer)
        if old is not None:
            for i in old.indices():
                self._avail[i] -= 1
        self._peers[peer] = bf.copy()
        for i in bf.indices():
            self._avail[i] += 1

    def peer_have(self, peer: PeerKey, index: int) -> None:
        """Record a peer's ``have`` message.

        Raises:
            RemotePeerProtocolError: ``index`` is not a piece of this torrent.
        """
        if not 0 <= index < self._n:
            raise RemotePeerProtocolError(
                f"picker: have for piece {index}, torrent has {self._n} pieces"
            )
        bf = self._peers.get(peer)
        if bf is None:
            # BEP 3: a peer with nothing may skip the bitfield message.
            bf = self._peers[peer] = Bitfield(self._n)
        if not bf[index]:
            bf.set(index)
            self._avail[index] += 1

    def peer_gone(self, peer: PeerKey, bf: Bitfield | None = None) -> None:
        """Forget a disconnected peer and return its outstanding blocks.

        Args:
            peer: the peer.
            bf: ignored; the picker subtracts what the peer announced to it.
        """
        del bf
        self.release(peer)
        self._outstanding.pop(peer, None)
        old = self._peers.pop(peer, None)
        if old is not None:
            for i in old.indices():
                self._avail[i] -= 1

    def availability(self, index: int) -> int:
        """Connected peers that announced piece ``index``."""
        return self._avail[index]

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
            for b, peers in enumerate(state.requesters):
                req = self.block(index, b)
                for p in peers:
                    self._outstanding[p].discard(req)
                    cancels.append((p, req))
        if not self._have[index]:
            self._have.set(index)
            self._have_count += 1
        return cancels

    @property
    def have_count(self) -> int:
        return self._have_count

    @property
    def is_complete(self) -> bool:
        return self._have_count == self._n

    def missing_pieces(self) -> list[int]:
        return [i for i in range(self._n) if not self._have[i]]

    def have_bitfield(self) -> Bitfield:
        """A copy of our bitfield, e.g. for the ``bitfield`` message."""
        return self._have.copy()

    def is_interesting(self, peer_bf: Bitfield) -> bool:
        """BEP 3 interest: the peer has a piece we lack."""
        return peer_bf.has_any_not_in(self._have)

    # -- picking -------------------------------------------------------------

    def outstanding(self, peer: PeerKey) -> set[BlockRequest]:
        """A copy of the requests outstanding at ``peer``."""
        return set(self._outstanding.get(peer, ()))

    def is_outstanding(self, peer: PeerKey, req: BlockRequest) -> bool:
        """Whether ``req`` is outstanding at ``peer`` (cheaper than a copy)."""
        mine = self._outstanding.get(peer)
        return mine is not None and req in mine

    def _assign(
        self, peer: PeerKey, state: _Partial, index: int, b: int
    ) -> BlockRequest:
        req = self.block(index, b)
        state.requesters[b].add(peer)
        self._outstanding.setdefault(peer, set()).add(req)
        return req

    def pick(self, peer: PeerKey, peer_bf: Bitfield, n: int) -> list[BlockRequest]:
        """Up to ``n`` new requests for ``peer``, recorded as outstanding there.

        Args:
            peer: who the requests will go to.
            peer_bf: the pieces that peer has.
            n: free slots in its request pipeline.
        """
        picked: list[BlockRequest] = []
        if n <= 0:
            return picked
        # 1. finish started pieces first
        for index, state in self._partial.items():
            if not peer_bf[index] or not state.unreceived:
                continue
            for b, peers in enumerate(state.requesters):
                if not peers and not state.received[b]:
                    picked.append(self._assign(peer, state, index, b))
                    if len(picked) == n:
                        return picked
        # 2. start new pieces, rarest (or random) first
        candidates = [
            i for i in peer_bf.indices() if not self._have[i] and i not in self._partial
        ]
        self._rng.shuffle(candidates)
        if self._have_count >= self._random_first:
            candidates.sort(key=self._avail.__getitem__)  # stable: random among equals
        for index in candidates:
            state = self._partial[index] = _Partial(
                self.blocks_in(index), self.pad_blocks(index)
            )
            for b in range(len(state.received)):
                if state.received[b]:
                    continue
                picked.append(self._assign(peer, state, index, b))
                if len(picked) == n:
                    return picked
        # 3. endgame: duplicate blocks outstanding elsewhere
        if self.in_endgame:
            for index, state in self._partial.items():
                if not peer_bf[index]:
                    continue
                for b, peers in enumerate(state.requesters):
                    if (
                        not state.received[b]
                        and peer not in peers
                        and 0 < len(peers) < self._endgame_max
                    ):
                        picked.append(self._assign(peer, state, index, b))
                        if len(picked) == n:
                            return picked
        return picked

    @property
    def in_endgame(self) -> bool:
        """Every missing block is requested or received, and some are missing."""
        missing = self._n - self._have_count
        if missing == 0 or missing != len(self._partial):
            return False
        return all(
            state.received[b] or peers
            for state in self._partial.values()
            for b, peers in enumerate(state.requesters)
        )

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
        if self._have[index]:
            return BlockOutcome(accepted=False, duplicate=True)
        state = self._partial.get(index)
        b = begin // self._block
        if state is None or b >= len(state.received):
            return BlockOutcome(accepted=False)
        req = self.block(index, b)
        if req.length != length:
            return BlockOutcome(accepted=False)
        self._outstanding.get(peer, set()).discard(req)
        requesters = state.requesters[b]
        if state.received[b] or not requesters:
            requesters.discard(peer)
            if state.idle():
                del self._partial[index]
            return BlockOutcome(accepted=False, duplicate=state.received[b])
        requesters.discard(peer)
        cancels = [(p, req) for p in requesters]
        for p in requesters:
            self._outstanding[p].discard(req)
        requesters.clear()
        state.received[b] = True
        state.unreceived -= 1
        state.senders.add(peer)
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
        for b, peers in enumerate(state.requesters):
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
            state = self._partial.get(req.index)
            if state is None:
                continue
            state.requesters[req.begin // self._block].discard(peer)
            if state.idle():
                del self._partial[req.index]
