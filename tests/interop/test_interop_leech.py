"""Matrix row 2: each client seeds, bitswarm downloads, byte for byte.

By .torrent with our tracker; by magnet link with ``x.pe`` (the metadata
comes from the client); and by bare magnet link through the DHT, where the
client (libtorrent, aria2) announces into a DHT that a bitswarm node
bootstraps, and the bitswarm leecher joins through the same node.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from dht import DhtNode
from dht import testing_config as dht_testing_config
from tests.interop.clients import (
    Aria2,
    Libtorrent,
    Transmission,
    same_tree,
    wait_until,
)
from tests.interop.helpers import (
    OurTracker,
    bitswarm,
    fast_session,
    found_only_through,
    magnet,
    make_torrent,
    open_magnet,
    wait_complete,
    write_album,
)


async def announced(tracker: OurTracker, client: str) -> None:
    """Until ``client`` is in the swarm, so that our first announce finds it
    and we dial it before it could learn of us and dial us."""
    await wait_until(
        lambda: bool(tracker.answered_announces(client)),
        15,
        f"{client}'s announce",
    )


async def stored_in_dht(node: DhtNode) -> None:
    """Until the client's announce_peer reached our node: our first lookup
    then finds it, before it could find us."""
    await wait_until(
        lambda: node.statistics().peers_stored >= 1, 20, "the client's DHT announce"
    )


def dht_engine(node: DhtNode) -> dict[str, Any]:
    """Engine settings: a DHT joined only through ``node``, quick retries."""
    return {
        "dht_port": 0,
        "dht_bootstrap": (str(node.address),),
        "dht_config": dht_testing_config(),
        "dht_retry_s": 0.5,
    }


# --- libtorrent seeds -----------------------------------------------------------


async def test_from_libtorrent_by_torrent_with_our_tracker(
    tmp_path: Path, lt: ModuleType, tracker: OurTracker
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album, [tracker.url])
    events: list[tuple[str, dict[str, Any]]] = []
    async with Libtorrent() as client:
        handle = client.add(torrent, src)
        await client.wait_seeding(handle, 10)
        await announced(tracker, "libtorrent")
        async with bitswarm(events) as eng:
            session = eng.add_torrent(meta, tmp_path / "out", config=fast_session())
            await wait_complete(session)
    assert same_tree(tmp_path / "out", src)
    found_only_through(events, client.address, "tracker")
    assert tracker.answered_announces("libtorrent")


async def test_from_libtorrent_by_magnet_with_x_pe(
    tmp_path: Path, lt: ModuleType
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album)
    async with Libtorrent() as client:
        handle = client.add(torrent, src)
        await client.wait_seeding(handle, 10)
        async with bitswarm() as eng:
            link = magnet(meta, peers=(client.address,), name=False)
            session = await open_magnet(eng, link, tmp_path / "out")
            assert session.meta.info_hash == meta.info_hash
    assert same_tree(tmp_path / "out", src)


async def test_from_libtorrent_by_bare_magnet_through_the_dht(
    tmp_path: Path, lt: ModuleType, dht_node: DhtNode
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album)
    events: list[tuple[str, dict[str, Any]]] = []
    async with Libtorrent(dht_bootstrap=dht_node.address) as client:
        handle = client.add(torrent, src)
        await client.wait_seeding(handle, 10)
        await client.wait(
            lambda: bool(client.alerts_of("dht_bootstrap_alert")), "DHT bootstrap", 10
        )
        handle.force_dht_announce()
        await stored_in_dht(dht_node)
        async with bitswarm(events, **dht_engine(dht_node)) as eng:
            await open_magnet(eng, magnet(meta, name=False), tmp_path / "out", 40)
    assert same_tree(tmp_path / "out", src)
    found_only_through(events, client.address, "dht")


# --- aria2 seeds ------------------------------------------------------------------


async def test_from_aria2_by_torrent_with_our_tracker(
    tmp_path: Path, tracker: OurTracker
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album, [tracker.url])
    path = tmp_path / "album.torrent"
    path.write_bytes(torrent)
    events: list[tuple[str, dict[str, Any]]] = []
    async with Aria2(path, src, tmp_path / "aria2", seed=True) as aria2:
        await announced(tracker, "aria2")
        async with bitswarm(events) as eng:
            session = eng.add_torrent(meta, tmp_path / "out", config=fast_session())
            await wait_complete(session)
    assert same_tree(tmp_path / "out", src)
    found_only_through(events, aria2.address, "tracker")
    assert tracker.answered_announces("aria2")


async def test_from_aria2_by_magnet_with_x_pe(tmp_path: Path) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album)
    path = tmp_path / "album.torrent"
    path.write_bytes(torrent)
    async with (
        Aria2(path, src, tmp_path / "aria2", seed=True) as aria2,
        bitswarm() as eng,
    ):
        link = magnet(meta, peers=(aria2.address,), name=False)
        await open_magnet(eng, link, tmp_path / "out")
    assert same_tree(tmp_path / "out", src)


async def test_from_aria2_by_bare_magnet_through_the_dht(
    tmp_path: Path, dht_node: DhtNode
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album)
    path = tmp_path / "album.torrent"
    path.write_bytes(torrent)
    events: list[tuple[str, dict[str, Any]]] = []
    async with Aria2(
        path, src, tmp_path / "aria2", seed=True, dht_entry=dht_node.address
    ) as aria2:
        await stored_in_dht(dht_node)
        async with bitswarm(events, **dht_engine(dht_node)) as eng:
            await open_magnet(eng, magnet(meta, name=False), tmp_path / "out", 60)
    assert same_tree(tmp_path / "out", src)
    found_only_through(events, aria2.address, "dht")


# --- Transmission seeds -------------------------------------------------------------


async def test_from_transmission_by_torrent_with_our_tracker(
    tmp_path: Path, tracker: OurTracker
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album, [tracker.url])
    path = tmp_path / "album.torrent"
    path.write_bytes(torrent)
    events: list[tuple[str, dict[str, Any]]] = []
    async with Transmission(path, src, tmp_path / "tr") as tr:
        await announced(tracker, "transmission")
        async with bitswarm(events) as eng:
            session = eng.add_torrent(meta, tmp_path / "out", config=fast_session())
            await wait_complete(session, 45)
    assert same_tree(tmp_path / "out", src)
    found_only_through(events, tr.address, "tracker")
    assert tracker.answered_announces("transmission")


async def test_from_transmission_by_magnet_with_x_pe(tmp_path: Path) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    torrent, meta = make_torrent(album)
    path = tmp_path / "album.torrent"
    path.write_bytes(torrent)
    async with Transmission(path, src, tmp_path / "tr") as tr, bitswarm() as eng:
        link = magnet(meta, peers=(tr.address,), name=False)
        await open_magnet(eng, link, tmp_path / "out", 45)
    assert same_tree(tmp_path / "out", src)
