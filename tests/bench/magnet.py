"""Loopback magnet benchmark: a bare infohash to the first peer and to metadata.

Run by hand from the project folder (pytest does not collect tests/bench)::

    python -m tests.bench.magnet [--nodes 30] [--trials 15] [--out FILE]
        [--config testing|default|both] [--network shared|fresh|both]

For each DHT configuration (``testing_config()``'s short timeouts, then the
default ``DhtConfig`` that real users get) it builds, in this one process:

- a Mainline DHT of NODES real UDP ``DhtNode``s on 127.0.0.1 (a bootstrap
  chain, then a second round through the first node, until every routing
  table holds at least 8 nodes);
- one seeder ``Engine`` with its own DHT node joined to that network, seeding
  a 1 MiB file in 256 KiB pieces, which has announced itself (its
  "dht_lookup" event) and which a get_peers from a network node finds.

Then, TRIALS times, a fresh leecher ``Engine`` with its own DHT node
bootstrapped from one random network node opens a magnet link holding only
the infohash. The clock starts right before the engine starts (so the DHT
bootstrap is included), and the trial records:

- bootstrap: the leecher's DHT bootstrap (find_node on its own id) has ended;
- first peer: the first peers arrive from the leecher's get_peers lookup (the
  lookup starts after the bootstrap);
- connected: the first "peer_connected" event (the metadata fetcher's
  handshake with the seeder done);
- metadata: the "metadata_complete" event (info dictionary verified).

Each is reported from launch and from the end of the bootstrap. Medians, mins
and maxes over the trials that got that far go in the table; every trial goes
in the JSON. The leecher is closed after each trial, so on a *shared* network
its DHT node stays, dead, in the tables it reached: later trials meet dead
nodes, as real lookups do, and each trial records how many
(``dead_nodes_known``). A *fresh* network (new DHT and seeder per trial) shows
the same path with no dead node at all.

Timing hooks: the metadata fetcher emits no "peers_found" event (only a
torrent session does, once the metadata is in), so the first DHT peer is
timed by wrapping the leecher's ``DhtNode.lookup_peers`` callback, and the
bootstrap end by wrapping ``DhtNode.bootstrap``, on that one instance.
Nothing binds anywhere but 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from client.core.magnet import Magnet
from client.engine import Engine, EngineConfig
from client.session import TorrentSession
from dht import DhtConfig, DhtNode, PeerAddr, testing_config
from tests.helpers.swarm import make_torrent, write_random_file

FILE_BYTES = 1024 * 1024  # the seeded file; its info dict is ~150 bytes
PIECE_BYTES = 256 * 1024
MIN_TABLE = 8  # routing-table size every network node must reach (BEP 5 k)
SETUP_TIMEOUT_S = 90.0  # building the DHT and getting the seeder announced
MS = 1000.0
TMPFS = Path("/dev/shm")  # the seeded file and the leechers' folders

CONFIGS: dict[str, Callable[[], DhtConfig]] = {
    "testing": testing_config,
    "default": DhtConfig,
}
# (key, column label): the stages, in the order they happen
STAGES = (
    ("bootstrap", "bootstrap"),
    ("first_peer", "first DHT peer"),
    ("connected", "peer connected"),
    ("metadata", "metadata"),
)


class BenchError(Exception):
    """The network or the seeder could not be set up."""


@dataclass(slots=True, kw_only=True)
class Trial:
    """One leecher: seconds from launch to each stage (None: not reached)."""

    run: str  # "<dht config>/<shared|fresh network>"
    trial: int
    ok: bool = False
    engine_up: float | None = None
    bootstrap: float | None = None
    first_peer: float | None = None
    connected: float | None = None
    metadata: float | None = None
    table_after_bootstrap: int | None = None
    first_peer_is_seeder: bool | None = None
    connected_source: str | None = None
    dht_peers_found: int = 0
    leecher_dht: str | None = None
    dead_nodes_known: int | None = None  # closed leechers' nodes in the tables
    note: str = ""

    def since_bootstrap(self, key: str) -> float | None:
        value: float | None = getattr(self, key)
        if value is None or self.bootstrap is None or key == "bootstrap":
            return None
        return value - self.bootstrap

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["after_bootstrap"] = {
            key: self.since_bootstrap(key) for key, _ in STAGES[1:]
        }
        return data


@dataclass(slots=True)
class _Marks:
    """Stamps the leecher's events and DHT calls relative to ``t0``."""

    trial: Trial
    seeder: PeerAddr
    t0: float
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)

    def since(self) -> float:
        return self.loop.time() - self.t0

    def on_event(self, name: str, fields: dict[str, Any]) -> None:
        t = self.trial
        if name == "peer_connected" and t.connected is None:
            t.connected = self.since()
            t.connected_source = str(fields.get("source"))
        elif name == "metadata_complete" and t.metadata is None:
            t.metadata = self.since()

    def on_dht_peers(self, batch: list[PeerAddr]) -> None:
        t = self.trial
        t.dht_peers_found += len(batch)
        if t.first_peer is None:
            t.first_peer = self.since()
            t.first_peer_is_seeder = self.seeder in batch

    def instrument(self, node: DhtNode) -> None:
        """Wrap this node's bootstrap and lookup_peers (the engine calls them
        from tasks that have not run yet when ``Engine.__aenter__`` returns)."""
        real_bootstrap = node.bootstrap
        real_lookup = node.lookup_peers

        async def bootstrap(
            addrs: Iterable[PeerAddr | str], *args: float, **kw: float
        ) -> int:
            try:
                size = await real_bootstrap(addrs, *args, **kw)
                self.trial.table_after_bootstrap = size
                return size
            finally:
                if self.trial.bootstrap is None:
                    self.trial.bootstrap = self.since()

        async def lookup_peers(
            info_hash: bytes,
            on_peers: Callable[[list[PeerAddr]], None] | None,
            *args: float,
            **kw: float,
        ) -> list[PeerAddr]:
            def both(batch: list[PeerAddr]) -> None:
                self.on_dht_peers(batch)
                if on_peers is not None:
                    on_peers(batch)

            return await real_lookup(info_hash, both, *args, **kw)

        node.bootstrap = bootstrap  # type: ignore[method-assign]
        node.lookup_peers = lookup_peers  # type: ignore[method-assign]


