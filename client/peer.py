"""One peer connection: an ``asyncio.BufferedProtocol`` around the wire core.

The protocol receives into the wire core's buffer (or, for a partly arrived
block, straight into the piece buffer the session's block sink names) and
hands every parsed message to its handler synchronously: no task and no
queue per message. Sending is ``transport.write`` of encoded messages; flow
control comes from the transport's ``pause_writing``/``resume_writing``.

A bug in a handler (anything but the remote errors a peer can cause) is kept
and re-raised by :meth:`PeerConnection.wait_closed`, so it propagates in the
session's task group instead of vanishing into the loop's exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Protocol

from client.core import wire
from client.errors import RemotePeerProtocolError
from dht import PeerAddr

__all__ = ["MessageHandler", "PeerConnection"]

log = logging.getLogger(__name__)

# Kernel socket buffers: a loopback transfer at hundreds of MB/s needs more
# than the default ~200 KiB to keep the pipe full between event loop turns.
SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


class MessageHandler(Protocol):
    """What a connection reports to (the session, or the listener before a
    session is known)."""

    def on_handshake(
        self, conn: PeerConnection, hs: wire.HandshakeReceived
    ) -> None: ...

    def on_message(self, conn: PeerConnection, msg: wire.PeerMessage) -> None: ...


class PeerConnection(asyncio.BufferedProtocol):
    """Transport glue for one peer; the session keeps the peer's state here
    too (attributes below), since it lives exactly as long as the socket."""

    def __init__(
        self,
        handler: MessageHandler,
        *,
        outgoing: bool,
        clock: Callable[[], float],
        source: str = "incoming",
    ) -> None:
        self.handler = handler
        self.outgoing = outgoing
        self.source = source
        self._clock = clock
        self.wire = wire.PeerWire()
        self.transport: asyncio.Transport | None = None
        self.addr: PeerAddr | None = None
        self.peer_id = b""
        self.handshake: wire.HandshakeReceived | None = None
        loop = asyncio.get_running_loop()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._attached: asyncio.Future[None] = loop.create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self._bug: BaseException | None = None
        self.close_reason = ""
        now = clock()
        self.last_received = now
        self.last_sent = now
        self.connected_at = now
        self.bytes_sent = 0

    # -- asyncio.BufferedProtocol ----------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER_BYTES)
        transport.set_write_buffer_limits(high=1024 * 1024, low=256 * 1024)
        peer = transport.get_extra_info("peername")
        if peer is not None and self.addr is None:
            self.addr = PeerAddr(str(peer[0]), int(peer[1]))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.wire.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        self.last_received = self._clock()
        try:
            events = self.wire.buffer_updated(nbytes)
            for event in events:
                if self.transport is None or self.transport.is_closing():
                    break
                if isinstance(event, wire.HandshakeReceived):
                    self.handshake = event
                    self.peer_id = event.peer_id
                    self.handler.on_handshake(self, event)
                else:
                    self.handler.on_message(self, event)
        except RemotePeerProtocolError as exc:
            self.close(str(exc))
        except Exception as exc:  # boundary: re-raised from wait_closed()
            self._bug = exc
            self.close("internal error")

    def eof_received(self) -> bool:
        self.close_reason = self.close_reason or "peer closed the connection"
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        log.debug("%s closed: %s", self, self.close_reason or exc, exc_info=self._bug)
        self.transport = None
        self._writable.set()
        if exc is not None and not self.close_reason:
            self.close_reason = str(exc) or type(exc).__name__
        if not self._closed.done():
            if self._bug is not None:
                self._closed.set_exception(self._bug)
            else:
                self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- used by the session ---------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def send(self, msg: wire.PeerMessage) -> None:
        self.write(wire.encode(msg))

    def write(self, data: bytes | memoryview) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(data)
        self.bytes_sent += len(data)
        self.last_sent = self._clock()

    async def wait_writable(self) -> None:
        await self._writable.wait()

    def close(self, reason: str = "") -> None:
        if reason and not self.close_reason:
            self.close_reason = reason
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self, reason: str) -> None:
        self.close_reason = self.close_reason or reason
        if self.transport is not None:
            self.transport.abort()

    def mark_attached(self) -> None:
        """The handshake was accepted and a session owns this connection."""
        if not self._attached.done():
            self._attached.set_result(None)

    async def wait_attached(self) -> bool:
        """Wait for :meth:`mark_attached` or the socket closing; True if
        attached."""
        await asyncio.wait(
            [self._attached, self._closed], return_when=asyncio.FIRST_COMPLETED
        )
        return self._attached.done()

    async def wait_closed(self) -> None:
        """Return once the socket is gone; re-raise a handler bug."""
        await asyncio.shield(self._closed)

    def __repr__(self) -> str:
        return f"<peer {self.addr} {self.peer_id[:8]!r}>"
