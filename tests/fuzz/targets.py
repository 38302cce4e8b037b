"""Fuzz targets: one per parser that takes bytes from outside (issue 8).

Each target is a function ``run(data: bytes) -> None`` that feeds ``data`` to
one parser (or one stateful core) the way a driver would. A target may raise
only the exception types listed in its :class:`Target` entry, the project's
own error types for bad remote input; anything else escaping is a bug. Some
targets also check an invariant (a parsed value round-trips), raising
:class:`InvariantBroken`, which is a bug too.

Stateful targets (the wire framer, MSE, the DHT cores, the UDP tracker
transaction) read a small control header from the input so that the fuzzer
can reach the states behind cryptography and random transaction ids: the
harness plays the honest counterpart and splices the fuzzer's bytes in after
the point it cannot guess (see each target's docstring).

Project modules are imported inside the functions, not at the top: the
atheris driver imports this module first and the project under
``atheris.instrument_imports()`` afterwards, so coverage is collected from
the project's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TARGETS", "InvariantBroken", "Target"]


class InvariantBroken(AssertionError):
    """A target's own check failed: a bug, like an unexpected exception."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    name: str
    run: Callable[[bytes], None]
    #: exception types the parser may raise on bad input (resolved lazily)
    allowed: Callable[[], tuple[type[BaseException], ...]]
    description: str
    max_len: int = 4096
    seeds: Callable[[], list[bytes]] = field(default=lambda: [])


def _check(ok: bool, what: str) -> None:
    if not ok:
        raise InvariantBroken(what)


def _chunks(data: bytes, sizes_seed: int) -> list[bytes]:
    """Split ``data`` into pieces whose sizes follow ``sizes_seed`` (0: whole,
    1: byte by byte, otherwise seeded sizes of 1..64)."""
    if sizes_seed == 0 or not data:
        return [data]
    if sizes_seed == 1 and len(data) <= 512:  # longer: too slow to be useful
        return [data[i : i + 1] for i in range(len(data))]
    rng = random.Random(sizes_seed)
    out, pos = [], 0
    while pos < len(data):
        n = rng.randint(1, 64)
        out.append(data[pos : pos + n])
        pos += n
    return out


def _records(data: bytes) -> list[tuple[int, bytes]]:
    """``[ctrl:1][len:2 big-endian][payload]...``: datagrams with a control
    byte each (a truncated tail is one last record)."""
    out: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data) and len(out) < 32:
        ctrl = data[pos]
        n = int.from_bytes(data[pos + 1 : pos + 3], "big")
        out.append((ctrl, data[pos + 3 : pos + 3 + n]))
        pos += 3 + n
    return out


def _record(ctrl: int, payload: bytes) -> bytes:
    return bytes([ctrl]) + len(payload).to_bytes(2, "big") + payload


# -- bencode and metainfo ------------------------------------------------------


def _client_errors() -> tuple[type[BaseException], ...]:
    from client.errors import ClientError

    return (ClientError,)


def _metainfo_errors() -> tuple[type[BaseException], ...]:
    from client.errors import MetainfoError

    return (MetainfoError,)


def run_bencode(data: bytes) -> None:
    """The span scanner and the strict decode agree: a value the scanner
    accepts decodes, and ``info_span`` points at a bencoded value."""
    import bencodepy

    from client.core.bencode_span import check_bencode, decode, info_span
    from client.errors import MetainfoError

    try:
        check_bencode(data)
    except MetainfoError:
        accepted = False
    else:
        accepted = True
    try:
        decode(data)
    except MetainfoError:
        _check(not accepted, "the scanner accepted what the decoder refused")
    else:
        _check(accepted, "the decoder accepted what the scanner refused")
    start, end = info_span(data)
    _check(0 < start < end <= len(data), "info span out of bounds")
    bencodepy.decode(data[start:end])  # the span is itself one whole value


def _torrent_seeds() -> list[bytes]:
    import bencodepy

    info_single = {
        b"name": b"greeting.txt",
        b"length": 5,
        b"piece length": 16384,
        b"pieces": b"\x01" * 20,
    }
    info_multi = {
        b"name": b"album",
        b"piece length": 32768,
        b"pieces": b"\x02" * 40,
        b"files": [
            {b"length": 40000, b"path": [b"disc 2", b"a.bin"]},
            {b"length": 10, b"path": [b"b.txt"], b"attr": b"p"},
        ],
    }
    return [
        bencodepy.encode({b"announce": b"http://127.0.0.1:6969/announce", b"info": i})
        for i in (info_single, info_multi)
    ] + [
        bencodepy.encode(
            {
                b"announce-list": [[b"http://127.0.0.1/a"], [b"udp://127.0.0.1:1"]],
                b"comment": b"c",
                b"creation date": 1,
                b"info": info_single,
            }
        ),
        b"d4:infod4:name1:a6:lengthi1e12:piece lengthi16384e6:pieces20:"
        + b"\x00" * 20
        + b"ee",
        b"li1ei-2e0:3:abcd1:ale4:infoi0eee",
    ]