# -- setup -------------------------------------------------------------------------
async def build_dht(
    stack: contextlib.AsyncExitStack, n: int, cfg: DhtConfig
) -> list[DhtNode]:
    """N nodes on 127.0.0.1: a bootstrap chain, then a second round through
    the first node so early nodes learn the later ones."""
    nodes = [await stack.enter_async_context(DhtNode(config=cfg)) for _ in range(n)]
    for prev, node in itertools.pairwise(nodes):
        await node.bootstrap([prev.address], timeout_s=10)
    await asyncio.gather(
        *(x.bootstrap([nodes[0].address], timeout_s=10) for x in nodes)
    )
    want = min(MIN_TABLE, n - 1)
    await asyncio.gather(*(x.wait_table_size(want) for x in nodes))
    return nodes


async def start_seeder(
    stack: contextlib.AsyncExitStack,
    nodes: list[DhtNode],
    cfg: DhtConfig,
    work: Path,
    rng: random.Random,
) -> tuple[Engine, TorrentSession]:
    """Seed a 1 MiB file from an engine joined to the DHT; return once it has
    announced and a get_peers from another network node finds it."""
    src = work / "seed"
    write_random_file(src / "data.bin", FILE_BYTES, seed=rng.getrandbits(32))
    meta = make_torrent(src / "data.bin", [], piece_length=PIECE_BYTES)
    announced = asyncio.Event()

    def on_event(name: str, fields: dict[str, Any]) -> None:
        if name == "dht_lookup" and fields.get("info_hash") == meta.info_hash.hex():
            announced.set()

    config = EngineConfig.testing(
        dht_port=0,
        dht_bootstrap=(str(rng.choice(nodes).address),),
        dht_config=cfg,
    )
    seeder = await stack.enter_async_context(Engine(config, on_event=on_event))
    session = seeder.add_torrent(meta, src)
    await session.wait_started()
    if not session.is_complete:
        raise BenchError("the seeder's data did not check complete")
    await announced.wait()
    # The announce may have failed quietly (the engine only logs it): check.
    while True:
        peers = await rng.choice(nodes).get_peers(meta.info_hash, timeout_s=10)
        if seeder.address in peers:
            return seeder, session
        await asyncio.sleep(0.2)  # the seeder re-announces every dht_retry_s


