"""Trackers in the real world (BEP 15): UDP against opentracker and ours.

bitswarm announces to opentracker over HTTP and over UDP and finds a
libtorrent seeder through it; libtorrent and aria2 announce to (and
libtorrent scrapes) our tracker over UDP.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from dht import DhtNode
from tests.interop.clients import Aria2, Libtorrent, OpenTracker, same_tree
from tests.interop.helpers import (
    OurTracker,
    bitswarm,
    fast_session,
    found_only_through,
    make_torrent,
    wait_complete,
    write_album,
)


@pytest.mark.parametrize("scheme", ["http", "udp"])
async def test_bitswarm_finds_libtorrent_through_opentracker(
    tmp_path: Path, lt: ModuleType, scheme: str
) -> None:
    src = tmp_path / "src"
    album = write_album(src)
    _, meta = make_torrent(album)
    events: list[tuple[str, dict[str, Any]]] = []
    async with OpenTracker(tmp_path / "opentracker", [meta.info_hash]) as ot:
        lt_torrent, lt_meta = make_torrent(album, [ot.url])
        url = ot.url if scheme == "http" else ot.udp_url
        _, our_meta = make_torrent(album, [url])
        assert lt_meta.info_hash == our_meta.info_hash == meta.info_hash
        async with Libtorrent() as client:
            handle = client.add(lt_torrent, src)
            await client.wait_seeding(handle, 10)
            await client.wait(
                lambda: bool(client.alerts_of("tracker_reply_alert")),
                "libtorrent's announce to opentracker",
                10,
            )
            async with bitswarm(events) as eng:
                session = eng.add_torrent(
                    our_meta, tmp_path / "out", config=fast_session()
                )
                await wait_complete(session)
    assert same_tree(tmp_path / "out", src)
    found_only_through(events, client.address, "tracker")


async def test_libtorrent_and_aria2_use_our_udp_tracker(
    tmp_path: Path, lt: ModuleType, tracker: OurTracker, dht_node: DhtNode
) -> None:
    """libtorrent seeds and aria2 leeches; each finds the other only through
    our tracker's UDP side.

    aria2 1.36 speaks UDP trackers over its DHT socket only ("udp is not
    supported yet" with the DHT off), so its DHT runs, joined only through
    a bitswarm node; libtorrent's DHT is off, so the tracker is the one way
    they can meet.
    """
    src = tmp_path / "src"
    album = write_album(src)
    torrent, _ = make_torrent(album, [tracker.udp_url])
    path = tmp_path / "album.torrent"
    path.write_bytes(torrent)
    async with Libtorrent() as client:
        handle = client.add(torrent, src)
        await client.wait_seeding(handle, 10)
        async with Aria2(
            path, tmp_path / "out", tmp_path / "aria2", dht_entry=dht_node.address
        ) as aria2:
            assert await aria2.wait_exit(30) == 0, aria2.log_text()
        handle.scrape_tracker()
        await client.wait(
            lambda: bool(client.alerts_of("scrape_reply_alert")), "UDP scrape", 10
        )
    assert same_tree(tmp_path / "out", src)
    replies = client.alerts_of("tracker_reply_alert")
    assert {a.fields["url"] for a in replies} == {tracker.udp_url}
    (scrape,) = client.alerts_of("scrape_reply_alert")
    assert scrape.fields["complete"] >= 1
    udp = tracker.server.udp_statistics()
    assert udp is not None
    assert udp.announces >= 2  # libtorrent's and aria2's at least
    assert udp.scrapes >= 1
    assert udp.errors == 0
    assert not tracker.hits  # nothing over HTTP