def run_metainfo(data: bytes) -> None:
    """``parse_metainfo``; what parses has an infohash over a real span and
    piece sizes that add up to the total length."""
    from client.core.metainfo import parse_metainfo

    meta = parse_metainfo(data)
    _check(len(meta.info_hash) == 20, "infohash is not 20 bytes")
    total = sum(meta.piece_size(i) for i in range(meta.num_pieces))
    _check(total == meta.total_length, "piece sizes disagree with the total")
    for f in meta.files:
        for part in f.path:
            _check(part not in ("", ".", "..") and "/" not in part, "unsafe path")


def run_info(data: bytes) -> None:
    """``parse_info``: an info dictionary as fetched with ut_metadata."""
    from client.core.metainfo import parse_info

    meta = parse_info(data)
    _check(meta.num_pieces >= 1, "no pieces")


def _info_seeds() -> list[bytes]:
    import bencodepy

    out = []
    for seed in _torrent_seeds()[:2]:
        top = bencodepy.decode(seed)
        out.append(bencodepy.encode(top[b"info"]))
    return out


# -- magnet URIs ---------------------------------------------------------------


def _magnet_errors() -> tuple[type[BaseException], ...]:
    from client.errors import MagnetError

    return (MagnetError,)


def run_magnet(data: bytes) -> None:
    """``parse_magnet`` on the input as text (surrogate escapes included, as
    command-line arguments arrive); what parses must round-trip through
    ``to_uri``."""
    from client.core.magnet import parse_magnet

    uri = data.decode("utf-8", "surrogateescape")
    magnet = parse_magnet(uri)
    again = parse_magnet(magnet.to_uri())
    _check(again.info_hash == magnet.info_hash, "infohash changed in a round trip")
    _check(again.peers == magnet.peers, "peers changed in a round trip")
    _check(again.trackers == magnet.trackers, "trackers changed in a round trip")


def _magnet_seeds() -> list[bytes]:
    ih = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
    return [
        f"magnet:?xt=urn:btih:{ih}".encode(),
        f"magnet:?xt=urn:btih:{ih}&dn=hello%20world&tr=http%3A%2F%2F127.0.0.1"
        "%3A6969%2Fannounce&x.pe=127.0.0.1:6881&xl=1234".encode(),
        b"magnet:?xt=urn:btih:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK&x.pe=[::1]:80",
        f"magnet:?xt.1=urn:btih:{ih}&xt.2=urn:btmh:1220{'0' * 64}&tr.1=udp://"
        "127.0.0.1:1".encode(),
    ]


# -- peer wire -----------------------------------------------------------------


def _remote_peer_errors() -> tuple[type[BaseException], ...]:
    from client.errors import RemotePeerProtocolError

    return (RemotePeerProtocolError,)


_WIRE_PIECES = 37  # pieces of the torrent the fuzzed wire connection is for


def run_wire(data: bytes) -> None:
    """``PeerWire`` receive side. Control byte: bit 0 prefixes a valid
    handshake (so the fuzzer starts among messages), bit 1 installs a block
    sink (the in-place receive path), bit 2 leaves the piece count unknown,
    bits 3-7 choose the chunking."""
    from client.core.wire import (
        HANDSHAKE_BYTES,
        PeerWire,
        Piece,
        encode_handshake,
        make_reserved,
    )

    if not data:
        return
    ctrl, body = data[0], data[1:]
    if ctrl & 1:
        body = encode_handshake(b"\x11" * 20, b"\x22" * 20, make_reserved()) + body
    wire = PeerWire(num_pieces=None if ctrl & 4 else _WIRE_PIECES)
    store = bytearray(64 * 1024)

    def sink(index: int, begin: int, length: int) -> memoryview | None:
        if begin + length > len(store) or index % 2:
            return None
        return memoryview(store)[begin : begin + length]

    if ctrl & 2:
        wire.set_block_sink(sink)
    for chunk in _chunks(body, ctrl >> 3):
        for event in wire.receive_data(chunk):
            if isinstance(event, Piece):
                _check(len(event.block) <= 131072, "block over the cap")
    wire.receive_data(b"")
    _check(wire.bytes_received <= len(body) + HANDSHAKE_BYTES, "byte count")


def _wire_seeds() -> list[bytes]:
    from client.core.wire import (
        Bitfield,
        Cancel,
        Choke,
        Extended,
        Have,
        Interested,
        NotInterested,
        Piece,
        Port,
        Request,
        Unchoke,
        encode,
        encode_handshake,
        make_reserved,
    )

    msgs = b"".join(
        encode(m)
        for m in (
            Choke(),
            Unchoke(),
            Interested(),
            NotInterested(),
            Have(index=3),
            Bitfield(data=b"\xff" * 4 + b"\xe0"),
            Request(index=1, begin=16384, length=16384),
            Cancel(index=1, begin=16384, length=16384),
            Piece(index=2, begin=0, block=b"x" * 100),
            Port(port=6881),
            Extended(ext_id=0, payload=b"d1:md11:ut_metadatai1eee"),
        )
    )
    hs = encode_handshake(b"\x11" * 20, b"\x22" * 20, make_reserved(dht=True))
    return [
        b"\x01" + msgs,
        b"\x03" + encode(Piece(index=2, begin=0, block=b"y" * 3000)),
        b"\x00" + hs + b"\x00\x00\x00\x00" + msgs,
        b"\x0d" + msgs,
        b"\x01\xff\xff\xff\xff",
    ]


