"""MSE/PE (message stream encryption) with libtorrent forced to RC4.

libtorrent runs with ``out_enc_policy`` and ``in_enc_policy`` = pe_forced
and ``allowed_enc_level`` = pe_rc4, so it speaks nothing but RC4-encrypted
BitTorrent. Both directions: bitswarm dials libtorrent (our MSE initiator
against its receiver) and libtorrent dials bitswarm (its initiator against
our receiver), under ``--encryption require`` and the default ``prefer``.
Both sides must report the connection as RC4.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from client.session import TorrentSession
from tests.interop.clients import Libtorrent, same_tree, wait_until
from tests.interop.helpers import (
    bitswarm,
    fast_session,
    make_torrent,
    wait_complete,
    write_album,
)

# Bytes/s: slow enough that the connection is still up while we look at it.
RATE = 400_000


def our_crypto(session: TorrentSession) -> set[str]:
    return {conn.crypto for conn in session.peers}


def lt_rc4(lt: ModuleType, client: Libtorrent, handle: Any) -> bool:
    peers = handle.get_peer_info()
    return bool(peers) and all(p.flags & lt.peer_info.rc4_encrypted for p in peers)


@pytest.mark.parametrize("policy", ["require", "prefer"])
async def test_bitswarm_dials_libtorrent_forced_to_rc4(
    tmp_path: Path, lt: ModuleType, policy: str
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album)
    async with Libtorrent(encryption="forced") as client:
        handle = client.add(torrent, src)
        await client.wait_seeding(handle, 10)
        async with bitswarm(encryption=policy) as eng:
            session = eng.add_torrent(
                meta,
                tmp_path / "out",
                config=fast_session(download_rate=RATE),
                peers=[client.address],
            )
            await wait_until(
                lambda: our_crypto(session) == {"rc4"}, 10, "an RC4 connection"
            )
            await client.wait(lambda: lt_rc4(lt, client, handle), "libtorrent RC4", 10)
            await wait_complete(session)
    assert same_tree(tmp_path / "out", src)


@pytest.mark.parametrize("policy", ["require", "prefer"])
async def test_libtorrent_forced_to_rc4_dials_bitswarm(
    tmp_path: Path, lt: ModuleType, policy: str
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album)
    async with (
        bitswarm(encryption=policy) as eng,
        Libtorrent(encryption="forced") as client,
    ):
        seeder = eng.add_torrent(meta, src, config=fast_session(upload_rate=RATE))
        await seeder.wait_started()
        handle = client.add(torrent, tmp_path / "out", peers=[eng.address])
        await wait_until(lambda: our_crypto(seeder) == {"rc4"}, 10, "an RC4 connection")
        await client.wait(lambda: lt_rc4(lt, client, handle), "libtorrent RC4", 10)
        await client.wait_seeding(handle, 20)
    assert same_tree(tmp_path / "out", src)


async def test_libtorrent_forced_to_rc4_refuses_our_plaintext(
    tmp_path: Path, lt: ModuleType
) -> None:
    """The control: with ``--encryption off`` we cannot reach it at all."""
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album)
    async with Libtorrent(encryption="forced") as client:
        handle = client.add(torrent, src)
        await client.wait_seeding(handle, 10)
        async with bitswarm(encryption="off") as eng:
            session = eng.add_torrent(
                meta, tmp_path / "out", config=fast_session(), peers=[client.address]
            )
            await client.wait(
                lambda: any(
                    "incoming regular connections disabled" in a.message
                    for a in client.alerts_of("peer_disconnected_alert")
                ),
                "libtorrent to drop our plaintext handshake",
                10,
            )
            assert session.statistics().pieces_have == 0
