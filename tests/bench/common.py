"""Shared pieces of the loopback benchmarks: results, child processes, data."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]  # the project folder
TMPFS = Path("/dev/shm")
TIME_BIN = Path("/usr/bin/time")
PIECE_LENGTH = "256K"  # the bitswarm default, and the reference figures' piece size
CHUNK_BYTES = 4 * 1024 * 1024  # generation and hashing chunk
READY_TIMEOUT_S = 60.0  # seeder start and check, tracker start
POLL_S = 0.02  # reference clients' progress polling interval
MB = 1_000_000
MIB = 1024 * 1024

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([KMGkmg]?)(?:i?[Bb])?")
_UNITS = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}


class BenchError(Exception):
    """A run could not be completed (the message says why)."""


@dataclass(slots=True, kw_only=True)
class RunResult:
    """One row of the table: one transfer by one implementation."""

    impl: str
    run: int
    size_bytes: int
    ok: bool = False
    create_s: float | None = None
    launch_to_complete_s: float | None = None
    steady_bytes_per_s: float | None = None
    leecher_peak_rss_bytes: int | None = None
    leecher_user_s: float | None = None
    leecher_sys_s: float | None = None
    seeder_cpu_s: float | None = None
    seeder_peak_rss_bytes: int | None = None
    measured_with: str = ""
    note: str = ""

    @property
    def create_rate(self) -> float | None:
        return rate(self.size_bytes, self.create_s)

    @property
    def launch_rate(self) -> float | None:
        return rate(self.size_bytes, self.launch_to_complete_s)

    @property
    def leecher_cpu_s(self) -> float | None:
        if self.leecher_user_s is None or self.leecher_sys_s is None:
            return None
        return self.leecher_user_s + self.leecher_sys_s

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["create_bytes_per_s"] = self.create_rate
        data["launch_to_complete_bytes_per_s"] = self.launch_rate
        data["leecher_cpu_s"] = self.leecher_cpu_s
        return data


@dataclass(slots=True)
class Event:
    received: float  # time.monotonic() in this process when the line arrived
    data: dict[str, Any] = field(default_factory=dict)


def rate(size: int, seconds: float | None) -> float | None:
    return size / seconds if seconds else None


def parse_size(text: str) -> int:
    """``256M``, ``1G``, ``64MiB``, ``1048576`` -> bytes (binary units)."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size like 256M or 1G")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


# -- processes: events, CPU and memory ------------------------------------------------
class EventReader:
    """Reads a child's ``--json`` lines on a thread, so its pipe never fills."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._queue: queue.Queue[Event | None] = queue.Queue()  # unbounded: a log
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        for raw in stream:
            try:
                data = json.loads(raw)
            except ValueError:
                continue
            if isinstance(data, dict):
                self._queue.put(Event(time.monotonic(), data))
        self._queue.put(None)

    def events(self, deadline: float) -> Iterator[Event]:
        """Events until the stream ends; BenchError past the deadline."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BenchError("timed out waiting for the client's events")
            try:
                ev = self._queue.get(timeout=left)
            except queue.Empty:
                continue
            if ev is None:
                return
            yield ev

    def wait_for(self, name: str, deadline: float) -> Event:
        for ev in self.events(deadline):
            if ev.data.get("event") == name:
                return ev
        raise BenchError(f"the client exited before its {name!r} event")


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a live process, from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (proc(5))


def proc_hwm_bytes(pid: int) -> int | None:
    """Peak RSS (VmHWM) of a live process."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def reap(proc: subprocess.Popen[bytes], timeout_s: float) -> Any:
    """Wait for a child with wait4, which also returns its rusage; kill it
    past the timeout. Returns the ``resource.struct_rusage``."""
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        if time.monotonic() > deadline:
            proc.kill()
            deadline = time.monotonic() + 5.0
        time.sleep(0.01)


def stop(proc: subprocess.Popen[bytes] | None) -> Any:
    """Ctrl-C a long-running child (seeder, tracker) and reap it."""
    if proc is None or proc.returncode is not None:
        return None
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)
    return reap(proc, 10.0)


def parse_time_v(text: str) -> dict[str, float]:
    """The numbers we use from GNU time's ``-v`` report."""
    keys = {
        "User time (seconds)": "user_s",
        "System time (seconds)": "sys_s",
        "Maximum resident set size (kbytes)": "maxrss_kib",
    }
    out: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.strip().rpartition(": ")
        if name in keys:
            out[keys[name]] = float(value)
    return out