# -- BEP 10 / 9 / 11 -----------------------------------------------------------


def run_ext_handshake(data: bytes) -> None:
    """``ExtensionState.receive_handshake``, twice (BEP 10 allows updates):
    the input split at its first ``|`` byte."""
    from client.core.extensions import MAX_METADATA_BYTES, ExtensionState

    state = ExtensionState()
    for part in data.split(b"|", 1):
        hs = state.receive_handshake(part)
        if hs.metadata_size is not None:
            _check(
                0 < hs.metadata_size <= MAX_METADATA_BYTES, "metadata_size not capped"
            )
        for name, ext_id in state.peer_extensions.items():
            _check(isinstance(name, str) and 0 < ext_id <= 255, "bad extension id")


def _ext_seeds() -> list[bytes]:
    return [
        b"d1:md11:ut_metadatai3e6:ut_pexi1ee13:metadata_sizei31235e1:pi6881e"
        b"4:reqqi500e1:v13:bitswarm 0.1e6:yourip4:\x7f\x00\x00\x01e",
        b"d1:md11:ut_metadatai3eee|d1:md11:ut_metadatai0eee",
        b"d1:md6:ut_pexi-1ee13:metadata_sizei1073741824ee",
    ]


def run_metadata(data: bytes) -> None:
    """``parse_metadata_message``, then the message driven through a
    ``MetadataAssembler`` that asked for it (sizes follow the message)."""
    import hashlib

    from client.core.metadata import (
        MetadataAssembler,
        MetadataData,
        parse_metadata_message,
    )

    msg = parse_metadata_message(data)
    if not isinstance(msg, MetadataData):
        return
    asm = MetadataAssembler(hashlib.sha1(b"x").digest(), rng=random.Random(0))
    asm.peer_ready("peer", msg.total_size)
    for _ in range(4):
        asm.next_requests("peer", 0.0, max_outstanding=64)
    asm.on_data("peer", msg.piece, msg.total_size, bytes(msg.data), 1.0)


def _metadata_seeds() -> list[bytes]:
    return [
        b"d8:msg_typei0e5:piecei0ee",
        b"d8:msg_typei2e5:piecei1ee",
        b"d8:msg_typei1e5:piecei0e10:total_sizei8ee12345678",
        b"d8:msg_typei1e5:piecei1e10:total_sizei16390ee123456",
        b"d8:msg_typei7e5:piecei0ee",
    ]


def run_pex(data: bytes) -> None:
    """``parse_pex``: at most 50 added and 50 dropped, flags aligned."""
    from client.core.pex import MAX_PEX_ADDED, MAX_PEX_DROPPED, parse_pex

    msg = parse_pex(data)
    _check(len(msg.added) <= MAX_PEX_ADDED, "too many added")
    _check(len(msg.dropped) <= MAX_PEX_DROPPED, "too many dropped")
    _check(len(msg.added) == len(msg.added_flags), "flags misaligned")


def _pex_seeds() -> list[bytes]:
    return [
        b"d5:added12:\x7f\x00\x00\x01\x1a\xe1\x7f\x00\x00\x02\x1a\xe27:added.f2:"
        b"\x01\x107:dropped6:\x7f\x00\x00\x03\x00\x01e",
        b"d6:added618:" + b"\x00" * 15 + b"\x01\x1a\xe18:added6.f1:\x02e",
        b"d5:added0:7:dropped0:e",
    ]


# -- MSE / PE ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _MseFixture:
    skey: bytes
    a_key: int
    b_key: int
    ya: bytes
    yb: bytes
    secret: bytes


_MSE: list[_MseFixture] = []


def _mse_fixture() -> _MseFixture:
    if not _MSE:
        import hashlib

        from client.core import mse

        a_key = mse.private_key_from_secret(b"a" * 20)
        b_key = mse.private_key_from_secret(b"b" * 20)
        yb = mse.public_key(b_key)
        _MSE.append(
            _MseFixture(
                skey=hashlib.sha1(b"mse fuzz").digest(),
                a_key=a_key,
                b_key=b_key,
                ya=mse.public_key(a_key),
                yb=yb,
                secret=mse._shared_secret(yb, a_key),
            )
        )
    return _MSE[0]


