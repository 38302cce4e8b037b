"""The swarm lab's chart: minimum distribution time vs N, as SVG or text.

The chart of the course notes: the client-server bound ``max{N*F/u_s,
F/d_min}`` (a straight line in N) and the P2P bound (a curve that flattens
towards ``F/u``) drawn as curves, the measured times as points over them.
Pure functions from numbers to a string (SVG) or rows of characters (the
terminal plot; the CLI colours it); no plotting library.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

from client.core.bounds import LabPoint, LabSettings

__all__ = [
    "BOTH_POINTS",
    "CS_BOUND",
    "CS_POINT",
    "P2P_BOUND",
    "P2P_POINT",
    "bound_curves",
    "nice_ticks",
    "render_svg",
    "render_text",
]

# Characters of the text plot (the CLI maps each to a colour).
CS_BOUND = "-"
P2P_BOUND = "."
CS_POINT = "C"
P2P_POINT = "P"
BOTH_POINTS = "*"  # a measured client-server and P2P point in one cell
# Samples per bound curve (N is continuous in the fluid model).
CURVE_SAMPLES = 200

# SVG geometry, pixels.
SVG_W, SVG_H = 720, 440
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 70, 30, 50, 60
CS_COLOUR = "#d9480f"
P2P_COLOUR = "#1c7ed6"


def bound_curves(
    settings: LabSettings, n_max: int, samples: int = CURVE_SAMPLES
) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(N, seconds) samples of the client-server and P2P bounds on [1, n_max]."""
    cs: list[tuple[float, float]] = []
    p2p: list[tuple[float, float]] = []
    top = max(1, n_max)
    for i in range(samples + 1):
        n = 1 + (top - 1) * i / samples
        f, us, d = settings.file_size, settings.server_rate, settings.download_rate
        cs.append((n, max(n * f / us, f / d)))
        p2p.append((n, max(f / us, f / d, n * f / (us + n * settings.upload_rate))))
    return cs, p2p


