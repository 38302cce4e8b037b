"""Tracker load test: many distinct peers announcing over loopback.

Run by hand from the project folder (pytest does not collect tests/bench)::

    python -m tests.bench.tracker_load [--peers 100000] [--torrents 10000]
        [--connections 64] [--peer-timeout 60] [--out results.json]

It starts ``bitswarm tracker`` (``python -m client tracker --host 127.0.0.1
--port 0 --json``) as a separate process with a short ``--peer-timeout``, so
its memory can be read from ``/proc/PID/status``, and drives it with a raw
asyncio HTTP/1.1 keep-alive load generator (this file; no third-party load
tool is needed). ``wrk`` (``apt-get install wrk``) can hammer one URL but
cannot make every request a different peer, so it is not used here.

Every announce is a distinct peer: a random 20-byte ``peer_id``, a source
address of its own (each connection binds its own address in 127.0.0.0/8,
e.g. 127.1.0.1, and each request on it announces a different ``port``), so
the tracker records PEERS peers spread evenly over TORRENTS infohashes (a
quarter of them seeders). Every response is decoded and checked; any
transport error, HTTP status other than 200, ``failure reason`` or malformed
body counts as an error.

Phases, each reported:

1. idle: the tracker's RSS after a warm-up announce and its ``stopped``.
2. load: PEERS ``started`` announces over CONNECTIONS keep-alive connections;
   announces per second, latency p50/p90/p99/max, peak RSS (VmHWM), the
   tracker's CPU time, and ``/stats.json`` checked against what was sent.
3. expiry: wait until the peer timeout has passed since the last announce,
   send a few ``stopped`` announces for unknown torrents (they start no swarm
   but let the registry run its sweep), read RSS, then ``/stats.json`` must
   show 0 torrents and 0 peers, and RSS must be at most idle + 20%.

It prints a table and, with ``--out``, writes the figures as JSON. Exit
status 0 only when there were no errors, the counts matched, the registry
emptied and RSS came back within the bound. Only 127.0.0.0/8 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote_from_bytes

import bencodepy

ROOT = Path(__file__).resolve().parents[2]  # the project folder
READY_TIMEOUT_S = 30.0  # tracker start
REQUEST_TIMEOUT_S = 30.0  # one announce, generous: an error if exceeded
RSS_POLL_S = 0.1  # RSS sampling period during the load
RSS_BOUND = 1.20  # RSS after expiry must be at most idle x this (issue 8)
EXPIRY_MARGIN_S = 1.0  # wait this much past the peer timeout
SEEDER_EVERY = 4  # one peer in this many announces left=0
MAX_HEAD_BYTES = 16 * 1024  # response head size we accept
MAX_BODY_BYTES = 64 * 1024  # response body size we accept
KIB = 1024
MIB = 1024 * 1024


# -- the load generator (also used by tests/e2e/test_load.py) ------------------------
@dataclass(frozen=True, slots=True, kw_only=True)
class Announce:
    """One announce to send: who, for which torrent, from which port."""

    info_hash: bytes
    peer_id: bytes
    port: int
    left: int
    event: str = "started"


@dataclass(slots=True, kw_only=True)
class LoadResult:
    """What a load run measured."""

    sent: int = 0
    ok: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    peers_returned: int = 0
    wall_s: float = 0.0

    @property
    def rate(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def percentile_ms(self, q: float) -> float:
        if not self.latencies_s:
            return float("nan")
        data = sorted(self.latencies_s)
        index = min(len(data) - 1, max(0, round(q / 100 * len(data)) - 1))
        return data[index] * 1000


def source_ip(index: int) -> str:
    """A distinct loopback source address per connection: 127.1.x.y, y >= 1."""
    high, low = divmod(index, 254)
    if high > 255:
        raise ValueError(f"at most {256 * 254} connections")
    return f"127.1.{high}.{low + 1}"


def make_swarms(
    peers: int, torrents: int, rng: random.Random
) -> tuple[list[bytes], list[tuple[bytes, bytes, int]]]:
    """Infohashes, and (info_hash, peer_id, left) per peer: each torrent gets
    peers // torrents (or one more) peers, in random order."""
    hashes = [rng.randbytes(20) for _ in range(torrents)]
    assignment = [hashes[i % torrents] for i in range(peers)]
    rng.shuffle(assignment)
    ids: set[bytes] = set()
    rows: list[tuple[bytes, bytes, int]] = []
    for i, info_hash in enumerate(assignment):
        peer_id = rng.randbytes(20)
        while peer_id in ids:
            peer_id = rng.randbytes(20)
        ids.add(peer_id)
        rows.append((info_hash, peer_id, 0 if i % SEEDER_EVERY == 0 else 1000))
    return hashes, rows


