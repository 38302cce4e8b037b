"""The terminal UI renders snapshots with pure functions."""

from __future__ import annotations

import io
import json

from rich.console import Console

from client.session import PeerInfo, SessionStats
from client.ui import JsonEvents, format_rate, render_piece_map, render_session

STATS = SessionStats(
    name="greeting.txt",
    info_hash="ab" * 20,
    state="downloading",
    total_length=1000,
    pieces=8,
    pieces_have=4,
    resumed_pieces=0,
    downloaded=500,
    uploaded=10,
    download_rate=2048.0,
    upload_rate=0.0,
    peers=2,
    seeds=1,
    eta_s=65.0,
    piece_map="11110000",
)


def _text(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(renderable)
    return out.getvalue()


def test_panel_shows_progress_rates_peers_eta_and_piece_map() -> None:
    peer = PeerInfo(
        addr="127.0.0.1:7000",
        peer_id="00" * 20,
        source="tracker",
        download_rate=1024.0,
        upload_rate=0.0,
        downloaded=1,
        uploaded=0,
        choked=False,
        interested=True,
        pieces=8,
    )
    text = _text(render_session(STATS, [peer]))
    assert "greeting.txt" in text
    assert " 50.0%" in text
    assert "2.0 KiB/s" in text
    assert "peers 2 (1 seeds)" in text
    assert "ETA 1m05s" in text
    assert "4/8 pieces" in text
    assert "████░░░░" in text
    assert "127.0.0.1:7000" in text


def test_piece_map_groups_pieces_into_cells() -> None:
    assert render_piece_map("1100", width=2).plain == "█░"
    assert render_piece_map("1000", width=2).plain == "▓░"
    assert format_rate(1536) == "1.5 KiB/s"


def test_json_events_one_object_a_line_keeping_tracker_event() -> None:
    out = io.StringIO()
    sink = JsonEvents(out)
    sink("tracker_announce", {"event": "started", "url": "http://127.0.0.1/a"})
    sink.progress(STATS)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["event"] == "tracker_announce"
    assert lines[0]["tracker_event"] == "started"
    assert lines[1]["event"] == "progress"
    assert lines[1]["pieces_have"] == 4
