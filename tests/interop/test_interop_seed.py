"""Matrix row 1: bitswarm seeds, each client downloads, byte for byte.

By .torrent with our tracker, and by magnet link with the metadata from us:
libtorrent with ``x.pe`` pointing at our seeder; aria2 and Transmission
(which take no ``x.pe``) with a magnet whose ``tr`` is our tracker.
Transmission 3.00 ignores 127.x peers from trackers, so our seeder, which
learns of it from the tracker, dials it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from tests.interop.clients import Aria2, Libtorrent, Transmission, same_tree, wait_until
from tests.interop.helpers import (
    OurTracker,
    bitswarm,
    fast_session,
    magnet,
    make_torrent,
    write_album,
)

# Seconds for a Transmission download: it decides interest (and unchokes) in
# a rechoke pulse every 10 s, and a magnet restarts after the metadata.
TRANSMISSION_S = 45


async def test_libtorrent_downloads_by_torrent_from_our_tracker(
    tmp_path: Path, lt: ModuleType, tracker: OurTracker
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album, [tracker.url])
    async with bitswarm() as eng, Libtorrent() as client:
        seeder = eng.add_torrent(meta, src, config=fast_session())
        await seeder.wait_started()
        handle = client.add(torrent, tmp_path / "out")  # peers: tracker only
        await client.wait_seeding(handle, 20)
    assert same_tree(tmp_path / "out", src)
    assert tracker.answered_announces("libtorrent")
    assert tracker.answered_announces("bitswarm")


async def test_libtorrent_downloads_by_magnet_with_x_pe(
    tmp_path: Path, lt: ModuleType
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    _, meta = make_torrent(album)
    async with bitswarm() as eng, Libtorrent() as client:
        seeder = eng.add_torrent(meta, src, config=fast_session())
        await seeder.wait_started()
        uri = magnet(meta, peers=(eng.address,)).to_uri()
        handle = client.add(uri, tmp_path / "out")  # x.pe is its only peer
        await client.wait_seeding(handle, 20)
        assert client.alerts_of("metadata_received_alert")
        assert seeder.statistics().uploaded >= meta.total_length
    assert same_tree(tmp_path / "out", src)


async def test_aria2_downloads_by_torrent_from_our_tracker(
    tmp_path: Path, tracker: OurTracker
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album, [tracker.url])
    path = tmp_path / "album.torrent"
    path.write_bytes(torrent)
    async with bitswarm() as eng:
        seeder = eng.add_torrent(meta, src, config=fast_session())
        await seeder.wait_started()
        async with Aria2(path, tmp_path / "out", tmp_path / "aria2") as aria2:
            assert await aria2.wait_exit(30) == 0, aria2.log_text()
    assert same_tree(tmp_path / "out", src)
    assert tracker.answered_announces("aria2")


async def test_aria2_downloads_by_magnet_from_our_tracker(
    tmp_path: Path, tracker: OurTracker
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    _, meta = make_torrent(album, [tracker.url])
    uri = magnet(meta, trackers=(tracker.url,)).to_uri()
    async with bitswarm() as eng:
        seeder = eng.add_torrent(meta, src, config=fast_session())
        await seeder.wait_started()
        async with Aria2(uri, tmp_path / "out", tmp_path / "aria2") as aria2:
            assert await aria2.wait_exit(30) == 0, aria2.log_text()
        assert seeder.statistics().uploaded >= meta.total_length
    assert "[METADATA]" in aria2.log_text()
    assert same_tree(tmp_path / "out", src)
    assert tracker.answered_announces("aria2")


async def test_transmission_downloads_by_torrent_from_our_tracker(
    tmp_path: Path, tracker: OurTracker
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album, [tracker.url])
    path = tmp_path / "album.torrent"
    path.write_bytes(torrent)
    out = tmp_path / "out"

    def done() -> bool:  # Transmission 3.00 creates no empty files
        return same_tree(out, src, skip_empty=True)

    async with bitswarm() as eng:
        seeder = eng.add_torrent(meta, src, config=fast_session())
        await seeder.wait_started()
        async with Transmission(path, out, tmp_path / "tr") as tr:
            # our seeder learns it from the tracker and dials it
            await wait_until(done, TRANSMISSION_S, "Transmission's download")
            await wait_until(tr.seeding, 10, "Transmission to verify and seed")
    assert tracker.answered_announces("transmission")


async def test_transmission_downloads_by_magnet_from_our_tracker(
    tmp_path: Path, tracker: OurTracker
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    _, meta = make_torrent(album, [tracker.url])
    uri = magnet(meta, trackers=(tracker.url,)).to_uri()
    out = tmp_path / "out"

    def done() -> bool:  # Transmission 3.00 creates no empty files
        return same_tree(out, src, skip_empty=True)

    async with bitswarm() as eng:
        seeder = eng.add_torrent(meta, src, config=fast_session())
        await seeder.wait_started()
        async with Transmission(uri, out, tmp_path / "tr") as tr:
            await wait_until(done, TRANSMISSION_S, "Transmission's download")
            await wait_until(tr.seeding, 10, "Transmission to verify and seed")
    assert tracker.answered_announces("transmission")
