"""The swarm lab's pure parts: bounds, settings, results JSON, the chart."""

from __future__ import annotations

import ast
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

import client.core.bounds as bounds_mod
import client.core.labchart as chart_mod
from client.core.bounds import (
    DEFAULT_NS,
    LabPoint,
    LabSettings,
    bound_cs,
    bound_p2p,
    burst_tolerance_s,
    choose_piece_length,
    lab_settings,
    parse_n_list,
    parse_size,
    results_document,
)
from client.core.labchart import (
    BOTH_POINTS,
    CS_BOUND,
    CS_POINT,
    P2P_BOUND,
    P2P_POINT,
    bound_curves,
    nice_ticks,
    render_svg,
    render_text,
)
from client.errors import ClientError

KIB = 1024
U = 256 * KIB  # bytes/s
F = 8 * U  # F/u = 8 s


def settings(**kw: object) -> LabSettings:
    base: dict[str, object] = {
        "file_size": F,
        "upload_rate": float(U),
        "server_rate": 10.0 * U,
        "download_rate": 20.0 * U,
        "piece_length": 32 * KIB,
    }
    base.update(kw)
    return LabSettings(**base)  # type: ignore[arg-type]  # test table of kwargs


# -- the bounds ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 0.8), (2, 1.6), (8, 6.4), (32, 25.6)],
)
def test_cs_bound_grows_linearly_in_n(n: int, expected: float) -> None:
    # u_s = 10u, F/u = 8 s: N*F/u_s = 0.8 N s; F/d = 0.4 s never binds.
    assert bound_cs(n, file_size=F, server_rate=10 * U, d_min=20 * U) == pytest.approx(
        expected
    )


def test_cs_bound_is_the_download_when_the_server_is_fast() -> None:
    assert bound_cs(2, file_size=F, server_rate=100 * U, d_min=U) == pytest.approx(8.0)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(1, 0.8), (2, 16 / 12), (8, 64 / 18), (32, 256 / 42)],
)
def test_p2p_bound_flattens(n: int, expected: float) -> None:
    got = bound_p2p(n, file_size=F, server_rate=10 * U, d_min=20 * U, peer_rate=U)
    assert got == pytest.approx(expected)


def test_p2p_bound_tends_to_f_over_u() -> None:
    got = bound_p2p(10_000, file_size=F, server_rate=10 * U, d_min=20 * U, peer_rate=U)
    assert 7.9 < got < 8.0


def test_p2p_bound_with_one_rate_per_peer() -> None:
    rates = [U, 2 * U, 3 * U]
    got = bound_p2p(3, file_size=F, server_rate=10 * U, d_min=100 * U, peer_rates=rates)
    assert got == pytest.approx(3 * F / (16 * U))


def test_p2p_bound_terms_each_bind() -> None:
    # F/u_s binds with a slow server and one peer; F/d_min with slow downloads.
    assert bound_p2p(
        1, file_size=F, server_rate=U, d_min=100 * U, peer_rate=U
    ) == pytest.approx(8.0)
    assert bound_p2p(
        4, file_size=F, server_rate=100 * U, d_min=U / 2, peer_rate=U
    ) == pytest.approx(16.0)


def test_notes_example_n8_p2p_beats_cs_by_about_1_8() -> None:
    s = settings()
    assert s.bound_cs(8) / s.bound_p2p(8) == pytest.approx(1.8)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"peer_rate": 1.0, "peer_rates": [1.0]},
        {"peer_rates": [1.0, 2.0]},
    ],
)
def test_p2p_bound_rejects_bad_rate_arguments(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"peer_rate|peer rates"):
        bound_p2p(1, file_size=F, server_rate=U, d_min=U, **kw)  # type: ignore[arg-type]


def test_burst_tolerance_is_a_tenth_of_a_second_for_fast_buckets() -> None:
    assert burst_tolerance_s([10 * U, 20 * U, U]) == pytest.approx(0.1)


def test_burst_tolerance_of_a_slow_bucket_is_one_block_of_time() -> None:
    assert burst_tolerance_s([16 * KIB]) == pytest.approx(1.0)
    assert burst_tolerance_s([]) == 0.0


# -- settings --------------------------------------------------------------------
def test_default_settings_follow_the_notes() -> None:
    s = lab_settings()
    assert s.upload_rate == U
    assert s.server_rate == 10 * s.upload_rate
    assert s.download_rate == 20 * s.upload_rate
    assert s.file_size / s.upload_rate == pytest.approx(8.0)
    assert s.piece_length == 32 * KIB
    assert s.num_pieces == 64
    assert DEFAULT_NS == (1, 2, 4, 8, 16, 32)


def test_settings_scale_with_the_upload_rate() -> None:
    s = lab_settings(upload_rate=64 * KIB, file_size=100_000)
    assert s.file_size == 100_000
    assert s.server_rate == 640 * KIB
    assert s.piece_length == 16 * KIB
    assert s.num_pieces == 7  # the last piece is short


@pytest.mark.parametrize(
    ("size", "piece"),
    [
        (1, 16 * KIB),
        (512 * KIB, 16 * KIB),
        (2 * 1024 * KIB, 32 * KIB),
        (1 << 40, 1 << 20),
    ],
)
def test_piece_length_aims_for_64_pieces(size: int, piece: int) -> None:
    assert choose_piece_length(size) == piece


