"""Every peer connection is closed on every path, including the races around
an engine or a torrent stopping.

CI failed now and then on ``ResourceWarning: unclosed transport
<_SelectorSocketTransport fd=.. read=idle ...>`` (the 50-leecher load test).
The leaked sockets had been accepted by an engine's listener just before the
engine stopped: asyncio runs each accepted socket's setup in a task of its
own, and when ``Server.close()`` came before that task's first step the
transport's constructor failed (``Server._attach`` asserts the server is
open, CPython gh-109564) after taking the socket and before
``connection_made``, so nothing could ever close it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import socket
import warnings
from collections.abc import Coroutine, Generator
from pathlib import Path
from typing import Any

from client.core import wire
from client.metadata_fetch import MetadataFetcher
from client.peer import PeerConnection
from client.session import SessionConfig
from tests.helpers.swarm import engine, make_torrent, write_random_file


def _resource_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


async def test_socket_accepted_just_before_the_engine_stops_is_closed() -> None:
    """The exact interleaving: the listener accepts (asyncio schedules the
    connection's setup task), then the engine stops before that task's
    first step."""
    loop = asyncio.get_running_loop()
    accepted = loop.create_future()
    factory = loop.get_task_factory()

    def task_factory(
        loop: asyncio.AbstractEventLoop,
        coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any],
        **kw: Any,
    ) -> asyncio.Future[Any]:
        name = getattr(coro, "__qualname__", "")
        if name.endswith("._accept_connection2") and not accepted.done():
            # Wake the test first: its step runs before the setup task's.
            accepted.set_result(None)
        return asyncio.Task(coro, loop=loop, **kw)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        loop.set_task_factory(task_factory)
        try:
            async with engine() as eng:
                # A blocking connect: the kernel completes it from the
                # listener's backlog while the loop is not running, so the
                # accept happens while this task waits on ``accepted``.
                client = socket.create_connection((eng.address.host, eng.address.port))
                await accepted
                # leave the engine now, before the setup task runs
            with client:
                client.setblocking(False)
                # The engine's side is gone: EOF or a reset, never silence.
                async with asyncio.timeout(5):
                    with contextlib.suppress(ConnectionResetError):
                        assert await loop.sock_recv(client, 1) == b""
        finally:
            loop.set_task_factory(factory)
        assert _resource_warnings(caught) == []


async def _incoming_pair(
    handler: Any,
) -> tuple[PeerConnection, socket.socket]:
    """An incoming PeerConnection over a socketpair, and the far end."""
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    ours.setblocking(False)
    _, conn = await loop.connect_accepted_socket(
        lambda: PeerConnection(handler, outgoing=False, clock=loop.time), ours
    )
    return conn, theirs


def _handshake(info_hash: bytes) -> wire.HandshakeReceived:
    return wire.HandshakeReceived(
        reserved=bytes(8), info_hash=info_hash, peer_id=b"-XX0000-" + bytes(12)
    )


async def test_a_group_shutting_down_refuses_a_handshake(tmp_path: Path) -> None:
    """A handshake that reaches a torrent (or a metadata fetch) whose task
    group is already aborting (a child failed or the fetch just finished,
    the owner not yet told) is refused, so the engine closes the connection;
    no task is offered to a group that would refuse it (the coroutine would
    never run, nor close the connection)."""
    src = tmp_path / "seed"
    write_random_file(src / "data.bin", 40_000, seed=3)
    meta = make_torrent(src / "data.bin", [], piece_length=16384)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with engine() as eng:
            session = eng.add_torrent(meta, src, config=SessionConfig())
            await session.wait_started()
            fetcher = MetadataFetcher(
                bytes(20),
                peer_id=eng.peer_id,
                listen_port=0,
                reserved=bytes(8),
                rng=random.Random(1),
            )
            fetch = asyncio.create_task(fetcher.run())
            async with asyncio.timeout(5):
                while fetcher._tg is None:  # noqa: ASYNC110 (no event to wait on)
                    await asyncio.sleep(0)
            for target, info_hash in ((session, meta.info_hash), (fetcher, bytes(20))):
                tg = target._tg
                assert tg is not None
                # What a failing child does (private in 3.11), before the
                # owner's task sees the cancellation.
                tg._abort()  # type: ignore[attr-defined]
                conn, theirs = await _incoming_pair(eng)
                with theirs:
                    assert not target.accept(conn, _handshake(info_hash))
                    conn.close("refused")
                    async with asyncio.timeout(5):
                        await conn.wait_closed()
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await fetch
        assert _resource_warnings(caught) == []
        assert [str(w.message) for w in caught] == []
