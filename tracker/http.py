"""A lean HTTP/1.1 server for the tracker's four GET routes (issue 7).

Why not aiohttp here: a tracker request is one short GET answered from
memory, and aiohttp's per-request machinery (request and response objects,
routing, middleware, header multidicts, a task) cost more than the announce
itself; a bare aiohttp handler tops out near 10k requests/s on the
benchmark machine, a plain :class:`asyncio.Protocol` near 80k. So
:class:`TrackerServer` serves :class:`TrackerService` through this module,
and the aiohttp application stays for tests and embedders.

What it speaks: HTTP/1.0 and 1.1 requests without a body, keep-alive (1.1
by default, 1.0 on ``Connection: keep-alive``), pipelining (answers in
order), ``GET`` and ``HEAD`` on ``/announce``, ``/scrape``, ``/stats.json``
and ``/``. Anything else gets a status code: 404 for another path, 405 for
another method, 400 for a malformed request or one with a body, 431 for a
head over :data:`MAX_HEAD_BYTES`, 505 for another HTTP version; after a
4xx/5xx other than 404 the connection is closed. The asker's IP is packed
once per connection. A connection that completes no request for
:data:`IDLE_TIMEOUT_S` is closed, and reading stops while the socket's
write buffer is full, so a client that does not read cannot grow memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import time
from typing import Any

from tracker.core.http_request import parse_request_head
from tracker.errors import HttpRequestError
from tracker.service import TrackerService, peer_ip

__all__ = ["IDLE_TIMEOUT_S", "MAX_HEAD_BYTES", "HttpTrackerServer"]

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024  # request line and headers
IDLE_TIMEOUT_S = 75.0  # seconds a connection may go without a complete request
SWEEP_S = 5.0  # how often idle connections are looked for

_END = b"\r\n\r\n"
_BENCODE = b"text/plain"
_REASONS = {
    200: b"OK",
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    505: b"HTTP Version Not Supported",
}


class _Date:
    """The ``Date`` header value (RFC 9110), formatted once a second."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def value(self) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._value = email.utils.formatdate(second, usegmt=True).encode("ascii")
        return self._value


class _Connection(asyncio.Protocol):
    """One client connection: parses heads, answers through the service."""

    def __init__(self, server: HttpTrackerServer) -> None:
        self._server = server
        self._service = server.service
        self._transport: asyncio.Transport | None = None
        self._buf = b""
        self._ip: bytes | None = None
        self._refused = ""
        self._paused = False  # the write buffer is full: not reading
        self._closing = False
        self.active = 0.0  # loop time of the last completed request

    # -- asyncio callbacks -------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._ip, self._refused = peer_ip(str(peer[0]) if peer else None)
        self.active = self._server.loop.time()
        if self._server.stopping:  # accepted just as the server stopped
            transport.close()
            return
        self._server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._transport = None
        self._closing = True

    def pause_writing(self) -> None:
        self._paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._paused = False
        if self._transport is not None and not self._closing:
            self._transport.resume_reading()
            if self._buf:
                self.data_received(b"")

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        pos = 0
        while not self._paused and not self._closing:
            end = buf.find(_END, pos)
            if end < 0:
                break
            if end - pos > MAX_HEAD_BYTES:
                self._fail(431)
                return
            head = buf[pos:end]
            pos = end + 4
            try:
                self._request(head)
            except Exception:  # a bug must cost one connection, not the server
                log.exception("tracker http: request failed")
                self._fail(500)
                return
        rest = buf[pos:] if pos else buf
        if len(rest) > MAX_HEAD_BYTES and not self._closing:
            self._fail(431)
            return
        self._buf = rest

    # -- requests -------------------------------------------------------------------
    def _request(self, head: bytes) -> None:
        try:
            req = parse_request_head(head)
        except HttpRequestError as exc:
            self._fail(exc.status)
            return
        path, keep_alive, method = req.path, req.keep_alive, req.method
        service = self._service
        if path == b"/announce":
            self._send(
                200,
                _BENCODE,
                service.announce(req.query, self._ip, self._refused),
                keep_alive,
                method,
                b"Cache-Control: no-cache\r\n",
            )
        elif path == b"/scrape":
            self._send(
                200,
                _BENCODE,
                service.scrape(req.query),
                keep_alive,
                method,
                b"Cache-Control: no-cache\r\n",
            )
        elif path == b"/stats.json":
            self._send(
                200, b"application/json", service.stats_json(), keep_alive, method
            )
        elif path == b"/":
            page = service.stats_page().encode("utf-8")
            self._send(200, b"text/html; charset=utf-8", page, keep_alive, method)
        else:
            self._send(
                404, b"text/plain; charset=utf-8", b"404: Not Found", keep_alive, method
            )

    def _send(
        self,
        status: int,
        content_type: bytes,
        body: bytes,
        keep_alive: bool,
        method: bytes = b"GET",
        extra: bytes = b"",
    ) -> None:
        transport = self._transport
        if transport is None:
            return
        head = (
            b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
            b"Date: %s\r\n%s%s\r\n"
            % (
                status,
                _REASONS[status],
                content_type,
                len(body),
                self._server.date.value(),
                extra,
                b"" if keep_alive else b"Connection: close\r\n",
            )
        )
        transport.write(head + body if method != b"HEAD" else head)
        self.active = self._server.loop.time()
        if not keep_alive:
            self._closing = True
            transport.close()

    def _fail(self, status: int) -> None:
        message = b"%d: %s" % (status, _REASONS[status])
        self._send(status, b"text/plain; charset=utf-8", message, False)
        self._closing = True
        self._buf = b""

    def close_if_idle(self, deadline: float) -> None:
        if self.active < deadline and self._transport is not None:
            log.debug("tracker http: closing an idle connection")
            self._transport.close()


class HttpTrackerServer:
    """Serves a :class:`TrackerService` over HTTP on ``host:port``; use as
    ``async with``. ``address`` is the bound (host, port)."""

    def __init__(self, service: TrackerService, host: str, port: int) -> None:
        self.service = service
        self._host = host
        self._port = port
        self.connections: set[_Connection] = set()
        self.date = _Date()
        self.loop: asyncio.AbstractEventLoop  # set on entering
        self._server: asyncio.Server | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self.address: tuple[str, int] = (host, port)
        self.stopping = False

    async def __aenter__(self) -> HttpTrackerServer:
        self.loop = asyncio.get_running_loop()
        self._server = await self.loop.create_server(
            lambda: _Connection(self), self._host, self._port
        )
        sockname: Any = self._server.sockets[0].getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping = True
        # Stop accepting now, close the server one loop turn later: asyncio
        # sets up each accepted socket in a task of its own, and a
        # Server.close() before that task's first step leaves a transport
        # that never reaches connection_made, garbage-collected open
        # (CPython gh-109564; client/engine.py has the same guard).
        for sock in server.sockets:
            with contextlib.suppress(NotImplementedError):  # not a selector loop
                self.loop.remove_reader(sock.fileno())
        self.loop.call_soon(server.close)
        for connection in list(self.connections):
            connection.close_if_idle(float("inf"))
        await server.wait_closed()

    def _sweep(self) -> None:
        deadline = self.loop.time() - IDLE_TIMEOUT_S
        for connection in list(self.connections):
            connection.close_if_idle(deadline)
        self._sweeper = self.loop.call_later(SWEEP_S, self._sweep)