def nice_ticks(top: float, count: int = 5) -> list[float]:
    """Round axis ticks from 0 to at least ``top`` (steps of 1, 2 or 5 x 10^k)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    ticks = [0.0]
    while ticks[-1] < top - 1e-9:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _extent(settings: LabSettings, points: Sequence[LabPoint]) -> tuple[int, float]:
    n_max = max((p.n for p in points), default=1)
    t_max = max(
        [settings.bound_cs(n_max), settings.bound_p2p(n_max)]
        + [max(p.measured_cs, p.measured_p2p) for p in points]
    )
    return n_max, t_max


def render_svg(settings: LabSettings, points: Sequence[LabPoint]) -> str:
    """The chart as a standalone SVG document."""
    n_max, t_max = _extent(settings, points)
    x_ticks = nice_ticks(n_max, 8)
    y_ticks = nice_ticks(t_max * 1.05, 6)
    x_top, y_top = x_ticks[-1], y_ticks[-1]
    plot_w = SVG_W - MARGIN_L - MARGIN_R
    plot_h = SVG_H - MARGIN_T - MARGIN_B

    def x(n: float) -> float:
        return MARGIN_L + plot_w * n / x_top

    def y(t: float) -> float:
        return MARGIN_T + plot_h * (1 - t / y_top)

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_W}" '
        f'height="{SVG_H}" viewBox="0 0 {SVG_W} {SVG_H}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{SVG_W}" height="{SVG_H}" fill="white"/>',
    ]
    title = (
        f"Minimum distribution time vs N: F = {_size(settings.file_size)}, "
        f"u = {_size(settings.upload_rate)}/s, u_s = {_size(settings.server_rate)}/s, "
        f"d = {_size(settings.download_rate)}/s"
    )
    out.append(
        f'<text x="{SVG_W / 2}" y="22" text-anchor="middle" font-size="14">'
        f"{escape(title)}</text>"
    )
    for t in y_ticks:
        out.append(
            f'<line x1="{MARGIN_L}" y1="{y(t):.1f}" x2="{SVG_W - MARGIN_R}" '
            f'y2="{y(t):.1f}" stroke="#e9ecef"/>'
        )
        out.append(
            f'<text x="{MARGIN_L - 8}" y="{y(t) + 4:.1f}" text-anchor="end">'
            f"{t:g}</text>"
        )
    for n in x_ticks:
        out.append(
            f'<line x1="{x(n):.1f}" y1="{MARGIN_T}" x2="{x(n):.1f}" '
            f'y2="{SVG_H - MARGIN_B}" stroke="#e9ecef"/>'
        )
        out.append(
            f'<text x="{x(n):.1f}" y="{SVG_H - MARGIN_B + 18}" '
            f'text-anchor="middle">{n:g}</text>'
        )
    out.append(
        f'<rect x="{MARGIN_L}" y="{MARGIN_T}" width="{plot_w}" height="{plot_h}" '
        'fill="none" stroke="#495057"/>'
    )
    out.append(
        f'<text x="{MARGIN_L + plot_w / 2}" y="{SVG_H - 18}" '
        'text-anchor="middle">N (downloading peers)</text>'
    )
    out.append(
        f'<text x="18" y="{MARGIN_T + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {MARGIN_T + plot_h / 2})">'
        "minimum distribution time (s)</text>"
    )
    cs, p2p = bound_curves(settings, n_max)
    for curve, colour in ((cs, CS_COLOUR), (p2p, P2P_COLOUR)):
        path = " ".join(f"{x(n):.1f},{y(t):.1f}" for n, t in curve)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" '
            'stroke-width="2" stroke-dasharray="6 4"/>'
        )
    for p in points:
        out.append(
            f'<circle cx="{x(p.n):.1f}" cy="{y(p.measured_cs):.1f}" r="5" '
            f'fill="{CS_COLOUR}"><title>N={p.n}: client-server '
            f"{p.measured_cs:.2f} s (bound {p.bound_cs:.2f} s)</title></circle>"
        )
        cx, cy = x(p.n), y(p.measured_p2p)
        out.append(
            f'<rect x="{cx - 5:.1f}" y="{cy - 5:.1f}" width="10" height="10" '
            f'fill="{P2P_COLOUR}"><title>N={p.n}: P2P {p.measured_p2p:.2f} s '
            f"(bound {p.bound_p2p:.2f} s)</title></rect>"
        )
    legend = [
        ("line", CS_COLOUR, "client-server bound max{NF/u_s, F/d_min}"),
        ("line", P2P_COLOUR, "P2P bound max{F/u_s, F/d_min, NF/(u_s+Σu_i)}"),
        ("circle", CS_COLOUR, "client-server, measured"),
        ("square", P2P_COLOUR, "P2P (BitTorrent), measured"),
    ]
    lx, ly = MARGIN_L + 16, MARGIN_T + 18
    for i, (kind, colour, label) in enumerate(legend):
        yy = ly + 18 * i
        if kind == "line":
            out.append(
                f'<line x1="{lx}" y1="{yy}" x2="{lx + 24}" y2="{yy}" '
                f'stroke="{colour}" stroke-width="2" stroke-dasharray="6 4"/>'
            )
        elif kind == "circle":
            out.append(f'<circle cx="{lx + 12}" cy="{yy}" r="5" fill="{colour}"/>')
        else:
            out.append(
                f'<rect x="{lx + 7}" y="{yy - 5}" width="10" height="10" '
                f'fill="{colour}"/>'
            )
        out.append(f'<text x="{lx + 32}" y="{yy + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_text(
    settings: LabSettings,
    points: Sequence[LabPoint],
    *,
    width: int = 64,
    height: int = 18,
) -> list[str]:
    """The chart as rows of characters, top row first, with a y-axis
    label column and an x-axis line under the plot.

    Bounds are drawn with :data:`CS_BOUND` and :data:`P2P_BOUND`, measured
    points with :data:`CS_POINT` and :data:`P2P_POINT` (:data:`BOTH_POINTS` where
    they fall in one cell; a point hides a curve under it).
    """
    n_max, t_max = _extent(settings, points)
    t_top = t_max * 1.05
    grid = [[" "] * width for _ in range(height)]

    def col(n: float) -> int:
        return min(width - 1, max(0, round((n - 1) / max(1, n_max - 1) * (width - 1))))

    def row(t: float) -> int:
        return min(height - 1, max(0, height - 1 - round(t / t_top * (height - 1))))

    cs, p2p = bound_curves(settings, n_max, samples=width * 4)
    for curve, ch in ((cs, CS_BOUND), (p2p, P2P_BOUND)):
        for n, t in curve:
            grid[row(t)][col(n)] = ch
    for p in points:
        grid[row(p.measured_cs)][col(p.n)] = CS_POINT
        r, c = row(p.measured_p2p), col(p.n)
        grid[r][c] = BOTH_POINTS if grid[r][c] == CS_POINT else P2P_POINT
    digits = 1 if t_top >= 10 else 2
    label_w = max(len(f"{t_top:.{digits}f}"), 4)
    rows: list[str] = []
    for i, cells in enumerate(grid):
        t = (height - 1 - i) / (height - 1) * t_top
        label = f"{t:.{digits}f}" if i % 4 == 0 or i == height - 1 else ""
        rows.append(f"{label:>{label_w}} |" + "".join(cells))
    rows.append(" " * label_w + " +" + "-" * width)
    axis = [" "] * width
    for p in points:
        text = str(p.n)
        start = min(width - len(text), col(p.n))
        axis[start : start + len(text)] = text
    rows.append(" " * (label_w + 2) + "".join(axis) + "  N")
    return rows


def _size(value: float) -> str:
    for unit, scale in (("MiB", 1024**2), ("KiB", 1024)):
        if value >= scale and value % (scale / 4) == 0:
            return f"{value / scale:g} {unit}"
    return f"{value:g} B"
