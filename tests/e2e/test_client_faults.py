"""Faults over loopback: a corrupt peer, a silent (snubbing) peer, a dead
tracker, and the rate limiter measured over ten seconds."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path
from typing import Any

from aiohttp import web

from client.core import wire
from client.core.metainfo import Metainfo
from client.engine import Engine
from dht import PeerAddr
from tests.helpers.swarm import (
    engine,
    engine_config,
    fast_session,
    make_torrent,
    wait_for,
    write_random_file,
)


def _corrupting(session: Any) -> None:
    """Make a seeding session serve flipped bytes (after its own check)."""
    storage = session.storage
    real = storage.read_piece

    def bad_read(index: int, into: bytearray | None = None) -> bytearray | None:
        data = real(index, into)
        if data is not None:
            data = bytearray(data)
            data[0] ^= 0xFF
        return data

    storage.read_piece = bad_read


async def test_corrupt_peer_is_banned_and_download_completes(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    path = src / "data.bin"
    write_random_file(path, 800_000, seed=3)
    meta = make_torrent(path, [])
    events: list[tuple[str, dict[str, Any]]] = []
    async with (
        engine() as bad_engine,
        engine(max_upload_rate=300_000) as good_engine,
        Engine(engine_config(), on_event=lambda n, f: events.append((n, f))) as leech,
    ):
        bad = bad_engine.add_torrent(meta, src, config=fast_session())
        await bad.wait_started()
        _corrupting(bad)
        good_engine.add_torrent(meta, src, config=fast_session())
        leecher = leech.add_torrent(
            meta,
            tmp_path / "out",
            config=fast_session(),
            peers=[bad_engine.address, good_engine.address],
        )
        async with asyncio.timeout(60):
            await leecher.wait_complete()
        assert (tmp_path / "out" / "data.bin").read_bytes() == path.read_bytes()
        stats = leecher.statistics()
        assert stats.hash_failures >= 1
        assert stats.bans >= 1
        banned = [f["addr"] for n, f in events if n == "peer_banned"]
        assert str(bad_engine.address) in banned
        assert str(good_engine.address) not in banned


class SilentPeer:
    """A peer that has everything, unchokes, and never sends a block."""

    def __init__(self, meta: Metainfo) -> None:
        self.meta = meta
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        core = wire.PeerWire(num_pieces=self.meta.num_pieces)
        writer.write(
            wire.encode_handshake(
                self.meta.info_hash, b"-XX0000-silentsilent", bytes(8)
            )
        )
        n = self.meta.num_pieces
        bits = bytearray((n + 7) // 8)
        for i in range(n):
            bits[i // 8] |= 0x80 >> (i % 8)
        writer.write(wire.encode(wire.Bitfield(data=bytes(bits))))
        writer.write(wire.encode(wire.Unchoke()))
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                for ev in core.receive_data(data):
                    if isinstance(ev, wire.Request):
                        self.requests += 1
        writer.close()

    async def __aenter__(self) -> PeerAddr:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return PeerAddr("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def test_snubbed_peer_requests_are_reissued_to_another(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    path = src / "data.bin"
    write_random_file(path, 600_000, seed=4)
    meta = make_torrent(path, [])
    events: list[tuple[str, dict[str, Any]]] = []
    silent = SilentPeer(meta)
    async with (
        silent as silent_addr,
        engine() as seed_engine,
        Engine(engine_config(), on_event=lambda n, f: events.append((n, f))) as leech,
    ):
        leecher = leech.add_torrent(
            meta,
            tmp_path / "out",
            config=fast_session(snub_timeout_s=1.0),
            peers=[silent_addr],
        )
        # Only the silent peer at first: it takes requests and sits on them.
        await wait_for(lambda: silent.requests > 0, timeout_s=10)
        silent_conn = next(iter(leecher.peers))
        # The snub check hands the held blocks back...
        await wait_for(
            lambda: any(n == "peer_snubbed" for n, _ in events), timeout_s=10
        )
        # ...keeping at most one request for the peer to prove itself with...
        assert leecher.picker.outstanding_count(silent_conn) <= 1
        # ...and another peer serves them.
        seed_engine.add_torrent(meta, src, config=fast_session())
        leecher.add_peers([seed_engine.address], "manual")
        async with asyncio.timeout(30):
            await leecher.wait_complete()
        assert (tmp_path / "out" / "data.bin").read_bytes() == path.read_bytes()


async def test_failing_tracker_retried_with_growing_backoff_while_download_continues(
    tmp_path: Path,
) -> None:
    attempts: list[float] = []
    loop = asyncio.get_running_loop()

    async def broken(request: web.Request) -> web.Response:
        attempts.append(loop.time())
        return web.Response(status=500, text="down")

    app = web.Application()
    app.router.add_get("/announce", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        src = tmp_path / "seed"
        path = src / "data.bin"
        write_random_file(path, 2_000_000, seed=5)
        meta = make_torrent(path, [f"http://127.0.0.1:{port}/announce"])
        async with engine(max_upload_rate=400_000) as seed_engine, engine() as leech:
            seed_engine.add_torrent(
                meta, src, config=fast_session(), use_trackers=False
            )
            leecher = leech.add_torrent(
                meta,
                tmp_path / "out",
                config=fast_session(),
                peers=[seed_engine.address],
            )
            # The download goes on while the tracker keeps failing.
            await wait_for(
                lambda: len(attempts) >= 4 and leecher.statistics().pieces_have > 0,
                timeout_s=20,
            )
            assert not leecher.is_complete
            first = attempts[:4]
            gaps = [b - a for a, b in itertools.pairwise(first)]
            assert all(later > earlier for earlier, later in itertools.pairwise(gaps))
            tstats = leech.trackers[meta.info_hash].statistics()
            assert tstats.failures_in_row >= 3
            async with asyncio.timeout(30):
                await leecher.wait_complete()
        assert (tmp_path / "out" / "data.bin").read_bytes() == path.read_bytes()
    finally:
        await runner.cleanup()


async def test_upload_rate_limit_holds_within_ten_percent_over_ten_seconds(
    tmp_path: Path,
) -> None:
    rate = 1024 * 1024  # R = 1 MiB/s
    src = tmp_path / "seed"
    path = src / "data.bin"
    write_random_file(path, 16 * 1024 * 1024, seed=6)
    meta = make_torrent(path, [], piece_length=262144)
    async with engine(max_upload_rate=rate) as seed_engine, engine() as leech:
        seed_engine.add_torrent(meta, src, config=fast_session())
        leecher = leech.add_torrent(
            meta, tmp_path / "out", config=fast_session(), peers=[seed_engine.address]
        )
        loop = asyncio.get_running_loop()
        # Measure from the first received byte, over 10 s of wall time.
        await wait_for(lambda: leecher.statistics().downloaded > 0, timeout_s=10)
        start_t, start_b = loop.time(), leecher.statistics().downloaded
        await wait_for(lambda: loop.time() - start_t >= 10.0, timeout_s=15, step_s=0.05)
        end_t, end_b = loop.time(), leecher.statistics().downloaded
        measured = (end_b - start_b) / (end_t - start_t)
        assert abs(measured - rate) / rate < 0.10, f"measured {measured:.0f} B/s"