def bitswarm_cmd(*argv: str) -> list[str]:
    return [sys.executable, "-m", "client", *argv]


def popen(cmd: list[str], stderr_path: Path) -> subprocess.Popen[bytes]:
    with stderr_path.open("wb") as err:
        return subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err
        )


def tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(
            path.read_text(errors="replace").strip().splitlines()[-lines:]
        )
    except OSError:
        return ""


# -- data ------------------------------------------------------------------------------
def make_random_file(path: Path, size: int) -> str:
    """Write SIZE random bytes; return their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(CHUNK_BYTES, left))
            digest.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def steady_rate(
    points: list[tuple[float, int]], pieces: int, piece_length: int
) -> float | None:
    """Bytes/s between the first moments 10% and 90% of the pieces were had
    (or, with ``piece_length=1``, of the bytes).

    Args:
        points: (seconds, pieces had) in time order.
    """
    lo, hi = max(1, -(-pieces // 10)), max(1, (9 * pieces) // 10)
    t10 = next(((t, n) for t, n in points if n >= lo), None)
    t90 = next(((t, n) for t, n in points if n >= hi), None)
    if t10 is None or t90 is None or t90[0] <= t10[0]:
        return None
    return (t90[1] - t10[1]) * piece_length / (t90[0] - t10[0])


def free_port() -> int:
    """An ephemeral loopback port for clients that cannot bind port 0 and say
    which one they got (aria2). Racy by nature; fine for a hand-run bench."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fill_leecher_usage(res: RunResult, time_report: Path | None, usage: Any) -> None:
    """The leecher's CPU and peak RSS: from GNU time's report when there is
    one, else from the wait4 rusage (which covers its waited-for children)."""
    report = parse_time_v(time_report.read_text()) if time_report else {}
    if {"user_s", "sys_s", "maxrss_kib"} <= report.keys():
        res.measured_with = "/usr/bin/time -v"
        res.leecher_user_s, res.leecher_sys_s = report["user_s"], report["sys_s"]
        res.leecher_peak_rss_bytes = int(report["maxrss_kib"] * 1024)
    else:
        res.measured_with = "wait4 rusage"
        res.leecher_user_s, res.leecher_sys_s = usage.ru_utime, usage.ru_stime
        res.leecher_peak_rss_bytes = usage.ru_maxrss * 1024  # KiB on Linux


def timed(cmd: list[str], report: Path) -> tuple[list[str], Path | None]:
    """CMD under ``/usr/bin/time -v -o REPORT`` if that exists."""
    if TIME_BIN.exists():
        return [str(TIME_BIN), "-v", "-o", str(report), *cmd], report
    return cmd, None


