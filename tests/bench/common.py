"""Shared pieces of the loopback benchmarks: results, child processes, data."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import queue
import re
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
