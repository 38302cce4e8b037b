"""Matrix rows 3, 4 and 5: mixed swarms.

Row 3: our tracker serves a swarm of one client seeding while bitswarm and
another client leech at once; every client's announces and scrapes are
answered (aria2 never scrapes; libtorrent scrapes when asked; Transmission
scrapes on its own only 0..180 s after start, so ``transmission-show -s``
runs the same libtransmission scrape on demand; bitswarm scrapes with its
scrape codec).
Row 4: pieces flow both ways between a bitswarm leecher and a libtorrent
leecher that each start with half of the data and no seeder.
Row 5: PEX with libtorrent, both directions: a peer address learned only
through ut_pex.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from tests.interop.clients import (
    Aria2,
    Libtorrent,
    Transmission,
    same_tree,
    transmission_scrape,
    wait_until,
)
from tests.interop.helpers import (
    OurTracker,
    bitswarm,
    connected_sources,
    fast_session,
    http_scrape,
    make_torrent,
    wait_complete,
    write_album,
    write_blob,
)

# --- row 3: a mixed swarm on our tracker ---------------------------------------


async def test_libtorrent_seeds_to_bitswarm_and_aria2_through_our_tracker(
    tmp_path: Path, lt: ModuleType, tracker: OurTracker
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album, [tracker.url])
    path = tmp_path / "album.torrent"
    path.write_bytes(torrent)
    async with Libtorrent() as client:
        handle = client.add(torrent, src)
        await client.wait_seeding(handle, 10)
        async with (
            bitswarm() as eng,
            Aria2(path, tmp_path / "aria2-out", tmp_path / "aria2") as aria2,
        ):
            session = eng.add_torrent(meta, tmp_path / "out", config=fast_session())
            await wait_complete(session)
            assert await aria2.wait_exit(30) == 0, aria2.log_text()
            handle.scrape_tracker()
            await client.wait(
                lambda: bool(client.alerts_of("scrape_reply_alert")), "scrape", 10
            )
            scraped = await http_scrape(tracker.url, meta.info_hash)
    assert same_tree(tmp_path / "out", src)
    assert same_tree(tmp_path / "aria2-out", src)
    for name in ("libtorrent", "bitswarm", "aria2"):
        assert tracker.answered_announces(name), name
    assert tracker.answered_scrapes("libtorrent")
    (reply,) = client.alerts_of("scrape_reply_alert")
    assert reply.fields["complete"] >= 1
    assert scraped.complete >= 2  # libtorrent and bitswarm seed by now


async def test_aria2_seeds_to_bitswarm_and_transmission_through_our_tracker(
    tmp_path: Path, tracker: OurTracker
) -> None:
    """Transmission ignores 127.x peers from the tracker; bitswarm and aria2,
    which learn of it from the tracker, dial it."""
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album, [tracker.url])
    path = tmp_path / "album.torrent"
    path.write_bytes(torrent)
    tr_out = tmp_path / "tr-out"
    async with (
        Aria2(path, src, tmp_path / "aria2", seed=True),
        bitswarm() as eng,
        Transmission(path, tr_out, tmp_path / "tr") as tr,
    ):
        session = eng.add_torrent(meta, tmp_path / "out", config=fast_session())
        await wait_complete(session)
        await wait_until(
            lambda: same_tree(tr_out, src, skip_empty=True),
            45,
            "Transmission's download",
        )
        await wait_until(tr.seeding, 10, "Transmission to verify and seed")
        scraped = await http_scrape(tracker.url, meta.info_hash)
        tr_seeders, _ = await transmission_scrape(path)
    assert same_tree(tmp_path / "out", src)
    for name in ("aria2", "bitswarm", "transmission"):
        assert tracker.answered_announces(name), name
    assert tracker.answered_scrapes("transmission-show")
    assert scraped.complete >= 2
    assert tr_seeders >= 2


# --- row 4: pieces both ways ---------------------------------------------------------


async def test_pieces_flow_both_ways_between_bitswarm_and_libtorrent(
    tmp_path: Path, lt: ModuleType
) -> None:
    """No seeder: bitswarm has the first half, libtorrent the second."""
    size = 1024 * 1024 + 12_345
    data = write_blob(tmp_path / "src" / "data.bin", size, seed=4)
    torrent, meta = make_torrent(tmp_path / "src" / "data.bin")
    half = (meta.num_pieces // 2) * meta.piece_length
    ours = tmp_path / "bitswarm"
    theirs = tmp_path / "libtorrent"
    ours.mkdir()
    theirs.mkdir()
    (ours / "data.bin").write_bytes(data[:half] + bytes(size - half))
    (theirs / "data.bin").write_bytes(bytes(half) + data[half:])
    async with Libtorrent() as client, bitswarm() as eng:
        handle = client.add(torrent, theirs)
        await client.wait(
            lambda: handle.status().state == lt.torrent_status.downloading,
            "libtorrent checked its half",
            10,
        )
        assert 0 < handle.status().progress < 1
        session = eng.add_torrent(
            meta, ours, config=fast_session(), peers=[client.address]
        )
        await wait_complete(session)
        await client.wait_seeding(handle, 20)
        stats = session.statistics()
        lt_status = handle.status()
    assert (ours / "data.bin").read_bytes() == data
    assert (theirs / "data.bin").read_bytes() == data
    assert stats.resumed_pieces == meta.num_pieces // 2
    assert stats.downloaded >= size - half  # from libtorrent
    assert stats.uploaded >= half  # to libtorrent
    assert lt_status.total_payload_download >= half


# --- row 5: PEX with libtorrent -------------------------------------------------------

# Bytes/s for bitswarm in the PEX tests: the sample takes seconds, not ms.
PEX_RATE = 200_000


async def test_bitswarm_learns_a_peer_from_libtorrent_pex(
    tmp_path: Path, lt: ModuleType
) -> None:
    """libtorrent A is connected to libtorrent B (B's own PEX off); bitswarm
    knows only A, and reaches B through A's ut_pex message."""
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album)
    events: list[tuple[str, dict[str, Any]]] = []
    async with Libtorrent() as a, Libtorrent() as b:
        handle_b = b.add(
            torrent, tmp_path / "b", extra_flags=int(lt.torrent_flags.disable_pex)
        )
        handle_a = a.add(torrent, src, peers=[b.address])  # A dials B
        await b.wait_seeding(handle_b, 20)
        async with bitswarm(events) as eng:
            # slow enough that we still want pieces when A's ut_pex arrives
            session = eng.add_torrent(
                meta,
                tmp_path / "out",
                config=fast_session(download_rate=PEX_RATE),
                peers=[a.address],
            )
            await wait_until(
                lambda: connected_sources(events).get(str(b.address)) == "pex",
                20,
                "bitswarm to dial B, learned by ut_pex from A",
            )
            await wait_complete(session)
        assert b.address in a.peer_addrs(handle_a)
    assert same_tree(tmp_path / "out", src)
    assert connected_sources(events)[str(a.address)] == "manual"


