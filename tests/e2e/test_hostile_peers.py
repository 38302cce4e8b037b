"""Hostile peers against a real Engine on 127.0.0.1 (issue 8).

Each test runs an honest seeder and an honest leecher (two Engines) and one
scripted raw-socket peer that misbehaves. It asserts two things: the hostile
connection is closed (or refused), and the honest leecher keeps being served
and finishes with the right bytes. The limits exercised (see SECURITY.md):

- wire.MAX_MESSAGE_BYTES: a length prefix over BLOCK_SIZE_CAP + 13 closes the
  connection before anything is buffered (a 4 GiB prefix included).
- wire.BLOCK_SIZE_CAP = 128 KiB: the largest block we serve; a request for
  more, or for bytes past the end of the piece, closes the connection.
- session.MAX_PEER_REQUESTS = 500 queued requests per peer.
- session.MAX_UNREQUESTED_BLOCKS = 64 blocks we never asked for.
- EngineConfig.handshake_timeout_s, and engine.MAX_PENDING_INCOMING = 64
  connections waiting for their handshake.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.core import wire
from client.core.extensions import UT_METADATA_ID
from client.core.magnet import magnet_from_metainfo
from client.core.metadata import (
    MetadataRequest,
    encode_metadata_data,
    parse_metadata_message,
)
from client.core.metainfo import Metainfo
from client.engine import MAX_PENDING_INCOMING, Engine
from client.session import MAX_PEER_REQUESTS, MAX_UNREQUESTED_BLOCKS, TorrentSession
from dht import PeerAddr
from tests.helpers.swarm import (
    engine,
    engine_config,
    fast_session,
    make_torrent,
    wait_for,
    write_random_file,
)

pytestmark = pytest.mark.e2e

PIECE_LENGTH = 262144  # two 128 KiB blocks at the cap per piece
FILE_BYTES = 1_200_000  # five pieces, the last one short (three spare bits)
SEED_RATE = 1_500_000  # bytes/s: the honest download lasts most of a second
HOSTILE_ID = b"-EV0001-hostilepeer!"


@dataclass
class Swarm:
    meta: Metainfo
    data: bytes
    seeder: Engine
    leecher: Engine
    out: Path


@asynccontextmanager
async def swarm(tmp_path: Path, **seed_engine_kw: object) -> AsyncIterator[Swarm]:
    src = tmp_path / "seed"
    path = src / "data.bin"
    data = write_random_file(path, FILE_BYTES, seed=8)
    meta = make_torrent(path, [], piece_length=PIECE_LENGTH)
    seed_engine_kw.setdefault("max_upload_rate", SEED_RATE)
    # The leecher speaks plaintext so scripted servers can read its handshake.
    async with engine(**seed_engine_kw) as seeder, engine(encryption="off") as leecher:
        session = seeder.add_torrent(meta, src, config=fast_session())
        await session.wait_started()
        yield Swarm(meta, data, seeder, leecher, tmp_path / "out")


async def start_honest(s: Swarm) -> TorrentSession:
    """The honest leecher, downloading from the seeder; returns once it has
    begun receiving data, so the attack happens mid-transfer."""
    session = s.leecher.add_torrent(
        s.meta, s.out, config=fast_session(), peers=[s.seeder.address]
    )
    await wait_for(lambda: session.statistics().downloaded > 0, timeout_s=15)
    return session


async def finish_honest(s: Swarm, session: TorrentSession) -> None:
    async with asyncio.timeout(30):
        await session.wait_complete()
    assert (s.out / "data.bin").read_bytes() == s.data


async def wait_closed_by_remote(
    reader: asyncio.StreamReader, timeout_s: float = 10
) -> None:
    """Read (and drop) until the other side closes the connection."""
    async with asyncio.timeout(timeout_s):
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            while await reader.read(65536):
                pass


@asynccontextmanager
async def hostile_connection(
    addr: PeerAddr, info_hash: bytes, *, peer_id: bytes = HOSTILE_ID, first: bytes = b""
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A raw TCP peer that sends a plaintext BEP 3 handshake (plus ``first``
    in the same write, so both may arrive in one segment)."""
    reader, writer = await asyncio.open_connection(addr.host, addr.port)
    try:
        writer.write(
            wire.encode_handshake(info_hash, peer_id, wire.make_reserved()) + first
        )
        await writer.drain()
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_until(
    reader: asyncio.StreamReader, core: wire.PeerWire, want: type[object]
) -> None:
    """Parse what the seeder sends until a message of type ``want``."""
    async with asyncio.timeout(10):
        while True:
            data = await reader.read(65536)
            assert data, "seeder closed the connection"
            if any(isinstance(e, want) for e in core.receive_data(data)):
                return