def run_mse(data: bytes) -> None:
    """MSE/PE handshake, either side. Control byte: bit 0 picks the side
    (0: we are the responder B, 1: the initiator A); bit 1 makes the harness
    send an honest public key, pad and (for B) the req1/req2^req3 hashes and
    encrypt the rest of the input with the right RC4 key, so the fuzzer
    writes the plaintext of VC, crypto fields, pads and IA; bits 2-3 choose
    the pad length the harness sends; bits 4-7 the chunking."""
    from client.core import mse

    if not data:
        return
    fx = _mse_fixture()
    ctrl, body = data[0], data[1:]
    initiator = bool(ctrl & 1)
    pad = b"\x00" * (((ctrl >> 2) & 3) * 37)
    if ctrl & 2:
        if initiator:
            key = mse._hash(b"keyB", fx.secret, fx.skey)
            body = fx.yb + pad + mse.RC4Stream(key).update(body)
        else:
            key = mse._hash(b"keyA", fx.secret, fx.skey)
            req1 = mse._hash(b"req1", fx.secret)
            req23 = mse._xor(mse._hash(b"req2", fx.skey), mse._hash(b"req3", fx.secret))
            body = fx.ya + pad + req1 + req23 + mse.RC4Stream(key).update(body)
    endpoint: mse.MseInitiator | mse.MseResponder
    if initiator:
        endpoint = mse.MseInitiator(
            skey=fx.skey,
            initial_payload=b"\x13BitTorrent protocol" + bytes(48),
            crypto_provide=mse.CRYPTO_PLAINTEXT | mse.CRYPTO_RC4,
            private_key=fx.a_key,
            pad=b"",
        )
        endpoint.initial_bytes()
    else:
        endpoint = mse.MseResponder(
            skeys=[fx.skey],
            crypto_select=mse.EncryptionPolicy.PREFER.select,
            private_key=fx.b_key,
            pad=b"",
        )
    for chunk in _chunks(body, ctrl >> 4):
        if not chunk:
            continue
        if endpoint.state is mse.MseState.ESTABLISHED:
            endpoint.decrypt(chunk)
            continue
        endpoint.receive_data(chunk)
        endpoint.data_to_send()
    if endpoint.state is mse.MseState.ESTABLISHED:
        endpoint.encrypt(b"after")


def _mse_seeds() -> list[bytes]:
    import struct

    from client.core import mse

    ia = b"\x13BitTorrent protocol" + bytes(48)
    to_b = mse.VC + struct.pack(">IH", 3, 0) + struct.pack(">H", len(ia)) + ia
    to_a = mse.VC + struct.pack(">IH", 2, 0) + b"\x13BitTorrent protocol"
    return [
        b"\x02" + to_b,
        b"\x06" + to_b,
        b"\x03" + to_a,
        b"\x13" + to_a,
        b"\x00" + bytes(200),
        b"\x01" + bytes(700),
    ]


# -- KRPC: Mainline and Chord --------------------------------------------------


def _no_errors() -> tuple[type[BaseException], ...]:
    return ()


_DHT_ADDRS = ("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")


_QUERY_TID = re.compile(rb"1:t([0-9]{1,2}):")


def _outgoing_tids(outputs: list[Any], pending: list[tuple[Any, bytes]]) -> None:
    """Note the transaction ids of the queries among ``outputs`` (found by a
    pattern, not a decode: the harness must stay cheap next to the core)."""
    from dht.core.events import SendDatagram

    for out in outputs:
        if isinstance(out, SendDatagram) and b"1:y1:q" in out.payload:
            m = _QUERY_TID.search(out.payload)
            if m is not None:
                start = m.end()
                pending.append((out.addr, out.payload[start : start + int(m[1])]))
                del pending[:-16]


def _drive_datagrams(
    data: bytes,
    handle: Callable[[bytes, Any, float], list[Any]],
    tick: Callable[[float], list[Any]],
    pending: list[tuple[Any, bytes]],
    marker: bytes,
) -> None:
    """Feed the records of ``data``. Control byte: bits 0-1 the source
    address, bits 2-3 a clock step before it (0, 1, 10, 100 s, then a tick),
    bit 4 replaces ``marker`` with the id of a query we have outstanding and
    sends from that query's address, bits 5-7 choose which query."""
    from dht.core.compact import PeerAddr

    now = 1000.0
    for ctrl, payload in _records(data):
        addr = PeerAddr(_DHT_ADDRS[ctrl & 3], 6881 + (ctrl & 3))
        step = (0.0, 1.0, 10.0, 100.0)[(ctrl >> 2) & 3]
        if step:
            now += step
            _outgoing_tids(tick(now), pending)
        if ctrl & 16 and pending:
            addr, tid = pending[(ctrl >> 5) % len(pending)]
            payload = payload.replace(marker, tid, 1)
        _outgoing_tids(handle(payload, addr, now), pending)


def run_krpc_mainline(data: bytes) -> None:
    """Mainline ``DhtCore.handle_datagram`` (and ``tick``) after a bootstrap
    towards the harness's addresses; never raises."""
    from dht.core import config as dht_config
    from dht.core.compact import PeerAddr
    from dht.core.mainline import DhtCore

    core = DhtCore(b"\x5a" * 20, random.Random(7), dht_config.testing_config())
    pending: list[tuple[Any, bytes]] = []
    _, out = core.bootstrap(
        [PeerAddr(a, 6881 + i) for i, a in enumerate(_DHT_ADDRS)], 0.0
    )
    _outgoing_tids(out, pending)
    _drive_datagrams(data, core.handle_datagram, core.tick, pending, b"$$")
    core.statistics(2000.0)
    core.next_deadline()


