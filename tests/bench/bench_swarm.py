"""Benchmark 5: one seeder and 8 leechers, each a separate process, 256 MiB
(16 MiB and 3 leechers with ``--quick``), bitswarm swarm vs libtorrent swarm.

Per run: a fresh ``bitswarm tracker`` on loopback (the same tracker for both
implementations, so only the peers differ), a torrent naming it, the seeder
started and seen by the tracker (a scrape), then every leecher launched at
once. The time runs from the first launch to the last leecher's
``completed`` event (each leecher exits when it has verified every piece);
the rate is the file size over that time. Every copy is compared with the
original. Runs alternate between the implementations.
"""

from __future__ import annotations

import shutil
import time
import urllib.parse
import urllib.request
from typing import Any

import bencodepy

from tests.bench.bench_transfer import Download, start_seeder
from tests.bench.common import (
    MB,
    MIB,
    READY_TIMEOUT_S,
    BenchError,
    Context,
    EventReader,
    Metric,
    bitswarm_cmd,
    loadavg,
    median,
    popen,
    proc_cpu_s,
    same_bytes,
    stop,
    tail,
    torrent_for,
)


def _scrape_complete(announce_url: str, info_hash: bytes) -> int:
    scrape = announce_url.replace("/announce", "/scrape")
    url = f"{scrape}?info_hash={urllib.parse.quote_from_bytes(info_hash)}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        body = bencodepy.decode(reply.read())
    entry = body.get(b"files", {}).get(info_hash, {})
    return int(entry.get(b"complete", 0))


def swarm_once(
    ctx: Context, impl: str, size: int, leechers: int, tag: str
) -> dict[str, Any]:
    from client.maketorrent import load_metainfo

    data = ctx.data(size)
    work = ctx.work / f"swarm-{tag}"
    work.mkdir()
    tracker = popen(
        bitswarm_cmd("tracker", "--host", "127.0.0.1", "--port", "0", "--json"),
        work / "tracker.err",
    )
    seeder = None
    downloads: list[Download] = []
    try:
        assert tracker.stdout is not None
        listening = EventReader(tracker.stdout).wait_for(
            "tracker_listening", time.monotonic() + READY_TIMEOUT_S
        )
        url = str(listening.data["url"])
        torrent = torrent_for(data, work / "swarm.torrent", trackers=(url,))
        info_hash = load_metainfo(torrent).info_hash
        seeder = start_seeder(impl, torrent, data, work / "seed.err")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while _scrape_complete(url, info_hash) < 1:
            if time.monotonic() > deadline:
                raise BenchError(f"{impl} seeder never announced: {tail(seeder.err)}")
            time.sleep(0.05)
        seeder_cpu0 = proc_cpu_s(seeder.proc.pid)
        for k in range(leechers):
            downloads.append(
                Download.launch(impl, torrent, work / f"leech{k}", [], seeder.pieces)
            )
        deadline = time.monotonic() + ctx.timeout_s
        for dl in downloads:
            dl.wait(deadline)
        seeder_cpu1 = proc_cpu_s(seeder.proc.pid)
        t0 = downloads[0].t_launch
        ends = [dl.t_complete for dl in downloads if dl.t_complete is not None]
        for dl in downloads:
            if not same_bytes(data, dl.out / data.name):
                raise BenchError(f"{impl} swarm: {dl.out.name}'s copy differs")
        return {
            "impl": impl,
            "leechers": leechers,
            "size_bytes": size,
            "last_complete_s": max(ends) - t0,
            "first_complete_s": min(ends) - t0,
            "median_complete_s": median([e - t0 for e in ends]),
            "leecher_peak_rss_bytes": [
                dl.result["leecher_peak_rss_bytes"] for dl in downloads
            ],
            "leecher_cpu_s": [dl.result["leecher_cpu_s"] for dl in downloads],
            "seeder_cpu_s": (
                seeder_cpu1 - seeder_cpu0
                if seeder_cpu0 is not None and seeder_cpu1 is not None
                else None
            ),
        }
    finally:
        for dl in downloads:
            stop(dl.proc)
        if seeder is not None:
            seeder.stop()
        stop(tracker)
        shutil.rmtree(work, ignore_errors=True)


def run(ctx: Context) -> list[Metric]:
    size, leechers = (16 * MIB, 3) if ctx.quick else (256 * MIB, 8)
    have_lt = ctx.tools.get("libtorrent") is not None
    if not have_lt:
        ctx.notes.append("swarm: libtorrent missing, no anchor")
    impls = ("bitswarm", "libtorrent") if have_lt else ("bitswarm",)
    label = f"1+{leechers} procs, {size // MIB} MiB"
    rate = Metric(
        bench="5 swarm",
        name=f"{label}, size / last done",
        unit="MB/s",
        scale=MB,
        better="higher",
        anchor_name="libtorrent",
        floor=0.5,
        goal=1.0,
    )
    last = Metric(
        bench="5 swarm",
        name="launch to last leecher done",
        unit="s",
        scale=1.0,
        better="lower",
        anchor_name="libtorrent",
    )
    cpu = Metric(
        bench="5 swarm",
        name="CPU per leecher (median)",
        unit="s",
        scale=1.0,
        better="lower",
        anchor_name="libtorrent",
    )
    seed_cpu = Metric(
        bench="5 swarm",
        name="seeder CPU, leechers' launch to last done",
        unit="s",
        scale=1.0,
        better="lower",
        anchor_name="libtorrent",
    )
    rss = Metric(
        bench="5 swarm",
        name="peak RSS per leecher (max)",
        unit="MiB",
        scale=MIB,
        better="lower",
        anchor_name="libtorrent",
    )
    results = []
    for n in range(1, ctx.runs + 1):
        for impl in impls:
            load = loadavg()
            ctx.log(f"swarm {label} {impl} run {n} (load {load:.2f})")
            try:
                res = swarm_once(ctx, impl, size, leechers, f"{impl}-{n}")
            except BenchError as exc:
                ctx.error(f"swarm {impl} run {n}: {exc}")
                continue
            res.update(run=n, load=load)
            results.append(res)
            side = "bitswarm" if impl == "bitswarm" else "anchor"
            getattr(rate, side).append(size / res["last_complete_s"])
            getattr(last, side).append(res["last_complete_s"])
            cpus = [c for c in res["leecher_cpu_s"] if c is not None]
            rsses = [r for r in res["leecher_peak_rss_bytes"] if r is not None]
            if cpus:
                getattr(cpu, side).append(median(cpus))
            if rsses:
                getattr(rss, side).append(max(rsses))
            if res["seeder_cpu_s"] is not None:
                getattr(seed_cpu, side).append(res["seeder_cpu_s"])
            for m in (rate, last, cpu, seed_cpu, rss):
                m.load.append(load)
            ctx.log(
                f"  last done {res['last_complete_s']:.2f} s, first "
                f"{res['first_complete_s']:.2f} s"
            )
    ctx.drop_data(size)
    ctx.details["swarm"] = results
    return [rate, last, cpu, seed_cpu, rss]
