"""Chord ring messages, bencoded over UDP in the KRPC envelope (BEP 5).

Every datagram is one bencoded dictionary with ``t`` (transaction id), ``y``
(``q``/``r``/``e``), ``q`` and ``a`` for queries, ``r`` for responses, ``e``
(``[code, message]``, BEP 5 codes) for errors, and ``v`` (client version).
Ids travel as 20-byte big-endian strings whatever m is; peers as BEP 5
compact node info (20-byte id + 6-byte IPv4 address and port).

Queries (Chord paper section 4 and Zave's corrected maintenance):

===============  ==========================  =================================
``q``            ``a`` (besides ``id``)      ``r`` (besides ``id``)
===============  ==========================  =================================
ping             --                          --
neighbors        --                          ``pred`` node (if any), ``succ``
notify           --                          --
find_successor   ``target``                  ``found`` 1 and ``succ`` (the
                                             owner first), or ``nodes``: the
                                             closest preceding peers known
get_peers        ``info_hash``               ``values`` (compact peers)
announce_peer    ``info_hash``, ``port``     --
store            ``items`` [[hash, peer,     --
                 ttl_s], ...]
leave            ``pred`` node, ``succ``     --
===============  ==========================  =================================

The envelope is :mod:`dht.core.envelope`, shared with Mainline's KRPC.
Unknown keys are ignored. Every decoding failure becomes
:class:`~dht.errors.RemoteKrpcError`, or :class:`~dht.errors.BadQuery` for a
query we can answer with error 203/204.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from dht.core.compact import (
    PeerAddr,
    decode_nodes,
    decode_peer,
    encode_nodes,
    encode_peer,
)
from dht.core.envelope import (
    MAX_DATAGRAM_BYTES,
    ErrorCode,
    StrictDecoder,
    decode_envelope,
    decode_error_body,
    encode_envelope,
    error_body,
)
from dht.errors import BadQuery, CompactFormatError, RemoteKrpcError

__all__ = [
    "ID_BYTES",
    "MAX_DATAGRAM_BYTES",
    "AnnouncePeer",
    "ChordMessage",
    "ChordPeer",
    "ErrorMessage",
    "FindSuccessor",
    "GetNeighbors",
    "GetPeers",
    "Leave",
    "Notify",
    "Ping",
    "Query",
    "Response",
    "Store",
    "StoredItem",
    "decode_message",
    "encode_message",
    "id_bytes",
]

ID_BYTES = 20  # ids are SHA-1 sized on the wire, whatever m is
MAX_NODES = 32  # peers accepted in one node list (r up to 32)
MAX_ITEMS = 64  # stored items in one ``store`` message
MAX_VALUES = 100  # peers in one get_peers reply
MAX_TTL_S = 24 * 3600  # seconds; a handed-off entry may not live longer
MAX_DEPTH = 5  # message, a, items list, one item list: 4 levels used

_DECODER = StrictDecoder(max_depth=MAX_DEPTH)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChordPeer:
    """A ring member: its id on the circle and its UDP address."""

    id: int
    addr: PeerAddr


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredItem:
    """One infohash -> peer entry moving between owners, with the seconds it
    has left to live."""

    info_hash: bytes
    peer: PeerAddr
    ttl_s: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    transaction_id: bytes
    sender_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GetNeighbors:
    """Stabilize: ask a successor for its predecessor and successor list."""

    transaction_id: bytes
    sender_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify:
    """The sender thinks it may be the receiver's predecessor."""

    transaction_id: bytes
    sender_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FindSuccessor:
    """One step of an iterative lookup for ``target``."""

    transaction_id: bytes
    sender_id: int
    target: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPeers:
    transaction_id: bytes
    sender_id: int
    info_hash: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnouncePeer:
    """Store the sender's host with ``port`` under ``info_hash``."""

    transaction_id: bytes
    sender_id: int
    info_hash: bytes
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Store:
    """Key handoff: to a new predecessor, or to the successor on leave."""

    transaction_id: bytes
    sender_id: int
    items: tuple[StoredItem, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Leave:
    """The sender leaves the ring; its neighbours are hints, to be confirmed
    alive before anyone adopts them."""

    transaction_id: bytes
    sender_id: int
    predecessor: ChordPeer | None
    successors: tuple[ChordPeer, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A ``y = r`` message; fields a query does not use are empty."""

    transaction_id: bytes
    sender_id: int
    predecessor: ChordPeer | None = None
    successors: tuple[ChordPeer, ...] = ()
    found: bool = False
    nodes: tuple[ChordPeer, ...] = ()
    values: tuple[PeerAddr, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorMessage:
    transaction_id: bytes
    code: int
    message: str


Query = (
    Ping
    | GetNeighbors
    | Notify
    | FindSuccessor
    | GetPeers
    | AnnouncePeer
    | Store
    | Leave
)
ChordMessage = Query | Response | ErrorMessage

_QUERY_NAMES: dict[type[Query], bytes] = {
    Ping: b"ping",
    GetNeighbors: b"neighbors",
    Notify: b"notify",
    FindSuccessor: b"find_successor",
    GetPeers: b"get_peers",
    AnnouncePeer: b"announce_peer",
    Store: b"store",
    Leave: b"leave",
}


def id_bytes(value: int) -> bytes:
    return value.to_bytes(ID_BYTES, "big")


def _nodes(peers: tuple[ChordPeer, ...]) -> bytes:
    return encode_nodes([(id_bytes(p.id), p.addr) for p in peers])


def encode_message(msg: ChordMessage, version: bytes | None = None) -> bytes:
    """Bencode one message; ``version`` goes in ``v`` when given.

    Raises:
        CompactFormatError: an address is not an IP literal.
    """
    body: dict[bytes, object]
    match msg:
        case Response():
            r: dict[bytes, object] = {b"id": id_bytes(msg.sender_id)}
            if msg.predecessor is not None:
                r[b"pred"] = _nodes((msg.predecessor,))
            if msg.successors:
                r[b"succ"] = _nodes(msg.successors)
            if msg.found:
                r[b"found"] = 1
            if msg.nodes:
                r[b"nodes"] = _nodes(msg.nodes)
            if msg.values:
                r[b"values"] = [encode_peer(p) for p in msg.values]
            kind = b"r"
            body = {b"r": r}
        case ErrorMessage():
            kind = b"e"
            body = error_body(msg.code, msg.message)
        case _:
            kind = b"q"
            body = {b"q": _QUERY_NAMES[type(msg)], b"a": _query_args(msg)}
    return encode_envelope(msg.transaction_id, kind, body, version)


def _query_args(msg: Query) -> dict[bytes, object]:
    args: dict[bytes, object] = {b"id": id_bytes(msg.sender_id)}
    match msg:
        case Ping() | GetNeighbors() | Notify():
            pass
        case FindSuccessor():
            args[b"target"] = id_bytes(msg.target)
        case GetPeers():
            args[b"info_hash"] = msg.info_hash
        case AnnouncePeer():
            args[b"info_hash"] = msg.info_hash
            args[b"port"] = msg.port
        case Store():
            args[b"items"] = [
                [i.info_hash, encode_peer(i.peer), i.ttl_s] for i in msg.items
            ]
        case Leave():
            if msg.predecessor is not None:
                args[b"pred"] = _nodes((msg.predecessor,))
            args[b"succ"] = _nodes(msg.successors)
        case _:
            assert_never(msg)
    return args


def decode_message(data: bytes, m: int) -> ChordMessage:
    """Parse one datagram of a ring whose ids have ``m`` bits.

    Raises:
        BadQuery: a query with a usable transaction id but an unknown method
            (204) or malformed arguments (203); answer it.
        RemoteKrpcError: anything else that is not a Chord message; drop it.
    """
    top, tid = decode_envelope(data, _DECODER, "chord")
    kind = top.get(b"y")
    try:
        if kind == b"q":
            return _decode_query(top, tid, m)
        if kind == b"r":
            return _decode_response(top, tid, m)
    except _Malformed as exc:
        if kind == b"q":
            raise BadQuery(
                f"chord: {exc}", transaction_id=tid, code=ErrorCode.PROTOCOL
            ) from exc
        raise RemoteKrpcError(f"chord: response: {exc}") from exc
    if kind == b"e":
        return _decode_error(top, tid)
    raise RemoteKrpcError(f"chord: 'y' is {kind!r}, not q, r or e")


class _Malformed(Exception):
    """A field of an otherwise well-framed message is wrong."""


def _get_id(d: dict[bytes, object], key: bytes, m: int) -> int:
    raw = d.get(key)
    if not isinstance(raw, bytes) or len(raw) != ID_BYTES:
        raise _Malformed(f"{key.decode()!r} is missing or not a 20-byte string")
    value = int.from_bytes(raw, "big")
    if value >> m:
        raise _Malformed(f"{key.decode()!r} is outside the 2^{m} circle")
    return value


def _get_nodes(d: dict[bytes, object], key: bytes, m: int) -> tuple[ChordPeer, ...]:
    raw = d.get(key, b"")
    if not isinstance(raw, bytes):
        raise _Malformed(f"{key.decode()!r} is not a string")
    try:
        pairs = decode_nodes(raw)
    except CompactFormatError as exc:
        raise _Malformed(str(exc)) from exc
    if len(pairs) > MAX_NODES:
        raise _Malformed(f"{key.decode()!r} lists {len(pairs)} peers")
    out = []
    for raw_id, addr in pairs:
        value = int.from_bytes(raw_id, "big")
        if value >> m or not addr.port:
            raise _Malformed(f"{key.decode()!r} holds an impossible peer")
        out.append(ChordPeer(id=value, addr=addr))
    return tuple(out)


def _get_info_hash(d: dict[bytes, object]) -> bytes:
    raw = d.get(b"info_hash")
    if not isinstance(raw, bytes) or len(raw) != ID_BYTES:
        raise _Malformed("'info_hash' is missing or not a 20-byte string")
    return raw


def _decode_query(top: dict[bytes, object], tid: bytes, m: int) -> Query:
    method = top.get(b"q")
    args = top.get(b"a")
    if not isinstance(method, bytes):
        raise _Malformed("'q' is missing or not a string")
    if not isinstance(args, dict):
        raise _Malformed("'a' is missing or not a dictionary")
    sender = _get_id(args, b"id", m)
    if method == b"ping":
        return Ping(transaction_id=tid, sender_id=sender)
    if method == b"neighbors":
        return GetNeighbors(transaction_id=tid, sender_id=sender)
    if method == b"notify":
        return Notify(transaction_id=tid, sender_id=sender)
    if method == b"find_successor":
        target = _get_id(args, b"target", m)
        return FindSuccessor(transaction_id=tid, sender_id=sender, target=target)
    if method == b"get_peers":
        ih = _get_info_hash(args)
        return GetPeers(transaction_id=tid, sender_id=sender, info_hash=ih)
    if method == b"announce_peer":
        ih = _get_info_hash(args)
        port = args.get(b"port")
        if not isinstance(port, int) or not 1 <= port <= 0xFFFF:
            raise _Malformed(f"announce_peer 'port' {port!r} is not in 1..65535")
        return AnnouncePeer(
            transaction_id=tid, sender_id=sender, info_hash=ih, port=port
        )
    if method == b"store":
        return Store(transaction_id=tid, sender_id=sender, items=_decode_items(args))
    if method == b"leave":
        pred = _get_nodes(args, b"pred", m)
        return Leave(
            transaction_id=tid,
            sender_id=sender,
            predecessor=pred[0] if pred else None,
            successors=_get_nodes(args, b"succ", m),
        )
    raise BadQuery(
        f"chord: method {method[:32]!r} is unknown",
        transaction_id=tid,
        code=ErrorCode.METHOD_UNKNOWN,
    )


def _decode_items(args: dict[bytes, object]) -> tuple[StoredItem, ...]:
    raw = args.get(b"items")
    if not isinstance(raw, list) or len(raw) > MAX_ITEMS:
        raise _Malformed(f"'items' is not a list of at most {MAX_ITEMS}")
    items = []
    for entry in raw:
        if not isinstance(entry, list) or len(entry) != 3:
            raise _Malformed("a store item is not [info_hash, peer, ttl_s]")
        ih, peer, ttl = entry
        if not isinstance(ih, bytes) or len(ih) != ID_BYTES:
            raise _Malformed("a store item's info_hash is not 20 bytes")
        if not isinstance(peer, bytes) or not isinstance(ttl, int):
            raise _Malformed("a store item's peer or ttl has the wrong type")
        try:
            addr = decode_peer(peer)
        except CompactFormatError as exc:
            raise _Malformed(str(exc)) from exc
        if not addr.port or not 0 < ttl <= MAX_TTL_S:
            raise _Malformed("a store item has port 0 or a ttl out of range")
        items.append(StoredItem(info_hash=ih, peer=addr, ttl_s=ttl))
    return tuple(items)


def _decode_response(top: dict[bytes, object], tid: bytes, m: int) -> Response:
    r = top.get(b"r")
    if not isinstance(r, dict):
        raise _Malformed("'r' is missing or not a dictionary")
    pred = _get_nodes(r, b"pred", m)
    values_raw = r.get(b"values", [])
    if not isinstance(values_raw, list) or len(values_raw) > MAX_VALUES:
        raise _Malformed("'values' is not a list of at most 100 peers")
    values = []
    for item in values_raw:
        if not isinstance(item, bytes):
            raise _Malformed("a 'values' item is not a string")
        try:
            peer = decode_peer(item)
        except CompactFormatError as exc:
            raise _Malformed(str(exc)) from exc
        if peer.port:
            values.append(peer)
    return Response(
        transaction_id=tid,
        sender_id=_get_id(r, b"id", m),
        predecessor=pred[0] if pred else None,
        successors=_get_nodes(r, b"succ", m),
        found=r.get(b"found") == 1,
        nodes=_get_nodes(r, b"nodes", m),
        values=tuple(values),
    )


def _decode_error(top: dict[bytes, object], tid: bytes) -> ErrorMessage:
    code, message = decode_error_body(top, "chord")
    return ErrorMessage(transaction_id=tid, code=code, message=message)