def _krpc_seeds() -> list[bytes]:
    import bencodepy

    nid = b"\x21" * 20
    ih = b"\x33" * 20
    node = b"\x44" * 20 + b"\x7f\x00\x00\x02\x1a\xe1"
    msgs = [
        {b"t": b"aa", b"y": b"q", b"q": b"ping", b"a": {b"id": nid}},
        {
            b"t": b"ab",
            b"y": b"q",
            b"q": b"find_node",
            b"a": {b"id": nid, b"target": ih},
        },
        {
            b"t": b"ac",
            b"y": b"q",
            b"q": b"get_peers",
            b"a": {b"id": nid, b"info_hash": ih},
        },
        {
            b"t": b"ad",
            b"y": b"q",
            b"q": b"announce_peer",
            b"a": {
                b"id": nid,
                b"info_hash": ih,
                b"port": 6881,
                b"token": b"tok",
                b"implied_port": 1,
            },
        },
        {b"t": b"$$", b"y": b"r", b"r": {b"id": nid, b"nodes": node * 2}},
        {
            b"t": b"$$",
            b"y": b"r",
            b"r": {
                b"id": nid,
                b"token": b"xyz",
                b"values": [b"\x7f\x00\x00\x09\x1a\xe1"],
            },
        },
        {b"t": b"$$", b"y": b"e", b"e": [202, b"Server Error"]},
        {b"t": b"ae", b"y": b"q", b"q": b"vote", b"a": {b"id": nid}, b"v": b"LT01"},
    ]
    enc = [bencodepy.encode(m) for m in msgs]
    return [
        b"".join(_record(0, e) for e in enc[:4]),
        _record(16, enc[4]) + _record(0x14, enc[5]) + _record(0x18, enc[6]),
        _record(0x30, enc[4]) + _record(12, enc[7]) + _record(0, b"d1:t"),
    ]


def run_krpc_chord(data: bytes) -> None:
    """Chord ``ChordCore.handle_datagram`` (and ``tick``) after starting a
    join through one of the harness's addresses; never raises."""
    from dht.core.chord.config import chord_testing_config
    from dht.core.chord.node import ChordCore
    from dht.core.compact import PeerAddr

    cfg = chord_testing_config()
    core = ChordCore(
        12345 % (1 << cfg.m), PeerAddr("127.0.0.1", 7000), random.Random(5), cfg
    )
    pending: list[tuple[Any, bytes]] = []
    _, out = core.start_join(PeerAddr(_DHT_ADDRS[0], 6881), 0.0)
    _outgoing_tids(out, pending)
    _drive_datagrams(data, core.handle_datagram, core.tick, pending, b"$$$$")
    core.statistics()
    core.next_deadline()


def _chord_seeds() -> list[bytes]:
    import bencodepy

    nid = (77).to_bytes(20, "big")
    ih = b"\x33" * 20
    peer = nid + b"\x7f\x00\x00\x02\x1a\xe1"
    msgs = [
        {b"t": b"aaaa", b"y": b"q", b"q": b"ping", b"a": {b"id": nid}},
        {
            b"t": b"aaab",
            b"y": b"q",
            b"q": b"find_successor",
            b"a": {b"id": nid, b"key": ih},
        },
        {b"t": b"aaac", b"y": b"q", b"q": b"get_neighbors", b"a": {b"id": nid}},
        {b"t": b"aaad", b"y": b"q", b"q": b"notify", b"a": {b"id": nid}},
        {
            b"t": b"aaae",
            b"y": b"q",
            b"q": b"get_peers",
            b"a": {b"id": nid, b"info_hash": ih},
        },
        {
            b"t": b"aaaf",
            b"y": b"q",
            b"q": b"announce_peer",
            b"a": {b"id": nid, b"info_hash": ih, b"port": 6881},
        },
        {
            b"t": b"aaag",
            b"y": b"q",
            b"q": b"store",
            b"a": {b"id": nid, b"items": [[ih, b"\x7f\x00\x00\x02\x1a\xe1", 60]]},
        },
        {b"t": b"aaah", b"y": b"q", b"q": b"leave", b"a": {b"id": nid, b"nodes": peer}},
        {b"t": b"$$$$", b"y": b"r", b"r": {b"id": nid, b"nodes": peer, b"done": 1}},
        {
            b"t": b"$$$$",
            b"y": b"r",
            b"r": {b"id": nid, b"predecessor": peer, b"successors": peer * 2},
        },
        {b"t": b"$$$$", b"y": b"e", b"e": [201, b"nope"]},
    ]
    enc = [bencodepy.encode(m) for m in msgs]
    return [
        b"".join(_record(0, e) for e in enc[:8]),
        _record(16, enc[8]) + _record(0x14, enc[9]) + _record(0x18, enc[10]),
        _record(16, enc[9]) + _record(12, enc[0]),
    ]


# -- trackers ------------------------------------------------------------------


def _tracker_errors() -> tuple[type[BaseException], ...]:
    from tracker.errors import TrackerError

    return (TrackerError,)


def run_tracker_query(data: bytes) -> None:
    """``parse_announce`` (trust_ip on and off) and ``parse_scrape`` on the
    input as a raw query string; numwant never exceeds its cap."""
    from tracker.core.request import (
        _parse_announce_slow,
        parse_announce,
        parse_scrape,
    )
    from tracker.errors import AnnounceRequestError

    query = data.decode("utf-8", "surrogateescape")
    for trust in (False, True):
        try:
            req = parse_announce(
                query, default_numwant=50, max_numwant=200, trust_ip=trust
            )
        except AnnounceRequestError:
            continue
        _check(0 <= req.numwant <= 200, "numwant over the cap")
        _check(len(req.info_hash) == 20 and len(req.peer_id) == 20, "id length")
        # the fast path (issue 7) must agree with the reference parser
        try:
            slow = _parse_announce_slow(
                query, default_numwant=50, max_numwant=200, trust_ip=trust
            )
        except AnnounceRequestError as exc:
            raise InvariantBroken(
                f"fast path took what the reference refuses: {exc}"
            ) from exc
        _check(req == slow, f"fast path {req!r} != reference {slow!r}")
    parse_scrape(query)


