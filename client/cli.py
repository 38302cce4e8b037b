"""The ``bitswarm`` command: one console script, one subcommand per job.

Errors from bad input (any package's root error) become one line
``error: <message>`` and exit status 1; tracebacks only with ``--debug``.
Long work shows a rich live display; ``--json`` prints one JSON event a line
instead; ``--quiet`` prints only the final line.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from client import cli_torrent
from client.errors import ClientError

if TYPE_CHECKING:
    from rich.console import Console

# Process start is part of every command's time (issue 7: ``create`` against
# mktorrent, ``download MAGNET`` to metadata against libtorrent), so this
# module and the subcommand modules import only argparse-level things at the
# top; each command imports what it runs (rich, asyncio, the engine, aiohttp,
# the DHT nodes, the tracker) inside its function.
# tests/unit/test_cli_imports.py keeps it that way.

__all__ = ["build_parser", "main"]

log = logging.getLogger("client")

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="one JSON event a line")
    p.add_argument("--quiet", action="store_true", help="print only the result")


def _rate_flag(text: str) -> int:
    """:func:`client.core.ratelimit.parse_rate` as an argparse type (imported
    when a rate is given); a bad rate is a usage error."""
    from client.core.ratelimit import parse_rate

    try:
        return parse_rate(text)
    except ClientError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_peer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="0.0.0.0", help="listen address (default all)")
    p.add_argument("--port", type=int, default=6881, help="listen port (0 = any)")
    p.add_argument(
        "--max-upload-rate",
        type=_rate_flag,
        default=None,
        metavar="RATE",
        help="bytes/s, K/M suffixes (e.g. 500K)",
    )
    p.add_argument(
        "--max-download-rate",
        type=_rate_flag,
        default=None,
        metavar="RATE",
        help="bytes/s, K/M suffixes",
    )
    p.add_argument(
        "--dht-port",
        type=int,
        default=None,
        metavar="N",
        help="UDP port of our DHT node (default: the listen port; 0 = any)",
    )
    p.add_argument(
        "--dht-bootstrap",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="join the DHT through this node (repeatable; default: public routers)",
    )
    p.add_argument("--no-dht", action="store_true", help="no DHT (BEP 5)")
    p.add_argument(
        "--overlay",
        choices=("mainline", "chord"),
        default="mainline",
        help="DHT to find peers in: mainline (BEP 5) or chord (bitswarm peers only)",
    )
    p.add_argument(
        "--encryption",
        choices=("prefer", "require", "off"),
        default="prefer",
        help="MSE/PE: prefer (default; plain peers accepted), require, or off",
    )
    p.add_argument(
        "--peer",
        action="append",
        default=[],
        metavar="HOST:PORT",
        help="connect to this peer too (repeatable)",
    )
    _add_common(p)


# Subcommands registered by their own modules, imported only when the parser
# must know them: ``bitswarm create`` builds a parser without them.
_MODULE_COMMANDS = {
    "dht": "client.cli_dht",
    "chord": "client.cli_chord",
    "demo": "client.cli_demo",
    "lab": "client.cli_lab",
}
_OWN_COMMANDS = frozenset({"create", "info", "magnet", "seed", "download", "tracker"})
# Commands that leave nothing running or open when they return.
_ONE_SHOT_COMMANDS = frozenset({"create", "info", "magnet"})


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``bitswarm`` parser; with ``command``, one that parses that
    subcommand the same way but leaves out the other modules' subcommands
    (so their modules are not imported)."""
    parser = argparse.ArgumentParser(
        prog="bitswarm",
        description="BitTorrent client, tracker and trackerless discovery.",
    )
    parser.add_argument(
        "--debug", action="store_true", help="log verbosely, show tracebacks"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_torrent.register(sub)

    p = sub.add_parser("seed", help="seed a file or folder")
    p.add_argument("path", metavar="PATH")
    p.add_argument("--torrent", metavar="X.torrent", help="use this torrent")
    p.add_argument("--tracker", action="append", default=[], metavar="URL")
    _add_peer_options(p)
    p.set_defaults(func=cmd_seed)

    p = sub.add_parser("download", help="download a torrent")
    p.add_argument("target", metavar="X.torrent|MAGNET")
    p.add_argument("-o", "--output", default=".", metavar="DIR", help="save under DIR")
    p.add_argument("--seed", action="store_true", help="keep seeding when complete")
    _add_peer_options(p)
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("tracker", help="run an HTTP tracker")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=6969)
    p.add_argument(
        "--udp-port", type=int, default=None, help="also serve UDP (BEP 15) here"
    )
    p.add_argument(
        "--interval", type=float, default=1800.0, help="announce interval, s"
    )
    p.add_argument("--min-interval", type=float, default=None, help="min interval, s")
    p.add_argument("--peer-timeout", type=float, default=None, help="peer expiry, s")
    _add_common(p)
    p.set_defaults(func=cmd_tracker)

    for name, module in _MODULE_COMMANDS.items():
        if command is None or command == name:
            importlib.import_module(module).register(sub)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv``, if it is a known one (the top-level
    options are flags, so it is the first word that is not an option)."""
    for word in argv:
        if not word.startswith("-"):
            known = word in _OWN_COMMANDS or word in _MODULE_COMMANDS
            return word if known else None
    return None


# The GIL switch interval, seconds. A thread that wants the GIL back from a
# busy event loop waits up to this long; at CPython's default (5 ms) the
# threads that hash and write pieces convoy behind the loop and fall behind
# the network (seen: 400+ pieces queued, RSS x3 at 100+ MB/s). 0.5 ms keeps
# them in step for a small switching cost.
GIL_SWITCH_INTERVAL_S = 0.0005


def main(argv: Sequence[str] | None = None) -> int:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    words = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_in(words))
    args = parser.parse_args(words)
    _configure_logging(args)
    try:
        code = int(args.func(args))
        if argv is None and args.command in _ONE_SHOT_COMMANDS:
            # Run as the program (not called with argv, e.g. by a test), so
            # the process exits next. Frozen objects are left out of the
            # collector's pass at interpreter exit, which otherwise spends
            # ~7 ms (a ninth of create's fixed cost, issue 7) on objects the
            # OS frees anyway; atexit handlers and flushing still run.
            gc.freeze()
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug or not isinstance(exc, _user_errors()):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _user_errors() -> tuple[type[Exception], ...]:
    """The root errors of bad input: ClientError, and DhtError and
    TrackerError if their packages were loaded (they cannot have raised
    otherwise, and importing the tracker costs aiohttp)."""
    errors: list[type[Exception]] = [ClientError]
    for module, name in (
        ("dht.errors", "DhtError"),
        ("tracker.errors", "TrackerError"),
    ):
        loaded = sys.modules.get(module)
        if loaded is not None:
            errors.append(getattr(loaded, name))
    return tuple(errors)


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.DEBUG if args.debug else logging.WARNING
    handler: logging.Handler
    if getattr(args, "json", False):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    else:
        handler = _DeferredRichHandler()
    logging.basicConfig(level=level, handlers=[handler], force=True)
    if not args.debug:
        logging.getLogger("client").setLevel(logging.INFO)
        logging.getLogger("client.session").setLevel(logging.WARNING)
        logging.getLogger("client.peer").setLevel(logging.WARNING)


class _DeferredRichHandler(logging.Handler):
    """A rich log handler, made at the first record: most runs of ``create``,
    ``info`` or ``magnet`` log nothing and need not import rich."""

    def __init__(self) -> None:
        super().__init__()
        self._rich: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self._rich is None:
            from rich.logging import RichHandler

            self._rich = RichHandler(console=_stderr_console(), show_path=False)
            self._rich.setFormatter(self.formatter)  # as basicConfig left it
        self._rich.handle(record)


_CONSOLE: Console | None = None


def _stderr_console() -> Console:
    from rich.console import Console

    global _CONSOLE
    if _CONSOLE is None:
        _CONSOLE = Console(stderr=True)
    return _CONSOLE


# -- seed, download and tracker: client.cli_session ----------------------------
def cmd_seed(args: argparse.Namespace) -> int:
    from client.cli_session import cmd_seed

    return cmd_seed(args)


def cmd_download(args: argparse.Namespace) -> int:
    from client.cli_session import cmd_download

    return cmd_download(args)


def cmd_tracker(args: argparse.Namespace) -> int:
    from client.cli_session import cmd_tracker

    return cmd_tracker(args)
