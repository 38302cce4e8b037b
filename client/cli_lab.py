"""``bitswarm lab``: client-server vs peer-to-peer distribution time.

Runs :func:`client.lab.run_lab`, prints each N's row as it is measured, then
the table, the chart of the notes (bound curves and measured points) in the
terminal, and optionally the raw results (``--out``, JSON) and the chart as
an SVG file (``--plot``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from client.core.bounds import (
    DEFAULT_NS,
    LabPoint,
    LabSettings,
    lab_settings,
    parse_n_list,
    parse_size,
    results_document,
)
from client.core.ratelimit import parse_rate
from client.errors import ClientError

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

    from client.lab import Measurement

# rich, the chart and the lab's engine are imported by the functions that use
# them: registering this subcommand is part of every ``bitswarm`` start
# (issue 7).

__all__ = ["register", "render_chart", "render_table"]

# The CLI's GIL switch interval, seconds (client/cli.py sets it for 'seed' and
# 'download' too): hashing threads get the GIL back quickly from the loop.
GIL_SWITCH_INTERVAL_S = 0.0005
T = TypeVar("T")


def _chart_styles() -> dict[str, str]:
    from client.core.labchart import (
        BOTH_POINTS,
        CS_BOUND,
        CS_POINT,
        P2P_BOUND,
        P2P_POINT,
    )

    return {
        CS_BOUND: "dark_orange3",
        P2P_BOUND: "dodger_blue2",
        CS_POINT: "bold dark_orange3",
        P2P_POINT: "bold dodger_blue2",
        BOTH_POINTS: "bold magenta",
    }


def _flag(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse ``type``: a parse error becomes argparse's usage error."""

    def wrapped(text: str) -> T:
        try:
            return parse(text)
        except ClientError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    wrapped.__name__ = parse.__name__
    return wrapped


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "lab",
        help="measure client-server vs P2P distribution time against the bounds",
        description=(
            "Distribute a file from one server to N peers over loopback, "
            "client-server and peer-to-peer, and compare the measured times "
            "with the textbook lower bounds."
        ),
    )
    p.add_argument(
        "--n",
        type=_flag(parse_n_list),
        default=DEFAULT_NS,
        metavar="N,N,...",
        help="peer counts (default 1,2,4,8,16,32)",
    )
    p.add_argument(
        "--file-size",
        type=_flag(parse_size),
        default=None,
        metavar="SIZE",
        help="F, e.g. 2M (default: 8 s of upload at u)",
    )
    p.add_argument(
        "--upload-rate",
        type=_flag(parse_rate),
        default=None,
        metavar="RATE",
        help="u, each peer's upload, e.g. 256K (default 256K; u_s = 10u, d = 20u)",
    )
    p.add_argument("--out", type=Path, default=None, metavar="RESULTS.json")
    p.add_argument("--plot", type=Path, default=None, metavar="PATH.svg")
    p.add_argument("--quiet", action="store_true", help="print only the table")
    p.set_defaults(func=cmd_lab)


def render_table(points: Sequence[LabPoint]) -> Table:
    from rich.table import Table

    table = Table(
        title="Distribution time (s): measured D and its lower bound",
        caption="ratio = measured / bound; CPU = this process, load = machine",
    )
    for name in (
        "N",
        "D_cs",
        "bound",
        "ratio",
        "D_p2p",
        "bound",
        "ratio",
        "CPU cs/p2p",
        "load",
    ):
        table.add_column(name, justify="right")
    for p in points:
        table.add_row(
            str(p.n),
            f"{p.measured_cs:.2f}",
            f"{p.bound_cs:.2f}",
            f"{p.ratio_cs:.3f}",
            f"{p.measured_p2p:.2f}",
            f"{p.bound_p2p:.2f}",
            f"{p.ratio_p2p:.3f}",
            f"{p.cpu_cs:.0%}/{p.cpu_p2p:.0%}",
            f"{p.load:.1f}",
        )
    return table


def render_chart(settings: LabSettings, points: Sequence[LabPoint]) -> Text:
    from rich.text import Text

    from client.core.labchart import (
        BOTH_POINTS,
        CS_BOUND,
        CS_POINT,
        P2P_BOUND,
        P2P_POINT,
        render_text,
    )

    styles = _chart_styles()
    text = Text()
    for line in render_text(settings, points):
        for ch in line:
            text.append(ch, style=styles.get(ch, ""))
        text.append("\n")
    text.append("  ")
    text.append(f"{CS_BOUND * 3} client-server bound", style=styles[CS_BOUND])
    text.append("   ")
    text.append(f"{P2P_BOUND * 3} P2P bound", style=styles[P2P_BOUND])
    text.append("\n  measured: ")
    text.append(f"{CS_POINT} client-server", style=styles[CS_POINT])
    text.append("   ")
    text.append(f"{P2P_POINT} P2P", style=styles[P2P_POINT])
    text.append("   ")
    text.append(f"{BOTH_POINTS} both", style=styles[BOTH_POINTS])
    return text


def describe(settings: LabSettings) -> str:
    f, u = settings.file_size, settings.upload_rate
    return (
        f"F = {f} B ({f / 1024:g} KiB, {settings.num_pieces} pieces of "
        f"{settings.piece_length // 1024} KiB), u = {u / 1024:g} KiB/s "
        f"(F/u = {f / u:g} s), u_s = {settings.server_rate / 1024:g} KiB/s, "
        f"d = {settings.download_rate / 1024:g} KiB/s; unchoke slots: server N, "
        f"P2P peers {settings.peer_slots} + 1 optimistic; every rate limiter "
        "starts empty"
    )


def cmd_lab(args: argparse.Namespace) -> int:
    import asyncio

    from rich.console import Console

    from client.core.labchart import render_svg
    from client.lab import run_lab

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    settings = lab_settings(file_size=args.file_size, upload_rate=args.upload_rate)
    console = Console()
    if not args.quiet:
        console.print(describe(settings))

    def on_measurement(m: Measurement) -> None:
        if not args.quiet:
            bound = (
                settings.bound_p2p(m.n) if m.mode == "p2p" else settings.bound_cs(m.n)
            )
            console.print(
                f"  N = {m.n:>3} {m.mode:>3}: {m.seconds:6.2f} s "
                f"(bound {bound:.2f} s, x{m.seconds / bound:.3f}, CPU {m.cpu:.0%}, "
                f"load {m.load:.1f})"
            )

    points = asyncio.run(run_lab(settings, args.n, on_measurement=on_measurement))
    console.print(render_table(points))
    if not args.quiet:
        console.print(render_chart(settings, points))
    if args.out is not None:
        args.out.write_text(
            json.dumps(results_document(settings, points), indent=2) + "\n"
        )
    if args.plot is not None:
        args.plot.write_text(render_svg(settings, points))
    return 0
