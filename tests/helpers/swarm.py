"""Helpers for in-process swarms over loopback: engines, torrents, waits."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from client.core.metainfo import Metainfo, parse_metainfo
from client.engine import Engine, EngineConfig
from client.maketorrent import create_torrent
from client.session import SessionConfig, TorrentSession
from client.tracker_client import TrackerClientConfig

# Short timings so tests move quickly; nothing here reaches beyond 127.0.0.1.
FAST_TRACKER = TrackerClientConfig(
    timeout_s=5.0, backoff_base_s=0.2, backoff_cap_s=2.0, min_announce_interval_s=0.5
)


def fast_session(**overrides: Any) -> SessionConfig:
    base: dict[str, Any] = {
        "rechoke_interval_s": 1.0,
        "optimistic_interval_s": 3.0,
        "snub_timeout_s": 5.0,
        "retry_peer_after_s": 0.5,
        "connect_timeout_s": 5.0,
    }
    base.update(overrides)
    return SessionConfig(**base)


def engine_config(**overrides: Any) -> EngineConfig:
    base: dict[str, Any] = {"tracker": FAST_TRACKER}
    base.update(overrides)
    return EngineConfig.testing(**base)


def write_random_file(path: Path, size: int, seed: int = 1) -> bytes:
    data = random.Random(seed).randbytes(size)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def make_torrent(
    path: Path, trackers: list[str], piece_length: int = 32768, **kw: Any
) -> Metainfo:
    return parse_metainfo(
        create_torrent(path, trackers=trackers, piece_length=piece_length, **kw)
    )


@asynccontextmanager
async def engine(**overrides: Any) -> AsyncIterator[Engine]:
    async with Engine(engine_config(**overrides)) as eng:
        yield eng


async def wait_for(
    pred: Callable[[], bool], timeout_s: float = 30.0, step_s: float = 0.02
) -> None:
    """Poll a condition on the event loop (the state changes in callbacks)."""
    async with asyncio.timeout(timeout_s):
        # The state lives in protocol callbacks that signal nothing awaitable,
        # so poll the condition itself (never a fixed sleep standing in for it).
        while not pred():  # noqa: ASYNC110
            await asyncio.sleep(step_s)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


async def complete_all(sessions: list[TorrentSession], timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        await asyncio.gather(*(s.wait_complete() for s in sessions))


__all__ = [
    "FAST_TRACKER",
    "complete_all",
    "engine",
    "engine_config",
    "fast_session",
    "make_torrent",
    "os",
    "tree_bytes",
    "wait_for",
    "write_random_file",
]