@asynccontextmanager
async def hostile_unchoked(
    s: Swarm,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, wire.PeerWire]]:
    """A hostile peer that behaves until the seeder unchokes it."""
    async with hostile_connection(
        s.seeder.address, s.meta.info_hash, first=wire.encode(wire.Interested())
    ) as (reader, writer):
        core = wire.PeerWire(num_pieces=s.meta.num_pieces)
        await read_until(reader, core, wire.Unchoke)
        yield reader, writer, core


def _expect_closed_while_honest_served(
    attack: Callable[[Swarm], Awaitable[None]], **seed_engine_kw: object
) -> Callable[[Path], Awaitable[None]]:
    async def run(tmp_path: Path) -> None:
        async with swarm(tmp_path, **seed_engine_kw) as s:
            honest = await start_honest(s)
            await attack(s)
            await finish_honest(s, honest)
            # The seeder still serves newcomers after the attack.
            assert s.seeder.sessions[s.meta.info_hash].peers

    return run


# -- framing ------------------------------------------------------------------------


@pytest.mark.parametrize("same_segment", [False, True], ids=["apart", "with_handshake"])
async def test_length_prefix_of_4_gib_closes_the_connection(
    tmp_path: Path, same_segment: bool
) -> None:
    async def attack(s: Swarm) -> None:
        prefix = b"\xff\xff\xff\xff" + b"\x07" + bytes(64)
        async with hostile_connection(
            s.seeder.address, s.meta.info_hash, first=prefix if same_segment else b""
        ) as (reader, writer):
            if not same_segment:
                writer.write(prefix)
            await wait_closed_by_remote(reader)

    await _expect_closed_while_honest_served(attack)(tmp_path)


