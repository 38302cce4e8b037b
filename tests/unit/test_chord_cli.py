"""``bitswarm chord ring`` rendering, against a Console writing to StringIO."""

from __future__ import annotations

import argparse
import io

import pytest
from rich.console import Console

from client import cli_chord
from dht import ChordRing


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    cli_chord.register(sub)
    return parser.parse_args(["chord", *argv])


def _text(renderable: object) -> str:
    buf = io.StringIO()
    Console(file=buf, width=100, color_system=None).print(renderable)
    return buf.getvalue()


def test_chord_cli_ring_shows_fingers_successors_and_lookup_hops() -> None:
    ring = ChordRing([1, 12, 13, 25, 32, 40, 48, 60], m=6)
    text = _text(cli_chord.render_ring(ring, 1, ring.lookup(1, 51)))
    assert "successors [12, 13]" in text
    assert "lookup of key 51: owner 60, 2 hops" in text
    assert "40(1)" in text
    assert "48(2)" in text
    for peer in ("25", "32", "60"):
        assert peer in text


def test_chord_cli_ring_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_chord.run_chord(_parse("ring", "--node", "12", "--lookup", "61")) == 0
    assert "owner 1" in capsys.readouterr().out
    assert cli_chord.run_chord(_parse("ring", "--node", "7")) == 2
    assert "not one of the peers" in capsys.readouterr().err


def test_chord_cli_node_options() -> None:
    args = _parse("node", "--port", "0", "--bootstrap", "127.0.0.1:7000", "--json")
    assert args.port == 0
    assert args.bootstrap == "127.0.0.1:7000"
    assert args.m == 160
