"""Hostile torrents (issue 8): files from sample_files/bad/ through the CLI,
download folders with planted symlinks, and hostile metadata over ut_metadata.

Nothing may be written outside the download folder, and every refusal is
one clear line (the CLI) or a named error (the engine)."""

from __future__ import annotations

import asyncio
import hashlib
import random
from pathlib import Path

import bencodepy
import pytest

from client.cli import main
from client.core import wire
from client.core.extensions import MAX_METADATA_BYTES, UT_METADATA_ID, ExtensionState
from client.core.magnet import Magnet
from client.core.metadata import (
    MetadataAssembler,
    MetadataRequest,
    encode_metadata_data,
    parse_metadata_message,
)
from client.engine import Engine
from client.errors import RemotePeerProtocolError, StorageError, UnsafePathError
from client.storage import Storage
from tests.e2e.test_hostile_peers import HOSTILE_ID, HostileServer, _read_handshake
from tests.helpers.swarm import (
    engine,
    engine_config,
    fast_session,
    make_torrent,
    write_random_file,
)

pytestmark = pytest.mark.e2e

BAD = Path(__file__).resolve().parents[2] / "sample_files" / "bad"

HOSTILE_SAMPLES = [
    "path_dotdot",
    "path_dotdot_nested",
    "path_utf8_dotdot",
    "path_absolute",
    "path_backslash_absolute",
    "path_unc",
    "path_drive_letter",
    "name_drive_letter",
    "path_with_backslash",
    "path_with_nul",
    "name_with_nul",
    "name_dotdot",
    "name_with_slash",
    "piece_count_mismatch",
    "files_total_disagrees",
    "piece_length_zero",
    "piece_length_huge",
]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("stem", HOSTILE_SAMPLES)
def test_download_of_a_hostile_torrent_is_refused_and_writes_nothing(
    tmp_path: Path, stem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "deep" / "down"
    out.mkdir(parents=True)
    before = _tree(tmp_path)
    code = main(["download", str(BAD / f"{stem}.torrent"), "-o", str(out), "--no-dht"])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("error: "), err
    assert _tree(tmp_path) == before


# -- symlinks planted in the download folder (client/storage.py) -------------------


@pytest.mark.parametrize("planted", ["folder", "file", "dangling"])
def test_storage_refuses_paths_through_planted_symlinks(
    tmp_path: Path, planted: str
) -> None:
    src = tmp_path / "src" / "album"
    write_random_file(src / "a_sub" / "a.bin", 40_000, seed=1)
    write_random_file(src / "b.bin", 10_000, seed=2)
    meta = make_torrent(src, [], piece_length=16384)
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.bin"
    secret.write_bytes(b"do not touch" * 4000)  # longer than a.bin
    root = tmp_path / "downloads"
    (root / "album").mkdir(parents=True)
    if planted == "folder":
        (root / "album" / "a_sub").symlink_to(outside, target_is_directory=True)
    elif planted == "file":
        (root / "album" / "a_sub").mkdir()
        (root / "album" / "a_sub" / "a.bin").symlink_to(secret)
    else:
        (root / "album" / "a_sub").mkdir()
        (root / "album" / "a_sub" / "a.bin").symlink_to(outside / "new.bin")
    storage = Storage(root, meta)
    try:
        # a.bin comes first in the layout: piece 0 lies in it.
        index = 0
        assert storage.path_of(0).name == "a.bin"
        with pytest.raises(StorageError, match="outside the download folder"):
            storage.write_piece(index, bytes(meta.piece_size(index)))
        if planted == "file":
            # The target is long enough to be read for a resume: refused.
            with pytest.raises(StorageError, match="outside the download folder"):
                storage.recheck()
        else:
            assert storage.recheck() == []  # nothing there: nothing read
    finally:
        storage.close()
    assert secret.read_bytes() == b"do not touch" * 4000
    assert sorted(p.name for p in outside.iterdir()) == ["secret.bin"]


async def test_download_into_a_folder_with_a_symlink_out_fails_cleanly(
    tmp_path: Path,
) -> None:
    src = tmp_path / "seed"
    path = src / "data.bin"
    write_random_file(path, 300_000, seed=6)
    meta = make_torrent(path, [])
    outside = tmp_path / "outside"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "data.bin").symlink_to(outside / "data.bin")  # dangling, for now
    async with engine() as seeder, engine() as leecher:
        seeder.add_torrent(meta, src, config=fast_session())
        session = leecher.add_torrent(
            meta, out, config=fast_session(), peers=[seeder.address]
        )
        async with asyncio.timeout(20):
            await session.wait_settled()
        assert session.failure is not None
        assert "outside the download folder" in session.failure
    assert list(outside.iterdir()) == []