async def test_libtorrent_learns_a_peer_from_bitswarm_pex(
    tmp_path: Path, lt: ModuleType
) -> None:
    """bitswarm seeds and is connected to libtorrent B (B's PEX off);
    libtorrent C knows only bitswarm, and reaches B through our ut_pex."""
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album)
    async with (
        bitswarm() as eng,
        Libtorrent() as b,
        Libtorrent() as c,
    ):
        # slow enough that B and C are still leechers when our ut_pex arrives
        # (libtorrent never dials a seed when it is one)
        seeder = eng.add_torrent(
            meta, src, config=fast_session(pex_interval_s=0.5, upload_rate=PEX_RATE)
        )
        await seeder.wait_started()
        handle_b = b.add(
            torrent, tmp_path / "b", extra_flags=int(lt.torrent_flags.disable_pex)
        )
        seeder.add_peers([b.address], "manual")  # we dial B: its listen address
        await wait_until(
            lambda: str(b.address) in {p.addr for p in seeder.peer_infos()},
            10,
            "bitswarm connected to B",
        )
        handle_c = c.add(torrent, tmp_path / "c", peers=[eng.address])

        def c_found_b_by_pex() -> bool:
            peer = c.peer_addrs(handle_c).get(b.address)
            return peer is not None and bool(peer.source & lt.peer_info.pex)

        await c.wait(c_found_b_by_pex, "C to connect to B, learned by our ut_pex", 20)
        await c.wait_seeding(handle_c, 20)
        await b.wait_seeding(handle_b, 20)
    assert same_tree(tmp_path / "c", src)
