"""``bitswarm chord``: run a Chord ring peer, or draw a ring in the terminal.

``chord node`` runs one ring peer (dht.ChordNode) until Ctrl-C, then leaves
gracefully (its keys go to its successor). With ``--json`` it prints
``{"event": "chord_listening", ...}`` first, so scripts learn the port, then
a statistics line every few seconds; otherwise a rich live table shows its
predecessor, successors and counters.

``chord ring`` draws a converged ring (the state stabilization reaches, from
``dht.ChordRing``, in memory, no network): the peers on the circle, one
peer's successor list and fingers, and the hops of a lookup.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import TYPE_CHECKING

from dht import DhtError, PeerAddr

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.table import Table

    from dht import ChordConfig, ChordRing, ChordStatistics, LookupPath

# rich, asyncio and the Chord node are imported by the functions that use
# them: registering this subcommand is part of every ``bitswarm`` start
# (issue 7).

__all__ = ["register", "render_chord_statistics", "render_ring", "run_chord", "serve"]

JSON_INTERVAL_S = 2.0  # seconds between --json statistics lines
LIVE_INTERVAL_S = 1.0  # seconds between live display refreshes
RING_ROWS = 10  # radius of the drawn circle in text rows (columns are doubled)
WORKED_PEERS = "1,12,13,25,32,40,48,60"  # the course notes' example, m = 6


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``chord`` subcommand (``chord node``, ``chord ring``)."""
    p = subparsers.add_parser(
        "chord",
        help="Chord ring: run a peer, or draw a ring",
        description="The Chord ring overlay (Stoica et al. 2001).",
    )
    sub = p.add_subparsers(dest="chord_command", required=True, metavar="SUBCOMMAND")

    n = sub.add_parser("node", help="run a Chord ring peer until Ctrl-C")
    n.add_argument("--port", type=int, default=6882, help="UDP port (0 = any)")
    n.add_argument("--host", default="127.0.0.1", help="address to bind")
    n.add_argument("--bootstrap", metavar="HOST:PORT", help="join through this peer")
    n.add_argument("--m", type=int, default=160, help="bits of the id circle")
    n.add_argument(
        "--successors", type=int, default=2, metavar="R", help="successor-list length"
    )
    n.add_argument("--json", action="store_true", help="JSON lines instead of a UI")
    n.add_argument(
        "--interval", type=float, default=JSON_INTERVAL_S, help="seconds between lines"
    )
    n.set_defaults(func=run_chord)

    r = sub.add_parser("ring", help="draw a ring, a peer's pointers and a lookup")
    r.add_argument("--m", type=int, default=6, help="bits of the id circle")
    r.add_argument("--peers", default=WORKED_PEERS, help="comma-separated peer ids")
    r.add_argument(
        "--node", type=int, default=None, help="peer to show (default: first)"
    )
    r.add_argument("--lookup", metavar="KEY", help="key to look up from --node")
    r.add_argument(
        "--successors", type=int, default=2, metavar="R", help="successor-list length"
    )
    r.set_defaults(func=run_chord)