# -- hostile metadata --------------------------------------------------------------


def test_metadata_size_of_1_gib_is_refused() -> None:
    one_gib = 1 << 30
    payload = b"d1:md11:ut_metadatai1ee13:metadata_sizei%dee" % one_gib
    state = ExtensionState()
    # The peer is dropped: its handshake is a protocol error.
    with pytest.raises(RemotePeerProtocolError, match="metadata_size 1073741824"):
        state.receive_handshake(payload)
    assert state.metadata_size is None
    assembler = MetadataAssembler(b"\x01" * 20, rng=random.Random(1))
    with pytest.raises(RemotePeerProtocolError, match="metadata_size"):
        assembler.peer_ready("peer", one_gib)
    with pytest.raises(RemotePeerProtocolError):
        assembler.peer_ready("peer", MAX_METADATA_BYTES + 1)
    with pytest.raises(RemotePeerProtocolError):
        parse_metadata_message(b"d8:msg_typei1e5:piecei0e10:total_sizei%dee" % one_gib)


def _metadata_server(
    info: bytes, info_hash: bytes, *, claimed_size: int
) -> tuple[HostileServer, dict[str, int]]:
    """A peer that serves ``info`` over ut_metadata, claiming ``claimed_size``;
    the dict counts the metadata requests it got."""
    ext_id = 3
    counter = {"requests": 0}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        theirs = await _read_handshake(reader)
        writer.write(wire.encode_handshake(info_hash, HOSTILE_ID, wire.make_reserved()))
        ext_hs = b"d1:md11:ut_metadatai%dee13:metadata_sizei%dee" % (
            ext_id,
            claimed_size,
        )
        writer.write(wire.encode(wire.Extended(ext_id=0, payload=ext_hs)))
        core = wire.PeerWire(num_pieces=None)
        core.receive_data(theirs)
        counter["requests"] = 0
        while data := await reader.read(65536):
            for ev in core.receive_data(data):
                if isinstance(ev, wire.Extended) and ev.ext_id == ext_id:
                    req = parse_metadata_message(ev.payload)
                    assert isinstance(req, MetadataRequest)
                    counter["requests"] += 1
                    start = req.piece * 16384
                    payload = encode_metadata_data(
                        req.piece, len(info), info[start : start + 16384]
                    )
                    writer.write(
                        wire.encode(
                            wire.Extended(ext_id=UT_METADATA_ID, payload=payload)
                        )
                    )

    server = HostileServer(serve)
    return server, counter


async def test_magnet_whose_metadata_holds_a_traversal_path_is_refused(
    tmp_path: Path,
) -> None:
    # The metadata matches the infohash, so only the path check stands
    # between it and the disk.
    info = bencodepy.encode(
        {
            b"name": b"album",
            b"piece length": 16384,
            b"pieces": b"\x00" * 20,
            b"files": [{b"length": 5, b"path": [b"..", b"..", b"escape.txt"]}],
        }
    )
    info_hash = hashlib.sha1(info).digest()
    server, _ = _metadata_server(info, info_hash, claimed_size=len(info))
    out = tmp_path / "a" / "b"
    async with server as addr, Engine(engine_config(encryption="off")) as fetcher:
        magnet = Magnet(info_hash=info_hash, display_name=None, peers=(addr,))
        with pytest.raises(UnsafePathError, match=r"'\.\.'"):
            async with asyncio.timeout(20):
                await fetcher.open_magnet(magnet, out)
        assert not fetcher.sessions
    assert not (tmp_path / "escape.txt").exists()
    assert not out.exists()


async def test_magnet_peer_claiming_1_gib_of_metadata_is_ignored(
    tmp_path: Path,
) -> None:
    src = tmp_path / "seed"
    path = src / "data.bin"
    data = write_random_file(path, 200_000, seed=9)
    meta = make_torrent(path, [])
    liar, counter = _metadata_server(
        meta.info_bytes, meta.info_hash, claimed_size=1 << 30
    )
    async with (
        liar as liar_addr,
        engine() as seeder,
        Engine(engine_config(encryption="off")) as fetcher,
    ):
        seeder.add_torrent(meta, src, config=fast_session())
        magnet = Magnet(
            info_hash=meta.info_hash,
            display_name=None,
            peers=(liar_addr, seeder.address),
        )
        async with asyncio.timeout(30):
            session = await fetcher.open_magnet(magnet, tmp_path / "m")
            await session.wait_complete()
        assert counter["requests"] == 0
    assert (tmp_path / "m" / "data.bin").read_bytes() == data
