"""One peer connection: an ``asyncio.BufferedProtocol`` around the wire core.

A connection may first run the MSE/PE handshake (:mod:`client.core.mse`):
outgoing ones when the encryption policy offers it, incoming ones when their
first bytes are not a plain BEP 3 handshake. Until MSE is done the protocol
reads into a small scratch buffer and feeds the MSE core; afterwards it
reads straight into the wire core's buffer and, with RC4, decrypts those
bytes in place before parsing (and encrypts everything it writes).

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
import functools
import logging
import secrets
import socket
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol

from client.core import mse, wire
from client.errors import RemotePeerProtocolError
from dht import PeerAddr

__all__ = ["MessageHandler", "PeerConnection", "dial", "start_in"]

log = logging.getLogger(__name__)

# Bytes read at a time during the MSE handshake (it is a few hundred bytes).
MSE_SCRATCH_BYTES = 4096
# Longest random padding we send in the MSE handshake (the spec's maximum).
MSE_MAX_PAD_BYTES = 512

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
        encryption: mse.EncryptionPolicy = mse.EncryptionPolicy.OFF,
        skeys: Callable[[], Iterable[bytes]] | None = None,
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
        #: called after each batch of messages (one read) was handed to the
        #: handler, so it can account per batch rather than per block
        self.after_dispatch: Callable[[], None] | None = None
        loop = asyncio.get_running_loop()
        self._closed: asyncio.Future[None] = loop.create_future()
        self._attached: asyncio.Future[None] = loop.create_future()
        self._writable = asyncio.Event()
        self._writable.set()
        self._bug: BaseException | None = None
        self.close_reason = ""
        self._refused = False
        now = clock()
        self.last_received = now
        self.last_sent = now
        self.connected_at = now
        self.bytes_sent = 0
        self.encryption = encryption
        self._skeys = skeys
        # MSE: None when not (or no longer) negotiating.
        self._mse: mse.MseInitiator | mse.MseResponder | None = None
        self._cipher: mse.MseInitiator | mse.MseResponder | None = None
        self._scratch: bytearray | None = None
        self._detecting = not outgoing and encryption is not mse.EncryptionPolicy.OFF
        self._prefix = b""
        self._last_view: memoryview | None = None
        #: the infohash MSE named (incoming), checked against the handshake
        self.mse_skey: bytes | None = None
        #: an outgoing MSE attempt failed (the caller may retry in plaintext)
        self.mse_failed = False
        #: "rc4", "plaintext" (after MSE) or "" (no MSE)
        self.crypto = ""
        if self._detecting:
            self._scratch = bytearray(MSE_SCRATCH_BYTES)

    # -- asyncio.BufferedProtocol ----------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self._refused:
            transport.abort()  # refused before the socket was handed to us
            return
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
        if self._scratch is not None:
            return memoryview(self._scratch)
        view = self._last_view = self.wire.get_buffer()
        return view

    def buffer_updated(self, nbytes: int) -> None:
        self.last_received = self._clock()
        try:
            if self._scratch is not None:
                data = bytes(self._scratch[:nbytes])
                if self._detecting:
                    self._detect(data)
                else:
                    self._negotiate(data)
                return
            if self._cipher is not None:
                assert self._last_view is not None
                self._cipher.decrypt_into(self._last_view[:nbytes])
            self._dispatch(self.wire.buffer_updated(nbytes))
        except RemotePeerProtocolError as exc:
            if self._mse is not None and self.outgoing:
                self.mse_failed = True
            log.info("%s: %s", self, exc)
            self.close(str(exc))
        except Exception as exc:  # boundary: re-raised from wait_closed()
            self._bug = exc
            self.close("internal error")

    def _dispatch(self, events: list[wire.WireEvent]) -> None:
        try:
            self._dispatch_events(events)
        finally:
            if self.after_dispatch is not None:
                self.after_dispatch()

    def _dispatch_events(self, events: list[wire.WireEvent]) -> None:
        unchecked = False
        for event in events:
            if self.transport is None or self.transport.is_closing():
                break
            if isinstance(event, wire.HandshakeReceived):
                self.handshake = event
                self.peer_id = event.peer_id
                self.handler.on_handshake(self, event)
                # Messages read together with the handshake were parsed
                # before the torrent (and its piece count) was known.
                unchecked = True
                continue
            if unchecked and self.wire.num_pieces is not None:
                wire.check_message(event, self.wire.num_pieces)
            self.handler.on_message(self, event)

    # -- MSE/PE ------------------------------------------------------------------
    def start(self, handshake: bytes, skey: bytes) -> None:
        """Open an outgoing connection: our BEP 3 handshake, inside MSE when
        the policy offers encryption."""
        provide = self.encryption.crypto_provide
        if not provide:
            self.write(handshake)
            return
        self._mse = mse.MseInitiator(
            skey=skey,
            initial_payload=handshake,
            crypto_provide=provide,
            private_key=mse.private_key_from_secret(secrets.token_bytes(20)),
            pad=_random_pad(),
        )
        self._scratch = bytearray(MSE_SCRATCH_BYTES)
        self._raw_write(self._mse.initial_bytes())

    def _detect(self, data: bytes) -> None:
        """Incoming: tell a plain BEP 3 handshake from an MSE one."""
        self._prefix += data
        kind = mse.detect_handshake(self._prefix)
        if kind is mse.HandshakeKind.UNDECIDED:
            return
        self._detecting = False
        prefix, self._prefix = self._prefix, b""
        if kind is mse.HandshakeKind.PLAINTEXT:
            if not self.encryption.accepts_plaintext_handshake:
                log.info("%s: refusing a plaintext peer: --encryption=require", self)
                self.close("plaintext peer refused: encryption is required")
                return
            self._scratch = None
            self._dispatch(self.wire.receive_data(prefix))
            return
        self._mse = mse.MseResponder(
            skeys=self._skeys() if self._skeys is not None else (),
            crypto_select=self.encryption.select,
            private_key=mse.private_key_from_secret(secrets.token_bytes(20)),
            pad=_random_pad(),
        )
        self._negotiate(prefix)

    def _negotiate(self, data: bytes) -> None:
        assert self._mse is not None
        events = self._mse.receive_data(data)
        out = self._mse.data_to_send()
        if out:
            self._raw_write(out)
        for event in events:
            endpoint = self._mse
            self._mse = None
            self._scratch = None
            self.mse_skey = event.skey
            if event.selected == mse.CRYPTO_RC4:
                self._cipher = endpoint
                self.crypto = "rc4"
            else:
                self.crypto = "plaintext"
            rest = event.initial_payload + event.remainder
            if rest:
                self._dispatch(self.wire.receive_data(rest))

    def eof_received(self) -> bool:
        self.close_reason = self.close_reason or "peer closed the connection"
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        log.debug("%s closed: %s", self, self.close_reason or exc, exc_info=self._bug)
        if self._mse is not None and self.outgoing:
            self.mse_failed = True  # closed mid-MSE: a plain-only peer, maybe
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
        if self._cipher is not None:
            data = self._cipher.encrypt(data)
        self._raw_write(data)

    def _raw_write(self, data: bytes | memoryview) -> None:
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
        else:
            self._refused = True  # connection_made will abort at once

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


def start_in(
    tg: asyncio.TaskGroup, coro: Coroutine[Any, Any, None]
) -> asyncio.Task[None] | None:
    """Start ``coro`` (which owns a connection) in ``tg``, or close it and
    return None when the group is shutting down: a group whose child failed
    refuses new tasks until its owner notices, and the connection must then
    be refused (and closed by the caller), not left to a coroutine that will
    never run."""
    try:
        return tg.create_task(coro)
    except RuntimeError:
        coro.close()
        return None


def _random_pad() -> bytes:
    return secrets.token_bytes(secrets.randbelow(MSE_MAX_PAD_BYTES + 1))


async def dial(
    handler: MessageHandler,
    addr: PeerAddr,
    *,
    source: str,
    policy: mse.EncryptionPolicy,
    handshake: bytes,
    skey: bytes,
    clock: Callable[[], float],
    connect_timeout_s: float,
    serve: Callable[[PeerConnection], Awaitable[None]],
    half_open: asyncio.Semaphore | None = None,
) -> None:
    """Connect to ``addr``, send our BEP 3 handshake (inside MSE when the
    policy offers it) and ``serve`` the connection until it ends. Under
    ``prefer``, a peer that broke off the MSE handshake is dialled once more
    in plaintext: it may simply not speak MSE.

    Raises:
        OSError, TimeoutError: the connection could not be opened.
    """
    attempts = [policy]
    if policy is mse.EncryptionPolicy.PREFER:
        attempts.append(mse.EncryptionPolicy.OFF)
    for attempt in attempts:
        async with contextlib.AsyncExitStack() as stack:
            if half_open is not None:
                await stack.enter_async_context(half_open)
            async with asyncio.timeout(connect_timeout_s):
                _, conn = await asyncio.get_running_loop().create_connection(
                    functools.partial(
                        PeerConnection,
                        handler,
                        outgoing=True,
                        clock=clock,
                        source=source,
                        encryption=attempt,
                    ),
                    addr.host,
                    addr.port,
                )
        conn.addr = addr
        conn.start(handshake, skey)
        await serve(conn)
        if not conn.mse_failed:
            return
