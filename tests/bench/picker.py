"""Piece picker micro-benchmark: a simulated download, picker calls only.

Run by hand from the project folder (pytest does not collect tests/bench)::

    python -m tests.bench.picker [--pieces 1024,4096,16384] [--out picker.json]
                                 [--baseline DIR] [--baseline-budget-s 60]

Each case downloads N pieces of 256 KiB (16 blocks; the last piece shorter)
from P simulated peers, calling the picker the way ``client/session.py`` does:
a peer's ``bitfield`` goes to ``peer_bitfield``, each ``have`` to
``peer_have`` (after the peer's own bitfield is updated), a peer with room in
its pipeline (depth 64 blocks) gets ``pick(peer, bitfield, room)``, each
delivered block goes to ``block_received`` (skipped when no longer
outstanding, as the session does), a completed piece to ``piece_verified``,
and every returned cancel removes the request from that peer's pipeline.
Peers deliver their oldest 8 outstanding blocks per round, so a pick returns
about 8 blocks on average, as in a profiled 1 GiB download.

Peer sets: ``1 full`` (one seeder), ``8 full`` (eight seeders) and ``8 rand``
(each peer has each piece with probability 1/2, piece i forced on peer i % 8,
and every round one peer announces a random piece it lacked with ``have``), so
rarest first and incremental availability are exercised.

Reported per case: microseconds spent in ``pick`` per block it returned,
microseconds in all picker calls per downloaded block, and seconds for the
whole simulated download. ``--baseline DIR`` also runs a copy of an older
``picker.py`` and ``bitfield.py`` kept in DIR (e.g. from ``git show
REV:client/core/picker.py``), each case stopped after ``--baseline-budget-s``
seconds; a stopped case is marked with the share of pieces it got through,
and its figures cover only that part (the old picker's cost per pick falls
as pieces are had, so a partial run overstates its average by up to ~2x).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import importlib.util
import json
import platform
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

BLOCK = 16384
BLOCKS_PER_PIECE = 16  # 256 KiB pieces, the bitswarm default
PIPELINE_DEPTH = 64  # blocks outstanding per peer
DELIVER_PER_ROUND = 8  # blocks each peer delivers before its next pick
SHORT_LAST_PIECE = 5000  # bytes missing from the last piece


@dataclass(slots=True, kw_only=True)
class CaseResult:
    impl: str
    pieces: int
    peers: int
    bitfields: str
    complete_fraction: float
    picks: int
    blocks_picked: int
    blocks_received: int
    pick_us_per_block: float
    picker_us_per_block: float
    total_s: float


def load_impl(folder: Path) -> tuple[Any, Any]:
    """The ``PiecePicker`` and ``Bitfield`` of a copied older version.

    The copy's ``from client.core.bitfield import Bitfield`` is pointed at the
    copied ``bitfield.py`` while it loads.
    """

    def load(name: str, path: Path) -> ModuleType:
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SystemExit(f"bench: cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up here
        spec.loader.exec_module(module)
        return module

    bitfield = load("_baseline_bitfield", folder / "bitfield.py")
    saved = sys.modules.get("client.core.bitfield")
    sys.modules["client.core.bitfield"] = bitfield
    try:
        picker = load("_baseline_picker", folder / "picker.py")
    finally:
        if saved is not None:
            sys.modules["client.core.bitfield"] = saved
        else:
            del sys.modules["client.core.bitfield"]
    return picker.PiecePicker, bitfield.Bitfield


def run_case(
    impl: str,
    picker_cls: Any,
    bitfield_cls: Any,
    n: int,
    peers: int,
    mode: str,
    seed: int,
    budget_s: float | None,
) -> CaseResult:
    rng = random.Random(seed)
    total = n * BLOCKS_PER_PIECE * BLOCK - SHORT_LAST_PIECE
    picker = picker_cls(n, BLOCKS_PER_PIECE * BLOCK, total, rng=random.Random(seed + 1))
    names = [f"peer{k}" for k in range(peers)]
    bfs: dict[str, Any] = {}
    for k, name in enumerate(names):
        if mode == "full":
            bf = bitfield_cls.full(n)
        else:
            bf = bitfield_cls(n)
            for i in range(n):
                if i % peers == k or rng.random() < 0.5:
                    bf.set(i)
        bfs[name] = bf
    queues: dict[str, collections.deque[Any]] = {p: collections.deque() for p in names}

    pick_s = 0.0
    other_s = 0.0
    picks = picked = received = 0
    clock = time.perf_counter
    start = clock()
    for name in names:
        t = clock()
        picker.peer_bitfield(name, bfs[name])
        other_s += clock() - t

    def drop(cancels: list[tuple[Any, Any]]) -> None:
        for p, req in cancels:
            with contextlib.suppress(ValueError):  # already delivered
                queues[p].remove(req)

    while not picker.is_complete:
        if budget_s is not None and clock() - start > budget_s:
            break
        if mode == "rand":
            name = names[rng.randrange(peers)]
            bf = bfs[name]
            i = rng.randrange(n)
            if not bf[i]:
                bf.set(i)
                t = clock()
                picker.peer_have(name, i)
                other_s += clock() - t
        progressed = False
        for name in names:
            q = queues[name]
            for _ in range(min(DELIVER_PER_ROUND, len(q))):
                req = q.popleft()
                t = clock()
                if not picker.is_outstanding(name, req):
                    other_s += clock() - t
                    continue
                out = picker.block_received(name, req.index, req.begin, req.length)
                cancels = out.cancels
                if out.piece_done:
                    cancels = cancels + picker.piece_verified(req.index)
                other_s += clock() - t
                received += out.accepted
                progressed = True
                drop(cancels)
            room = PIPELINE_DEPTH - len(q)
            if room > 0:
                t = clock()
                reqs = picker.pick(name, bfs[name], room)
                pick_s += clock() - t
                picks += 1
                picked += len(reqs)
                q.extend(reqs)
                progressed = progressed or bool(reqs)
        if not progressed:
            raise SystemExit(f"bench: {impl} stalled at {picker.have_count}/{n}")
    elapsed = clock() - start
    return CaseResult(
        impl=impl,
        pieces=n,
        peers=peers,
        bitfields=mode,
        complete_fraction=picker.have_count / n,
        picks=picks,
        blocks_picked=picked,
        blocks_received=received,
        pick_us_per_block=pick_s / max(picked, 1) * 1e6,
        picker_us_per_block=(pick_s + other_s) / max(received, 1) * 1e6,
        total_s=elapsed,
    )


HEADER = (
    f"{'impl':<9}{'pieces':>7}{'peers':>6} {'bf':<5}{'done':>6}{'picks':>8}"
    f"{'blocks':>9}{'pick us/blk':>13}{'picker us/blk':>15}{'total s':>10}"
)


def print_row(r: CaseResult) -> None:
    print(
        f"{r.impl:<9}{r.pieces:>7}{r.peers:>6} {r.bitfields:<5}"
        f"{r.complete_fraction:>6.0%}{r.picks:>8}{r.blocks_picked:>9}"
        f"{r.pick_us_per_block:>13.2f}{r.picker_us_per_block:>15.2f}"
        f"{r.total_s:>10.2f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pieces", default="1024,4096,16384")
    ap.add_argument(
        "--cases", default="1:full,8:full,8:rand", help="peers:full|rand, ..."
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--baseline", type=Path, help="folder with an older picker")
    ap.add_argument("--baseline-budget-s", type=float, default=60.0)
    ap.add_argument("--no-current", action="store_true", help="baseline only")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args(argv)

    from client.core.bitfield import Bitfield
    from client.core.picker import PiecePicker

    impls: list[tuple[str, Any, Any, float | None]] = []
    if args.baseline is not None:
        old_picker, old_bitfield = load_impl(args.baseline)
        impls.append(("before", old_picker, old_bitfield, args.baseline_budget_s))
    if not args.no_current:
        impls.append(("after", PiecePicker, Bitfield, None))
    cases = []
    for spec in args.cases.split(","):
        peers, mode = spec.split(":")
        cases.append((int(peers), mode))

    results: list[CaseResult] = []
    print(HEADER)
    print("-" * len(HEADER))
    for n in (int(x) for x in args.pieces.split(",")):
        for peers, mode in cases:
            for impl, picker_cls, bitfield_cls, budget in impls:
                r = run_case(
                    impl, picker_cls, bitfield_cls, n, peers, mode, args.seed, budget
                )
                results.append(r)
                print_row(r)
    if args.out is not None:
        args.out.write_text(
            json.dumps(
                {
                    "python": platform.python_version(),
                    "machine": platform.machine(),
                    "block_bytes": BLOCK,
                    "blocks_per_piece": BLOCKS_PER_PIECE,
                    "pipeline_depth": PIPELINE_DEPTH,
                    "deliver_per_round": DELIVER_PER_ROUND,
                    "results": [asdict(r) for r in results],
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
