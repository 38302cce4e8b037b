"""Registers ``bitswarm demo``; the demo itself is :mod:`client.demo`.

Kept apart so that building the parser (part of every ``bitswarm`` start,
issue 7) does not import asyncio and rich for a command that may not run.
"""

from __future__ import annotations

import argparse

__all__ = ["cmd_demo", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("demo", help="run the whole story on loopback")
    p.add_argument("--samples", default=None, metavar="DIR", help="folder to share")
    p.add_argument("--leechers", type=int, default=2)
    p.add_argument("--json", action="store_true", help="one JSON event a line")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """``bitswarm demo``: see :func:`client.demo.cmd_demo`."""
    from client import demo

    return demo.cmd_demo(args)
