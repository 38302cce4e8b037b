"""Terminal output: a rich live display, or one JSON event a line.

The render functions are pure (snapshot in, renderable out) and tested
against a ``Console`` writing to ``io.StringIO``. The live display refreshes
from an asyncio task with ``auto_refresh=False``, so rich's refresh thread
never reads session state (shared STYLE.md 8).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

    from client.session import PeerInfo, SessionStats

# rich is imported where it is drawn, not here: ``bitswarm download --json``
# uses JsonEvents only and should not pay rich's import (issue 7).

__all__ = [
    "JsonEvents",
    "LiveDisplay",
    "format_bytes",
    "format_rate",
    "render_piece_map",
    "render_session",
]

PIECE_MAP_WIDTH = 64  # characters in the piece map line


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def format_rate(bps: float) -> str:
    return format_bytes(bps) + "/s"


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def render_piece_map(piece_map: str, width: int = PIECE_MAP_WIDTH) -> Text:
    """One character per group of pieces: full, partly had, or missing."""
    from rich.text import Text

    n = len(piece_map)
    text = Text()
    if n == 0:
        return text
    cells = min(width, n)
    for c in range(cells):
        group = piece_map[c * n // cells : (c + 1) * n // cells]
        have = group.count("1")
        if have == len(group):
            text.append("█", style="green")
        elif have:
            text.append("▓", style="yellow")
        else:
            text.append("░", style="grey50")
    return text


def render_session(
    stats: SessionStats, peers: Sequence[PeerInfo] = ()
) -> RenderableType:
    """The live panel of one torrent."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    done = stats.pieces_have / stats.pieces if stats.pieces else 1.0
    head = Table.grid(padding=(0, 2))
    head.add_row(
        Text(f"{done * 100:5.1f}%", style="bold"),
        ProgressBar(total=max(1, stats.pieces), completed=stats.pieces_have, width=40),
        Text(stats.state),
    )
    info = Table.grid(padding=(0, 2))
    info.add_row(
        f"↓ {format_rate(stats.download_rate)}",
        f"↑ {format_rate(stats.upload_rate)}",
        f"peers {stats.peers} ({stats.seeds} seeds)",
        f"ETA {format_eta(stats.eta_s)}",
        f"{stats.pieces_have}/{stats.pieces} pieces",
    )
    parts: list[RenderableType] = [head, info, render_piece_map(stats.piece_map)]
    if peers:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
        for col in ("peer", "source", "↓", "↑", "pieces", ""):
            table.add_column(col)
        for p in list(peers)[:8]:
            table.add_row(
                p.addr,
                p.source,
                format_rate(p.download_rate),
                format_rate(p.upload_rate),
                str(p.pieces),
                "choked" if p.choked else "",
            )
        parts.append(table)
    title = f"{stats.name} [dim]{stats.info_hash[:8]}[/dim]"
    return Panel(Group(*parts), title=title, title_align="left")


class JsonEvents:
    """Prints one JSON object a line: {"event": name, "t": seconds, ...}."""

    def __init__(self, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._t0 = time.monotonic()

    def __call__(self, name: str, fields: dict[str, Any]) -> None:
        if "event" in fields:  # e.g. a tracker's announce event: keep both
            fields = {**fields, "tracker_event": fields["event"]}
            del fields["event"]
        record = {"event": name, "t": round(time.monotonic() - self._t0, 3), **fields}
        self._out.write(json.dumps(record, default=str) + "\n")
        self._out.flush()

    def progress(self, stats: SessionStats) -> None:
        fields = asdict(stats)
        fields.pop("piece_map")
        self("progress", fields)


class LiveDisplay:
    """Refreshes a rich Live panel from an asyncio task."""

    def __init__(
        self,
        console: Console,
        snapshot: Callable[[], RenderableType | None],
        interval_s: float = 0.5,
    ) -> None:
        self._console = console
        self._snapshot = snapshot
        self._interval_s = interval_s

    async def run(self) -> None:
        import asyncio

        from rich.live import Live

        with Live(console=self._console, auto_refresh=False, transient=False) as live:
            try:
                while True:
                    renderable = self._snapshot()
                    if renderable is not None:
                        live.update(renderable, refresh=True)
                    await asyncio.sleep(self._interval_s)
            finally:
                renderable = self._snapshot()
                if renderable is not None:
                    live.update(renderable, refresh=True)