class _FakeTransport(asyncio.Transport):
    """What :mod:`tracker.http` uses of an asyncio transport."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        _check(not self.closed, "write after close")
        self.out += data

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default


class _FakeLoop:
    def time(self) -> float:
        return 0.0


def run_tracker_http(data: bytes) -> None:
    """The tracker's own HTTP/1.1 server (``tracker.http``) on one
    connection: the bytes arrive in chunks (control byte: 0 whole, 1 byte by
    byte, else seeded sizes). Nothing may escape, no request may hit the
    server's internal-error path (a 500 is a caught bug), and every reply
    starts with a status line."""
    from tracker.config import TrackerConfig
    from tracker.http import HttpTrackerServer, _Connection
    from tracker.service import TrackerService

    if not data:
        return
    service = TrackerService(
        TrackerConfig(host="127.0.0.1", port=0),
        clock=lambda: 1.0,
        rng=random.Random(1),
    )
    server = HttpTrackerServer(service, "127.0.0.1", 0)
    server.loop = _FakeLoop()  # type: ignore[assignment]
    conn = _Connection(server)
    transport = _FakeTransport()
    conn.connection_made(transport)
    for chunk in _chunks(data[1:], data[0]):
        if transport.closed:
            break
        conn.data_received(chunk)
    out = bytes(transport.out)
    _check(b" 500 Internal" not in out, "a request hit the internal-error path")
    _check(not out or out.startswith(b"HTTP/1.1 "), "reply without a status line")
    conn.connection_lost(None)


def _tracker_http_seeds() -> list[bytes]:
    ih = b"%AA" * 20
    announce = (
        b"GET /announce?info_hash=" + ih + b"&peer_id=-BS0001-abcdefghijkl"
        b"&port=6881&uploaded=0&downloaded=0&left=100&event=started&compact=1"
        b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    return [
        b"\x00" + announce + b"GET /scrape?info_hash=" + ih + b" HTTP/1.1\r\n\r\n",
        b"\x01" + announce.replace(b"HTTP/1.1", b"HTTP/1.0"),
        b"\x07GET /stats.json HTTP/1.1\r\nConnection: close\r\n\r\n",
        b"\x00HEAD / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello",
        b"\x03GET http://127.0.0.1:6969/announce?x HTTP/1.1\r\n\r\n"
        b"POST /announce HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    ]


def _tracker_query_seeds() -> list[bytes]:
    ih = "%AA" * 20
    return [
        f"info_hash={ih}&peer_id=-BS0001-abcdefghijkl&port=6881&uploaded=0"
        "&downloaded=0&left=100&event=started&compact=1&numwant=80&ip=127.0.0.1"
        "&key=abc&trackerid=x".encode(),
        f"info_hash={ih}&info_hash=%BB%BB%BB%BB%BB%BB%BB%BB%BB%BB%BB%BB%BB%BB%BB"
        "%BB%BB%BB%BB%BB".encode(),
        f"info_hash={ih}&peer_id={ih}&port=1&left=0&event=completed&no_peer_id=1"
        "&ip=%3A%3Affff%3A127.0.0.1".encode(),
    ]


def run_tracker_udp(data: bytes) -> None:
    """The tracker's BEP 15 side: ``parse_request`` on every record and
    ``UdpTracker.handle_datagram`` (never raises). Control byte bit 0 puts a
    connection id the tracker issued into the packet's first 8 bytes."""
    from tracker.core.addr import PeerAddr
    from tracker.core.registry import SwarmRegistry
    from tracker.core.udp import UdpTracker, parse_request
    from tracker.errors import AnnounceRequestError

    registry = SwarmRegistry(peer_timeout_s=100.0, rng=random.Random(1))
    tracker = UdpTracker(
        registry,
        secret=b"s" * 32,
        interval_s=1800.0,
        default_numwant=50,
        max_numwant=200,
    )
    addr = PeerAddr("127.0.0.1", 40000)
    connect = (0x41727101980).to_bytes(8, "big") + bytes(4) + b"tid!"
    reply = tracker.handle_datagram(connect, addr, 0.0)
    _check(reply is not None and len(reply) == 16, "connect unanswered")
    assert reply is not None
    conn_id = reply[8:16]
    now = 1.0
    for ctrl, payload in _records(data):
        if ctrl & 1:
            payload = conn_id + payload[8:]
        now += (ctrl >> 1) & 7
        with contextlib.suppress(AnnounceRequestError):
            parse_request(payload)
        answer = tracker.handle_datagram(payload, addr, now)
        _check(
            answer is None or len(answer) <= 8 + 6 * 200 + 12 + 74 * 12, "reply size"
        )
    tracker.statistics()


