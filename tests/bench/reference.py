"""Reference rows for the transfer benchmark: libtorrent and aria2 on loopback."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.bench.common import (
    PIECE_LENGTH,
    POLL_S,
    READY_TIMEOUT_S,
    ROOT,
    BenchError,
    EventReader,
    RunResult,
    WriteSampler,
    bitswarm_cmd,
    fill_leecher_usage,
    free_port,
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


# -- libtorrent -> libtorrent (reference) ---------------------------------------------
def _lt_settings() -> dict[str, Any]:
    # INTEROP-NOTES: loopback only, nothing that finds or maps peers by itself;
    # every peer is 127.0.0.1, so several connections per IP must be allowed.
    return {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": 0,
    }


def lt_worker(torrent: str, seed_dir: str, leech_dir: str, timeout_s: float) -> int:
    """Child process: a libtorrent seeder and leecher session in one process,
    printing bitswarm-style JSON events (``t`` from the worker's start)."""
    lt: Any = importlib.import_module("libtorrent")  # untyped; optional
    t0 = time.monotonic()

    def emit(name: str, **fields: Any) -> None:
        record = {"event": name, "t": round(time.monotonic() - t0, 4), **fields}
        print(json.dumps(record), flush=True)

    def add(ses: Any, save_path: str) -> Any:
        atp = lt.add_torrent_params()
        atp.ti = lt.torrent_info(torrent)
        atp.save_path = save_path
        # Added paused and auto-managed by default, starting ~0.5 s later.
        atp.flags &= ~lt.torrent_flags.auto_managed
        atp.flags &= ~lt.torrent_flags.paused
        return ses.add_torrent(atp)

    deadline = t0 + timeout_s
    seed_ses = lt.session(_lt_settings())
    seed_handle = add(seed_ses, seed_dir)
    while not seed_handle.status().is_seeding:
        if time.monotonic() > deadline:
            emit("error", reason="seeder did not finish checking")
            return 1
        time.sleep(POLL_S)
    pieces = seed_handle.status().num_pieces
    emit("checked", have=pieces, pieces=pieces)
    emit("launch")
    leech_ses = lt.session(_lt_settings())
    leech_handle = add(leech_ses, leech_dir)
    leech_handle.connect_peer(("127.0.0.1", seed_ses.listen_port()))
    have = -1
    while True:
        status = leech_handle.status()
        if status.num_pieces != have:
            have = status.num_pieces
            emit("piece_verified", have=have)
        if have == pieces:
            emit("completed")
            break
        if time.monotonic() > deadline:
            emit("error", reason=f"timed out at {have}/{pieces} pieces")
            return 1
        time.sleep(POLL_S)
    del leech_ses, seed_ses
    return 0


def run_libtorrent(
    work: Path, data: Path, torrent: Path, want_sha: str, run: int, timeout_s: float
) -> RunResult:
    size = data.stat().st_size
    res = RunResult(impl="libtorrent -> libtorrent", run=run, size_bytes=size)
    res.measured_with = "wait4 rusage (both sessions, one process)"
    leech_dir = work / f"lt-leech-{run}"
    leech_dir.mkdir()
    proc = popen(
        [
            sys.executable,
            "-m",
            "tests.bench.transfer",
            "--lt-worker",
            str(torrent),
            str(data.parent),
            str(leech_dir),
            str(timeout_s),
        ],
        work / "lt.err",
    )
    try:
        assert proc.stdout is not None
        t_launch: float | None = None
        t_complete: float | None = None
        points: list[tuple[float, int]] = []
        pieces = 0
        for ev in EventReader(proc.stdout).events(time.monotonic() + timeout_s + 30):
            name, t = ev.data.get("event"), float(ev.data.get("t", 0.0))
            if name == "checked":
                pieces = int(ev.data["pieces"])
            elif name == "launch":
                t_launch = t
            elif name == "piece_verified":
                points.append((t, int(ev.data["have"])))
            elif name == "completed":
                t_complete = t
            elif name == "error":
                res.note = str(ev.data.get("reason"))
        usage = reap(proc, 30.0)
        if t_launch is None or t_complete is None:
            raise BenchError(res.note or f"worker failed: {tail(work / 'lt.err')}")
        res.launch_to_complete_s = t_complete - t_launch
        res.steady_bytes_per_s = steady_rate(points, pieces, parse_size(PIECE_LENGTH))
        res.leecher_user_s = usage.ru_utime
        res.leecher_sys_s = usage.ru_stime
        res.leecher_peak_rss_bytes = usage.ru_maxrss * 1024
        res.ok = sha256_file(leech_dir / data.name) == want_sha
        if not res.ok:
            res.note = "downloaded file differs from the original"
    except BenchError as exc:
        res.note = str(exc)
    finally:
        if proc.returncode is None:
            proc.kill()
            reap(proc, 5.0)
        shutil.rmtree(leech_dir, ignore_errors=True)
    return res


# -- aria2 -> aria2 (reference) --------------------------------------------------------
def _aria2_cmd(aria2c: str, tracker_url: str, port: int, directory: Path) -> list[str]:
    # INTEROP-NOTES: aria2 on loopback only, with our tracker as the one source.
    return [
        aria2c,
        "--no-conf=true",
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        "--interface=127.0.0.1",
        "--async-dns=false",
        "--enable-rpc=false",
        "--bt-exclude-tracker=*",
        f"--bt-tracker={tracker_url}",
        f"--listen-port={port}",
        f"--dir={directory}",
        "--check-integrity=true",
        "--file-allocation=none",
        "--summary-interval=0",
        "--console-log-level=warn",
    ]


def _scrape_complete(announce_url: str, info_hash_hex: str) -> int:
    import bencodepy

    scrape = announce_url.replace("/announce", "/scrape")
    raw = bytes.fromhex(info_hash_hex)
    url = f"{scrape}?info_hash={urllib.parse.quote_from_bytes(raw)}"
    with urllib.request.urlopen(url, timeout=5) as reply:
        body = bencodepy.decode(reply.read())
    entry = body.get(b"files", {}).get(raw, {})
    return int(entry.get(b"complete", 0))


def run_aria2(
    aria2c: str,
    work: Path,
    data: Path,
    torrent: Path,
    want_sha: str,
    run: int,
    timeout_s: float,
) -> RunResult:
    size = data.stat().st_size
    res = RunResult(impl="aria2 -> aria2", run=run, size_bytes=size)
    res.note = (
        "launch to exit (tracker round and aria2's 1 s ticks included); "
        "steady rate from the bytes the leecher wrote (/proc wchar)"
    )
    leech_dir = work / f"aria2-leech-{run}"
    leech_dir.mkdir()
    tracker = seeder = leecher = None
    try:
        tracker = popen(
            bitswarm_cmd("tracker", "--host", "127.0.0.1", "--port", "0", "--json"),
            work / "tracker.err",
        )
        assert tracker.stdout is not None
        listening = EventReader(tracker.stdout).wait_for(
            "tracker_listening", time.monotonic() + READY_TIMEOUT_S
        )
        url = str(listening.data["url"])
        info = subprocess.run(
            bitswarm_cmd("info", str(torrent), "--json"),
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        info_hash = str(json.loads(info.stdout)["infohash"])
        seeder = popen(
            [
                *_aria2_cmd(aria2c, url, free_port(), data.parent),
                "--seed-ratio=0.0",
                str(torrent),
            ],
            work / "aria2-seed.err",
        )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while _scrape_complete(url, info_hash) < 1:
            if time.monotonic() > deadline or seeder.poll() is not None:
                raise BenchError(
                    f"aria2 seeder never announced: {tail(work / 'aria2-seed.err')}"
                )
            time.sleep(0.1)
        seeder_cpu0 = proc_cpu_s(seeder.pid)
        cmd = [
            *_aria2_cmd(aria2c, url, free_port(), leech_dir),
            "--seed-time=0",
            str(torrent),
        ]
        cmd, time_report = timed(cmd, work / f"aria2-time-{run}.txt")
        t_launch = time.monotonic()
        leecher = popen(cmd, work / "aria2-leech.err")
        sampler = WriteSampler(leecher.pid)
        usage = reap(leecher, timeout_s)
        sampler.stop()
        res.launch_to_complete_s = time.monotonic() - t_launch
        seeder_cpu1 = proc_cpu_s(seeder.pid)
        res.seeder_peak_rss_bytes = proc_hwm_bytes(seeder.pid)
        if leecher.returncode != 0:
            raise BenchError(f"aria2 leecher exited {leecher.returncode}")
        if seeder_cpu0 is not None and seeder_cpu1 is not None:
            res.seeder_cpu_s = seeder_cpu1 - seeder_cpu0
        fill_leecher_usage(res, time_report, usage)
        res.steady_bytes_per_s = steady_rate(sampler.points, size, 1)
        res.ok = sha256_file(leech_dir / data.name) == want_sha
    except (BenchError, OSError, subprocess.CalledProcessError) as exc:
        res.note = str(exc)
    finally:
        for proc in (leecher, seeder, tracker):
            stop(proc)
        shutil.rmtree(leech_dir, ignore_errors=True)
    return res
