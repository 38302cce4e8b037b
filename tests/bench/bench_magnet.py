"""Benchmark 4: a magnet link whose ``x.pe`` names a seeder on loopback, to
the verified info dictionary.

- launch to metadata: from starting the downloading process (``bitswarm
  download MAGNET`` / a libtorrent process that adds the magnet with
  libtorrent's *default* add flags, i.e. auto-managed and paused until the
  queue starts it) to its ``metadata_complete`` event; each implementation
  fetches from its own seeder of a 64 MiB file (256 pieces, a 5 KiB info
  dictionary). Runs alternate. The downloader is stopped once it has the
  metadata.
- in process: from adding the magnet to a running engine
  (``Engine.open_magnet``) to having the metadata, against libtorrent adding
  it to a running session unpaused and unmanaged, both from the same
  bitswarm seeder process.

The reported info hash must be the torrent's.
"""

from __future__ import annotations

import asyncio
import importlib
import tempfile
import time
from pathlib import Path
from typing import Any

from client.core.magnet import Magnet, parse_magnet
from client.engine import Engine, EngineConfig
from client.maketorrent import load_metainfo
from dht import PeerAddr
from tests.bench.bench_transfer import BITSWARM_PEER_OPTS, lt_cmd, start_seeder
from tests.bench.common import (
    MIB,
    BenchError,
    Context,
    EventReader,
    Metric,
    bitswarm_cmd,
    loadavg,
    popen,
    reap,
    tail,
    torrent_for,
)

FILE_BYTES = 64 * MIB
MS = 1000.0
METADATA_TIMEOUT_S = 30.0


def _launch_to_metadata(
    ctx: Context, impl: str, uri: str, info_hash: str, tag: str
) -> float:
    out = ctx.work / f"magnet-{tag}"
    out.mkdir()
    err = out.with_suffix(".err")
    if impl == "bitswarm":
        cmd = bitswarm_cmd("download", uri, "-o", str(out), *BITSWARM_PEER_OPTS)
    else:
        cmd = lt_cmd("magnet", uri, str(out))
    t0 = time.monotonic()
    proc = popen(cmd, err)
    try:
        assert proc.stdout is not None
        ev = EventReader(proc.stdout).wait_for(
            "metadata_complete", t0 + METADATA_TIMEOUT_S
        )
    except BenchError as exc:
        raise BenchError(f"{exc}: {tail(err)}") from None
    finally:
        proc.kill()
        reap(proc, 10.0)
    if str(ev.data.get("info_hash")) != info_hash:
        raise BenchError(f"{impl} got metadata for {ev.data.get('info_hash')}")
    return ev.received - t0


async def _bitswarm_in_process(magnet: Magnet, seeder: PeerAddr, work: Path) -> float:
    async with Engine(EngineConfig.testing()) as engine:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        session = await engine.open_magnet(magnet, work, peers=[seeder])
        elapsed = loop.time() - t0
        if session.info_hash != magnet.info_hash:
            raise BenchError("in-process metadata for the wrong torrent")
        return elapsed


class _LtSession:
    """One running libtorrent session in this process (unmanaged adds)."""

    def __init__(self) -> None:
        from tests.bench import lt_worker

        self.lt: Any = importlib.import_module("libtorrent")
        lt_worker.lt = self.lt
        self.ses = self.lt.session(lt_worker.settings())

    def fetch(self, uri: str, save: Path, info_hash: str) -> float:
        lt = self.lt
        atp = lt.parse_magnet_uri(uri)
        atp.save_path = str(save)
        atp.flags &= ~lt.torrent_flags.auto_managed
        atp.flags &= ~lt.torrent_flags.paused
        self.ses.pop_alerts()
        t0 = time.monotonic()
        handle = self.ses.add_torrent(atp)
        deadline = t0 + METADATA_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                self.ses.wait_for_alert(5)
                for alert in self.ses.pop_alerts():
                    if isinstance(alert, lt.metadata_received_alert):
                        elapsed = time.monotonic() - t0
                        if str(handle.info_hashes().v1) != info_hash:
                            raise BenchError("libtorrent: metadata of another torrent")
                        return elapsed
            raise BenchError("libtorrent in process: no metadata")
        finally:
            self.ses.remove_torrent(handle, lt.session.delete_files)