def plan(
    rows: Sequence[tuple[bytes, bytes, int]], connections: int
) -> list[list[Announce]]:
    """Deal peers to connections; the k-th peer on a connection uses port
    10000 + k, so (source address, port) is distinct for every peer."""
    lanes: list[list[Announce]] = [[] for _ in range(connections)]
    for i, (info_hash, peer_id, left) in enumerate(rows):
        lane = lanes[i % connections]
        lane.append(
            Announce(
                info_hash=info_hash, peer_id=peer_id, port=10000 + len(lane), left=left
            )
        )
    return lanes


def request_bytes(a: Announce, host: str, port: int) -> bytes:
    query = (
        f"info_hash={quote_from_bytes(a.info_hash, safe='')}"
        f"&peer_id={quote_from_bytes(a.peer_id, safe='')}"
        f"&port={a.port}&uploaded=0&downloaded=0&left={a.left}"
        f"&compact=1&numwant=50"
    )
    if a.event:
        query += f"&event={a.event}"
    return (
        f"GET /announce?{query} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        "User-Agent: bitswarm-load/1\r\n\r\n"
    ).encode("ascii")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    if len(head) > MAX_HEAD_BYTES:
        raise ValueError(f"response head of {len(head)} bytes")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = None
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    if length is None or length > MAX_BODY_BYTES:
        raise ValueError(f"response Content-Length {length!r}")
    return status, await reader.readexactly(length)


def check_announce_body(body: bytes) -> int:
    """The number of peers in a good compact announce response.

    Raises:
        ValueError: on a failure reason or a malformed response.
    """
    try:
        decoded = bencodepy.decode(body)
    except bencodepy.BencodeDecodeError as exc:
        raise ValueError(f"undecodable body {body[:40]!r}") from exc
    if not isinstance(decoded, dict):
        raise ValueError("body is not a dictionary")
    if b"failure reason" in decoded:
        raise ValueError(f"failure reason {decoded[b'failure reason']!r}")
    peers = decoded.get(b"peers")
    if not isinstance(peers, bytes) or len(peers) % 6:
        raise ValueError(f"bad 'peers' {peers!r:.40}")
    if not isinstance(decoded.get(b"interval"), int):
        raise ValueError("no 'interval'")
    return len(peers) // 6


async def _lane(
    host: str,
    port: int,
    local_ip: str | None,
    jobs: Sequence[Announce],
    result: LoadResult,
) -> None:
    local = (local_ip, 0) if local_ip is not None else None
    try:
        reader, writer = await asyncio.open_connection(host, port, local_addr=local)
    except OSError as exc:
        result.errors.append(f"connect from {local_ip}: {exc!r}")
        return
    try:
        for job in jobs:
            payload = request_bytes(job, host, port)
            result.sent += 1
            t0 = time.perf_counter()
            try:
                writer.write(payload)
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    status, body = await _read_response(reader)
            except (
                OSError,
                TimeoutError,
                ValueError,
                asyncio.IncompleteReadError,
            ) as exc:
                result.errors.append(f"announce from {local_ip}: {exc!r}")
                return  # the connection is in an unknown state
            result.latencies_s.append(time.perf_counter() - t0)
            if status != 200:
                result.errors.append(f"HTTP {status}: {body[:80]!r}")
                continue
            if job.event == "stopped":
                result.ok += 1
                continue
            try:
                result.peers_returned += check_announce_body(body)
            except ValueError as exc:
                result.errors.append(str(exc))
                continue
            result.ok += 1
    finally:
        writer.close()
        try:
            async with asyncio.timeout(1):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass


async def run_load(
    host: str,
    port: int,
    lanes: Sequence[Sequence[Announce]],
    *,
    distinct_sources: bool = True,
) -> LoadResult:
    """Send every lane's announces in order over its own keep-alive
    connection (bound to :func:`source_ip` of its index when
    ``distinct_sources``), all lanes concurrently."""
    result = LoadResult()
    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for i, jobs in enumerate(lanes):
            ip = source_ip(i) if distinct_sources else None
            group.create_task(_lane(host, port, ip, jobs, result))
    result.wall_s = time.perf_counter() - t0
    return result


async def get_json(host: str, port: int, path: str) -> dict[str, Any]:
    """A one-off GET of a JSON page (the tracker's /stats.json)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Connection: close\r\n\r\n".encode("ascii")
        )
        status, body = await _read_response(reader)
    finally:
        writer.close()
    if status != 200:
        raise ValueError(f"GET {path}: HTTP {status}")
    data = json.loads(body)
    if not isinstance(data, dict):
        raise ValueError(f"GET {path}: not a JSON object")
    return data


# -- the tracker process and its memory ----------------------------------------------
def proc_status_kib(pid: int, key: str) -> int:
    """A ``VmRSS``/``VmHWM`` line of /proc/PID/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise ValueError(f"no {key} in /proc/{pid}/status")


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_tracker(
    peer_timeout_s: float, interval_s: float
) -> tuple[subprocess.Popen[bytes], int]:
    cmd = [
        sys.executable,
        "-m",
        "client",
        "tracker",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--json",
        "--interval",
        str(interval_s),
        "--peer-timeout",
        str(peer_timeout_s),
    ]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "tracker_listening":
            return proc, int(event["port"])
    proc.kill()
    raise RuntimeError("the tracker did not report its port")