def _tracker_udp_seeds() -> list[bytes]:
    import struct

    announce = struct.pack(
        ">QII20s20sqqqIIIiH",
        0,
        1,
        7,
        b"\xaa" * 20,
        b"\xbb" * 20,
        0,
        100,
        0,
        2,
        0,
        9,
        -1,
        6881,
    )
    scrape = struct.pack(">QII", 0, 2, 8) + b"\xaa" * 20 + b"\xcc" * 20
    connect = struct.pack(">QII", 0x41727101980, 0, 9)
    return [
        _record(1, announce) + _record(1, scrape) + _record(0, connect),
        _record(1, announce + b"\x02\x05/path\x00"),
        _record(0, announce) + _record(1, struct.pack(">QII", 0, 5, 1)),
    ]


def _tracker_failure() -> tuple[type[BaseException], ...]:
    from client.errors import TrackerFailure

    return (TrackerFailure,)


def run_udp_tracker_reply(data: bytes) -> None:
    """The client's BEP 15 side: ``parse_reply`` on every record and an
    announce ``UdpTrackerTransaction`` fed them. Control byte bit 0 writes
    the transaction's current id into bytes 4..8, bit 1 parses as IPv6,
    bits 2-4 a clock step with a ``tick``."""
    from client.core.announce import AnnounceEvent
    from client.core.udp_tracker import (
        SendPacket,
        UdpAnnounceParams,
        UdpTrackerTransaction,
        parse_reply,
    )
    from client.errors import TrackerFailure

    params = UdpAnnounceParams(
        info_hash=b"\xaa" * 20,
        peer_id=b"\xbb" * 20,
        downloaded=0,
        left=10,
        uploaded=0,
        event=AnnounceEvent.STARTED,
        key=1,
        num_want=-1,
        port=6881,
    )
    txn = UdpTrackerTransaction(params, rng=random.Random(3), retransmit_base_s=1.0)
    now = 0.0
    tid = b"\x00" * 4

    def note(outputs: list[Any]) -> None:
        nonlocal tid
        for o in outputs:
            if isinstance(o, SendPacket):
                tid = o.payload[12:16]

    note(txn.start(now))
    for ctrl, payload in _records(data):
        if ctrl & 1:
            payload = payload[:4] + tid + payload[8:]
        step = (ctrl >> 2) & 7
        if step:
            now += step
            try:
                note(txn.tick(now))
            except TrackerFailure:
                return
        with contextlib.suppress(TrackerFailure):
            parse_reply(payload, ipv6=bool(ctrl & 2))
        try:
            note(txn.handle_datagram(payload, now))
        except TrackerFailure:
            return
        if txn.done:
            return


def _udp_reply_seeds() -> list[bytes]:
    import struct

    connect = struct.pack(">IIQ", 0, 0, 0x1234)
    announce = struct.pack(">IIIII", 1, 0, 1800, 3, 4) + b"\x7f\x00\x00\x01\x1a\xe1"
    return [
        _record(1, connect) + _record(1, announce),
        _record(1, struct.pack(">II", 3, 0) + b"go away"),
        _record(1, connect) + _record(5, struct.pack(">II", 2, 0) + bytes(12)),
        _record(3, connect) + _record(3, announce + bytes(18)),
    ]


def run_tracker_response(data: bytes) -> None:
    """The client's HTTP tracker side: ``parse_announce_response`` and
    ``parse_scrape_response`` on the same body."""
    from client.core.announce import parse_announce_response, parse_scrape_response
    from client.errors import TrackerFailure

    try:
        resp = parse_announce_response(data)
    except TrackerFailure:
        pass
    else:
        _check(resp.interval >= 0, "negative interval")
    parse_scrape_response(data)


def _tracker_response_seeds() -> list[bytes]:
    return [
        b"d8:intervali1800e12:min intervali60e5:peers12:\x7f\x00\x00\x01\x1a\xe1"
        b"\x7f\x00\x00\x02\x1a\xe28:completei3e10:incompletei4e"
        b"15:warning message4:hmm?10:tracker id2:xye",
        b"d8:intervali900e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa"
        b"4:porti6881eeee",
        b"d14:failure reason9:not todaye",
        b"d5:filesd20:" + b"\xaa" * 20 + b"d8:completei1e10:downloadedi2e"
        b"10:incompletei3eeee",
        b"d8:intervali60e6:peers618:" + b"\x00" * 15 + b"\x01\x1a\xe1e",
    ]


def run_http_response(data: bytes) -> None:
    """The client's tracker GET (``client/core/http_response``): the response
    parser fed in chunks (control byte: 0 whole, 1 byte by byte, else seeded
    sizes), then a close. Checks: one head before the body, a body within
    the cap, and a redirect from the head yields a request whose target and
    ``Host`` carry no whitespace or control bytes."""
    from client.core.http_response import (
        BodyReceived,
        HeadReceived,
        HttpUrl,
        ResponseParser,
        encode_get_request,
        next_location,
    )
    from client.errors import TrackerFailure

    if not data:
        return
    cap = 512  # small, so that the cap is reached often
    parser = ResponseParser(cap)
    events = []
    for chunk in [*_chunks(data[1:], data[0]), b""]:
        try:
            events += parser.receive_data(chunk)
        except TrackerFailure:
            break
    heads = [e for e in events if isinstance(e, HeadReceived)]
    bodies = [e for e in events if isinstance(e, BodyReceived)]
    _check(len(heads) <= 1 and len(bodies) <= 1, "more than one head or body")
    if bodies:
        _check(events[0] is heads[0] and events[-1] is bodies[0], "event order")
        _check(len(bodies[0].body) <= cap, "body over the cap")
    if not heads:
        return
    location = next_location(heads[0], "http://127.0.0.1:6969/a/announce?x=%00")
    if location is None or not location.lower().startswith("http://"):
        return
    request = encode_get_request(HttpUrl.parse(location))
    request_line, _, rest = request.partition(b"\r\n")
    _check(len(request_line.split(b" ")) == 3, "request line split apart")
    _check(
        all(0x20 <= c < 0x7F for c in request_line + rest.replace(b"\r\n", b"")),
        "control bytes in the request",
    )