def run_chord(args: argparse.Namespace) -> int:
    """Entry point of ``bitswarm chord``; returns the exit status."""
    import asyncio

    from dht import ChordConfig

    try:
        if args.chord_command == "ring":
            return _draw(args)
        config = ChordConfig(m=args.m, successors=args.successors)
        bootstrap = PeerAddr.parse(args.bootstrap) if args.bootstrap else None
        asyncio.run(serve(args, config, bootstrap))
    except KeyboardInterrupt:
        return 0
    except (DhtError, OSError, ValueError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


# -- chord ring --------------------------------------------------------------------


def _draw(args: argparse.Namespace) -> int:
    from rich.console import Console

    from dht import ChordRing

    try:
        ids = [int(x) for x in args.peers.split(",") if x.strip()]
    except ValueError:
        print(
            f"error: --peers {args.peers!r} is not a list of integers", file=sys.stderr
        )
        return 2
    ring = ChordRing(ids, m=args.m, r=args.successors)
    node = ring.ids[0] if args.node is None else args.node
    if node not in ring.ids:
        print(f"error: --node {node} is not one of the peers", file=sys.stderr)
        return 2
    path = None
    if args.lookup is not None:
        text = args.lookup
        key = int(text, 16) if len(text) == 40 else int(text)
        path = ring.lookup(node, key % (1 << ring.m))
    Console().print(render_ring(ring, node, path))
    return 0


def render_ring(ring: ChordRing, node: int, path: LookupPath | None) -> RenderableType:
    """The ring drawn as a circle with ``node``'s successors (green), fingers
    (cyan) and a lookup's hops (yellow, numbered), plus tables of each."""
    from rich.console import Group
    from rich.text import Text

    successors = set(ring.successors(node))
    fingers = set(ring.fingers(node))
    hops = {p: i for i, p in enumerate(path.visited)} if path else {}
    owner = path.owner if path else None
    width = RING_ROWS * 4 + 12
    height = RING_ROWS * 2 + 3
    grid: list[list[tuple[str, str]]] = [[(" ", "")] * width for _ in range(height)]
    cx, cy = width // 2, height // 2

    def place(value: int, radius: float) -> tuple[int, int]:
        angle = 2 * math.pi * value / (1 << ring.m)
        return (
            cx + round(2 * radius * math.sin(angle)),
            cy - round(radius * math.cos(angle)),
        )

    for step in range(120):
        x, y = place(step * (1 << ring.m) // 120, RING_ROWS)
        grid[y][x] = ("·", "dim")
    short = ring.m <= 16
    for index, peer in enumerate(ring.ids):
        style = "white"
        if peer in fingers:
            style = "cyan"
        if peer in successors:
            style = "green"
        if peer in hops:
            style = "yellow"
        if peer == owner:
            style = "bold magenta"
        if peer == node:
            style = "bold red"
        x, y = place(peer, RING_ROWS)
        grid[y][x] = ("●", style)
        label = str(peer) if short else f"#{index}"
        if hops.get(peer):
            label += f"({hops[peer]})"
        lx, ly = place(peer, RING_ROWS + 1.4)
        lx -= len(label) // 2
        for i, ch in enumerate(label):
            if 0 <= lx + i < width and 0 <= ly < height:
                grid[ly][lx + i] = (ch, style)
    picture = Text()
    for row in grid:
        for ch, style in row:
            picture.append(ch, style=style or None)
        picture.append("\n")
    legend = Text.assemble(
        ("● peer ", "bold red"),
        (f"{node}  ", "bold red"),
        ("● successors  ", "green"),
        ("● fingers  ", "cyan"),
        ("● lookup hops  ", "yellow"),
        ("● owner", "bold magenta"),
    )
    parts: list[RenderableType] = [
        Text(f"Chord ring: m = {ring.m}, {len(ring)} peers", style="bold"),
        picture,
        legend,
        _finger_table(ring, node),
    ]
    if path is not None:
        parts.append(_lookup_table(ring, path))
    return Group(*parts)


def _finger_table(ring: ChordRing, node: int) -> Table:
    from rich.table import Table

    table = Table(title=f"peer {node}: successors {list(ring.successors(node))}")
    table.add_column("finger i", justify="right")
    table.add_column("start = n + 2^(i-1)", justify="right")
    table.add_column("successor(start)", justify="right")
    for i, succ in enumerate(ring.fingers(node), 1):
        start = (node + (1 << (i - 1))) % (1 << ring.m)
        table.add_row(str(i), str(start), str(succ))
        if i >= 24:  # m = 160 would print 160 rows: the top ones say enough
            table.add_row("…", "…", "…")
            break
    return table


def _lookup_table(ring: ChordRing, path: LookupPath) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    heading = Text(
        f"lookup of key {path.key}: owner {path.owner}, {path.hops} hops "
        "(closest preceding fingers until the key's predecessor)",
        style="bold",
    )
    table = Table()
    table.add_column("hop", justify="right")
    table.add_column("peer", justify="right")
    table.add_column("its successor", justify="right")
    for i, peer in enumerate(path.visited):
        table.add_row(str(i), str(peer), str(ring.successors(peer)[0]))
    return Group(heading, table)


# -- chord node --------------------------------------------------------------------


def render_chord_statistics(stats: ChordStatistics, address: PeerAddr) -> Table:
    """The live display's table for one statistics snapshot."""
    from rich.table import Table

    digits = (stats.m + 3) // 4

    def peer_id(value: int) -> str:
        return f"{value:0{digits}x}"[:12]

    table = Table(title=f"Chord peer {peer_id(stats.node_id)} on {address}")
    table.add_column("")
    table.add_column("value", justify="right")
    pred = stats.predecessor
    rows = [
        ("predecessor", f"{peer_id(pred.id)} {pred.addr}" if pred else "-"),
        (
            "successors",
            ", ".join(f"{peer_id(p.id)} {p.addr}" for p in stats.successors) or "-",
        ),
        ("distinct fingers", str(stats.distinct_fingers)),
        ("keys stored", f"{stats.keys_stored} in {stats.swarms_stored} swarms"),
        ("queries in / out", f"{stats.queries_in} / {stats.queries_out}"),
        ("timeouts", str(stats.timeouts)),
        ("lookups done / failed", f"{stats.lookups_done} / {stats.lookups_failed}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def _json_stats(stats: ChordStatistics) -> str:
    pred = stats.predecessor
    return json.dumps(
        {
            "event": "chord_stats",
            "node_id": f"{stats.node_id:x}",
            "predecessor": str(pred.addr) if pred else None,
            "successors": [str(p.addr) for p in stats.successors],
            "keys_stored": stats.keys_stored,
            "queries_in": stats.queries_in,
            "queries_out": stats.queries_out,
            "timeouts": stats.timeouts,
        }
    )


async def serve(
    args: argparse.Namespace, config: ChordConfig, bootstrap: PeerAddr | None
) -> None:
    """Run a ring peer until cancelled (``args``: host, port, json, interval);
    also ``bitswarm dht --overlay chord``."""
    import asyncio
    import contextlib
    import signal

    from rich.console import Console
    from rich.live import Live

    from dht import ChordNode

    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    if main is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, main.cancel)
    async with ChordNode(host=args.host, port=args.port, config=config) as node:
        addr = node.address
        if args.json:
            first = {
                "event": "chord_listening",
                "host": addr.host,
                "port": addr.port,
                "node_id": f"{node.node_id:x}",
            }
            print(json.dumps(first), flush=True)
        if bootstrap is not None:
            succ = await node.join(bootstrap)
            if args.json:
                print(
                    json.dumps({"event": "chord_joined", "successor": str(succ.addr)}),
                    flush=True,
                )
        if args.json:
            while True:
                await asyncio.sleep(max(0.1, args.interval))
                print(_json_stats(node.statistics()), flush=True)
        with Live(
            render_chord_statistics(node.statistics(), addr),
            console=Console(),
            auto_refresh=False,
        ) as live:
            while True:
                await asyncio.sleep(LIVE_INTERVAL_S)
                live.update(
                    render_chord_statistics(node.statistics(), addr), refresh=True
                )