class RssSampler:
    """Samples a process's VmRSS until stopped; keeps the maximum."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_kib = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        while not self._stop.is_set():
            self.max_kib = max(self.max_kib, proc_status_kib(self.pid, "VmRSS"))
            try:
                async with asyncio.timeout(RSS_POLL_S):
                    await self._stop.wait()
            except TimeoutError:
                pass

    def stop(self) -> None:
        self._stop.set()


# -- the benchmark --------------------------------------------------------------------
async def bench(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    _, rows = make_swarms(args.peers, args.torrents, rng)
    lanes = plan(rows, args.connections)
    seeders = sum(1 for _, _, left in rows if left == 0)
    del rows
    host = "127.0.0.1"
    proc, port = start_tracker(args.peer_timeout, args.interval)
    pid = proc.pid
    out: dict[str, Any] = {
        "peers": args.peers,
        "torrents": args.torrents,
        "connections": args.connections,
        "peer_timeout_s": args.peer_timeout,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    problems: list[str] = []
    try:
        # 1. idle baseline, after a warm-up announce that leaves nothing behind
        warm = Announce(info_hash=b"\x00" * 20, peer_id=b"\x00" * 20, port=9, left=1)
        gone = Announce(
            info_hash=b"\x00" * 20,
            peer_id=b"\x00" * 20,
            port=9,
            left=1,
            event="stopped",
        )
        warm_result = await run_load(host, port, [[warm, gone]], distinct_sources=False)
        problems += warm_result.errors
        await get_json(host, port, "/stats.json")
        await asyncio.sleep(1.0)
        idle_kib = proc_status_kib(pid, "VmRSS")
        out["idle_rss_kib"] = idle_kib

        # 2. the load
        sampler = RssSampler(pid)
        cpu0 = proc_cpu_s(pid)
        async with asyncio.TaskGroup() as group:
            group.create_task(sampler.run())
            load = await run_load(host, port, lanes)
            sampler.stop()
        last_announce = time.monotonic()
        out["load"] = {
            "sent": load.sent,
            "ok": load.ok,
            "errors": len(load.errors),
            "first_errors": load.errors[:5],
            "wall_s": round(load.wall_s, 3),
            "announces_per_s": round(load.rate, 1),
            "latency_ms": {
                f"p{q}": round(load.percentile_ms(q), 3) for q in (50, 90, 99, 100)
            },
            "peers_returned": load.peers_returned,
            "tracker_cpu_s": round(proc_cpu_s(pid) - cpu0, 2),
            "peak_rss_kib": max(sampler.max_kib, proc_status_kib(pid, "VmHWM")),
        }
        problems += load.errors[:20]
        stats = await get_json(host, port, "/stats.json")
        out["stats_after_load"] = stats
        expected = {
            "torrents": args.torrents,
            "peers": args.peers,
            "seeders": seeders,
            "leechers": args.peers - seeders,
        }
        for key, want in expected.items():
            if stats.get(key) != want:
                problems.append(f"after load, {key} is {stats.get(key)}, not {want}")
        out["rss_after_load_kib"] = proc_status_kib(pid, "VmRSS")

        # 3. expiry: wait out the peer timeout, then a few announces to sweep
        wait_s = last_announce + args.peer_timeout + EXPIRY_MARGIN_S - time.monotonic()
        if wait_s > 0:
            print(f"waiting {wait_s:.0f} s for the peers to expire ...", flush=True)
            await asyncio.sleep(wait_s)
        triggers = [
            Announce(
                info_hash=rng.randbytes(20),
                peer_id=rng.randbytes(20),
                port=9,
                left=1,
                event="stopped",
            )
            for _ in range(3)
        ]
        trig = await run_load(host, port, [triggers], distinct_sources=False)
        problems += trig.errors
        await asyncio.sleep(1.0)
        out["rss_after_expiry_kib"] = proc_status_kib(pid, "VmRSS")
        stats = await get_json(host, port, "/stats.json")
        out["stats_after_expiry"] = stats
        if stats.get("torrents") != 0 or stats.get("peers") != 0:
            problems.append(
                f"after expiry the registry holds {stats.get('torrents')} torrents,"
                f" {stats.get('peers')} peers"
            )
        await asyncio.sleep(0.5)
        final_kib = proc_status_kib(pid, "VmRSS")
        out["rss_final_kib"] = final_kib
        bound = idle_kib * RSS_BOUND
        out["rss_bound_kib"] = round(bound)
        if final_kib > bound:
            problems.append(
                f"RSS after expiry {final_kib} KiB exceeds idle {idle_kib} KiB + 20%"
            )
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    out["problems"] = problems
    out["ok"] = not problems
    return out


def print_table(r: dict[str, Any]) -> None:
    load = r.get("load", {})
    lat = load.get("latency_ms", {})
    expired = r.get("stats_after_expiry", {})

    def mib(kib: int | None) -> str:
        return "-" if kib is None else f"{kib / KIB:.1f} MiB"

    rows = [
        (
            "peers / torrents / connections",
            f"{r['peers']} / {r['torrents']} / {r['connections']}",
        ),
        (
            "announces ok / sent / errors",
            f"{load.get('ok')} / {load.get('sent')} / {load.get('errors')}",
        ),
        ("wall time", f"{load.get('wall_s')} s"),
        ("announces per second", f"{load.get('announces_per_s')}"),
        (
            "latency p50 / p90 / p99 / max",
            " / ".join(f"{lat.get(k)} ms" for k in ("p50", "p90", "p99", "p100")),
        ),
        ("tracker CPU during load", f"{load.get('tracker_cpu_s')} s"),
        ("tracker RSS idle", mib(r.get("idle_rss_kib"))),
        ("tracker RSS peak", mib(load.get("peak_rss_kib"))),
        ("tracker RSS after load", mib(r.get("rss_after_load_kib"))),
        ("tracker RSS after expiry", mib(r.get("rss_final_kib"))),
        ("bound (idle + 20%)", mib(r.get("rss_bound_kib"))),
        (
            "registry after expiry",
            f"{expired.get('torrents')} torrents, {expired.get('peers')} peers",
        ),
        ("result", "ok" if r["ok"] else "FAILED: " + "; ".join(r["problems"][:5])),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--peers", type=int, default=100_000)
    p.add_argument("--torrents", type=int, default=10_000)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument(
        "--peer-timeout", type=float, default=60.0, help="seconds (above the load time)"
    )
    p.add_argument("--interval", type=float, default=10.0, help="seconds")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="write JSON results here")
    args = p.parse_args(argv)
    result = asyncio.run(bench(args))
    print_table(result)
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