def _http_response_seeds() -> list[bytes]:
    body = b"d8:intervali1800e5:peers6:\x7f\x00\x00\x01\x1a\xe1e"
    return [
        b"\x00HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body,
        b"\x01HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nd8:in\r\n0\r\nX-Trailer: y\r\n\r\n",
        b"\x05HTTP/1.0 200 OK\r\nServer: old\r\n\r\n" + body,
        b"\x00HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\n"
        b"Location: ../b/announce?info_hash=%AA%00\r\nContent-Length: 0\r\n\r\n",
        b"\x03HTTP/1.1 301 Moved\nLocation: http://127.0.0.2:80/x y\n\n",
        b"\x00HTTP/1.1 404 Not Found\r\nContent-Length: 2, 2\r\n\r\nno",
        b"\x02HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"fffffffffffffffff\r\n",
    ]


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            name="bencode",
            run=run_bencode,
            allowed=_metainfo_errors,
            description="span scanner + strict decode (client/core/bencode_span)",
            seeds=_torrent_seeds,
            max_len=1024,
        ),
        Target(
            name="metainfo",
            run=run_metainfo,
            allowed=_metainfo_errors,
            description="parse_metainfo (client/core/metainfo)",
            seeds=_torrent_seeds,
        ),
        Target(
            name="info",
            run=run_info,
            allowed=_metainfo_errors,
            description="parse_info (client/core/metainfo)",
            seeds=_info_seeds,
        ),
        Target(
            name="magnet",
            run=run_magnet,
            allowed=_magnet_errors,
            description="parse_magnet + round trip (client/core/magnet)",
            seeds=_magnet_seeds,
        ),
        Target(
            name="wire",
            run=run_wire,
            allowed=_remote_peer_errors,
            description="PeerWire.receive_data (client/core/wire)",
            seeds=_wire_seeds,
        ),
        Target(
            name="ext_handshake",
            run=run_ext_handshake,
            allowed=_remote_peer_errors,
            description="ExtensionState.receive_handshake (client/core/extensions)",
            seeds=_ext_seeds,
        ),
        Target(
            name="ut_metadata",
            run=run_metadata,
            allowed=_remote_peer_errors,
            description="parse_metadata_message + assembler (client/core/metadata)",
            seeds=_metadata_seeds,
            max_len=20000,
        ),
        Target(
            name="ut_pex",
            run=run_pex,
            allowed=_remote_peer_errors,
            description="parse_pex (client/core/pex)",
            seeds=_pex_seeds,
        ),
        Target(
            name="mse",
            run=run_mse,
            allowed=_remote_peer_errors,
            description="MseResponder/MseInitiator.receive_data (client/core/mse)",
            seeds=_mse_seeds,
        ),
        Target(
            name="krpc_mainline",
            run=run_krpc_mainline,
            allowed=_no_errors,
            description="DhtCore.handle_datagram/tick (dht/core/mainline)",
            seeds=_krpc_seeds,
        ),
        Target(
            name="krpc_chord",
            run=run_krpc_chord,
            allowed=_no_errors,
            description="ChordCore.handle_datagram/tick (dht/core/chord/node)",
            seeds=_chord_seeds,
        ),
        Target(
            name="tracker_query",
            run=run_tracker_query,
            allowed=_tracker_errors,
            description="parse_announce/parse_scrape (tracker/core/request)",
            seeds=_tracker_query_seeds,
        ),
        Target(
            name="tracker_http",
            run=run_tracker_http,
            allowed=_no_errors,
            description="the lean HTTP/1.1 server's request parsing (tracker/http)",
            seeds=_tracker_http_seeds,
        ),
        Target(
            name="tracker_udp",
            run=run_tracker_udp,
            allowed=_no_errors,
            description="parse_request + UdpTracker.handle_datagram (tracker/core/udp)",
            seeds=_tracker_udp_seeds,
        ),
        Target(
            name="udp_tracker_reply",
            run=run_udp_tracker_reply,
            allowed=_no_errors,
            description="parse_reply + UdpTrackerTransaction (client/core/udp_tracker)",
            seeds=_udp_reply_seeds,
        ),
        Target(
            name="tracker_response",
            run=run_tracker_response,
            allowed=_tracker_failure,
            description="parse_announce/scrape_response (client/core/announce)",
            seeds=_tracker_response_seeds,
        ),
        Target(
            name="http_response",
            run=run_http_response,
            allowed=_tracker_failure,
            description="the tracker GET's response parser (client/core/http_response)",
            seeds=_http_response_seeds,
        ),
    )
}
