"""The swarm lab: real client-server and P2P distributions, timed.

Every point is a real transfer over loopback TCP between engines in this
process (one event loop): a server engine with upload limit ``u_s`` seeds a
random file of ``F`` bytes, and ``N`` downloader engines, each with upload
``u`` and download ``d``, fetch it. The time is from the moment every
downloader is ready and told whom to contact until the last one holds the
whole verified file.

- client-server: each downloader knows only the server; no PEX, no tracker,
  no DHT, so downloaders never meet and cannot upload to each other; the
  server unchokes all N.
- peer-to-peer: normal BitTorrent: each downloader is given the server and
  the downloaders that arrived before it (what a tracker would answer), with
  PEX on, and uploads the pieces it has to its neighbours.

The bound arithmetic and the settings live in :mod:`client.core.bounds`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from client.core.bounds import MAX_N, LabPoint, LabSettings
from client.core.metainfo import Metainfo, parse_metainfo
from client.engine import Engine, EngineConfig
from client.errors import ClientError
from client.maketorrent import create_torrent
from client.session import SessionConfig, TorrentSession
from dht import PeerAddr

__all__ = ["MODES", "Measurement", "measure", "run_lab"]

MODES = ("cs", "p2p")
# Seconds a single distribution may take before the lab gives up: far above
# any bound the CLI's limits allow, so only a stuck swarm reaches it.
MEASURE_TIMEOUT_FACTOR = 10.0
MEASURE_TIMEOUT_FLOOR_S = 30.0
FILE_NAME = "lab.bin"


@dataclass(frozen=True, slots=True, kw_only=True)
class Measurement:
    """One distribution: seconds until the last peer completed, and the
    process CPU seconds spent per wall second meanwhile."""

    n: int
    mode: str
    folder: Path  # where the N copies are, one subfolder per peer
    seconds: float
    cpu: float
    #: the machine's 1-minute load average after the run: other processes
    #: competing for the cores inflate the times as much as our own CPU does
    load: float
    finish_s: tuple[float, ...]


# Connections per session: the server takes all N downloaders.
MAX_PEERS = MAX_N + 8
# Dials at once per session: the last P2P downloader dials N - 1 peers.
MAX_HALF_OPEN = 32
# Random pieces before rarest first (default 4): with 64 pieces and up to 32
# peers, rarest first from the first piece spreads the pieces fastest.
RANDOM_FIRST_PIECES = 1
# Seconds before a dropped connection is redialled (default 10 s).
RETRY_PEER_AFTER_S = 0.5


def _session_config(settings: LabSettings, *, slots: int, pex: bool) -> SessionConfig:
    return SessionConfig(
        unchoke_slots=slots,
        rechoke_interval_s=settings.rechoke_interval_s,
        pex=pex,
        seed_after_complete=True,
        max_peers=MAX_PEERS,
        max_half_open=MAX_HALF_OPEN,
        retry_peer_after_s=RETRY_PEER_AFTER_S,
        random_first_pieces=RANDOM_FIRST_PIECES,
    )


@contextlib.asynccontextmanager
async def _engines(configs: Sequence[EngineConfig]) -> AsyncIterator[list[Engine]]:
    """Start engines; stop them all at once (one by one, the survivors
    would keep redialling each engine as it goes)."""
    started: list[Engine] = []
    try:
        for cfg in configs:
            eng = Engine(cfg)
            await eng.__aenter__()
            started.append(eng)
        yield started
    finally:
        await asyncio.gather(
            *(eng.__aexit__(None, None, None) for eng in started),
            return_exceptions=False,
        )


def make_source(root: Path, settings: LabSettings, seed: int = 6) -> Metainfo:
    """Write a random file of F bytes under ``root/src`` and its torrent."""
    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    path = src / FILE_NAME
    path.write_bytes(random.Random(seed).randbytes(settings.file_size))
    return parse_metainfo(
        create_torrent(path, piece_length=settings.piece_length, creation_date=0)
    )


async def measure(
    settings: LabSettings, meta: Metainfo, root: Path, *, n: int, mode: str
) -> Measurement:
    """Distribute ``meta`` (its data under ``root/src``) to N fresh peers.

    Raises:
        ValueError: ``mode`` is not one of :data:`MODES`.
        TimeoutError: the swarm did not finish in ten times its bound.
    """
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {MODES}")
    p2p = mode == "p2p"
    loop = asyncio.get_running_loop()
    bound = settings.bound_p2p(n) if p2p else settings.bound_cs(n)
    timeout = max(MEASURE_TIMEOUT_FLOOR_S, MEASURE_TIMEOUT_FACTOR * bound)
    server_cfg = EngineConfig.testing(
        max_upload_rate=settings.server_rate, encryption="off"
    )
    peer_cfg = EngineConfig.testing(
        max_upload_rate=settings.upload_rate,
        max_download_rate=settings.download_rate,
        encryption="off",
    )
    async with _engines([server_cfg] + [peer_cfg] * n) as (server, *engines):
        seed = server.add_torrent(
            meta,
            root / "src",
            config=_session_config(settings, slots=max(1, n), pex=p2p),
            use_trackers=False,
        )
        leech_cfg = _session_config(
            settings, slots=settings.peer_slots if p2p else 1, pex=p2p
        )
        # A fresh folder per run: a folder holding a finished copy would be
        # "downloaded" by its recheck in no time.
        dest = Path(tempfile.mkdtemp(prefix=f"{mode}-{n}-", dir=root))
        sessions = [
            eng.add_torrent(
                meta,
                dest / str(i),
                config=leech_cfg,
                use_trackers=False,
            )
            for i, eng in enumerate(engines)
        ]
        await asyncio.gather(seed.wait_started(), *(s.wait_started() for s in sessions))
        if not seed.is_complete:
            raise ClientError("lab: the server's copy of the file failed its check")
        finish = [0.0] * n

        async def until_complete(i: int, session: TorrentSession) -> None:
            await session.wait_complete()
            finish[i] = loop.time()

        t0 = loop.time()
        cpu0 = time.process_time()
        for eng in (server, *engines):
            _drain(eng, t0)
        for i, session in enumerate(sessions):
            # P2P: the server and the peers that came before, as a tracker
            # would answer each in turn; every pair connects once.
            known: list[PeerAddr] = [server.address]
            if p2p:
                known += [e.address for e in engines[:i]]
            session.add_peers(known, "manual")
        async with asyncio.timeout(timeout):
            await asyncio.gather(
                *(until_complete(i, s) for i, s in enumerate(sessions))
            )
        t1 = loop.time()
        cpu = time.process_time() - cpu0
    wall = t1 - t0
    return Measurement(
        n=n,
        folder=dest,
        mode=mode,
        seconds=wall,
        cpu=cpu / wall if wall > 0 else 0.0,
        load=os.getloadavg()[0],
        finish_s=tuple(f - t0 for f in finish),
    )


def _drain(engine: Engine, now: float) -> None:
    """Empty the engine's token buckets: they start full, and a full bucket
    would let the first ``burst`` bytes through at once (0.1 s worth), so a
    measured time could beat its bound by that much. From empty, a bucket
    passes at most ``rate * t`` bytes in ``t`` seconds, exactly the capacity
    the bounds assume."""
    for bucket in (engine.global_up, engine.global_down):
        if bucket is not None and bucket.rate is not None:
            bucket.reserve(int(bucket.burst), now)


async def run_lab(
    settings: LabSettings,
    ns: Sequence[int],
    *,
    workdir: Path | None = None,
    on_point: Callable[[LabPoint], None] | None = None,
    on_measurement: Callable[[Measurement], None] | None = None,
) -> list[LabPoint]:
    """Measure both modes for every N; returns one point per N."""
    points: list[LabPoint] = []
    with tempfile.TemporaryDirectory(prefix="bitswarm-lab-", dir=workdir) as tmp:
        root = Path(tmp)
        meta = make_source(root, settings)
        for n in ns:
            got: dict[str, Measurement] = {}
            for mode in MODES:
                m = await measure(settings, meta, root, n=n, mode=mode)
                got[mode] = m
                if on_measurement is not None:
                    on_measurement(m)
            point = LabPoint(
                n=n,
                measured_cs=got["cs"].seconds,
                bound_cs=settings.bound_cs(n),
                measured_p2p=got["p2p"].seconds,
                bound_p2p=settings.bound_p2p(n),
                cpu_cs=got["cs"].cpu,
                cpu_p2p=got["p2p"].cpu,
                load=max(got["cs"].load, got["p2p"].load),
            )
            points.append(point)
            if on_point is not None:
                on_point(point)
    return points
