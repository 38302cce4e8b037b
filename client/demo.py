"""``bitswarm demo``: the whole story on loopback, in one command.

Every actor is a real ``bitswarm`` process talking over 127.0.0.1: a
tracker, a seeder of ``sample_files/`` (upload-limited so that the leechers
must trade with each other), and leechers. The demo reads their ``--json``
events, shows one live table, checks every copy byte for byte against the
original and exits 0 only if all are equal.

``client.cli_demo`` registers the subcommand and imports this module only
when the demo runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import filecmp
import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from client.errors import ClientError
from client.ui import format_bytes, format_rate

__all__ = ["cmd_demo"]

DEMO_TIMEOUT_S = 120.0
SEEDER_UPLOAD_RATE = "384K"  # slow enough that leechers fetch from each other


@dataclass
class Actor:
    name: str
    role: str
    proc: asyncio.subprocess.Process | None = None
    state: str = "starting"
    pieces: int = 0
    total: int = 0
    down_rate: float = 0.0
    up_rate: float = 0.0
    peers: int = 0
    downloaded_from: dict[str, int] = field(default_factory=dict)
    peers_by_source: dict[str, int] = field(default_factory=dict)
    port: int = 0
    peer_id: str = ""
    exit_code: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    first: asyncio.Event = field(default_factory=asyncio.Event)


def _find_samples(arg: str | None) -> Path:
    candidates = (
        [Path(arg)]
        if arg
        else [
            Path.cwd() / "sample_files",
            Path(__file__).resolve().parent.parent / "sample_files",
        ]
    )
    for path in candidates:
        if path.is_dir():
            return path
    raise ClientError(
        "sample_files/ not found: run the demo from the project folder "
        "or pass --samples DIR"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    samples = _find_samples(args.samples)
    return asyncio.run(Demo(samples, args).run())


class Demo:
    def __init__(self, samples: Path, args: argparse.Namespace) -> None:
        self.samples = samples.resolve()
        self.args = args
        self.console = Console()
        self.actors: list[Actor] = []
        self._t0 = time.monotonic()
        self._tg: asyncio.TaskGroup | None = None
        self._changed = asyncio.Event()
        self.dht_port = 0

    def emit(self, name: str, **fields: Any) -> None:
        if self.args.json:
            record = {
                "event": name,
                "t": round(time.monotonic() - self._t0, 3),
                **fields,
            }
            print(json.dumps(record), flush=True)
        elif not self.args.quiet and name in ("step", "result", "verified"):
            self.console.print(f"[bold cyan]>[/bold cyan] {fields.get('text', '')}")

    async def run(self) -> int:
        with tempfile.TemporaryDirectory(prefix="bitswarm-demo-") as tmp:
            work = Path(tmp)
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                try:
                    async with asyncio.timeout(DEMO_TIMEOUT_S):
                        return await self._story(work)
                finally:
                    await self._stop_all()

    async def _spawn(self, actor: Actor, *argv: str) -> None:
        cmd = [sys.executable, "-m", "client", *argv, "--json"]
        actor.proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL,
        )
        self.actors.append(actor)
        assert self._tg is not None
        self._tg.create_task(self._read(actor))

    async def _read(self, actor: Actor) -> None:
        assert actor.proc is not None
        assert actor.proc.stdout is not None
        async for raw in actor.proc.stdout:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            actor.events.append(ev)
            self._apply(actor, ev)
            actor.first.set()
            self._changed.set()
        actor.exit_code = await actor.proc.wait()
        actor.state = "done" if actor.exit_code == 0 else f"exit {actor.exit_code}"
        actor.first.set()

    def _apply(self, actor: Actor, ev: dict[str, Any]) -> None:
        name = ev.get("event")
        if name == "tracker_listening":
            actor.port = int(ev["port"])
            actor.state = "up"
        elif name == "started":
            actor.port = int(ev["port"])
            actor.total = int(ev["pieces"])
        elif name == "dht_listening":
            actor.port = int(ev["port"])
        elif name == "progress":
            actor.state = ev["state"]
            actor.pieces = ev["pieces_have"]
            actor.total = ev["pieces"]
            actor.down_rate = ev["download_rate"]
            actor.up_rate = ev["upload_rate"]
            actor.peers = ev["peers"]
            actor.downloaded_from = ev["downloaded_from"]
            actor.peers_by_source = ev["peers_by_source"]
        elif name == "peer_connected":
            self.emit(
                "peer_connected",
                actor=actor.name,
                **{k: ev[k] for k in ("addr", "source")},
            )

    def _table(self) -> Table:
        table = Table(title="bitswarm demo (loopback)", title_justify="left")
        for col in ("actor", "role", "state", "pieces", "↓", "↑", "peers", "port"):
            table.add_column(col)
        for a in self.actors:
            table.add_row(
                a.name,
                a.role,
                a.state,
                f"{a.pieces}/{a.total}" if a.total else "",
                format_rate(a.down_rate) if a.role != "tracker" else "",
                format_rate(a.up_rate) if a.role != "tracker" else "",
                str(a.peers) if a.role != "tracker" else "",
                str(a.port or ""),
            )
        return table

    async def _wait_first(self, actor: Actor, event: str) -> dict[str, Any]:
        while True:
            for ev in actor.events:
                if ev.get("event") == event:
                    return ev
            if actor.exit_code is not None:
                raise ClientError(
                    f"{actor.name} exited ({actor.exit_code}) before {event}"
                )
            actor.first.clear()
            await actor.first.wait()

    async def _story(self, work: Path) -> int:
        live: Live | None = None
        if not self.args.json and not self.args.quiet:
            live = Live(self._table(), console=self.console, auto_refresh=False)
            live.start()
        assert self._tg is not None
        refresher = self._tg.create_task(self._refresh(live))
        try:
            return await self._steps(work)
        finally:
            refresher.cancel()
            if live is not None:
                live.update(self._table(), refresh=True)
                live.stop()

    async def _refresh(self, live: Live | None) -> None:
        while live is not None:
            live.update(self._table(), refresh=True)
            await asyncio.sleep(0.25)

    async def _spawn_cli(self, actor: Actor, *argv: str) -> None:
        """A seeder or leecher: loopback only, DHT joined through our node."""
        await self._spawn(
            actor,
            *argv,
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dht-bootstrap",
            f"127.0.0.1:{self.dht_port}",
        )

    async def _steps(self, work: Path) -> int:
        dht = Actor("dht", "dht node")
        self.emit("step", text="starting a DHT bootstrap node on 127.0.0.1")
        await self._spawn(dht, "dht", "--host", "127.0.0.1", "--port", "0")
        self.dht_port = int((await self._wait_first(dht, "dht_listening"))["port"])
        dht.port = self.dht_port
        dht.state = "up"

        tracker = Actor("tracker", "tracker")
        self.emit("step", text="starting a tracker on 127.0.0.1")
        await self._spawn(
            tracker, "tracker", "--host", "127.0.0.1", "--port", "0", "--interval", "5"
        )
        url = str((await self._wait_first(tracker, "tracker_listening"))["url"])

        torrent = work / "sample_files.torrent"
        self.emit("step", text=f"making a torrent of {self.samples}")
        make = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "client",
            "create",
            str(self.samples),
            "-o",
            str(torrent),
            "--tracker",
            url,
            "--piece-length",
            "32K",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await make.communicate()
        if make.returncode != 0:
            raise ClientError(f"create failed: {err.decode(errors='replace').strip()}")

        seeder = Actor("seeder", "seed")
        self.emit("step", text=f"seeding, upload limited to {SEEDER_UPLOAD_RATE}/s")
        await self._spawn_cli(
            seeder,
            "seed",
            str(self.samples),
            "--torrent",
            str(torrent),
            "--max-upload-rate",
            SEEDER_UPLOAD_RATE,
        )
        started = await self._wait_first(seeder, "started")
        magnet = str(started["magnet"])  # carries tr= our tracker
        bare = "magnet:?xt=urn:btih:" + str(started["info_hash"])

        leechers = []
        for i in range(self.args.leechers):
            leecher = Actor(f"leecher{i + 1}", "magnet + tracker")
            await self._spawn_cli(
                leecher, "download", magnet, "-o", str(work / leecher.name)
            )
            leechers.append(leecher)
        self.emit("step", text=f"{len(leechers)} leechers downloading by magnet link")

        # Part way through, the tracker dies without a word.
        await self._wait_until(
            lambda: any(a.total and a.pieces * 5 >= a.total for a in leechers)
        )
        assert tracker.proc is not None
        tracker.proc.send_signal(signal.SIGKILL)
        await tracker.proc.wait()
        tracker.state = "KILLED"
        self.emit("tracker_killed", text="tracker killed (SIGKILL)")
        self.emit("step", text="tracker killed with SIGKILL; the swarm carries on")

        late = Actor("late", "bare magnet")
        self.emit(
            "step", text="a new leecher with only the infohash (no tracker, no peer)"
        )
        await self._spawn_cli(late, "download", bare, "-o", str(work / late.name))
        leechers.append(late)

        for leecher in leechers:
            await self._wait_first(leecher, "done")
            assert leecher.proc is not None
            await leecher.proc.wait()

        ok = True
        for leecher in leechers:
            same = _same_tree(self.samples, work / leecher.name / self.samples.name)
            sources = _sources(leecher)
            self.emit(
                "verified",
                actor=leecher.name,
                identical=same,
                peer_sources=sources,
                text=f"{leecher.name}: {'identical' if same else 'DIFFERENT'}; "
                + "peers from "
                + ", ".join(f"{k} x{v}" for k, v in sorted(sources.items())),
            )
            assert leecher.proc is not None
            ok = ok and same and leecher.proc.returncode == 0
        self.emit(
            "summary",
            ok=ok,
            peer_sources={a.name: _sources(a) for a in leechers},
            late_sources_after_kill=_sources(late),
        )
        total = sum(p.stat().st_size for p in self.samples.rglob("*") if p.is_file())
        self.emit(
            "result",
            ok=ok,
            text=(
                f"{len(leechers)} copies of {format_bytes(total)} "
                + ("identical to the original" if ok else "DIFFER from the original")
            ),
        )
        return 0 if ok else 1

    async def _wait_until(self, pred: Callable[[], bool]) -> None:
        while not pred():
            await self._changed.wait()
            self._changed.clear()

    async def _stop_all(self) -> None:
        for actor in self.actors:
            proc = actor.proc
            if proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
        for actor in self.actors:
            proc = actor.proc
            if proc is None:
                continue
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()


def _sources(actor: Actor) -> dict[str, int]:
    """How many connections came from each source (tracker, dht, pex, ...)."""
    counts: dict[str, int] = {}
    for ev in actor.events:
        if ev.get("event") == "peer_connected":
            src = str(ev.get("source"))
            counts[src] = counts.get(src, 0) + 1
    return counts


def _same_tree(a: Path, b: Path) -> bool:
    for path in a.rglob("*"):
        rel = path.relative_to(a)
        other = b / rel
        if path.is_file() and (
            not other.is_file() or not filecmp.cmp(path, other, shallow=False)
        ):
            return False
    return True
