"""``bitswarm lab``: client-server vs peer-to-peer distribution time."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "lab", help="measure client-server vs P2P distribution time"
    )
    p.set_defaults(func=lambda args: 0)
