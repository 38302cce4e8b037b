"""The ``create``, ``info`` and ``magnet`` subcommands of ``bitswarm``.

``client/cli.py`` calls :func:`register`; each subcommand's ``func(args)``
returns an exit code and raises :class:`~client.errors.ClientError`
subclasses, which the main CLI prints as one ``error: <message>`` line.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from client.errors import BadPieceLengthError

if TYPE_CHECKING:
    from client.core.magnet import Magnet
    from client.core.metainfo import Metainfo

# Each command imports what it runs: the whole run of ``bitswarm create`` is
# timed against mktorrent (issue 7), so registering the parser stays cheap.
DEFAULT_PIECE_LENGTH_TEXT = "256K"  # client.maketorrent.DEFAULT_PIECE_LENGTH

__all__ = ["cmd_create", "cmd_info", "cmd_magnet", "parse_size", "register"]

_SIZE = re.compile(r"([0-9]{1,12})\s*(?:([KkMm])(?:i?[Bb])?)?")
_UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def parse_size(text: str) -> int:
    """``262144``, ``256K``, ``256KiB``, ``1M`` -> bytes (binary units).

    Raises:
        BadPieceLengthError: the text is not such a size.
    """
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise BadPieceLengthError(
            f"piece length {text!r} is not a size like 262144, 256K or 1M",
            piece_length=0,
        )
    return int(m.group(1)) * _UNITS[(m.group(2) or "").lower()]


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit} ({size} B)"
        value /= 1024
    raise AssertionError("unreachable")  # the loop returns at "TiB"


def cmd_create(args: argparse.Namespace) -> int:
    """``bitswarm create PATH -o OUT.torrent``."""
    from client.core.metainfo import parse_metainfo
    from client.maketorrent import create_torrent, write_torrent

    source = Path(args.path)
    out = Path(args.output) if args.output else Path(f"{source.resolve().name}.torrent")

    def report_skip(path: Path, why: str) -> None:
        print(f"skipping {path}: {why}", file=sys.stderr)

    data = create_torrent(
        source,
        trackers=args.tracker or (),
        piece_length=parse_size(args.piece_length),
        private=args.private,
        comment=args.comment,
        creation_date=args.creation_date,
        on_skip=report_skip,
    )
    write_torrent(data, out)
    meta = parse_metainfo(data)
    print(
        f"wrote {out}: {meta.name}, {_human(meta.total_length)}, "
        f"{meta.num_pieces} pieces, infohash {meta.info_hash_hex}"
    )
    return 0


def _print_torrent(meta: Metainfo) -> None:
    print(f"name:       {meta.name}")
    print(f"infohash:   {meta.info_hash_hex}")
    print(f"size:       {_human(meta.total_length)}")
    print(f"pieces:     {meta.num_pieces} x {_human(meta.piece_length)}")
    print(f"private:    {'yes' if meta.private else 'no'}")
    if meta.comment:
        print(f"comment:    {meta.comment}")
    if not meta.announce_tiers:
        print("trackers:   none")
    for n, tier in enumerate(meta.announce_tiers, 1):
        print(f"tracker tier {n}: {' '.join(tier)}")
    print(f"files:      {sum(1 for f in meta.files if not f.is_pad)}")
    for f in meta.files:
        if not f.is_pad:
            print(f"  {f.length:>14}  {'/'.join(f.path)}")


def _magnet_summary(magnet: Magnet) -> dict[str, object]:
    return {
        "name": magnet.display_name,
        "infohash": magnet.info_hash_hex,
        "size": magnet.exact_length,
        "trackers": list(magnet.trackers),
        "peers": [str(p) for p in magnet.peers],
        "magnet": magnet.to_uri(),
    }


def cmd_info(args: argparse.Namespace) -> int:
    """``bitswarm info X.torrent|MAGNET [--json]``."""
    import json

    from client.core.magnet import parse_magnet
    from client.core.metainfo import describe
    from client.maketorrent import load_metainfo

    target: str = args.target
    if target[:7].lower() == "magnet:":
        summary = _magnet_summary(parse_magnet(target))
        if args.json:
            print(json.dumps(summary, ensure_ascii=False))
        else:
            for key, value in summary.items():
                shown = " ".join(map(str, value)) if isinstance(value, list) else value
                print(f"{key + ':':<11} {'-' if shown in (None, '') else shown}")
        return 0
    meta = load_metainfo(Path(target))
    if args.json:
        print(json.dumps(describe(meta), ensure_ascii=False))
    else:
        _print_torrent(meta)
    return 0


def cmd_magnet(args: argparse.Namespace) -> int:
    """``bitswarm magnet X.torrent``: print its magnet URI."""
    from client.core.magnet import magnet_from_metainfo
    from client.maketorrent import load_metainfo

    print(magnet_from_metainfo(load_metainfo(Path(args.torrent))).to_uri())
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``create``, ``info`` and ``magnet`` to the main parser's subcommands."""
    p = subparsers.add_parser(
        "create",
        help="make a .torrent of a file or folder",
        description=(
            "Make a .torrent of a file or a folder. Symlinks and special files in "
            "a folder are skipped (and reported); empty files are included."
        ),
    )
    p.add_argument("path", metavar="PATH", help="file or folder to share")
    p.add_argument(
        "-o", "--output", metavar="OUT", help="where to write (default NAME.torrent)"
    )
    p.add_argument(
        "--tracker",
        action="append",
        metavar="URL",
        help="announce URL; repeat for backups (one BEP 12 tier each)",
    )
    p.add_argument(
        "--piece-length",
        default=DEFAULT_PIECE_LENGTH_TEXT,
        metavar="N",
        help="bytes per piece, a power of two >= 16K (e.g. 256K, 1M; default 256K)",
    )
    p.add_argument("--private", action="store_true", help="set private=1 (BEP 27)")
    p.add_argument("--comment", metavar="TEXT", help="comment stored in the torrent")
    p.add_argument(
        "--creation-date",
        type=int,
        metavar="UNIX_SECONDS",
        help="fixed creation date, for reproducible torrents (default now)",
    )
    p.set_defaults(func=cmd_create)

    p = subparsers.add_parser("info", help="show what a torrent or magnet link holds")
    p.add_argument("target", metavar="TORRENT|MAGNET")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)

    p = subparsers.add_parser("magnet", help="print the magnet link of a torrent")
    p.add_argument("torrent", metavar="X.torrent")
    p.set_defaults(func=cmd_magnet)
