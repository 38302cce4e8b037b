"""Benchmark 3: making a torrent of a 1 GiB file (64 MiB with ``--quick``),
256 KiB pieces: ``bitswarm create`` vs ``mktorrent -t 2``, each a process
timed from launch to exit, alternating. Both torrents must carry the same
piece hashes. Also reported: bitswarm's hashing alone, in this process
(``create_torrent``), which leaves out the interpreter start and imports;
and the start cost alone: both commands on a one-piece file.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import bencodepy

from tests.bench.common import (
    MB,
    MIB,
    ROOT,
    BenchError,
    Context,
    Metric,
    bitswarm_cmd,
    loadavg,
)

PIECE_LOG2 = 18  # 256 KiB pieces, mktorrent's -l
TINY_BYTES = 64 * 1024  # one piece: the run is all process start and exit
MS = 1000.0
# The same work as ``bitswarm create`` with only client.maketorrent imported:
# how much of the command's time is the CLI's own start (argparse, the
# subcommand modules); it should cost no more than the lean script, since the
# CLI imports a command's dependencies only when the command runs.
LEAN_CREATE = [
    sys.executable,
    "-c",
    "import sys; from pathlib import Path; "
    "from client.maketorrent import create_torrent, write_torrent; "
    "write_torrent(create_torrent(Path(sys.argv[1])), Path(sys.argv[2]))",
]


def _pieces(torrent: Path) -> bytes:
    meta = bencodepy.decode(torrent.read_bytes())
    pieces: bytes = meta[b"info"][b"pieces"]
    return pieces


def _timed(cmd: list[str]) -> float:
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, check=False)
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise BenchError(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')}")
    return elapsed


def run(ctx: Context) -> list[Metric]:
    from client.maketorrent import create_torrent

    size = 64 * MIB if ctx.quick else 1024 * MIB
    label = f"{size // MIB} MiB"
    data = ctx.data(size)
    out = ctx.work / "create"
    out.mkdir()
    mktorrent = ctx.tools.get("mktorrent")
    if mktorrent is None:
        ctx.notes.append("create: mktorrent missing, no anchor")
    proc_rate = Metric(
        bench="3 create",
        name=f"{label}, launch to exit",
        unit="MB/s",
        scale=MB,
        better="higher",
        anchor_name="mktorrent -t 2",
        floor=0.9,
        goal=1.0,
    )
    inproc = Metric(
        bench="3 create",
        name=f"{label}, hashing in process",
        unit="MB/s",
        scale=MB,
        better="higher",
        anchor_name="mktorrent -t 2",
        note="create_torrent() without interpreter start and imports",
    )
    lazy = Metric(
        bench="3 create",
        name=f"{label}, launch to exit, create-only imports",
        unit="MB/s",
        scale=MB,
        better="higher",
        anchor_name="mktorrent -t 2",
        note="what a CLI that imports only maketorrent for 'create' would give",
    )
    start = Metric(
        bench="3 create",
        name="one-piece file, launch to exit",
        unit="ms",
        scale=1 / MS,
        better="lower",
        anchor_name="mktorrent -t 2",
        note="the fixed cost of a run: interpreter start, imports, exit",
    )
    tiny = _tiny_file(ctx.work / "create-tiny")
    want: bytes | None = None
    for n in range(1, ctx.runs + 1):
        load = loadavg()
        ctx.log(f"create {label} run {n} (load {load:.2f})")
        ours = out / f"bitswarm-{n}.torrent"
        cmd = bitswarm_cmd(
            "create", str(data), "-o", str(ours), "--piece-length", "256K"
        )
        try:
            proc_rate.bitswarm.append(size / _timed(cmd))
        except BenchError as exc:
            ctx.error(f"create bitswarm run {n}: {exc}")
            continue
        pieces = _pieces(ours)
        if want is None:
            want = pieces
        elif pieces != want:
            ctx.error(f"create bitswarm run {n}: piece hashes differ between runs")
        proc_rate.load.append(load)
        if mktorrent is not None:
            theirs = out / f"mktorrent-{n}.torrent"
            mk = [mktorrent, "-t", "2", "-l", str(PIECE_LOG2), "-o", str(theirs)]
            try:
                elapsed = _timed([*mk, str(data)])
            except BenchError as exc:
                ctx.error(f"create mktorrent run {n}: {exc}")
                continue
            proc_rate.anchor.append(size / elapsed)
            inproc.anchor.append(size / elapsed)
            if _pieces(theirs) != want:
                ctx.error(f"create run {n}: mktorrent's piece hashes differ from ours")
        lean = out / f"lean-{n}.torrent"
        try:
            lazy.bitswarm.append(size / _timed([*LEAN_CREATE, str(data), str(lean)]))
            lazy.load.append(load)
        except BenchError as exc:
            ctx.error(f"create (create-only imports) run {n}: {exc}")
        if _pieces(lean) != want:
            ctx.error(f"create run {n}: create-only imports gave other hashes")
        lazy.anchor = proc_rate.anchor
        _time_start(ctx, tiny, out, n, mktorrent, start)
        start.load.append(load)
        t0 = time.monotonic()
        create_torrent(data, threads=2)
        inproc.bitswarm.append(size / (time.monotonic() - t0))
        inproc.load.append(load)
    ctx.log(
        "  bitswarm "
        + ", ".join(f"{r / MB:.0f}" for r in proc_rate.bitswarm)
        + " MB/s; mktorrent "
        + ", ".join(f"{r / MB:.0f}" for r in proc_rate.anchor)
        + " MB/s; one-piece file: bitswarm "
        + ", ".join(f"{t * MS:.0f}" for t in start.bitswarm)
        + " ms, mktorrent "
        + ", ".join(f"{t * MS:.0f}" for t in start.anchor)
        + " ms"
    )
    ctx.drop_data(size)
    return [proc_rate, lazy, inproc, start]


def _tiny_file(folder: Path) -> Path:
    folder.mkdir()
    path = folder / "tiny.bin"
    path.write_bytes(bytes(range(256)) * (TINY_BYTES // 256))
    return path


def _time_start(
    ctx: Context, tiny: Path, out: Path, n: int, mktorrent: str | None, m: Metric
) -> None:
    """One run each of both commands on a one-piece file, into ``m``."""
    ours = out / f"tiny-bitswarm-{n}.torrent"
    cmd = bitswarm_cmd("create", str(tiny), "-o", str(ours), "--piece-length", "256K")
    try:
        m.bitswarm.append(_timed(cmd))
        if mktorrent is not None:
            theirs = out / f"tiny-mktorrent-{n}.torrent"
            mk = [mktorrent, "-t", "2", "-l", str(PIECE_LOG2), "-o", str(theirs)]
            m.anchor.append(_timed([*mk, str(tiny)]))
            if _pieces(theirs) != _pieces(ours):
                ctx.error(f"create one-piece run {n}: piece hashes differ")
    except BenchError as exc:
        ctx.error(f"create one-piece run {n}: {exc}")
