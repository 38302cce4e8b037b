"""``bitswarm seed``, ``download`` and ``tracker``: the long-running commands.

:mod:`client.cli` registers them and imports this module only when one of
them runs, so that ``create``, ``info`` and ``magnet`` need not compile it
(issue 7: every command's run is timed from launch). Each function here
imports the engine, asyncio, rich and the tracker where it uses them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.cli import EXIT_INTERRUPTED
from client.errors import ClientError

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from client.core.magnet import Magnet
    from client.core.metainfo import Metainfo
    from client.engine import EngineConfig
    from client.session import TorrentSession
    from client.ui import JsonEvents
    from dht import PeerAddr

__all__ = ["cmd_download", "cmd_seed", "cmd_tracker"]


def _parse_peers(texts: list[str]) -> list[PeerAddr]:
    from dht import DhtError, PeerAddr

    out = []
    for text in texts:
        try:
            out.append(PeerAddr.parse(text))
        except DhtError as exc:
            raise ClientError(f"--peer {text!r}: {exc}") from exc
    return out


def _engine_config(args: argparse.Namespace) -> EngineConfig:
    from client.engine import EngineConfig

    dht_port = None
    bootstrap: tuple[str, ...] = ()
    if not args.no_dht:
        dht_port = args.dht_port if args.dht_port is not None else args.port
        # Public routers (by host name) only when the user names no node.
        bootstrap = tuple(args.dht_bootstrap)
        if not bootstrap and args.overlay == "mainline":
            from dht.node import DEFAULT_BOOTSTRAP_NODES

            bootstrap = DEFAULT_BOOTSTRAP_NODES
    return EngineConfig(
        host=args.host,
        port=args.port,
        max_upload_rate=args.max_upload_rate,
        max_download_rate=args.max_download_rate,
        dht_port=dht_port,
        dht_bootstrap=bootstrap,
        encryption=args.encryption,
        overlay=args.overlay,
    )


def cmd_seed(args: argparse.Namespace) -> int:
    from client.maketorrent import create_torrent, load_metainfo

    path = Path(args.path)
    if not path.exists():
        raise ClientError(f"cannot seed {path}: no such file or folder")
    if args.torrent:
        meta = load_metainfo(Path(args.torrent))
    else:
        from client.core.metainfo import parse_metainfo

        meta = parse_metainfo(create_torrent(path, trackers=args.tracker))
    if meta.name != path.resolve().name:
        raise ClientError(
            f"torrent is for {meta.name!r} but {path} is named {path.resolve().name!r}"
        )
    save_dir = path.resolve().parent
    return _run_session(args, meta, save_dir, seed=True)


def cmd_download(args: argparse.Namespace) -> int:
    from client.core.magnet import parse_magnet

    target: str = args.target
    source: Metainfo | Magnet
    if target[:7].lower() == "magnet:":
        source = parse_magnet(target)
        if args.no_dht and not source.trackers and not source.peers and not args.peer:
            raise ClientError(
                "this magnet link names no tracker and no peer, and --no-dht "
                "leaves no way to find peers"
            )
    else:
        from client.maketorrent import load_metainfo

        source = load_metainfo(Path(target))
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    return _run_session(args, source, out, seed=args.seed)


def _run_session(
    args: argparse.Namespace, meta: Metainfo | Magnet, save_dir: Path, *, seed: bool
) -> int:
    import asyncio

    try:
        return asyncio.run(_session_main(args, meta, save_dir, seed=seed))
    except KeyboardInterrupt:
        if not args.quiet and not args.json:
            print("stopped", file=sys.stderr)
        return EXIT_INTERRUPTED


async def _session_main(
    args: argparse.Namespace, source: Metainfo | Magnet, save_dir: Path, *, seed: bool
) -> int:
    import asyncio

    from client.core.magnet import Magnet, magnet_from_metainfo
    from client.engine import Engine
    from client.session import SessionConfig
    from client.ui import JsonEvents

    events = JsonEvents() if args.json else None

    def on_event(name: str, fields: dict[str, Any]) -> None:
        if events is not None:
            events(name, fields)

    console: Console | None = None
    if not args.json and not args.quiet:
        from rich.console import Console

        console = Console()
    async with Engine(_engine_config(args), on_event=on_event) as engine:
        config = SessionConfig(seed_after_complete=seed)
        peers = _parse_peers(args.peer)
        if isinstance(source, Magnet):
            on_event(
                "fetching_metadata",
                {"info_hash": source.info_hash_hex, "port": engine.address.port},
            )
            if console is not None:
                console.print(f"fetching metadata for {source.info_hash_hex} ...")
            session = await engine.open_magnet(
                source, save_dir, config=config, peers=peers
            )
        else:
            session = engine.add_torrent(source, save_dir, config=config, peers=peers)
        meta = session.meta
        on_event(
            "started",
            {
                "name": meta.name,
                "info_hash": meta.info_hash_hex,
                "port": engine.address.port,
                "magnet": magnet_from_metainfo(meta).to_uri(),
                "pieces": meta.num_pieces,
                "mode": "seed" if seed else "download",
            },
        )
        magnet = magnet_from_metainfo(meta).to_uri()
        if console is not None:
            console.print(f"[bold]{meta.name}[/bold]  magnet: {magnet}")
            console.print(f"listening on port {engine.address.port}")
        elif args.quiet and seed:
            print(magnet, flush=True)  # what a user of 'seed' came for
        async with asyncio.TaskGroup() as tg:
            ui = None
            if events is not None:
                ui = tg.create_task(_json_progress(events, session))
            elif console is not None:
                ui = tg.create_task(_live(console, session))
            await session.wait_settled()
            if session.failure is None and seed:
                await asyncio.Event().wait()  # until Ctrl-C
            if ui is not None:
                ui.cancel()
        stats = session.statistics()
    if session.failure is not None:
        raise ClientError(session.failure)
    if events is not None:
        events.progress(stats)
        events("done", {"info_hash": meta.info_hash_hex, "path": str(save_dir)})
    elif console is not None:
        console.print(f"[green]complete[/green]: {save_dir / meta.name}")
    else:
        print(f"complete: {save_dir / meta.name}")
    return 0


async def _json_progress(events: JsonEvents, session: TorrentSession) -> None:
    import asyncio

    while True:
        await asyncio.sleep(0.5)
        events.progress(session.statistics())


async def _live(console: Console, session: TorrentSession) -> None:
    from client.ui import LiveDisplay, render_session

    def snapshot() -> RenderableType:
        return render_session(session.statistics(), session.peer_infos())

    await LiveDisplay(console, snapshot).run()


# -- tracker -------------------------------------------------------------------
def cmd_tracker(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from client.ui import JsonEvents
    from tracker import TrackerConfig, TrackerServer, run_tracker

    kwargs: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "udp_port": args.udp_port,
        "interval_s": args.interval,
    }
    kwargs["min_interval_s"] = (
        args.min_interval if args.min_interval is not None else args.interval / 2
    )
    if args.peer_timeout is not None:
        kwargs["peer_timeout_s"] = args.peer_timeout
    else:
        kwargs["peer_timeout_s"] = 2 * args.interval + 120
    cfg = TrackerConfig(**kwargs)

    def ready(server: TrackerServer) -> None:
        if args.json:
            fields: dict[str, Any] = {"url": server.url, "port": server.address.port}
            if args.udp_port is not None:
                fields["udp_url"] = server.udp_url
                fields["udp_port"] = server.udp_address.port
            JsonEvents()("tracker_listening", fields)
        elif not args.quiet:
            print(f"tracker listening on {server.url}", flush=True)
            if args.udp_port is not None:
                print(f"tracker listening on {server.udp_url}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_tracker(cfg, ready=ready))
    return 0
