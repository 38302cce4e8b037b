"""The create / info / magnet subcommands, through their registered parser."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from client import cli_torrent
from client.core.magnet import parse_magnet
from client.core.metainfo import parse_metainfo
from client.errors import (
    BadPieceLengthError,
    ClientError,
    MagnetHashError,
    MetainfoReadError,
    NotAMagnetError,
)

SAMPLES = Path(__file__).resolve().parents[2] / "sample_files"
HEX40 = re.compile(r"[0-9a-f]{40}")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bitswarm")
    sub = parser.add_subparsers(dest="command", required=True)
    cli_torrent.register(sub)
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_info_json_for_sample(capsys: pytest.CaptureFixture[str]) -> None:
    path = SAMPLES / "album.torrent"
    assert run(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    d = json.loads(out)
    assert HEX40.fullmatch(d["infohash"])
    assert d["infohash"] == parse_metainfo(path.read_bytes()).info_hash_hex
    assert d["name"] == "album"
    assert d["private"] is False
    assert len(d["files"]) == 4


def test_info_text_for_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["info", str(SAMPLES / "greeting.txt.torrent")]) == 0
    out = capsys.readouterr().out
    meta = parse_metainfo((SAMPLES / "greeting.txt.torrent").read_bytes())
    assert meta.info_hash_hex in out
    assert "greeting.txt" in out
    assert "trackers:   none" in out
    assert "private:    no" in out


def test_magnet_then_info_of_the_magnet(capsys: pytest.CaptureFixture[str]) -> None:
    path = SAMPLES / "random.bin.torrent"
    assert run(["magnet", str(path)]) == 0
    uri = capsys.readouterr().out.strip()
    meta = parse_metainfo(path.read_bytes())
    assert parse_magnet(uri).info_hash == meta.info_hash
    assert run(["info", uri, "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["infohash"] == meta.info_hash_hex
    assert d["name"] == "random.bin"
    assert d["size"] == meta.total_length
    assert run(["info", uri]) == 0
    assert meta.info_hash_hex in capsys.readouterr().out


def test_create_with_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(b"\x01" * 40000)
    out = tmp_path / "data.torrent"
    code = run(
        [
            "create",
            str(src),
            "-o",
            str(out),
            "--tracker",
            "http://127.0.0.1:1/announce",
            "--tracker",
            "http://127.0.0.1:2/announce",
            "--piece-length",
            "16K",
            "--private",
            "--comment",
            "hello",
            "--creation-date",
            "42",
        ]
    )
    assert code == 0
    meta = parse_metainfo(out.read_bytes())
    assert meta.piece_length == 16384
    assert meta.num_pieces == 3
    assert meta.private
    assert meta.comment == "hello"
    assert meta.creation_date == 42
    assert meta.announce_tiers == (
        ("http://127.0.0.1:1/announce",),
        ("http://127.0.0.1:2/announce",),
    )
    assert meta.info_hash_hex in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "value"),
    [("262144", 262144), ("256K", 262144), ("256kib", 262144), ("1M", 1 << 20)],
)
def test_parse_size(text: str, value: int) -> None:
    assert cli_torrent.parse_size(text) == value


@pytest.mark.parametrize("text", ["abc", "", "1G", "-16K", "1.5M"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(BadPieceLengthError):
        cli_torrent.parse_size(text)


def test_errors_are_client_errors(tmp_path: Path) -> None:
    with pytest.raises(MetainfoReadError, match="cannot read"):
        run(["info", str(tmp_path / "missing.torrent")])
    with pytest.raises(MetainfoReadError):
        run(["magnet", str(tmp_path / "missing.torrent")])
    with pytest.raises(NotAMagnetError):
        parse_magnet("x")
    with pytest.raises(MagnetHashError):
        run(["info", "magnet:?xt=urn:btih:123"])
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with pytest.raises(BadPieceLengthError):
        run(["create", str(src), "-o", str(tmp_path / "o"), "--piece-length", "1000"])
    with pytest.raises(ClientError):
        run(["create", str(tmp_path / "nope"), "-o", str(tmp_path / "o")])
    with pytest.raises(ClientError):
        run(["info", str(SAMPLES / "bad" / "path_dotdot.torrent")])


def test_register_through_a_real_interpreter(tmp_path: Path) -> None:
    script = (
        "import argparse, sys\n"
        "from client import cli_torrent\n"
        "from client.errors import ClientError\n"
        "p = argparse.ArgumentParser(prog='bitswarm')\n"
        "cli_torrent.register(p.add_subparsers(required=True))\n"
        "a = p.parse_args(sys.argv[1:])\n"
        "try:\n"
        "    sys.exit(a.func(a))\n"
        "except ClientError as e:\n"
        "    print(f'error: {e}', file=sys.stderr)\n"
        "    sys.exit(1)\n"
    )
    ok = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            "info",
            str(SAMPLES / "album.torrent"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert HEX40.fullmatch(json.loads(ok.stdout)["infohash"])
    bad = subprocess.run(
        [sys.executable, "-c", script, "info", str(tmp_path / "missing.torrent")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: cannot read")