@pytest.mark.parametrize(
    "kw",
    [
        {"file_size": 0},
        {"upload_rate": 0.0},
        {"server_rate": -1.0},
        {"piece_length": 1024},
        {"peer_slots": 0},
    ],
)
def test_settings_reject_nonsense(kw: dict[str, object]) -> None:
    with pytest.raises(ClientError):
        settings(**kw)


# -- parsing flags -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [("65536", 65536), ("512K", 512 * KIB), ("1.5M", 1536 * KIB), ("2MiB", 2 << 20)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "0", "-1K", "1T"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ClientError, match="size"):
        parse_size(text)


def test_parse_n_list_sorts_and_dedups() -> None:
    assert parse_n_list("8, 1,2,,8") == (1, 2, 8)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("0", "outside"),
        ("1,x", "whole number"),
        (",", "no peer counts"),
        ("999", "outside"),
    ],
)
def test_parse_n_list_rejects(text: str, fragment: str) -> None:
    with pytest.raises(ClientError, match=fragment):
        parse_n_list(text)


# -- results ---------------------------------------------------------------------
def point(n: int, cs: float, p2p: float, s: LabSettings | None = None) -> LabPoint:
    s = s or settings()
    return LabPoint(
        n=n,
        measured_cs=cs,
        bound_cs=s.bound_cs(n),
        measured_p2p=p2p,
        bound_p2p=s.bound_p2p(n),
    )


def test_results_document_has_the_issue_fields() -> None:
    s = settings()
    doc = results_document(s, [point(1, 0.81, 0.82), point(8, 6.5, 4.0)])
    for key in ("F", "u", "u_s", "d", "piece_size", "unchoke_slots"):
        assert key in doc["settings"]
    assert doc["settings"]["unchoke_slots"]["p2p_peer"] == 4
    row = doc["results"][1]
    assert {"n", "measured_cs", "bound_cs", "measured_p2p", "bound_p2p"} <= set(row)
    assert row["n"] == 8
    assert row["bound_cs"] == pytest.approx(6.4)
    assert row["ratio_p2p"] == pytest.approx(4.0 / (64 / 18))


# -- chart -----------------------------------------------------------------------
def test_bound_curves_span_one_to_n_max() -> None:
    cs, p2p = bound_curves(settings(), 32, samples=10)
    assert cs[0][0] == 1.0
    assert cs[0][1] == pytest.approx(0.8)
    assert cs[-1][0] == 32.0
    assert cs[-1][1] == pytest.approx(25.6)
    assert p2p[-1][1] == pytest.approx(256 / 42)
    assert all(b[1] <= a[1] + 1e-12 for a, b in zip(cs, p2p, strict=True))


@pytest.mark.parametrize(("top", "last"), [(25.6, 30.0), (1.0, 1.0), (0.0, 1.0)])
def test_nice_ticks_cover_the_top(top: float, last: float) -> None:
    ticks = nice_ticks(top)
    assert ticks[0] == 0.0
    assert ticks[-1] == pytest.approx(last)


def test_svg_is_well_formed_with_curves_and_points() -> None:
    s = settings()
    pts = [point(n, s.bound_cs(n) * 1.01, s.bound_p2p(n) * 1.1) for n in (1, 4, 32)]
    root = ET.fromstring(render_svg(s, pts))
    ns = "{http://www.w3.org/2000/svg}"
    assert root.tag == f"{ns}svg"
    assert len(root.findall(f"{ns}polyline")) == 2
    assert len(root.findall(f"{ns}circle")) == 3 + 1  # points + legend
    titles = [t.text or "" for t in root.iter(f"{ns}title")]
    assert any("N=32: P2P" in t for t in titles)


def test_text_plot_places_points_over_the_curves() -> None:
    s = settings()
    pts = [point(n, s.bound_cs(n), s.bound_p2p(n) * 1.2) for n in (1, 8, 32)]
    rows = render_text(s, pts, width=40, height=12)
    assert len(rows) == 12 + 2
    body = "".join(rows[:12])
    for ch in (CS_BOUND, P2P_BOUND, CS_POINT, P2P_POINT):
        assert ch in body
    assert rows[-1].rstrip().endswith("32  N")


def test_text_plot_marks_coinciding_points() -> None:
    s = settings()
    rows = render_text(s, [point(1, 0.8, 0.8), point(2, 1.6, 1.4)], width=20, height=8)
    assert BOTH_POINTS in "".join(rows)


# -- purity (shared STYLE.md 1) ----------------------------------------------------
FORBIDDEN = {"asyncio", "socket", "logging", "time", "rich", "aiohttp", "os"}


@pytest.mark.parametrize("module", [bounds_mod, chart_mod])
def test_lab_cores_import_no_io(module: object) -> None:
    path = Path(module.__file__)  # type: ignore[attr-defined]  # a module object
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    assert not names & FORBIDDEN
    assert "open(" not in path.read_text()


def test_ratio_properties() -> None:
    p = point(2, 1.7, 1.5)
    assert p.ratio_cs == pytest.approx(1.7 / 1.6)
    assert math.isclose(p.ratio_p2p, 1.5 / (16 / 12))
