"""Benchmark 6: tracker announces per second, bitswarm's tracker vs
opentracker, each alone on loopback under the same load.

- HTTP: ``wrk`` (2 threads, 50 connections, 10 s; 2 s with ``--quick``) with
  a Lua script that sends each request for one of 1000 info hashes at random,
  with a random peer id, port and ``left`` (compact=1, numwant 50). The script
  counts every response that is not a 200 bencoded dictionary, or that
  carries a ``failure reason``: those must be zero.
- UDP (BEP 15): a Python load generator (this module, one process) keeps a
  window of announces in flight over one socket for 5 s (1 s quick), each
  for a random hash of the same 1000 with a random peer id; every reply is
  checked (action, transaction id, length).

bitswarm's tracker is one process (``bitswarm tracker``; one asyncio loop,
the HTTP and UDP endpoints sharing one in-memory swarm registry): it has no
worker processes, so one process is both its baseline and its figure. HTTP
is served by the tracker's own lean HTTP/1.1 server (tracker/http.py), not
aiohttp. Workers sharing one port (SO_REUSEPORT) are deliberately absent:
any worker may get any announce, so swarm state would have to live in one
registry process (an IPC round trip per announce, about what the announce
itself costs) or in shared memory under a lock; on this 2-core machine,
where wrk needs most of the second core, that does not pay.
opentracker (Debian's build, whitelist mode) is given the 1000 hashes.
After each load, one more announce must return the peers that the load put
in the swarm. Runs alternate.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import select
import socket
import struct
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import bencodepy

from tests.bench.common import (
    READY_TIMEOUT_S,
    BenchError,
    Context,
    EventReader,
    Metric,
    bitswarm_cmd,
    free_port,
    loadavg,
    popen,
    proc_cpu_s,
    stop,
    wait_port,
)

HASHES = 1000
WRK_THREADS = 2
WRK_CONNECTIONS = 50
UDP_WINDOW = 64  # announces in flight
UDP_LOST_S = 0.5  # an announce unanswered this long is counted lost and replaced
UDP_SWEEP_S = 0.05  # how often the generator looks for lost announces
UDP_PROTOCOL_ID = 0x41727101980  # BEP 15 connect magic
_ANNOUNCE = struct.Struct(">QII20s20sQQQIIIiH")  # BEP 15 announce request

LUA = r"""
-- bitswarm bench: announces over %(n)d info hashes, random peers
local hashes = { %(hashes)s }
local threads = {}
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end
function init(args)
  bad = 0
  math.randomseed(os.time() * 1000 + id * 7919)
