"""The benchmark suite: bitswarm against real clients on one machine (issue 7).

Run from the project folder (pytest does not collect tests/bench)::

    python -m tests.bench [--quick] [--runs 3] [--only NAME,...] [--out FILE]

It installs nothing. It checks which other clients are present (libtorrent's
Python module, mktorrent, opentracker, wrk, GNU time), then runs each
benchmark with bitswarm and its anchor alternating (A B A B ...), ``--runs``
times each (3 by default; 1 with ``--quick``), and prints a table of medians
(min-max) with the ratio bitswarm/anchor, the floor and goal and whether
they hold, and the machine's 1-minute load average while it ran; ``--out``
writes the same as JSON. A missing client leaves its anchor empty, with a
note. Everything is on 127.0.0.1 and the data on /dev/shm; the third-party
clients run with DHT, LSD, UPnP and NAT-PMP off. For a guarantee that
nothing leaves the machine, run it in a fresh network namespace::

    unshare --net -- bash -c 'ip link set lo up && python -m tests.bench'

Benchmarks (``--only`` names): transfer (1 and 2: one seeder to one
leecher, leecher peak RSS against the file size), create (3), magnet (4),
swarm (5), tracker (6: HTTP with wrk, and UDP), dht (7).

``--quick`` uses small files and short loads (under 2 minutes; CI's smoke
test): it checks that every benchmark completes with correct output, not
its speed. The exit status is 0 when every run completed with correct
output; floors are reported, not enforced, unless ``--check-floors``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.bench.common import TIME_BIN, TMPFS, Context, Metric, loadavg, median

BENCHES = ("transfer", "create", "magnet", "swarm", "tracker", "dht")
TOOLS = ("libtorrent", "mktorrent", "opentracker", "wrk", "time")
# tmpfs space the data needs (sources and copies); less and it goes to disk
QUICK_TMPFS_BYTES = 512 * 2**20
FULL_TMPFS_BYTES = 3 * 2**30  # the 4 GiB RSS run checks for its own 8+ GiB


def _free(path: Path) -> int:
    return shutil.disk_usage(path).free


def find_tools() -> dict[str, str | None]:
    """Which other clients are here (nothing is installed)."""
    tools: dict[str, str | None] = {}
    try:
        lt = importlib.import_module("libtorrent")
        tools["libtorrent"] = f"libtorrent {lt.__version__} (Python module)"
    except ImportError:
        tools["libtorrent"] = None
    for name in ("mktorrent", "opentracker", "wrk"):
        tools[name] = shutil.which(name)
    tools["time"] = str(TIME_BIN) if TIME_BIN.exists() else None
    return tools


PACKAGES = ("client", "tracker", "dht")


def compile_project() -> str:
    """Write the project's bytecode caches, as ``pip install`` does.

    The benchmarks launch bitswarm from this folder; with
    PYTHONDONTWRITEBYTECODE set (or a read-only tree) every launch would
    compile every module it imports again (~40 ms a process here), a cost
    no installed copy pays. ``compileall`` writes the caches whatever that
    variable says."""
    import compileall

    root = Path(__file__).resolve().parents[2]
    ok = all(compileall.compile_dir(root / pkg, quiet=2, workers=1) for pkg in PACKAGES)
    return "bytecode caches written first" if ok else "some modules did not compile"


def _bench(name: str) -> Callable[[Context], list[Metric]]:
    module = importlib.import_module(f"tests.bench.bench_{name}")
    fn: Callable[[Context], list[Metric]] = module.run
    return fn


# -- the table ------------------------------------------------------------------------
def _num(value: float, unit: str) -> str:
    if unit in ("x",):
        return f"{value:.2f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def cell(values: list[float], m: Metric) -> str:
    med = median(values)
    if med is None:
        return "-"
    text = _num(med / m.scale, m.unit)
    if len(values) > 1:
        lo, hi = min(values) / m.scale, max(values) / m.scale
        text += f" ({_num(lo, m.unit)}-{_num(hi, m.unit)})"
    return text


def bound_text(m: Metric, bound: float | None) -> str:
    if bound is None:
        return ""
    sign = ">=" if m.better == "higher" else "<="
    if m.absolute:
        return f"{sign} {_num(bound / m.scale, m.unit)} {m.unit}"
    return f"{sign} {bound:g}x"


def verdict(m: Metric) -> str:
    if m.floor_holds is None and m.goal_holds is None:
        return ""
    parts = []
    if m.floor_holds is not None:
        parts.append("floor ok" if m.floor_holds else "FLOOR MISSED")
    if m.goal_holds is not None:
        parts.append("goal ok" if m.goal_holds else "goal missed")
    return ", ".join(parts)


COLUMNS = (
    "benchmark",
    "measure [unit]",
    "bitswarm median (min-max)",
    "anchor",
    "anchor median (min-max)",
    "ratio b/a",
    "floor",
    "goal",
    "verdict",
    "load",
)


def rows(metrics: list[Metric]) -> list[list[str]]:
    out = []
    for m in metrics:
        ratio = m.ratio
        load = f"{min(m.load):.1f}-{max(m.load):.1f}" if m.load else ""
        out.append(
            [
                m.bench,
                f"{m.name} [{m.unit}]",
                cell(m.bitswarm, m),
                m.anchor_name,
                cell(m.anchor, m),
                "-" if ratio is None else f"{ratio:.2f}",
                bound_text(m, m.floor),
                bound_text(m, m.goal),
                verdict(m),
                load,
            ]
        )
    return out


def markdown_table(metrics: list[Metric]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(r) + " |" for r in rows(metrics)]
    return "\n".join(lines)


def print_table(metrics: list[Metric], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for n, col in enumerate(COLUMNS):
        table.add_column(col, justify="left" if n < 2 else "right")
    previous = None
    for m, row in zip(metrics, rows(metrics), strict=True):
        if previous is not None and m.bench != previous:
            table.add_section()
        previous = m.bench
        table.add_row(*row)
    console = Console()
    console.width = max(console.width, 200)
    console.print(table)


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "mem_total_mib": _meminfo_mib("MemTotal"),
    }


def _meminfo_mib(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


# -- main -----------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.bench",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("--quick", action="store_true", help="small and short (CI smoke)")
    p.add_argument("--runs", type=int, help="runs per implementation (default 3)")
    p.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    p.add_argument("--out", metavar="FILE", help="write the results as JSON here")
    p.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per transfer (600)"
    )
    p.add_argument(
        "--check-floors", action="store_true", help="exit 1 when a floor is missed"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    names = BENCHES if not args.only else tuple(args.only.split(","))
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"error: unknown benchmark(s) {unknown}", file=sys.stderr)
        return 2
    runs = args.runs or (1 if args.quick else 3)
    tools = find_tools()
    print("clients:")
    for name in TOOLS:
        print(f"  {name}: {tools[name] or 'MISSING (its anchor is skipped)'}")
    compiled = compile_project()
    print(f"project: {compiled}")
    need = QUICK_TMPFS_BYTES if args.quick else FULL_TMPFS_BYTES
    base = TMPFS if TMPFS.is_dir() and _free(TMPFS) >= need else None
    started = time.time()
    metrics: list[Metric] = []
    timings: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bitswarm-suite-", dir=base) as tmp:
        ctx = Context(
            quick=args.quick,
            runs=runs,
            work=Path(tmp),
            timeout_s=args.timeout,
            tools=tools,
        )
        ctx.notes.append(f"bitswarm's modules: {compiled} (as an installed copy has)")
        if base is None:
            ctx.notes.append(
                f"/dev/shm missing or under {need // 2**20} MiB free: data in "
                f"{tmp} (disk speeds)"
            )
        for name in names:
            t0, load0 = time.monotonic(), loadavg()
            print(f"== {name} (load {load0:.2f})", flush=True)
            try:
                got = _bench(name)(ctx)
            except Exception as exc:  # a benchmark's bug must not hide the others
                ctx.error(f"{name}: {type(exc).__name__}: {exc}")
                got = []
            if not got:
                ctx.error(f"{name}: no results")
            metrics += got
            timings[name] = {
                "wall_s": time.monotonic() - t0,
                "load_start": load0,
                "load_end": loadavg(),
            }
            print(
                f"== {name} done in {timings[name]['wall_s']:.0f} s "
                f"(load {load0:.2f} -> {timings[name]['load_end']:.2f})",
                flush=True,
            )
    title = (
        f"bitswarm benchmark suite ({'quick' if args.quick else 'full'}, "
        f"{runs} run(s) each, loopback, tmpfs)"
    )
    print_table(metrics, title)
    for note in ctx.notes:
        print(f"note: {note}")
    for err in ctx.errors:
        print(f"error: {err}")
    missed = [m for m in metrics if m.floor_holds is False]
    if args.out:
        doc = {
            "suite": "bitswarm benchmarks (issue 7)",
            "mode": "quick" if args.quick else "full",
            "runs": runs,
            "started_unix": started,
            "wall_s": time.time() - started,
            "machine": machine_info(),
            "clients": tools,
            "benchmarks": timings,
            "metrics": [m.to_json() for m in metrics],
            "details": ctx.details,
            "notes": ctx.notes,
            "errors": ctx.errors,
            "floors_missed": [f"{m.bench}: {m.name}" for m in missed],
            "markdown": markdown_table(metrics),
        }
        Path(args.out).write_text(json.dumps(doc, indent=1, default=str) + "\n")
        print(f"wrote {args.out}")
    if ctx.errors:
        return 1
    return 1 if args.check_floors and missed else 0


if __name__ == "__main__":
    sys.exit(main())