# -- trials ------------------------------------------------------------------------
async def run_trial(
    name: str,
    number: int,
    cfg: DhtConfig,
    nodes: list[DhtNode],
    seeder: Engine,
    info_hash: bytes,
    work: Path,
    rng: random.Random,
    timeout_s: float,
) -> Trial:
    trial = Trial(run=name, trial=number)
    magnet = Magnet(
        info_hash=info_hash,
        display_name=None,
        trackers=(),
        peers=(),
        exact_length=None,
    )
    config = EngineConfig.testing(
        dht_port=0,
        dht_bootstrap=(str(rng.choice(nodes).address),),
        dht_config=cfg,
    )
    loop = asyncio.get_running_loop()
    marks = _Marks(trial, seeder.address, loop.time())
    try:
        async with asyncio.timeout(timeout_s):
            async with Engine(config, on_event=marks.on_event) as leech:
                assert isinstance(leech.dht, DhtNode)
                marks.instrument(leech.dht)
                trial.leecher_dht = str(leech.dht.address)
                trial.engine_up = marks.since()
                await leech.open_magnet(magnet, work / f"{name}-{number}")
        trial.ok = trial.metadata is not None
    except TimeoutError:
        trial.note = f"timed out after {timeout_s:.0f}s"
    if trial.first_peer is not None and not trial.first_peer_is_seeder:
        trial.note = (trial.note + "; " if trial.note else "") + (
            "first DHT peers did not include the seeder"
        )
    return trial


@dataclass(slots=True)
class _Network:
    """A running DHT with its seeder, and the leecher DHT nodes that left it."""

    nodes: list[DhtNode]
    seeder: Engine
    info_hash: bytes
    setup: dict[str, float]
    gone: set[PeerAddr] = field(default_factory=set)

    def dead_nodes_known(self) -> int:
        """Closed leechers' DHT nodes still in some network node's table."""
        known = {n.addr for x in self.nodes for n in x.routing_nodes()}
        return len(known & self.gone)


async def start_network(
    stack: contextlib.AsyncExitStack,
    args: argparse.Namespace,
    cfg: DhtConfig,
    work: Path,
    rng: random.Random,
) -> _Network:
    loop = asyncio.get_running_loop()
    setup: dict[str, float] = {}
    t = loop.time()
    try:
        async with asyncio.timeout(SETUP_TIMEOUT_S):
            nodes = await build_dht(stack, args.nodes, cfg)
            setup["dht_build_s"] = loop.time() - t
            t = loop.time()
            seeder, session = await start_seeder(stack, nodes, cfg, work, rng)
            setup["seeder_announced_s"] = loop.time() - t
    except TimeoutError:
        raise BenchError(f"DHT or seeder not ready in {SETUP_TIMEOUT_S:.0f}s") from None
    sizes = [x.statistics().routing_table_size for x in nodes]
    setup["table_min"] = min(sizes)
    setup["table_median"] = statistics.median(sizes)
    setup["table_max"] = max(sizes)
    return _Network(nodes, seeder, session.info_hash, setup)


async def run_config(
    name: str, fresh: bool, args: argparse.Namespace, work: Path, rng: random.Random
) -> tuple[list[Trial], list[dict[str, float]]]:
    """All trials of one DHT config, on one shared network (closed leechers
    leave dead nodes behind) or on a fresh network per trial."""
    cfg = CONFIGS[name]()
    label = f"{name}/{'fresh' if fresh else 'shared'}"
    setups: list[dict[str, float]] = []
    trials: list[Trial] = []
    async with contextlib.AsyncExitStack() as shared_stack:
        net = None
        for number in range(1, args.trials + 1):
            async with contextlib.AsyncExitStack() as stack:
                if net is None or fresh:
                    net_dir = work / f"net{number}"
                    net_dir.mkdir()
                    net = await start_network(
                        stack if fresh else shared_stack, args, cfg, net_dir, rng
                    )
                    setups.append(net.setup)
                    if len(setups) == 1:
                        print(f"[{label}] {_setup_line(args.nodes, net.setup)}")
                dead = net.dead_nodes_known()
                trial = await run_trial(
                    label,
                    number,
                    cfg,
                    net.nodes,
                    net.seeder,
                    net.info_hash,
                    work,
                    rng,
                    args.timeout,
                )
                trial.dead_nodes_known = dead
                if trial.leecher_dht is not None:
                    net.gone.add(PeerAddr.parse(trial.leecher_dht))
                trials.append(trial)
                print(f"[{label}] trial {number}: {_trial_line(trial)}", flush=True)
    return trials, setups


def _setup_line(n: int, setup: dict[str, float]) -> str:
    return (
        f"{n} nodes in {setup['dht_build_s']:.2f}s (tables "
        f"{setup['table_min']:.0f}..{setup['table_max']:.0f}), seeder announced "
        f"in {setup['seeder_announced_s']:.2f}s"
    )


# -- reporting ---------------------------------------------------------------------
def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * MS:.0f}"


def _trial_line(t: Trial) -> str:
    parts = [f"{label} {_ms(getattr(t, key))} ms" for key, label in STAGES]
    parts.append(f"{t.dead_nodes_known} dead nodes in tables")
    return ", ".join(parts) + (f" ({t.note})" if t.note else "")


