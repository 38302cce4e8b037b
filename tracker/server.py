"""The tracker as a service: an async context manager around the HTTP
tracker and, when ``cfg.udp_port`` is set, the UDP endpoint (BEP 15) on the
same swarm registry.

HTTP is served by the lean server of :mod:`tracker.http` (issue 7: several
times aiohttp's throughput). The aiohttp application (``server.app``) is
still built, shares the same :class:`TrackerService`, and is what gets
served instead when it has been customised before the start (a response
hook or a middleware, as the interop tests' request log adds): those hooks
only exist in aiohttp. It binds on enter so port 0 works and bind errors
reach the caller, and stops on exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from tracker.app import (
    CLOCK_KEY,
    REGISTRY_KEY,
    SERVICE_KEY,
    TRIMMER_KEY,
    Clock,
    make_app,
)
from tracker.config import TrackerConfig
from tracker.core.addr import PeerAddr
from tracker.core.registry import RegistryStats
from tracker.core.udp import UdpTrackerStats
from tracker.endpoint import AnnounceEndpoint
from tracker.errors import TrackerError
from tracker.http import HttpTrackerServer
from tracker.udp_server import UdpTrackerServer

__all__ = ["TrackerServer", "run_tracker"]

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT_S = 2.0  # seconds given to open requests when the tracker stops


class TrackerServer(AnnounceEndpoint):
    """An HTTP tracker listening on ``cfg.host:cfg.port``, and a UDP one on
    ``cfg.host:cfg.udp_port`` when that is set; both share one registry.

    Usage::

        async with TrackerServer(cfg) as server:
            print(server.url)
    """

    SCHEME = "http"
    NAME = "tracker server"

    def __init__(
        self,
        cfg: TrackerConfig,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._cfg = cfg
        self._app = make_app(cfg, clock=clock, rng=rng)
        self._runner: web.AppRunner | None = None
        self._udp: UdpTrackerServer | None = None
        if cfg.udp_port is not None:
            self._udp = UdpTrackerServer(
                cfg,
                self._app[REGISTRY_KEY],
                self._app[CLOCK_KEY],
                trimmer=self._app[TRIMMER_KEY],
            )
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def customised(self) -> bool:
        """Whether ``app`` has hooks only aiohttp can run (then it serves)."""
        app = self._app
        return bool(app.on_response_prepare) or bool(app.middlewares)

    async def __aenter__(self) -> TrackerServer:
        async with contextlib.AsyncExitStack() as stack:
            if self.customised:
                runner = web.AppRunner(
                    self._app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S
                )
                await runner.setup()
                stack.push_async_callback(runner.cleanup)
                site = web.TCPSite(runner, self._cfg.host, self._cfg.port)
                await site.start()
                self._runner = runner
                host, port = runner.addresses[0][:2]
            else:
                http = HttpTrackerServer(
                    self._app[SERVICE_KEY], self._cfg.host, self._cfg.port
                )
                await stack.enter_async_context(http)
                host, port = http.address
            if self._udp is not None:
                await stack.enter_async_context(self._udp)
            self._address = PeerAddr(str(host), int(port))
            self._stack = stack.pop_all()
        log.info("tracker listening on %s", self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack, self._stack = self._stack, None
        self._runner = None
        if stack is not None:
            await stack.aclose()
            log.info("tracker on %s stopped", self._address)

    @property
    def udp_address(self) -> PeerAddr:
        """The bound UDP address (BEP 15).

        Raises:
            TrackerError: if the tracker is not running or serves no UDP.
        """
        return self._udp_server().address

    @property
    def udp_url(self) -> str:
        """The UDP announce URL, e.g. ``udp://127.0.0.1:6969/announce``.

        Raises:
            TrackerError: if the tracker is not running or serves no UDP.
        """
        return self._udp_server().url

    def _udp_server(self) -> UdpTrackerServer:
        if self._udp is None:
            raise TrackerError("tracker serves no UDP (udp_port is not set)")
        return self._udp

    @property
    def app(self) -> web.Application:
        return self._app

    def udp_statistics(self) -> UdpTrackerStats | None:
        """Counters of the UDP endpoint, or None when it serves no UDP."""
        return self._udp.statistics() if self._udp is not None else None

    def statistics(self) -> RegistryStats:
        """A snapshot of the swarms (torrents, seeders, leechers, counters)."""
        app = self._app
        return app[REGISTRY_KEY].statistics(app[CLOCK_KEY]())


async def run_tracker(
    cfg: TrackerConfig,
    *,
    ready: Callable[[TrackerServer], None] | None = None,
) -> None:
    """Serve until cancelled; ``ready`` is called once the socket is bound."""
    async with TrackerServer(cfg) as server:
        if ready is not None:
            ready(server)
        await asyncio.Event().wait()
