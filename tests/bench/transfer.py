"""Loopback transfer benchmark: one seeder to one leecher, data on tmpfs.

Run by hand from the project folder (pytest does not collect tests/bench)::

    python -m tests.bench.transfer [--size 256M] [--runs 1] [--out results.json]

Each run makes a random file of SIZE in a temporary folder under /dev/shm,
times ``bitswarm create`` on it (256 KiB pieces, no tracker), starts
``bitswarm seed`` on 127.0.0.1 with an ephemeral port and no DHT, and runs
``bitswarm download --no-dht --peer 127.0.0.1:PORT`` against it under
``/usr/bin/time -v`` (when present) for the leecher's peak RSS and CPU time.
It reports:

- creation MB/s (wall time of the ``create`` process, interpreter start included);
- launch to complete MB/s: from starting the leecher process to its
  ``completed`` event (interpreter start, handshake and checking included);
- steady MB/s: bytes verified between 10% and 90% of the pieces, over the
  leecher's own event timestamps;
- peak RSS and CPU seconds (user + system) of the leecher, and the CPU the
  already-running seeder spent during the transfer (from /proc).

The copy must hash equal to the original. MB is 10^6 bytes, MiB 2^20.

If libtorrent's Python module or ``aria2c`` is installed, the same transfer
runs with them as reference rows (libtorrent: both sessions in one worker
process; aria2: two processes that find each other through a ``bitswarm
tracker`` on loopback, aria2 having no way to add a peer by hand). Nothing is
installed; missing clients are skipped with a note. Everything binds
127.0.0.1 only; DHT, LSD, UPnP, NAT-PMP and uTP are off for the reference
clients.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench.common import (
    MB,
    MIB,
    PIECE_LENGTH,
    READY_TIMEOUT_S,
    ROOT,
    TIME_BIN,
    TMPFS,
    BenchError,
    EventReader,
    RunResult,
    bitswarm_cmd,
    fill_leecher_usage,
    make_random_file,
    parse_size,
    popen,
    proc_cpu_s,
    proc_hwm_bytes,
    reap,
    sha256_file,
    steady_rate,
    stop,
    tail,
    timed,
)
from tests.bench.reference import lt_worker, run_aria2, run_libtorrent

# Seed and download join the public DHT by default: the benchmark stays on
# loopback, and the one peer is given with --peer.
LOOPBACK_ONLY = ("--no-dht",)


# -- bitswarm -> bitswarm --------------------------------------------------------------
def create_torrent(data: Path, torrent: Path) -> float:
    """``bitswarm create``; returns its wall time."""
    t0 = time.monotonic()
    proc = subprocess.run(
        bitswarm_cmd(
            "create", str(data), "-o", str(torrent), "--piece-length", PIECE_LENGTH
        ),
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise BenchError(
            f"bitswarm create failed: {proc.stderr.decode(errors='replace')}"
        )
    return elapsed


def run_bitswarm(
    work: Path, data: Path, torrent: Path, want_sha: str, run: int, timeout_s: float
) -> RunResult:
    size = data.stat().st_size
    res = RunResult(impl="bitswarm -> bitswarm", run=run, size_bytes=size)
    res.create_s = create_torrent(data, torrent)
    leech_dir = work / f"leech-{run}"
    seeder: subprocess.Popen[bytes] | None = None
    leecher: subprocess.Popen[bytes] | None = None
    try:
        seeder = popen(
            bitswarm_cmd(
                "seed",
                str(data),
                "--torrent",
                str(torrent),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                *LOOPBACK_ONLY,
                "--json",
            ),
            work / "seed.err",
        )
        assert seeder.stdout is not None
        seed_events = EventReader(seeder.stdout)
        deadline = time.monotonic() + READY_TIMEOUT_S
        started = seed_events.wait_for("started", deadline)
        port = int(started.data["port"])
        pieces = int(started.data["pieces"])
        checked = seed_events.wait_for("checked", deadline)
        if int(checked.data["have"]) != pieces:
            raise BenchError(f"seeder has {checked.data['have']}/{pieces} pieces")

        cmd = bitswarm_cmd(
            "download",
            str(torrent),
            "-o",
            str(leech_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--peer",
            f"127.0.0.1:{port}",
            *LOOPBACK_ONLY,
            "--json",
        )
        cmd, time_report = timed(cmd, work / f"time-{run}.txt")
        seeder_cpu0 = proc_cpu_s(seeder.pid)
        t_launch = time.monotonic()
        leecher = popen(cmd, work / "leech.err")
        assert leecher.stdout is not None
        points: list[tuple[float, int]] = []
        t_complete: float | None = None
        seeder_cpu1: float | None = None
        for ev in EventReader(leecher.stdout).events(t_launch + timeout_s):
            name = ev.data.get("event")
            if name == "piece_verified":
                points.append((float(ev.data["t"]), int(ev.data["have"])))
            elif name == "completed":
                t_complete = ev.received
                seeder_cpu1 = proc_cpu_s(seeder.pid)
                res.seeder_peak_rss_bytes = proc_hwm_bytes(seeder.pid)
        usage = reap(leecher, 30.0)
        if leecher.returncode != 0 or t_complete is None:
            raise BenchError(
                f"leecher exited {leecher.returncode} without completing: "
                f"{tail(work / 'leech.err')}"
            )
        res.launch_to_complete_s = t_complete - t_launch
        res.steady_bytes_per_s = steady_rate(points, pieces, parse_size(PIECE_LENGTH))
        if seeder_cpu0 is not None and seeder_cpu1 is not None:
            res.seeder_cpu_s = seeder_cpu1 - seeder_cpu0
        fill_leecher_usage(res, time_report, usage)
        res.ok = sha256_file(leech_dir / data.name) == want_sha
        if not res.ok:
            res.note = "downloaded file differs from the original"
    except BenchError as exc:
        res.note = str(exc)
    finally:
        if leecher is not None and leecher.returncode is None:
            leecher.kill()
            reap(leecher, 5.0)
        stop(seeder)
        shutil.rmtree(leech_dir, ignore_errors=True)
    return res


# -- report ----------------------------------------------------------------------------
def _fmt(value: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


COLUMNS = (
    "implementation",
    "run",
    "MiB",
    "create MB/s",
    "launch→done MB/s",
    "10-90% MB/s",
    "leecher RSS MiB",
    "leecher CPU s",
    "seeder CPU s",
    "same",
)


def table_rows(results: list[RunResult]) -> list[list[str]]:
    return [
        [
            r.impl,
            str(r.run),
            _fmt(r.size_bytes, MIB, 0),
            _fmt(r.create_rate, MB),
            _fmt(r.launch_rate, MB),
            _fmt(r.steady_bytes_per_s, MB),
            _fmt(r.leecher_peak_rss_bytes, MIB),
            _fmt(r.leecher_cpu_s, digits=2),
            _fmt(r.seeder_cpu_s, digits=2),
            "yes" if r.ok else "NO",
        ]
        for r in results
    ]


def print_table(results: list[RunResult], notes: list[str]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("\t".join(COLUMNS))
        for row in table_rows(results):
            print("\t".join(row))
    else:
        table = Table(title="loopback transfer, one seeder to one leecher (tmpfs)")
        for n, col in enumerate(COLUMNS):
            table.add_column(col, justify="left" if n == 0 else "right", no_wrap=n == 0)
        for row in table_rows(results):
            table.add_row(*row)
        console = Console()
        console.width = max(console.width, 132)  # one line a row, even in a pipe
        console.print(table)
    for r in results:
        if r.note:
            print(f"note: {r.impl} run {r.run}: {r.note}")
    for note in notes:
        print(f"note: {note}")


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "tmpfs": str(TMPFS),
    }


# -- main ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench.transfer", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--size",
        type=parse_size,
        default=parse_size("256M"),
        help="file size, e.g. 64M, 256M, 1G (default 256M)",
    )
    p.add_argument("--runs", type=int, default=1, help="transfers per implementation")
    p.add_argument("--out", metavar="FILE", help="write the results as JSON here")
    p.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="seconds allowed per transfer (default 600)",
    )
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="skip libtorrent and aria2 even if installed",
    )
    p.add_argument(
        "--lt-worker",
        nargs=4,
        help=argparse.SUPPRESS,
        metavar=("TORRENT", "SEED_DIR", "LEECH_DIR", "TIMEOUT"),
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.lt_worker:
        torrent, seed_dir, leech_dir, timeout = args.lt_worker
        return lt_worker(torrent, seed_dir, leech_dir, float(timeout))

    notes: list[str] = []
    base = TMPFS if TMPFS.is_dir() else None
    if base is None:
        notes.append("/dev/shm missing: data in the default temp dir (disk speeds)")
    need = 3 * args.size + 64 * MIB
    if shutil.disk_usage(base or tempfile.gettempdir()).free < need:
        print(f"error: need {need // MIB} MiB free on {base}", file=sys.stderr)
        return 1
    if not TIME_BIN.exists():
        notes.append("/usr/bin/time missing: leecher RSS/CPU from wait4 rusage")

    results: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="bitswarm-bench-", dir=base) as tmp:
        work = Path(tmp)
        seed_dir = work / "seed"
        seed_dir.mkdir()
        data = seed_dir / "random.bin"
        print(
            f"making {args.size / MIB:.0f} MiB of random data in {work} ...", flush=True
        )
        want_sha = make_random_file(data, args.size)
        torrent = work / "random.bin.torrent"
        for run in range(1, args.runs + 1):
            print(f"bitswarm run {run} ...", flush=True)
            results.append(
                run_bitswarm(work, data, torrent, want_sha, run, args.timeout)
            )

        if args.no_reference:
            notes.append("reference clients skipped (--no-reference)")
        else:
            try:
                importlib.import_module("libtorrent")
            except ImportError:
                notes.append("libtorrent (Python module) not installed: row skipped")
            else:
                for run in range(1, args.runs + 1):
                    print(f"libtorrent run {run} ...", flush=True)
                    results.append(
                        run_libtorrent(work, data, torrent, want_sha, run, args.timeout)
                    )
            aria2c = shutil.which("aria2c")
            if aria2c is None:
                notes.append("aria2c not installed: row skipped")
            else:
                for run in range(1, args.runs + 1):
                    print(f"aria2 run {run} ...", flush=True)
                    results.append(
                        run_aria2(
                            aria2c, work, data, torrent, want_sha, run, args.timeout
                        )
                    )

    print_table(results, notes)
    if args.out:
        doc = {
            "benchmark": "loopback transfer, one seeder to one leecher",
            "size_bytes": args.size,
            "piece_length": PIECE_LENGTH,
            "units": {"rates": "bytes/s", "MB": MB, "MiB": MIB},
            "machine": machine_info(),
            "results": [r.to_json() for r in results],
            "notes": notes,
        }
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0 if results and all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
