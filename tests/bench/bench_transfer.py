"""Benchmarks 1 and 2: one seeder to one leecher on loopback, and the
leecher's peak RSS against the file size.

1. A random file (1 GiB; 32 MiB with ``--quick``), 256 KiB pieces:
   bitswarm -> bitswarm vs libtorrent -> libtorrent, each pair two separate
   processes, runs alternating (bitswarm, libtorrent, bitswarm, ...). The
   rate runs from launching the leecher process to its ``completed`` event
   (every piece verified), and steady from 10% to 90% of the pieces; CPU
   seconds of the leecher (``/usr/bin/time -v``) and of the seeder (/proc,
   during the transfer).
2. The same leecher's peak RSS (``/usr/bin/time -v``), and bitswarm's peak
   RSS at 256 MiB and 4 GiB too (4 GiB only when tmpfs has room for source
   and copy), to show it does not grow with the file.

Each copy is compared byte for byte with the original.

The helpers here (seeders, leechers, one transfer) are shared with the
magnet and swarm benchmarks.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench.common import (
    MB,
    MIB,
    READY_TIMEOUT_S,
    BenchError,
    Context,
    EventReader,
    Metric,
    RunResult,
    bitswarm_cmd,
    fill_leecher_usage,
    loadavg,
    median,
    popen,
    proc_cpu_s,
    proc_hwm_bytes,
    reap,
    same_bytes,
    steady_rate,
    stop,
    tail,
    timed,
    torrent_for,
)

IMPLS = ("bitswarm", "libtorrent")
PIECE_BYTES = 256 * 1024
GIB = 1024 * MIB
PLAINTEXT = ("--encryption", "off")  # plain BitTorrent, no MSE
# bitswarm's seed and download join the public DHT by default: everything
# here stays on loopback, peers are given with --peer or by a tracker.
BITSWARM_PEER_OPTS = ("--host", "127.0.0.1", "--port", "0", "--no-dht", "--json")


@dataclass(slots=True)
class Seeder:
    impl: str
    proc: subprocess.Popen[bytes]
    port: int
    pieces: int
    err: Path

    @property
    def addr(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        stop(self.proc)


def start_seeder(
    impl: str, torrent: Path, data: Path, err: Path, extra: tuple[str, ...] = ()
) -> Seeder:
    """A seeder of DATA (its folder is the save path), ready to serve;
    EXTRA: more bitswarm options."""
    if impl == "bitswarm":
        cmd = bitswarm_cmd(
            "seed", str(data), "--torrent", str(torrent), *BITSWARM_PEER_OPTS, *extra
        )
    else:
        cmd = lt_cmd("seed", str(torrent), str(data.parent))
    proc = popen(cmd, err)
    try:
        assert proc.stdout is not None
        events = EventReader(proc.stdout)
        deadline = time.monotonic() + READY_TIMEOUT_S
        started = events.wait_for("started", deadline)
        checked = events.wait_for("checked", deadline)
        pieces = int(started.data["pieces"])
        if int(checked.data["have"]) != pieces:
            raise BenchError(f"{impl} seeder has {checked.data['have']}/{pieces}")
    except BenchError as exc:
        stop(proc)
        raise BenchError(f"{impl} seeder: {exc}: {tail(err)}") from None
    return Seeder(impl, proc, int(started.data["port"]), pieces, err)


def lt_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "tests.bench.lt_worker", *argv]


def leecher_cmd(
    impl: str, target: str, out: Path, peers: list[str], extra: tuple[str, ...] = ()
) -> list[str]:
    if impl == "bitswarm":
        given = [x for p in peers for x in ("--peer", p)]
        return bitswarm_cmd(
            "download", target, "-o", str(out), *BITSWARM_PEER_OPTS, *given, *extra
        )
    return lt_cmd("leech", target, str(out), *[x for p in peers for x in ("--peer", p)])


@dataclass(slots=True)
class Download:
    """One leecher process: launched, followed to ``completed``, reaped."""

    impl: str
    out: Path
    pieces: int
    proc: subprocess.Popen[bytes]
    events: EventReader
    t_launch: float
    time_report: Path | None
    err: Path
    points: list[tuple[float, int]] = field(default_factory=list)
    t_complete: float | None = None
    usage: Any = None
    result: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def launch(
        cls,
        impl: str,
        torrent: Path,
        out: Path,
        peers: list[str],
        pieces: int,
        extra: tuple[str, ...] = (),
    ) -> Download:
        out.mkdir(parents=True, exist_ok=True)
        cmd, report = timed(
            leecher_cmd(impl, str(torrent), out, peers, extra),
            out.with_suffix(".time"),
        )
        err = out.with_suffix(".err")
        t_launch = time.monotonic()
        proc = popen(cmd, err)
        assert proc.stdout is not None
        return cls(
            impl, out, pieces, proc, EventReader(proc.stdout), t_launch, report, err
        )

    def wait(self, deadline: float, on_complete: Any = None) -> None:
        """Follow the events to the end; fill ``result``."""
        try:
            for ev in self.events.events(deadline):
                name = ev.data.get("event")
                if name == "piece_verified":
                    self.points.append((float(ev.data["t"]), int(ev.data["have"])))
                elif name == "completed" and self.t_complete is None:
                    self.t_complete = ev.received
                    if on_complete is not None:
                        on_complete()
        finally:
            if self.proc.returncode is None and self.t_complete is None:
                self.proc.kill()
            self.usage = reap(self.proc, 30.0)
        if self.proc.returncode != 0 or self.t_complete is None:
            raise BenchError(
                f"{self.impl} leecher exited {self.proc.returncode} without "
                f"completing: {tail(self.err)}"
            )
        r = RunResult(impl=self.impl, run=0, size_bytes=0)
        fill_leecher_usage(r, self.time_report, self.usage)
        self.result = {
            "launch_to_complete_s": self.t_complete - self.t_launch,
            "steady_bytes_per_s": steady_rate(self.points, self.pieces, PIECE_BYTES),
            "leecher_peak_rss_bytes": r.leecher_peak_rss_bytes,
            "leecher_cpu_s": r.leecher_cpu_s,
            "measured_with": r.measured_with,
        }


def transfer_once(
    ctx: Context,
    impl: str,
    data: Path,
    torrent: Path,
    tag: str,
    extra: tuple[str, ...] = (),
) -> dict[str, Any]:
    """One seeder process to one leecher process; the copy is checked.
    EXTRA: more options for both bitswarm processes."""
    work = ctx.work / f"transfer-{tag}"
    work.mkdir()
    seeder = start_seeder(impl, torrent, data, work / "seed.err", extra)
    try:
        cpu0 = proc_cpu_s(seeder.proc.pid)
        marks: dict[str, Any] = {}

        def on_complete() -> None:
            marks["cpu1"] = proc_cpu_s(seeder.proc.pid)
            marks["hwm"] = proc_hwm_bytes(seeder.proc.pid)

        dl = Download.launch(
            impl, torrent, work / "leech", [seeder.addr], seeder.pieces
        )
        dl.wait(time.monotonic() + ctx.timeout_s, on_complete)
    finally:
        seeder.stop()
    res = dict(dl.result)
    if cpu0 is not None and marks.get("cpu1") is not None:
        res["seeder_cpu_s"] = marks["cpu1"] - cpu0
    res["seeder_peak_rss_bytes"] = marks.get("hwm")
    res["ok"] = same_bytes(data, work / "leech" / data.name)
    shutil.rmtree(work, ignore_errors=True)
    if not res["ok"]:
        raise BenchError(f"{impl} copy differs from the original ({tag})")
    return res


def run(ctx: Context) -> list[Metric]:
    size = 32 * MIB if ctx.quick else GIB
    label = f"{size // MIB} MiB" if size < GIB else f"{size // GIB} GiB"
    data = ctx.data(size)
    torrent = torrent_for(data, ctx.work / f"transfer-{size}.torrent")
    have_lt = ctx.tools.get("libtorrent") is not None
    impls = IMPLS if have_lt else IMPLS[:1]
    if not have_lt:
        ctx.notes.append("transfer: libtorrent missing, no anchor")

    rate = Metric(
        bench="1 transfer",
        name=f"{label} launch->verified",
        unit="MB/s",
        scale=MB,
        better="higher",
        anchor_name="libtorrent",
        floor=0.6,
        goal=1.0,
    )
    steady = Metric(
        bench="1 transfer",
        name=f"{label} steady 10-90%",
        unit="MB/s",
        scale=MB,
        better="higher",
        anchor_name="libtorrent",
    )
    lcpu = Metric(
        bench="1 transfer",
        name="leecher CPU",
        unit="s",
        scale=1.0,
        better="lower",
        anchor_name="libtorrent",
    )
    scpu = Metric(
        bench="1 transfer",
        name="seeder CPU",
        unit="s",
        scale=1.0,
        better="lower",
        anchor_name="libtorrent",
    )
    rss = Metric(
        bench="2 leecher RSS",
        name=f"peak RSS, {label}",
        unit="MiB",
        scale=MIB,
        better="lower",
        anchor_name="libtorrent",
        floor=96 * MIB,
        goal=64 * MIB,
        absolute=True,
    )
    plain = Metric(
        bench="1 transfer",
        name=f"{label} launch->verified, bitswarm --encryption off",
        unit="MB/s",
        scale=MB,
        better="higher",
        anchor_name="libtorrent",
        note="libtorrent's default (prefer_rc4 off) carries the payload in "
        "plaintext after its MSE handshake; bitswarm's default 'prefer' picks "
        "RC4 between two bitswarms",
    )
    plain.anchor = rate.anchor
    runs: list[dict[str, Any]] = []
    for n in range(1, ctx.runs + 1):
        if not ctx.quick:
            load = loadavg()
            ctx.log(
                f"transfer {label} bitswarm --encryption off run {n} (load {load:.2f})"
            )
            try:
                res = transfer_once(
                    ctx, "bitswarm", data, torrent, f"plain-{n}", PLAINTEXT
                )
            except BenchError as exc:
                ctx.error(f"transfer bitswarm --encryption off run {n}: {exc}")
            else:
                res.update(impl="bitswarm --encryption off", run=n, load=load)
                runs.append(res)
                plain.bitswarm.append(size / res["launch_to_complete_s"])
                plain.load.append(load)
                ctx.log(f"  {size / res['launch_to_complete_s'] / MB:.0f} MB/s")
        for impl in impls:
            load = loadavg()
            ctx.log(f"transfer {label} {impl} run {n} (load {load:.2f})")
            try:
                res = transfer_once(ctx, impl, data, torrent, f"{impl}-{n}")
            except BenchError as exc:
                ctx.error(f"transfer {impl} run {n}: {exc}")
                continue
            res.update(impl=impl, run=n, size_bytes=size, load=load)
            runs.append(res)
            side = "bitswarm" if impl == "bitswarm" else "anchor"
            getattr(rate, side).append(size / res["launch_to_complete_s"])
            if res["steady_bytes_per_s"]:
                getattr(steady, side).append(res["steady_bytes_per_s"])
            getattr(lcpu, side).append(res["leecher_cpu_s"])
            if res.get("seeder_cpu_s") is not None:
                getattr(scpu, side).append(res["seeder_cpu_s"])
            getattr(rss, side).append(res["leecher_peak_rss_bytes"])
            for m in (rate, steady, lcpu, scpu, rss):
                m.load.append(load)
            ctx.log(
                f"  {size / res['launch_to_complete_s'] / MB:.0f} MB/s, RSS "
                f"{res['leecher_peak_rss_bytes'] / MIB:.0f} MiB, leecher CPU "
                f"{res['leecher_cpu_s']:.2f} s"
            )
    ctx.drop_data(size)
    metrics = [rate, steady, lcpu, scpu, rss]
    if plain.bitswarm:
        metrics.insert(1, plain)
    metrics += rss_scaling(ctx, size, rss, runs)
    ctx.details["transfer"] = runs
    return metrics


def rss_scaling(
    ctx: Context, base_size: int, base: Metric, runs: list[dict[str, Any]]
) -> list[Metric]:
    """bitswarm's leecher peak RSS at a smaller and a larger file."""
    small, large = (8 * MIB, 128 * MIB) if ctx.quick else (256 * MIB, 4 * GIB)
    by_size: dict[int, list[float]] = {base_size: list(base.bitswarm)}
    metrics = []
    for size in (small, large):
        label = f"{size // MIB} MiB" if size < GIB else f"{size // GIB} GiB"
        free = shutil.disk_usage(ctx.work).free
        if free < 2 * size + 256 * MIB:
            ctx.notes.append(
                f"RSS at {label} skipped: {free // MIB} MiB free on tmpfs, "
                f"need {(2 * size + 256 * MIB) // MIB}"
            )
            continue
        data = ctx.data(size)
        torrent = torrent_for(data, ctx.work / f"transfer-{size}.torrent")
        m = Metric(
            bench="2 leecher RSS",
            name=f"peak RSS, {label} (bitswarm only)",
            unit="MiB",
            scale=MIB,
            better="lower",
            floor=96 * MIB,
            absolute=True,
        )
        load = loadavg()
        ctx.log(f"transfer {label} bitswarm (RSS scaling, load {load:.2f})")
        try:
            res = transfer_once(ctx, "bitswarm", data, torrent, f"rss-{size}")
        except BenchError as exc:
            ctx.error(f"transfer {label} bitswarm: {exc}")
            ctx.drop_data(size)
            continue
        res.update(impl="bitswarm", run=1, size_bytes=size, load=load)
        runs.append(res)
        m.bitswarm.append(res["leecher_peak_rss_bytes"])
        m.load.append(load)
        m.note = f"{size / res['launch_to_complete_s'] / MB:.0f} MB/s"
        by_size[size] = m.bitswarm
        metrics.append(m)
        ctx.drop_data(size)
        ctx.log(f"  RSS {res['leecher_peak_rss_bytes'] / MIB:.0f} MiB")
    if small in by_size and large in by_size:
        lo, hi = median(by_size[small]), median(by_size[large])
        if lo and hi:
            growth = Metric(
                bench="2 leecher RSS",
                name=f"RSS growth x{large // small} file",
                unit="x",
                scale=1.0,
                better="lower",
                floor=1.25,
                absolute=True,
                note=f"peak RSS at {large // MIB} MiB / at {small // MIB} MiB",
            )
            growth.bitswarm.append(hi / lo)
            metrics.append(growth)
    return metrics