def summarize(values: list[float | None]) -> dict[str, float | int | None]:
    got = [v for v in values if v is not None]
    if not got:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {
        "n": len(got),
        "median": statistics.median(got),
        "min": min(got),
        "max": max(got),
    }


def summary(trials: list[Trial]) -> dict[str, dict[str, dict[str, float | int | None]]]:
    return {
        "from_launch": {
            key: summarize([getattr(t, key) for t in trials]) for key, _ in STAGES
        },
        "after_bootstrap": {
            key: summarize([t.since_bootstrap(key) for t in trials])
            for key, _ in STAGES[1:]
        },
    }


def table_rows(name: str, trials: list[Trial]) -> list[list[str]]:
    s = summary(trials)
    rows = []
    for clock, stages in (("from launch", STAGES), ("after bootstrap", STAGES[1:])):
        part = s["from_launch" if clock == "from launch" else "after_bootstrap"]
        for key, label in stages:
            x = part[key]
            rows.append(
                [
                    name,
                    clock,
                    label,
                    f"{x['n']}/{len(trials)}",
                    _ms(x["median"]),
                    _ms(x["min"]),
                    _ms(x["max"]),
                ]
            )
    return rows


COLUMNS = ["DHT/network", "clock", "stage", "trials", "median ms", "min ms", "max ms"]


def print_table(groups: list[list[list[str]]], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print("\t".join(COLUMNS))
        for rows in groups:
            for row in rows:
                print("\t".join(row))
        return
    table = Table(title=title)
    for n, col in enumerate(COLUMNS):
        table.add_column(col, justify="left" if n < 3 else "right", no_wrap=True)
    for rows in groups:
        for n, row in enumerate(rows):
            table.add_row(*row, end_section=n == len(rows) - 1)
    console = Console()
    console.width = max(console.width, 100)
    console.print(table)


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }


# -- main --------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(
        prog="python -m tests.bench.magnet", description=doc.split("\n\n")[0]
    )
    p.add_argument("--nodes", type=int, default=30, help="DHT nodes (default 30)")
    p.add_argument("--trials", type=int, default=15, help="leechers (default 15)")
    p.add_argument(
        "--config",
        choices=[*CONFIGS, "both"],
        default="both",
        help="DHT configuration: testing, default or both (default both)",
    )
    p.add_argument(
        "--network",
        choices=["shared", "fresh", "both"],
        default="both",
        help="one DHT for all trials (closed leechers leave dead nodes), a "
        "fresh DHT and seeder per trial, or both (default both)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds allowed per trial (default 60)",
    )
    p.add_argument("--seed", type=int, help="seed for node choice and file data")
    p.add_argument("--out", metavar="FILE", help="write the results as JSON here")
    return p


Results = dict[str, tuple[list[Trial], list[dict[str, float]]]]


async def run(args: argparse.Namespace, tmp: Path) -> Results:
    rng = random.Random(args.seed)
    names = list(CONFIGS) if args.config == "both" else [args.config]
    modes = [False, True] if args.network == "both" else [args.network == "fresh"]
    results: Results = {}
    for fresh in modes:
        for name in names:
            label = f"{name}/{'fresh' if fresh else 'shared'}"
            work = tmp / label.replace("/", "-")
            work.mkdir()
            results[label] = await run_config(name, fresh, args, work, rng)
    return results


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.nodes < 2 or args.trials < 1:
        print("error: need --nodes >= 2 and --trials >= 1", file=sys.stderr)
        return 2
    started = time.time()
    base = TMPFS if TMPFS.is_dir() else None
    try:
        with tempfile.TemporaryDirectory(prefix="bitswarm-magnet-", dir=base) as tmp:
            results = asyncio.run(run(args, Path(tmp)))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print_table(
        [table_rows(name, trials) for name, (trials, _) in results.items()],
        f"bare magnet on loopback: {args.nodes}-node DHT, 1 seeder, "
        f"{args.trials} leechers",
    )
    failed = sum(1 for trials, _ in results.values() for t in trials if not t.ok)
    if failed:
        print(f"note: {failed} trial(s) did not get the metadata (see the JSON)")
    if args.out:
        doc = {
            "benchmark": "magnet",
            "started_unix": started,
            "nodes": args.nodes,
            "trials": args.trials,
            "file_bytes": FILE_BYTES,
            "piece_bytes": PIECE_BYTES,
            "machine": machine_info(),
            "runs": {
                name: {
                    "setup": setups,
                    "summary": summary(trials),
                    "trials": [t.to_json() for t in trials],
                }
                for name, (trials, setups) in results.items()
            },
        }
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