def run(ctx: Context) -> list[Metric]:
    data = ctx.data(FILE_BYTES)
    torrent = torrent_for(data, ctx.work / "magnet.torrent")
    meta = load_metainfo(torrent)
    info_hash = meta.info_hash_hex
    have_lt = ctx.tools.get("libtorrent") is not None
    if not have_lt:
        ctx.notes.append("magnet: libtorrent missing, no anchor")
    impls = ("bitswarm", "libtorrent") if have_lt else ("bitswarm",)
    launch = Metric(
        bench="4 magnet",
        name="launch to metadata",
        unit="ms",
        scale=1 / MS,
        better="lower",
        anchor_name="libtorrent (default flags)",
        floor=1.0,
        goal=0.5,
    )
    inproc = Metric(
        bench="4 magnet",
        name="in process, add to metadata",
        unit="ms",
        scale=1 / MS,
        better="lower",
        anchor_name="libtorrent (unmanaged)",
        goal=0.020,
        absolute=True,
    )
    runs = 1 if ctx.quick else max(5, ctx.runs)
    seeders = {}
    try:
        for impl in impls:
            seeders[impl] = start_seeder(
                impl, torrent, data, ctx.work / f"magnet-seed-{impl}.err"
            )
        uris = {
            impl: f"magnet:?xt=urn:btih:{info_hash}&dn={meta.name}"
            f"&x.pe={seeders[impl].addr}"
            for impl in impls
        }
        lt_ses = _LtSession() if have_lt else None
        for n in range(1, runs + 1):
            load = loadavg()
            ctx.log(f"magnet run {n} (load {load:.2f})")
            for impl in impls:
                try:
                    s = _launch_to_metadata(
                        ctx, impl, uris[impl], info_hash, f"{impl}{n}"
                    )
                except BenchError as exc:
                    ctx.error(f"magnet {impl} run {n}: {exc}")
                    continue
                (launch.bitswarm if impl == "bitswarm" else launch.anchor).append(s)
            launch.load.append(load)
            magnet = parse_magnet(uris["bitswarm"])
            with tempfile.TemporaryDirectory(dir=ctx.work) as tmp:
                try:
                    inproc.bitswarm.append(
                        asyncio.run(
                            asyncio.wait_for(
                                _bitswarm_in_process(
                                    magnet,
                                    PeerAddr.parse(seeders["bitswarm"].addr),
                                    Path(tmp),
                                ),
                                METADATA_TIMEOUT_S,
                            )
                        )
                    )
                except (BenchError, TimeoutError) as exc:
                    ctx.error(f"magnet in process run {n}: {exc!r}")
                if lt_ses is not None:
                    try:
                        inproc.anchor.append(
                            lt_ses.fetch(uris["bitswarm"], Path(tmp), info_hash)
                        )
                    except BenchError as exc:
                        ctx.error(f"magnet libtorrent in process run {n}: {exc}")
            inproc.load.append(load)
    finally:
        for seeder in seeders.values():
            seeder.stop()
    ctx.log(
        "  launch: bitswarm "
        + ", ".join(f"{s * MS:.0f}" for s in launch.bitswarm)
        + " ms; libtorrent "
        + ", ".join(f"{s * MS:.0f}" for s in launch.anchor)
        + " ms; in process: bitswarm "
        + ", ".join(f"{s * MS:.1f}" for s in inproc.bitswarm)
        + " ms"
    )
    ctx.drop_data(FILE_BYTES)
    return [launch, inproc]