end
local function pid()
  local t = {"-BB0001-"}
  for i = 1, 12 do t[#t + 1] = string.format("%%%%%%02X", math.random(0, 255)) end
  return table.concat(t)
end
request = function()
  local path = "/announce?info_hash=" .. hashes[math.random(1, #hashes)]
    .. "&peer_id=" .. pid() .. "&port=" .. math.random(1024, 65535)
    .. "&uploaded=0&downloaded=0&left=" .. math.random(0, 1048576)
    .. "&compact=1&numwant=50"
  return wrk.format("GET", path)
end
response = function(status, headers, body)
  if status ~= 200 or body:sub(1, 1) ~= "d"
     or body:find("failure reason", 1, true) then
    bad = bad + 1
    if bad <= 2 then
      io.write(string.format("BADRESP %%d %%q\n", status, body:sub(1, 100)))
    end
  end
end
done = function(summary, latency, requests)
  local b = 0
  for _, t in ipairs(threads) do b = b + t:get("bad") end
  io.write(string.format("BAD %%d\n", b))
end
"""


def info_hashes() -> list[bytes]:
    return [hashlib.sha1(b"bitswarm-bench-%d" % i).digest() for i in range(HASHES)]


def lua_script(path: Path) -> Path:
    quoted = ", ".join(
        '"' + urllib.parse.quote_from_bytes(h, safe="") + '"' for h in info_hashes()
    )
    path.write_text(LUA % {"n": HASHES, "hashes": quoted})
    return path


def _percent(h: bytes) -> str:
    return urllib.parse.quote_from_bytes(h, safe="")


def check_swarm(url: str, info_hash: bytes) -> int:
    """One announce for INFO_HASH; the number of peers it returns."""
    query = (
        f"info_hash={_percent(info_hash)}&peer_id=-BB0001-checkcheckch"
        "&port=6881&uploaded=0&downloaded=0&left=1&compact=1&numwant=50"
    )
    with urllib.request.urlopen(f"{url}?{query}", timeout=10) as reply:
        body = bencodepy.decode(reply.read())
    if b"failure reason" in body:
        raise BenchError(f"announce failed: {body[b'failure reason']!r}")
    return len(body.get(b"peers", b"")) // 6


# -- the trackers ----------------------------------------------------------------
class Tracker:
    name = ""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.udp = ("127.0.0.1", 0)

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        stop(self.proc)


class BitswarmTracker(Tracker):
    name = "bitswarm"

    def start(self) -> None:
        self.proc = popen(
            bitswarm_cmd(
                "tracker",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--udp-port",
                "0",
                "--json",
            ),
            self.work / "bitswarm-tracker.err",
        )
        assert self.proc.stdout is not None
        ev = EventReader(self.proc.stdout).wait_for(
            "tracker_listening", time.monotonic() + READY_TIMEOUT_S
        )
        self.url = str(ev.data["url"])
        self.udp = ("127.0.0.1", int(ev.data["udp_port"]))


class OpenTracker(Tracker):
    name = "opentracker"

    def __init__(self, work: Path, exe: str) -> None:
        super().__init__(work)
        self.exe = exe

    def start(self) -> None:
        folder = self.work / "opentracker"
        folder.mkdir(exist_ok=True)
        whitelist = folder / "whitelist"
        whitelist.write_text("".join(h.hex() + "\n" for h in info_hashes()))
        port = free_port()
        args = [self.exe, "-i", "127.0.0.1", "-p", str(port), "-P", str(port)]
        if os.geteuid() == 0:
            # as root it chroots into -d and drops to -u: the whitelist path
            # is then resolved inside the chroot (tests/interop/clients.py)
            args += ["-d", str(folder), "-u", "nobody"]
        args += ["-w", whitelist.name]
        with (self.work / "opentracker.err").open("wb") as err:
            self.proc = subprocess.Popen(
                args, cwd=folder, stdin=subprocess.DEVNULL, stdout=err, stderr=err
            )
        wait_port("127.0.0.1", port, READY_TIMEOUT_S, self.proc)
        self.url = f"http://127.0.0.1:{port}/announce"
        self.udp = ("127.0.0.1", port)


# -- HTTP load: wrk ----------------------------------------------------------------
_RPS = re.compile(r"Requests/sec:\s+([0-9.]+)")
_BAD = re.compile(r"^BAD (\d+)$", re.M)
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_SOCKERR = re.compile(r"Socket errors: (.*)")
_REQUESTS = re.compile(r"(\d+) requests in")
_BADRESP = re.compile(r"^BADRESP (.*)$", re.M)
BAD_TOLERANCE = 0.001  # share of bad replies tolerated (seen once: 50 of 350k)


def wrk_load(wrk: str, script: Path, url: str, seconds: int) -> dict[str, Any]:
    cmd = [
        wrk,
        f"-t{WRK_THREADS}",
        f"-c{WRK_CONNECTIONS}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    out = proc.stdout
    rps, bad = _RPS.search(out), _BAD.search(out)
    if proc.returncode != 0 or rps is None or bad is None:
        raise BenchError(f"wrk failed ({proc.returncode}): {out[-400:]} {proc.stderr}")
    non2xx = _NON2XX.search(out)
    sockerr = _SOCKERR.search(out)
    total = _REQUESTS.search(out)
    return {
        "requests": int(total.group(1)) if total else 0,
        "bad_examples": _BADRESP.findall(out),
        "requests_per_s": float(rps.group(1)),
        "bad_responses": int(bad.group(1)),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sockerr.group(1) if sockerr else "",
        "wrk_output": out,
    }


# -- UDP load: a small generator -----------------------------------------------------
def udp_load(addr: tuple[str, int], seconds: float, seed: int) -> dict[str, Any]:
    """Announces over BEP 15 with UDP_WINDOW in flight; replies checked."""
    rng = random.Random(seed)
    hashes = info_hashes()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.connect(addr)
    sock.settimeout(5.0)
    sock.send(struct.pack(">QII", UDP_PROTOCOL_ID, 0, 7))
    reply = sock.recv(2048)
    action, tid, conn_id = struct.unpack(">IIQ", reply[:16])
    if action != 0 or tid != 7:
        raise BenchError(f"udp connect: bad reply {reply[:16].hex()}")
    sock.setblocking(False)
    outstanding: dict[int, float] = {}  # transaction id -> when sent
    ok = bad = sent = lost = 0
    next_tid = 1000

    def send_one(now: float) -> None:
        nonlocal next_tid, sent
        next_tid = (next_tid + 1) & 0xFFFFFFFF
        packet = _ANNOUNCE.pack(
            conn_id,
            1,
            next_tid,
            hashes[rng.randrange(HASHES)],
            rng.randbytes(20),
            0,
            rng.randrange(1 << 20),
            0,
            0,
            0,
            rng.getrandbits(32),
            50,
            rng.randrange(1024, 65536),
        )
        try:
            sock.send(packet)
        except BlockingIOError:
            return
        outstanding[next_tid] = now
        sent += 1

    t0 = time.monotonic()
    end = t0 + seconds
    next_sweep = t0 + UDP_SWEEP_S
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_sweep:  # a lost datagram must not shrink the window
            late = [
                t for t, sent_at in outstanding.items() if now - sent_at > UDP_LOST_S
            ]
            for t in late:
                del outstanding[t]
            lost += len(late)
            next_sweep = now + UDP_SWEEP_S
        while len(outstanding) < UDP_WINDOW:
            send_one(now)
        ready, _, _ = select.select([sock], [], [], UDP_SWEEP_S)
        if not ready:
            continue
        while True:
            try:
                data = sock.recv(2048)
            except BlockingIOError:
                break
            if len(data) >= 20:
                action, tid = struct.unpack_from(">II", data)
                if action == 1 and (len(data) - 20) % 6 == 0:
                    if outstanding.pop(tid, None) is not None:
                        ok += 1
                    continue  # else: a reply after we gave up on it
            bad += 1
    elapsed = time.monotonic() - t0
    sock.close()
    return {
        "announces_per_s": ok / elapsed,
        "ok": ok,
        "bad": bad,
        "sent": sent,
        "lost": lost,
    }


def run(ctx: Context) -> list[Metric]:
    wrk = ctx.tools.get("wrk")
    opentracker = ctx.tools.get("opentracker")
    if wrk is None:
        ctx.notes.append("tracker: wrk missing, HTTP load skipped")
    if opentracker is None:
        ctx.notes.append("tracker: opentracker missing, no anchor")
    seconds = 2 if ctx.quick else 10
    udp_seconds = 1.0 if ctx.quick else 5.0
    work = ctx.work / "tracker"
    work.mkdir()
    script = lua_script(work / "announce.lua")
    http = Metric(
        bench="6 tracker",
        name=f"HTTP announces, wrk {WRK_THREADS}t/{WRK_CONNECTIONS}c, 1 process",
        unit="req/s",
        scale=1.0,
        better="higher",
        anchor_name="opentracker",
        floor=0.2,
        goal=0.5,
    )
    udp = Metric(
        bench="6 tracker",
        name=f"UDP announces, window {UDP_WINDOW}, 1 process",
        unit="req/s",
        scale=1.0,
        better="higher",
        anchor_name="opentracker",
        note="one Python generator process: may be the limit for opentracker",
    )
    cpu = Metric(
        bench="6 tracker",
        name="tracker CPU per 1000 HTTP announces",
        unit="ms",
        scale=1e-3,
        better="lower",
        anchor_name="opentracker",
    )
    udp_cpu = Metric(
        bench="6 tracker",
        name="tracker CPU per 1000 UDP announces",
        unit="ms",
        scale=1e-3,
        better="lower",
        anchor_name="opentracker",
    )
    trackers: list[Tracker] = [BitswarmTracker(work)]
    if opentracker is not None:
        trackers.append(OpenTracker(work, opentracker))
    results = []
    hashes = info_hashes()
    for n in range(1, ctx.runs + 1):
        for tracker in trackers:
            side = "bitswarm" if tracker.name == "bitswarm" else "anchor"
            load = loadavg()
            ctx.log(f"tracker {tracker.name} run {n} (load {load:.2f})")
            res: dict[str, Any] = {"tracker": tracker.name, "run": n, "load": load}
            try:
                tracker.start()
                assert tracker.proc is not None
                if wrk is not None:
                    cpu0 = proc_cpu_s(tracker.proc.pid)
                    got = wrk_load(wrk, script, tracker.url, seconds)
                    cpu1 = proc_cpu_s(tracker.proc.pid)
                    res["http"] = {k: v for k, v in got.items() if k != "wrk_output"}
                    bad = got["bad_responses"] + got["non_2xx"]
                    if bad > BAD_TOLERANCE * got["requests"]:
                        raise BenchError(
                            f"{got['bad_responses']} bad responses, "
                            f"{got['non_2xx']} non-2xx of {got['requests']}: "
                            f"{got['bad_examples']}"
                        )
                    peers = check_swarm(tracker.url, hashes[n % HASHES])
                    if peers == 0:
                        raise BenchError("the swarm is empty after the load")
                    getattr(http, side).append(got["requests_per_s"])
                    http.load.append(load)
                    if cpu0 is not None and cpu1 is not None:
                        total = got["requests_per_s"] * seconds
                        getattr(cpu, side).append((cpu1 - cpu0) / total * 1000)
                        cpu.load.append(load)
                    ctx.log(f"  HTTP {got['requests_per_s']:.0f} req/s")
                cpu0 = proc_cpu_s(tracker.proc.pid)
                got = udp_load(tracker.udp, udp_seconds, seed=n)
                cpu1 = proc_cpu_s(tracker.proc.pid)
                res["udp"] = got
                if got["bad"] or not got["ok"]:
                    raise BenchError(f"UDP: {got['bad']} bad replies, {got['ok']} ok")
                getattr(udp, side).append(got["announces_per_s"])
                udp.load.append(load)
                if cpu0 is not None and cpu1 is not None:
                    per = (cpu1 - cpu0) / got["ok"] * 1000
                    getattr(udp_cpu, side).append(per)
                    udp_cpu.load.append(load)
                ctx.log(f"  UDP {got['announces_per_s']:.0f} announces/s")
            except (BenchError, OSError) as exc:
                ctx.error(f"tracker {tracker.name} run {n}: {exc}")
            finally:
                tracker.stop()
            results.append(res)
    ctx.details["tracker"] = {
        "bitswarm_worker_processes": 1,
        "bitswarm_state_sharing": "one process, one asyncio loop: the HTTP server "
        "(tracker/http.py) and the UDP endpoint share one in-memory SwarmRegistry; "
        "no workers",
        "runs": results,
    }
    return [http, udp, cpu, udp_cpu]
