"""``bitswarm dht``: run a standalone Mainline DHT node (a bootstrap node).

The node runs until Ctrl-C (or SIGTERM), showing its routing table and
traffic in a rich live display, or with ``--json`` printing one JSON line
first (``{"event": "dht_listening", ...}``, so scripts learn the port) and
then one statistics line every few seconds. No bootstrap node is used unless
given with ``--bootstrap`` (or ``--public-bootstrap`` for the public routers).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from dht import DhtError, PeerAddr

if TYPE_CHECKING:
    from rich.table import Table

    from dht import DhtNode, DhtStatistics

# rich, asyncio and the node are imported by the functions that use them:
# registering this subcommand is part of every ``bitswarm`` start (issue 7).

__all__ = ["register", "render_dht_statistics", "run_dht"]

JSON_INTERVAL_S = 2.0  # seconds between --json statistics lines
LIVE_INTERVAL_S = 1.0  # seconds between live display refreshes


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``dht`` subcommand to the main parser."""
    p = subparsers.add_parser(
        "dht",
        help="run a standalone DHT node",
        description="Run a Mainline DHT node (BEP 5) until Ctrl-C.",
    )
    p.add_argument("--port", type=int, default=6881, help="UDP port (0 = any)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument(
        "--bootstrap",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="join the DHT through this node (repeatable)",
    )
    p.add_argument(
        "--public-bootstrap",
        action="store_true",
        help="also bootstrap from the public routers (router.bittorrent.com, "
        "dht.transmissionbt.com, router.utorrent.com)",
    )
    p.add_argument("--state", metavar="FILE", help="load/save the routing table here")
    p.add_argument(
        "--overlay",
        choices=("mainline", "chord"),
        default="mainline",
        help="which DHT to run: mainline (BEP 5, default) or a Chord ring peer",
    )
    p.add_argument("--m", type=int, default=160, help="chord: bits of the id circle")
    p.add_argument(
        "--successors",
        type=int,
        default=2,
        metavar="R",
        help="chord: successor-list length",
    )
    p.add_argument(
        "--json", action="store_true", help="one JSON line every few seconds"
    )
    p.add_argument(
        "--interval",
        type=float,
        default=JSON_INTERVAL_S,
        help="seconds between --json lines",
    )
    p.set_defaults(func=run_dht)


def run_dht(args: argparse.Namespace) -> int:
    """Entry point of ``bitswarm dht``; returns the exit status."""
    import asyncio

    from client.cli_chord import serve as serve_chord
    from dht import DEFAULT_BOOTSTRAP_NODES, ChordConfig

    try:
        bootstrap = [PeerAddr.parse(a) for a in args.bootstrap]
        if args.overlay == "chord":
            config = ChordConfig(m=args.m, successors=args.successors)
            asyncio.run(serve_chord(args, config, bootstrap[0] if bootstrap else None))
            return 0
        if args.public_bootstrap:
            bootstrap += [PeerAddr.parse(a) for a in DEFAULT_BOOTSTRAP_NODES]
        asyncio.run(_serve(args, bootstrap))
    except KeyboardInterrupt:
        return 0
    except (DhtError, OSError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def render_dht_statistics(stats: DhtStatistics, address: PeerAddr) -> Table:
    """The live display's table for one statistics snapshot."""
    from rich.table import Table

    table = Table(title=f"DHT node {stats.node_id.hex()[:16]}… on {address}")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [
        (
            "routing table",
            f"{stats.routing_table_size} nodes ({stats.good_nodes} good)",
        ),
        ("buckets", str(stats.buckets)),
        ("queries in / out", f"{stats.queries_in} / {stats.queries_out}"),
        ("responses in / out", f"{stats.responses_in} / {stats.responses_out}"),
        ("timeouts", str(stats.timeouts)),
        ("bytes in / out", f"{stats.bytes_in} / {stats.bytes_out}"),
        ("peers stored", f"{stats.peers_stored} in {stats.swarms_stored} swarms"),
        ("lookups active / done", f"{stats.lookups_active} / {stats.lookups_done}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _json_stats(stats: DhtStatistics) -> str:
    data = asdict(stats)
    data["node_id"] = stats.node_id.hex()
    return json.dumps({"event": "dht_stats", **data})


async def _serve(args: argparse.Namespace, bootstrap: list[PeerAddr]) -> None:
    import asyncio
    import contextlib
    import signal

    from dht import DhtNode

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    if main is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, main.cancel)
    async with DhtNode(host=args.host, port=args.port, state_path=args.state) as node:
        addr = node.address
        if args.json:
            first = {
                "event": "dht_listening",
                "host": addr.host,
                "port": addr.port,
                "node_id": node.node_id.hex(),
            }
            print(json.dumps(first), flush=True)
        async with asyncio.TaskGroup() as tg:
            if bootstrap:
                tg.create_task(_bootstrap(node, bootstrap, args.json))
            if args.json:
                await _json_loop(node, max(0.1, args.interval))
            else:
                await _live_loop(node)


async def _bootstrap(node: DhtNode, addrs: list[PeerAddr], as_json: bool) -> None:
    size = await node.bootstrap(addrs)
    if as_json:
        print(
            json.dumps({"event": "dht_bootstrapped", "routing_table_size": size}),
            flush=True,
        )


async def _json_loop(node: DhtNode, interval_s: float) -> None:
    import asyncio

    while True:
        await asyncio.sleep(interval_s)
        print(_json_stats(node.statistics()), flush=True)


async def _live_loop(node: DhtNode) -> None:
    import asyncio

    from rich.console import Console
    from rich.live import Live

    console = Console()
    table = render_dht_statistics(node.statistics(), node.address)
    with Live(table, console=console, auto_refresh=False) as live:
        while True:
            live.update(
                render_dht_statistics(node.statistics(), node.address), refresh=True
            )
            await asyncio.sleep(LIVE_INTERVAL_S)
