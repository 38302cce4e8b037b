"""libtorrent 2.1 as a separate process for the benchmarks (the anchor).

    python -m tests.bench.lt_worker seed TORRENT SAVE_DIR
    python -m tests.bench.lt_worker leech TORRENT SAVE_DIR [--peer HOST:PORT]
    python -m tests.bench.lt_worker magnet URI SAVE_DIR

It prints bitswarm-style JSON events on stdout, one a line, each with ``t``
(seconds since this process started): ``started`` (with ``port`` and
``pieces``) and ``checked`` for a seeder, which then runs until SIGINT or
SIGTERM; ``piece_verified`` (``have``) and ``completed`` for a leecher, which
then exits; ``metadata_complete`` (``info_hash``) for a magnet, which then
exits. Every session binds 127.0.0.1 only, with DHT, LSD, UPnP, NAT-PMP and
uTP off and several connections per IP allowed (every peer is 127.0.0.1),
as in shared/INTEROP-NOTES.md. A seeder and a leecher given a torrent are
added unpaused and not auto-managed (so they start at once); a magnet is
added with libtorrent's default flags, as the issue asks.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import time
from typing import Any

T0 = time.monotonic()
POLL_MS = 20  # alert wait, ms: the progress sampling period
lt: Any = None  # the libtorrent module (untyped), imported in main()


def emit(name: str, **fields: Any) -> None:
    record = {"event": name, "t": round(time.monotonic() - T0, 4), **fields}
    print(json.dumps(record), flush=True)


def settings() -> dict[str, Any]:
    return {
        "listen_interfaces": "127.0.0.1:0",
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        "enable_ip_notifier": False,
        "enable_incoming_utp": False,
        "enable_outgoing_utp": False,
        "allow_multiple_connections_per_ip": True,
        "alert_mask": lt.alert_category.status | lt.alert_category.error,
    }


def add_now(ses: Any, torrent: str, save_path: str) -> Any:
    atp = lt.add_torrent_params()
    atp.ti = lt.torrent_info(torrent)
    atp.save_path = save_path
    atp.flags &= ~lt.torrent_flags.auto_managed
    atp.flags &= ~lt.torrent_flags.paused
    return ses.add_torrent(atp)


def seed(torrent: str, save_path: str) -> int:
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    ses = lt.session(settings())
    handle = add_now(ses, torrent, save_path)
    pieces = handle.status().num_pieces
    while not handle.status().is_seeding:
        ses.wait_for_alert(POLL_MS)
        ses.pop_alerts()
        if stopping:
            return 1
    pieces = handle.torrent_file().num_pieces()
    emit("started", port=ses.listen_port(), pieces=pieces)
    emit("checked", have=handle.status().num_pieces, pieces=pieces)
    while not stopping:
        ses.wait_for_alert(200)
        ses.pop_alerts()
    return 0


def leech(torrent: str, save_path: str, peers: list[str]) -> int:
    ses = lt.session(settings())
    handle = add_now(ses, torrent, save_path)
    for peer in peers:
        host, _, port = peer.rpartition(":")
        handle.connect_peer((host, int(port)))
    pieces = handle.torrent_file().num_pieces()
    emit("started", port=ses.listen_port(), pieces=pieces)
    have = -1
    while True:
        ses.wait_for_alert(POLL_MS)
        ses.pop_alerts()
        status = handle.status()
        if status.num_pieces != have:
            have = status.num_pieces
            emit("piece_verified", have=have)
        if have == pieces:
            emit("completed")
            return 0


def magnet(uri: str, save_path: str) -> int:
    ses = lt.session(settings())
    atp = lt.parse_magnet_uri(uri)  # x.pe becomes atp.peers
    atp.save_path = save_path
    handle = ses.add_torrent(atp)  # default flags (auto-managed, paused)
    while True:
        ses.wait_for_alert(POLL_MS)
        for alert in ses.pop_alerts():
            if isinstance(alert, lt.metadata_received_alert):
                info_hash = str(handle.info_hashes().v1)
                emit("metadata_complete", info_hash=info_hash)
                return 0


def main(argv: list[str] | None = None) -> int:
    global lt
    p = argparse.ArgumentParser(prog="python -m tests.bench.lt_worker")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("seed")
    s.add_argument("torrent")
    s.add_argument("save_path")
    s = sub.add_parser("leech")
    s.add_argument("torrent")
    s.add_argument("save_path")
    s.add_argument("--peer", action="append", default=[])
    s = sub.add_parser("magnet")
    s.add_argument("uri")
    s.add_argument("save_path")
    args = p.parse_args(argv)
    lt = importlib.import_module("libtorrent")
    if args.cmd == "seed":
        return seed(args.torrent, args.save_path)
    if args.cmd == "leech":
        return leech(args.torrent, args.save_path, args.peer)
    return magnet(args.uri, args.save_path)


if __name__ == "__main__":
    sys.exit(main())