def _bits(n: int) -> bytes:
    bits = bytearray((n + 7) // 8)
    for i in range(n):
        bits[i // 8] |= 0x80 >> (i % 8)
    return bytes(bits)


def _bad_bitfield(kind: str, n: int) -> bytes:
    if kind == "too_long":
        return wire.encode(wire.Bitfield(data=_bits(n) + b"\xff"))
    if kind == "too_short":
        return wire.encode(wire.Bitfield(data=b""))
    assert kind == "spare_bits"
    good = bytearray(_bits(n))
    good[-1] |= 0x01  # past the last piece
    return wire.encode(wire.Bitfield(data=bytes(good)))


@pytest.mark.parametrize("same_segment", [False, True], ids=["apart", "with_handshake"])
@pytest.mark.parametrize("kind", ["too_long", "too_short", "spare_bits"])
async def test_bad_bitfield_closes_the_connection(
    tmp_path: Path, kind: str, same_segment: bool
) -> None:
    async def attack(s: Swarm) -> None:
        assert s.meta.num_pieces % 8, "the sample needs spare bits"
        msg = _bad_bitfield(kind, s.meta.num_pieces)
        async with hostile_connection(
            s.seeder.address, s.meta.info_hash, first=msg if same_segment else b""
        ) as (reader, writer):
            if not same_segment:
                await read_until(reader, wire.PeerWire(), wire.Bitfield)
                writer.write(msg)
            await wait_closed_by_remote(reader)

    await _expect_closed_while_honest_served(attack)(tmp_path)


@pytest.mark.parametrize(
    "same_segment",
    [False, True],
    ids=["apart", "with_handshake"],
)
@pytest.mark.parametrize("index", [5, 0xFFFFFFFF])
async def test_have_out_of_range_closes_the_connection(
    tmp_path: Path, index: int, same_segment: bool
) -> None:
    async def attack(s: Swarm) -> None:
        assert index >= s.meta.num_pieces
        msg = wire.encode(wire.Have(index=index))
        async with hostile_connection(
            s.seeder.address, s.meta.info_hash, first=msg if same_segment else b""
        ) as (reader, writer):
            if not same_segment:
                await read_until(reader, wire.PeerWire(), wire.Bitfield)
                writer.write(msg)
            await wait_closed_by_remote(reader)

    await _expect_closed_while_honest_served(attack)(tmp_path)


# -- requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("begin", "length"),
    [
        (PIECE_LENGTH - 16384 + 1, 16384),  # past the end of a full piece
        (0, wire.BLOCK_SIZE_CAP + 1),  # over the block-size cap
        (0, 0x7FFFFFFF),
        (0xFFFFFFF0, 16384),  # begin + length overflows 32 bits
        (0, 0),  # empty block
    ],
    ids=["past_piece_end", "over_cap", "huge", "begin_wraps", "zero"],
)
async def test_bad_request_closes_the_connection(
    tmp_path: Path, begin: int, length: int
) -> None:
    async def attack(s: Swarm) -> None:
        async with hostile_unchoked(s) as (reader, writer, _):
            writer.write(wire.encode(wire.Request(index=0, begin=begin, length=length)))
            await wait_closed_by_remote(reader)

    await _expect_closed_while_honest_served(attack)(tmp_path)


async def test_request_past_the_short_last_piece_closes_the_connection(
    tmp_path: Path,
) -> None:
    async def attack(s: Swarm) -> None:
        last = s.meta.num_pieces - 1
        size = s.meta.piece_size(last)
        async with hostile_unchoked(s) as (reader, writer, _):
            writer.write(wire.encode(wire.Request(index=last, begin=size, length=1)))
            await wait_closed_by_remote(reader)

    await _expect_closed_while_honest_served(attack)(tmp_path)


async def test_request_of_exactly_the_block_size_cap_is_served(tmp_path: Path) -> None:
    # BLOCK_SIZE_CAP (128 KiB) is the documented limit: a request of exactly
    # that size is legal and answered with one 128 KiB block.
    async with swarm(tmp_path) as s, hostile_unchoked(s) as (reader, writer, core):
        cap = wire.BLOCK_SIZE_CAP
        writer.write(wire.encode(wire.Request(index=1, begin=cap, length=cap)))
        async with asyncio.timeout(10):
            while True:
                data = await reader.read(1 << 20)
                assert data, "seeder closed the connection"
                pieces = [
                    e for e in core.receive_data(data) if isinstance(e, wire.Piece)
                ]
                if pieces:
                    break
        block = bytes(pieces[0].block)
        assert (pieces[0].index, pieces[0].begin) == (1, cap)
        assert block == s.data[PIECE_LENGTH + cap : PIECE_LENGTH + 2 * cap]


async def test_request_flood_drops_the_peer(tmp_path: Path) -> None:
    async def attack(s: Swarm) -> None:
        async with hostile_unchoked(s) as (reader, writer, _):
            one = wire.encode(wire.Request(index=0, begin=0, length=16384))
            writer.write(one * (4 * MAX_PEER_REQUESTS))
            await wait_closed_by_remote(reader)

    # The requests arrive in one or two reads, far faster than the uploaders
    # (rate-limited to SEED_RATE) drain them.
    await _expect_closed_while_honest_served(attack)(tmp_path)


# -- handshakes ---------------------------------------------------------------------


async def test_slowloris_handshakes_time_out_and_do_not_lock_out_others(
    tmp_path: Path,
) -> None:
    async with swarm(tmp_path, handshake_timeout_s=1.0) as s:
        honest = await start_honest(s)
        loop = asyncio.get_running_loop()
        started = loop.time()
        readers = []
        for i in range(MAX_PENDING_INCOMING // 2):
            reader, writer = await asyncio.open_connection(*_hp(s.seeder.address))
            writer.write(b"\x13BitTorrent prot"[: i % 3 * 8])
            readers.append((reader, writer))
        try:
            async with asyncio.timeout(10):
                await asyncio.gather(*(wait_closed_by_remote(r) for r, _ in readers))
        finally:
            for _, writer in readers:
                writer.close()
        assert loop.time() - started < 5  # the 1 s handshake timeout, not longer
        # A newcomer gets in, and the honest leecher was served throughout.
        async with engine(encryption="off") as late:
            session = late.add_torrent(
                s.meta,
                tmp_path / "late",
                config=fast_session(),
                peers=[s.seeder.address],
            )
            await finish_honest(s, honest)
            async with asyncio.timeout(30):
                await session.wait_complete()


async def test_connections_past_the_pending_cap_are_closed_at_once(
    tmp_path: Path,
) -> None:
    async with swarm(tmp_path, handshake_timeout_s=1.0) as s:
        honest = await start_honest(s)
        readers = []
        for _ in range(MAX_PENDING_INCOMING + 8):
            reader, writer = await asyncio.open_connection(*_hp(s.seeder.address))
            readers.append((reader, writer))
        try:
            async with asyncio.timeout(4):  # 1 s handshake timeout + slack
                await asyncio.gather(*(wait_closed_by_remote(r) for r, _ in readers))
        finally:
            for _, writer in readers:
                writer.close()
        await finish_honest(s, honest)


def _hp(addr: PeerAddr) -> tuple[str, int]:
    return addr.host, addr.port


async def test_peer_claiming_our_peer_id_is_refused(tmp_path: Path) -> None:
    async def attack(s: Swarm) -> None:
        async with hostile_connection(
            s.seeder.address, s.meta.info_hash, peer_id=s.seeder.peer_id
        ) as (reader, _):
            await wait_closed_by_remote(reader)

    await _expect_closed_while_honest_served(attack)(tmp_path)


class HostileServer:
    """A listening peer whose connection handler is a script."""

    def __init__(
        self,
        script: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    ) -> None:
        self.script = script
        self.closed_by_remote = asyncio.Event()
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        try:
            await self.script(reader, writer)
            await wait_closed_by_remote(reader)
        except OSError:
            pass  # reset by the other side while the script was writing
        finally:
            self.closed_by_remote.set()
            writer.close()

    async def __aenter__(self) -> PeerAddr:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return PeerAddr("127.0.0.1", self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def _read_handshake(reader: asyncio.StreamReader) -> bytes:
    data = await reader.readexactly(wire.HANDSHAKE_BYTES)
    assert data[:20] == b"\x13BitTorrent protocol"
    return data


async def test_outgoing_peer_claiming_our_peer_id_is_dropped(tmp_path: Path) -> None:
    async with swarm(tmp_path) as s:
        leech_id = s.leecher.peer_id

        async def mirror(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await _read_handshake(reader)
            writer.write(
                wire.encode_handshake(s.meta.info_hash, leech_id, wire.make_reserved())
            )

        mirror_server = HostileServer(mirror)
        async with mirror_server as addr:
            session = s.leecher.add_torrent(
                s.meta,
                s.out,
                config=fast_session(pex=False),
                peers=[addr, s.seeder.address],
            )
            async with asyncio.timeout(10):
                await mirror_server.closed_by_remote.wait()
            await finish_honest(s, session)
            # It is remembered as ourselves and not dialled again.
            assert mirror_server.connections == 1


async def test_unrequested_blocks_drop_the_peer(tmp_path: Path) -> None:
    # The hostile seeder never unchokes us, so nothing it sends was asked for.
    async with swarm(tmp_path) as s:

        async def pusher(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await _read_handshake(reader)
            writer.write(
                wire.encode_handshake(
                    s.meta.info_hash, HOSTILE_ID, wire.make_reserved()
                )
            )
            writer.write(wire.encode(wire.Bitfield(data=_bits(s.meta.num_pieces))))
            block = b"\xee" * 16384
            for i in range(3 * MAX_UNREQUESTED_BLOCKS):
                index = i % s.meta.num_pieces
                # Unaligned offsets: no request of ours can match them.
                msg = wire.Piece(index=index, begin=1 + i % 16 * 16384, block=block)
                writer.write(wire.encode(msg))
                await writer.drain()

        hostile = HostileServer(pusher)
        async with hostile as addr:
            session = s.leecher.add_torrent(
                s.meta,
                s.out,
                config=fast_session(pex=False),
                peers=[addr, s.seeder.address],
            )
            async with asyncio.timeout(15):
                await hostile.closed_by_remote.wait()
            await finish_honest(s, session)
            assert session.statistics().hash_failures == 0


async def test_metadata_peer_with_a_wrong_info_dict_is_dropped(tmp_path: Path) -> None:
    async with swarm(tmp_path) as s:
        info = bytearray(s.meta.info_bytes)
        info[-3] ^= 0x01  # inside the last piece hash: same size, wrong dict
        wrong = bytes(info)
        ext_id = 3  # our ut_metadata id, in the handshake we send

        async def liar(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            theirs = await _read_handshake(reader)
            writer.write(
                wire.encode_handshake(
                    s.meta.info_hash, HOSTILE_ID, wire.make_reserved()
                )
            )
            ext_hs = b"d1:md11:ut_metadatai%dee13:metadata_sizei%dee" % (
                ext_id,
                len(wrong),
            )
            writer.write(wire.encode(wire.Extended(ext_id=0, payload=ext_hs)))
            core = wire.PeerWire(num_pieces=None)
            core.receive_data(theirs)  # past the handshake
            while data := await reader.read(65536):
                for ev in core.receive_data(data):
                    if isinstance(ev, wire.Extended) and ev.ext_id == ext_id:
                        req = parse_metadata_message(ev.payload)
                        assert isinstance(req, MetadataRequest)
                        start = req.piece * 16384
                        payload = encode_metadata_data(
                            req.piece, len(wrong), wrong[start : start + 16384]
                        )
                        writer.write(
                            wire.encode(
                                wire.Extended(ext_id=UT_METADATA_ID, payload=payload)
                            )
                        )

        hostile = HostileServer(liar)
        async with hostile as addr, Engine(engine_config(encryption="off")) as fetcher:
            magnet = magnet_from_metainfo(s.meta)
            magnet = type(magnet)(
                info_hash=magnet.info_hash,
                display_name=magnet.display_name,
                trackers=(),
                peers=(addr,),
                exact_length=None,
            )
            async with asyncio.timeout(30), asyncio.TaskGroup() as tg:
                task = tg.create_task(fetcher.open_magnet(magnet, tmp_path / "m"))
                # Only the liar at first: it answers, and is dropped for it.
                await hostile.closed_by_remote.wait()
                assert not task.done()
                fetcher.fetchers[magnet.info_hash].add_peers(
                    [s.seeder.address], "manual"
                )
            session = task.result()
            assert session.meta.info_bytes == s.meta.info_bytes
            async with asyncio.timeout(30):
                await session.wait_complete()
        assert (tmp_path / "m" / "data.bin").read_bytes() == s.data


@pytest.mark.parametrize("index", [5, 0xFFFFFFFF])
async def test_outgoing_peer_sending_have_out_of_range_with_its_handshake(
    tmp_path: Path, index: int
) -> None:
    async with swarm(tmp_path) as s:

        async def liar(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await _read_handshake(reader)
            writer.write(
                wire.encode_handshake(
                    s.meta.info_hash, HOSTILE_ID, wire.make_reserved()
                )
                + wire.encode(wire.Have(index=index))
            )

        hostile = HostileServer(liar)
        async with hostile as addr:
            session = s.leecher.add_torrent(
                s.meta,
                s.out,
                config=fast_session(pex=False),
                peers=[addr, s.seeder.address],
            )
            async with asyncio.timeout(10):
                await hostile.closed_by_remote.wait()
            await finish_honest(s, session)


async def test_aligned_unrequested_blocks_drop_the_peer(
    tmp_path: Path,
) -> None:
    # Garbage at block-aligned offsets, some of them blocks the leecher is
    # asking the honest seeder for: none of it lands (the picker takes a
    # block only from a peer it asked), the hostile peer is dropped, and the
    # download completes with no hash failure.
    async with swarm(tmp_path) as s:

        async def pusher(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await _read_handshake(reader)
            writer.write(
                wire.encode_handshake(
                    s.meta.info_hash, HOSTILE_ID, wire.make_reserved()
                )
            )
            writer.write(wire.encode(wire.Bitfield(data=_bits(s.meta.num_pieces))))
            block = b"\xee" * 16384
            for _ in range(MAX_UNREQUESTED_BLOCKS):
                for index in range(s.meta.num_pieces):
                    for begin in range(0, s.meta.piece_size(index) - 16384, 16384):
                        msg = wire.Piece(index=index, begin=begin, block=block)
                        writer.write(wire.encode(msg))
                await writer.drain()
                await asyncio.sleep(0.01)

        hostile = HostileServer(pusher)
        async with hostile as addr:
            session = s.leecher.add_torrent(
                s.meta,
                s.out,
                config=fast_session(pex=False),
                peers=[addr, s.seeder.address],
            )
            async with asyncio.timeout(15):
                await hostile.closed_by_remote.wait()
            await finish_honest(s, session)
            stats = session.statistics()
            assert stats.hash_failures == 0
            assert stats.bans == 0
