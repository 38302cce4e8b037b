"""MSE/PE between bitswarm peers on loopback."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from client.core.magnet import Magnet
from tests.helpers.swarm import (
    engine,
    fast_session,
    make_torrent,
    wait_for,
    write_random_file,
)


@pytest.mark.parametrize(
    ("seed_policy", "leech_policy", "crypto"),
    [
        ("require", "require", "rc4"),
        # prefer offers both; the responder picks plaintext payload after an
        # obfuscated handshake, as libtorrent does by default
        ("prefer", "prefer", "plaintext"),
        ("require", "prefer", "rc4"),
        ("prefer", "require", "rc4"),
        ("off", "prefer", ""),  # prefer falls back to a plain connection
        ("prefer", "off", ""),
    ],
)
async def test_transfer_under_each_policy(
    tmp_path: Path, seed_policy: str, leech_policy: str, crypto: str
) -> None:
    src = tmp_path / "seed"
    path = src / "data.bin"
    data = write_random_file(path, 400_000, seed=9)
    meta = make_torrent(path, [])
    async with (
        engine(encryption=seed_policy) as seed_engine,
        engine(encryption=leech_policy) as leech,
    ):
        seeder = seed_engine.add_torrent(meta, src, config=fast_session())
        leecher = leech.add_torrent(
            meta, tmp_path / "out", config=fast_session(), peers=[seed_engine.address]
        )
        async with asyncio.timeout(30):
            await leecher.wait_complete()
        assert {c.crypto for c in leecher.peers} == {crypto}
        assert {c.crypto for c in seeder.peers} == {crypto}
    assert (tmp_path / "out" / "data.bin").read_bytes() == data


async def test_magnet_metadata_over_rc4(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    path = src / "data.bin"
    data = write_random_file(path, 200_000, seed=10)
    meta = make_torrent(path, [])
    async with (
        engine(encryption="require") as seed_engine,
        engine(encryption="require") as leech,
    ):
        seed_engine.add_torrent(meta, src, config=fast_session())
        magnet = Magnet(
            info_hash=meta.info_hash,
            display_name=None,
            trackers=(),
            peers=(seed_engine.address,),
            exact_length=None,
        )
        async with asyncio.timeout(30):
            session = await leech.open_magnet(
                magnet, tmp_path / "out", config=fast_session()
            )
            await session.wait_complete()
    assert (tmp_path / "out" / "data.bin").read_bytes() == data


async def test_plain_only_peer_refused_under_require_with_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = tmp_path / "seed"
    path = src / "data.bin"
    write_random_file(path, 100_000, seed=11)
    meta = make_torrent(path, [])
    caplog.set_level(logging.INFO, logger="client.peer")
    async with (
        engine(encryption="require") as seed_engine,
        engine(encryption="off") as plain,
    ):
        seeder = seed_engine.add_torrent(meta, src, config=fast_session())
        leecher = plain.add_torrent(
            meta, tmp_path / "out", config=fast_session(), peers=[seed_engine.address]
        )
        await wait_for(
            lambda: any(
                "refusing a plaintext peer" in r.getMessage() for r in caplog.records
            ),
            timeout_s=10,
        )
        assert not seeder.peers
        assert not leecher.peers
        assert leecher.statistics().pieces_have == 0
