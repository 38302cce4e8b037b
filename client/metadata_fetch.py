"""Fetching a magnet link's info dictionary from peers (BEP 9 over BEP 10).

A magnet link names only the infohash. :class:`MetadataFetcher` dials the
peers it is given (``x.pe``, trackers, DHT, PEX, incoming), performs the
extension handshake, and lets the :class:`~client.core.metadata.MetadataAssembler`
core decide which 16 KiB metadata piece to ask whom for. The result must
hash to the infohash; a peer whose pieces made a wrong whole is dropped.
Every peer address learnt on the way is kept, with its source, so the
torrent session that follows starts with them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import Callable
from typing import Any

from client.core import wire
from client.core.extensions import (
    UT_METADATA,
    UT_METADATA_ID,
    UT_PEX_ID,
    ExtensionState,
    ext_handshake_message,
)
from client.core.metadata import (
    MetadataAssembler,
    MetadataComplete,
    MetadataCorrupt,
    MetadataData,
    MetadataReject,
    encode_metadata_request,
    parse_metadata_message,
)
from client.core.mse import EncryptionPolicy
from client.core.pex import parse_pex
from client.errors import RemotePeerProtocolError
from client.peer import PeerConnection, dial, start_in
from dht import PeerAddr

__all__ = ["MetadataFetcher"]

log = logging.getLogger(__name__)

METADATA_MAX_PEERS = 20  # connections at once while fetching metadata
TICK_S = 0.5  # how often request timeouts are looked at
RETRY_S = 1.0  # a peer that refused or dropped us is dialled again after this


class _Stop(Exception):
    pass


class MetadataFetcher:
    """Gets the info dictionary for ``info_hash`` from the swarm."""

    def __init__(
        self,
        info_hash: bytes,
        *,
        peer_id: bytes,
        listen_port: int,
        reserved: bytes,
        rng: random.Random,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        connect_timeout_s: float = 10.0,
        private: bool = False,
        encryption: EncryptionPolicy = EncryptionPolicy.PREFER,
    ) -> None:
        self.info_hash = info_hash
        self.peer_id = peer_id
        self.listen_port = listen_port
        self._reserved = reserved
        self._assembler = MetadataAssembler(info_hash, rng=rng)
        self._on_event = on_event
        self._connect_timeout_s = connect_timeout_s
        self._loop = asyncio.get_running_loop()
        self._candidates: collections.OrderedDict[PeerAddr, str] = (
            collections.OrderedDict()
        )
        #: every address learnt, with where it came from (for the session)
        self.known: dict[PeerAddr, str] = {}
        self._dialled: set[PeerAddr] = set()
        self._last_try: dict[PeerAddr, float] = {}
        self._conns: dict[PeerConnection, ExtensionState] = {}
        self._wake = asyncio.Event()
        self._done: asyncio.Future[bytes] = self._loop.create_future()
        self._tg: asyncio.TaskGroup | None = None
        self._private = private
        self._encryption = encryption
        self.own_addrs: set[PeerAddr] = set()

    def _emit(self, name: str, **fields: Any) -> None:
        if self._on_event is not None:
            self._on_event(name, fields)

    def add_peers(self, addrs: list[PeerAddr], source: str) -> None:
        added = 0
        for addr in addrs:
            if addr in self.own_addrs or addr in self.known:
                continue
            self.known[addr] = source
            self._candidates[addr] = source
            added += 1
        if added:
            self._emit("peers_found", source=source, count=added)
            self._wake.set()

    async def run(self) -> bytes:
        """Return the verified info dictionary bytes."""
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                tg.create_task(self._connector())
                tg.create_task(self._ticker())
                info = await self._done
                raise _Stop
        except* _Stop:
            pass
        finally:
            self._tg = None
            for conn in list(self._conns):
                conn.close("metadata complete")
        self._emit("metadata_complete", info_hash=self.info_hash.hex(), size=len(info))
        return info

    # -- connections -----------------------------------------------------------
    async def _connector(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            assert self._tg is not None
            now = self._loop.time()
            for addr, source in list(self._candidates.items()):
                if len(self._dialled) >= METADATA_MAX_PEERS:
                    break
                if (
                    addr in self._dialled
                    or now - self._last_try.get(addr, -RETRY_S) < RETRY_S
                ):
                    continue
                del self._candidates[addr]
                self._dialled.add(addr)
                self._last_try[addr] = now
                self._tg.create_task(self._dial(addr, source))

    async def _dial(self, addr: PeerAddr, source: str) -> None:
        try:
            await dial(
                self,
                addr,
                source=source,
                policy=self._encryption,
                handshake=wire.encode_handshake(
                    self.info_hash, self.peer_id, self._reserved
                ),
                skey=self.info_hash,
                clock=self._loop.time,
                connect_timeout_s=self._connect_timeout_s,
                serve=self._serve,
            )
        except (OSError, TimeoutError, RemotePeerProtocolError) as exc:
            log.debug("metadata: %s failed: %r", addr, exc)
        finally:
            # A refusal now may be a peer still starting: try again later.
            self._dialled.discard(addr)
            if addr not in self.own_addrs:
                self._candidates.setdefault(addr, source)

    def accept(self, conn: PeerConnection, hs: wire.HandshakeReceived) -> bool:
        """An incoming connection for this infohash while we fetch."""
        if self._tg is None or hs.peer_id == self.peer_id:
            return False
        if start_in(self._tg, self._serve(conn)) is None:
            return False  # the fetch just ended: the engine closes it
        conn.handler = self
        conn.write(wire.encode_handshake(self.info_hash, self.peer_id, self._reserved))
        self._attach(conn)
        return True

    async def _serve(self, conn: PeerConnection) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if not await conn.wait_attached():
                    return
            await conn.wait_closed()
        finally:
            conn.abort(conn.close_reason or "done")
            self._conns.pop(conn, None)
            self._assembler.peer_gone(conn)
            self._wake.set()

    def _attach(self, conn: PeerConnection) -> None:
        self._conns[conn] = ExtensionState()
        conn.mark_attached()
        self._emit("peer_connected", addr=str(conn.addr), source=conn.source)
        hs = conn.handshake
        if hs is None or not hs.supports_extensions:
            conn.close("no extension protocol: cannot fetch metadata")
            return
        conn.send(
            ext_handshake_message(
                metadata_size=None,
                listen_port=self.listen_port or None,
                yourip=None,
                ut_pex=not self._private,
            )
        )

    # -- MessageHandler --------------------------------------------------------
    def on_handshake(self, conn: PeerConnection, hs: wire.HandshakeReceived) -> None:
        if hs.info_hash != self.info_hash:
            conn.close("handshake for another torrent")
        elif hs.peer_id == self.peer_id:
            if conn.addr is not None:
                self.own_addrs.add(conn.addr)
            conn.close("connected to ourselves")
        else:
            self._attach(conn)

    def on_message(self, conn: PeerConnection, msg: wire.PeerMessage) -> None:
        ext = self._conns.get(conn)
        if ext is None or not isinstance(msg, wire.Extended):
            return  # bitfield, have, ...: not needed to get metadata
        if msg.ext_id == 0:
            hs = ext.receive_handshake(msg.payload)
            if ext.supports(UT_METADATA) and hs.metadata_size:
                self._assembler.peer_ready(conn, hs.metadata_size)
                self._request(conn, ext)
        elif msg.ext_id == UT_METADATA_ID:
            self._on_metadata(conn, ext, msg.payload)
        elif msg.ext_id == UT_PEX_ID and not self._private:
            self.add_peers(list(parse_pex(msg.payload).added), "pex")

    def _request(self, conn: PeerConnection, ext: ExtensionState) -> None:
        their_id = ext.peer_id_for(UT_METADATA)
        if their_id is None:
            return
        for piece in self._assembler.next_requests(conn, self._loop.time()):
            conn.send(
                wire.Extended(ext_id=their_id, payload=encode_metadata_request(piece))
            )

    def _on_metadata(
        self, conn: PeerConnection, ext: ExtensionState, payload: bytes
    ) -> None:
        msg = parse_metadata_message(payload)
        now = self._loop.time()
        if isinstance(msg, MetadataReject):
            self._assembler.on_reject(conn, msg.piece)
        elif isinstance(msg, MetadataData):
            result = self._assembler.on_data(
                conn, msg.piece, msg.total_size, msg.data, now
            )
            if isinstance(result, MetadataComplete):
                if not self._done.done():
                    self._done.set_result(result.info_bytes)
                return
            if isinstance(result, MetadataCorrupt):
                for peer in result.peers:
                    if isinstance(peer, PeerConnection):
                        peer.close("sent metadata that does not match the infohash")
                self._emit("metadata_corrupt", peers=len(result.peers))
        self._request(conn, ext)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            for conn, ext in list(self._conns.items()):
                if ext.received:
                    self._request(conn, ext)
            if self._candidates:
                self._wake.set()

    def progress(self) -> tuple[int, int]:
        return self._assembler.progress