class WriteSampler:
    """Samples the bytes a process tree has written (``wchar`` in
    /proc/PID/io), for clients with no event stream (aria2): on tmpfs that
    is the download's progress. ``points`` holds (monotonic s, bytes)."""

    def __init__(self, root_pid: int, interval_s: float = POLL_S) -> None:
        self.points: list[tuple[float, int]] = []
        self._root = root_pid
        self._interval_s = interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _tree(self) -> list[int]:
        pids, todo = [], [self._root]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            with contextlib.suppress(OSError, ValueError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    todo += map(int, (task / "children").read_text().split())
        return pids

    def _wchar(self) -> int:
        total = 0
        for pid in self._tree():
            with contextlib.suppress(OSError, ValueError):
                for line in Path(f"/proc/{pid}/io").read_text().splitlines():
                    if line.startswith("wchar:"):
                        total += int(line.split()[1])
        return total

    def _run(self) -> None:
        while not self._done.wait(self._interval_s):
            self.points.append((time.monotonic(), self._wchar()))

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


# -- the suite's results: one metric, both implementations, a floor -----------------
@dataclass(slots=True, kw_only=True)
class Metric:
    """One line of the suite's table: a measure of bitswarm and of its anchor.

    ``better`` says which direction wins: ``"higher"`` (rates) or ``"lower"``
    (times, memory). ``ratio`` is always bitswarm / anchor of the medians; the
    floor and goal are stated in the same terms (``ratio >= floor`` for
    "higher", ``ratio <= floor`` for "lower"), or as an absolute bound on
    bitswarm's median when ``absolute`` is set (RSS in bytes).
    """

    bench: str
    name: str
    unit: str  # display unit: "MB/s", "MiB", "ms", "req/s", "s"
    scale: float  # raw value / scale = value in ``unit``
    better: str  # "higher" | "lower"
    bitswarm: list[float] = field(default_factory=list)
    anchor: list[float] = field(default_factory=list)
    anchor_name: str = ""
    floor: float | None = None
    goal: float | None = None
    absolute: bool = False  # floor/goal bound bitswarm's median, not the ratio
    load: list[float] = field(default_factory=list)  # 1-min load averages seen
    note: str = ""

    @property
    def ratio(self) -> float | None:
        b, a = median(self.bitswarm), median(self.anchor)
        if b is None or a is None or a == 0:
            return None
        return b / a

    def _holds(self, bound: float | None) -> bool | None:
        if bound is None:
            return None
        value = median(self.bitswarm) if self.absolute else self.ratio
        if value is None:
            return False
        return value >= bound if self.better == "higher" else value <= bound

    @property
    def floor_holds(self) -> bool | None:
        return self._holds(self.floor)

    @property
    def goal_holds(self) -> bool | None:
        return self._holds(self.goal)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["bitswarm_median"] = median(self.bitswarm)
        data["anchor_median"] = median(self.anchor)
        data["ratio"] = self.ratio
        data["floor_holds"] = self.floor_holds
        data["goal_holds"] = self.goal_holds
        return data


def median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def loadavg() -> float:
    """The machine's 1-minute load average (a shared box inflates times)."""
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1.0


def wait_port(host: str, port: int, timeout_s: float, proc: Any = None) -> None:
    """Until a TCP connect to HOST:PORT succeeds (a client that cannot say
    when it listens); BenchError past the timeout or if PROC exits."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"process exited ({proc.returncode}) before listening")
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"nothing listened on {host}:{port}") from None
            time.sleep(0.05)


def write_random(path: Path, size: int, seed: int = 0) -> None:
    """SIZE pseudo-random bytes (AES-CTR keystream: GB/s, where os.urandom
    manages ~0.4 GB/s here), so a 4 GiB file takes seconds, not a minute."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    key = hashlib.sha256(b"bitswarm-bench-%d" % seed).digest()
    enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    zeros = bytes(CHUNK_BYTES)
    with path.open("wb") as f:
        left = size
        while left:
            n = min(CHUNK_BYTES, left)
            f.write(enc.update(zeros[:n]))
            left -= n


def same_bytes(a: Path, b: Path) -> bool:
    """Whether two files hold the same bytes (a copy's check)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as fa, b.open("rb") as fb:
        while True:
            x, y = fa.read(CHUNK_BYTES), fb.read(CHUNK_BYTES)
            if x != y:
                return False
            if not x:
                return True


@dataclass(slots=True, kw_only=True)
class Context:
    """What every benchmark of the suite gets: mode, folders, tools, output."""

    quick: bool
    runs: int
    work: Path  # a fresh folder on tmpfs, removed after the suite
    timeout_s: float
    tools: dict[str, str | None]  # client name -> path (None: missing)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # wrong output, failed runs
    details: dict[str, Any] = field(default_factory=dict)  # per-benchmark JSON
    _data: dict[int, Path] = field(default_factory=dict)

    def log(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def error(self, text: str) -> None:
        self.errors.append(text)
        print(f"  ERROR: {text}", flush=True)

    def data(self, size: int) -> Path:
        """A random file of SIZE bytes in its own folder (made once)."""
        path = self._data.get(size)
        if path is None:
            folder = self.work / f"data-{size}"
            folder.mkdir()
            path = folder / f"random-{size}.bin"
            write_random(path, size, seed=size)
            self._data[size] = path
        return path

    def drop_data(self, size: int) -> None:
        path = self._data.pop(size, None)
        if path is not None:
            shutil.rmtree(path.parent, ignore_errors=True)


def torrent_for(data: Path, out: Path, trackers: tuple[str, ...] = ()) -> Path:
    """A .torrent of DATA (256 KiB pieces), made in this process."""
    from client.maketorrent import create_torrent, write_torrent

    write_torrent(create_torrent(data, trackers=trackers), out)
    return out
