"""Process start stays cheap (issue 7): what the CLI imports, by sys.modules.

``bitswarm create`` is timed from launch to exit against mktorrent and
``bitswarm download MAGNET`` against libtorrent, so the parser and the
light commands must not import aiohttp, cryptography, rich, asyncio or the
DHT / Chord nodes. Checked in a fresh interpreter, never by timing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import dht
from client import cli, cli_torrent
from client.maketorrent import DEFAULT_PIECE_LENGTH

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_files"
HEAVY = (
    "aiohttp",
    "cryptography",
    "rich",
    "asyncio",
    "tracker",
    "client.engine",
    "client.session",
    "client.peer",
    "dht.node",
    "dht.chord_node",
    "dht.core.mainline",
)


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    last = done.stdout.strip().splitlines()[-1]
    return set(json.loads(last))


def heavy_in(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)
    )


def test_importing_the_cli_loads_nothing_heavy() -> None:
    assert heavy_in(loaded_after("import client.cli")) == []


def test_importing_dht_loads_only_the_compact_formats() -> None:
    assert heavy_in(loaded_after("import dht")) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "{src}", "-o", "{out}"],
        ["info", "{torrent}"],
        ["info", "{torrent}", "--json"],
        ["info", "magnet:?xt=urn:btih:" + "ab" * 20 + "&x.pe=127.0.0.1:6881"],
        ["magnet", "{torrent}"],
    ],
)
def test_light_commands_load_nothing_heavy(argv: list[str], tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(bytes(range(256)) * 400)
    names = {
        "src": str(src),
        "out": str(tmp_path / "data.torrent"),
        "torrent": str(SAMPLES / "album.torrent"),
    }
    words = [w.format(**names) for w in argv]
    code = f"from client.cli import main\nassert main({words!r}) == 0"
    assert heavy_in(loaded_after(code)) == []


def test_the_engine_loads_no_tracker_client_dht_node_or_rich() -> None:
    # ``download MAGNET --no-dht --json`` with x.pe peers needs none of them
    code = (
        "from client.engine import Engine, EngineConfig\n"
        "Engine(EngineConfig(host='127.0.0.1', port=0))"
    )
    loaded = loaded_after(code)
    banned = ("aiohttp", "yarl", "rich", "client.tracker_client", "dht.node")
    assert sorted(m for m in loaded if m.split(".")[0] in banned or m in banned) == []
    assert "dht.chord_node" not in loaded


def test_every_dht_name_resolves() -> None:
    for name in dht.__all__:
        assert getattr(dht, name) is not None, name
    with pytest.raises(AttributeError):
        _ = dht.NoSuchName  # type: ignore[attr-defined]
    assert set(dht.__all__) <= set(dir(dht))


def test_a_command_s_parser_parses_as_the_full_one(tmp_path: Path) -> None:
    argv = ["create", str(tmp_path), "-o", "x.torrent", "--piece-length", "1M"]
    lean = vars(cli.build_parser("create").parse_args(argv))
    full = vars(cli.build_parser().parse_args(argv))
    assert lean == full
    argv = ["--debug", "download", "magnet:?x", "--no-dht", "--peer", "h:1"]
    assert cli._command_in(argv) == "download"
    assert vars(cli.build_parser("download").parse_args(argv)) == vars(
        cli.build_parser().parse_args(argv)
    )


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["create", "x"], "create"),
        (["--debug", "dht", "--port", "0"], "dht"),
        (["chord", "ring"], "chord"),
        (["--help"], None),
        ([], None),
        (["nosuchcommand"], None),
    ],
)
def test_command_in(argv: list[str], command: str | None) -> None:
    assert cli._command_in(argv) == command


def test_every_command_is_known_to_the_lean_path() -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sub.choices is not None
    assert set(sub.choices) == set(cli._OWN_COMMANDS) | set(cli._MODULE_COMMANDS)


def test_default_piece_length_text_is_the_default() -> None:
    text = cli_torrent.DEFAULT_PIECE_LENGTH_TEXT
    assert cli_torrent.parse_size(text) == DEFAULT_PIECE_LENGTH


def test_create_as_a_program_writes_the_same_torrent(tmp_path: Path) -> None:
    # the one-shot path (gc.freeze before exit) is taken only when run as
    # the program, so run it so
    from client.maketorrent import create_torrent

    src = tmp_path / "data.bin"
    src.write_bytes(bytes(range(256)) * 3000)
    out = tmp_path / "data.torrent"
    argv = ["create", str(src), "-o", str(out), "--creation-date", "1700000000"]
    done = subprocess.run(
        [sys.executable, "-m", "client", *argv, "--piece-length", "16K"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {out}: data.bin")
    want = create_torrent(src, piece_length=16384, creation_date=1_700_000_000)
    assert out.read_bytes() == want
