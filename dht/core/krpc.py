"""KRPC messages of the Mainline DHT (BEP 5 "KRPC Protocol"), parsed and built.

A KRPC message is one bencoded dictionary per UDP datagram with a transaction
id ``t``, a type ``y`` (``q`` query, ``r`` response, ``e`` error) and an
optional client version ``v``. BEP 43 adds ``ro`` (read-only querier) at the
top level of queries. Unknown keys are ignored, as BEP 5 asks, so replies from
clients that add ``ip`` (BEP 42) or ``nodes6`` (BEP 32) still parse.

The envelope (``t``, ``y``, ``v``, size and error bodies) is
:mod:`dht.core.envelope`, shared with Chord; decoding is bencode.py's. This
module checks the bodies' types and lengths and maps every failure to
:class:`~dht.errors.RemoteKrpcError`, or to :class:`~dht.errors.BadQuery`
when the message is a query that we can answer with a KRPC error (203
protocol error, 204 method unknown).
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
from dht.core.distance import NodeId, node_id
from dht.core.envelope import (
    MAX_DATAGRAM_BYTES,
    ErrorCode,
    StrictDecoder,
    decode_envelope,
    decode_error_body,
    decode_version,
    encode_envelope,
    error_body,
)
from dht.errors import BadQuery, CompactFormatError, RemoteKrpcError

__all__ = [
    "MAX_DATAGRAM_BYTES",
    "AnnouncePeer",
    "ErrorCode",
    "ErrorMessage",
    "FindNode",
    "GetPeers",
    "KrpcMessage",
    "Ping",
    "Query",
    "Response",
    "decode_message",
    "encode_message",
]

MAX_TOKEN_BYTES = 64  # bytes; tokens are opaque, real clients send 4-20
MAX_DEPTH = 4  # nesting levels; KRPC needs 3 (message, 'r', 'values' list)

_DECODER = StrictDecoder(max_depth=MAX_DEPTH)


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """``ping``: arguments ``{"id"}``; answered with ``{"id"}``."""

    transaction_id: bytes
    sender_id: NodeId
    version: bytes | None = None
    read_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FindNode:
    """``find_node``: arguments ``{"id", "target"}``; answered with ``nodes``."""

    transaction_id: bytes
    sender_id: NodeId
    target: NodeId
    version: bytes | None = None
    read_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPeers:
    """``get_peers``: arguments ``{"id", "info_hash"}``; answered with a
    ``token`` and ``values`` (compact peers) and/or ``nodes``."""

    transaction_id: bytes
    sender_id: NodeId
    info_hash: NodeId
    version: bytes | None = None
    read_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class AnnouncePeer:
    """``announce_peer``: arguments ``{"id", "implied_port", "info_hash",
    "port", "token"}``. With ``implied_port`` the peer's port is the UDP
    source port and ``port`` is ignored."""

    transaction_id: bytes
    sender_id: NodeId
    info_hash: NodeId
    port: int
    token: bytes
    implied_port: bool = False
    version: bytes | None = None
    read_only: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A ``y = r`` message. KRPC responses don't name their query, so one class
    carries every response field; absent fields are empty or ``None``."""

    transaction_id: bytes
    sender_id: NodeId
    nodes: tuple[tuple[NodeId, PeerAddr], ...] = ()
    values: tuple[PeerAddr, ...] = ()
    token: bytes | None = None
    version: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorMessage:
    """A ``y = e`` message: ``e`` is the list ``[code, message]``."""

    transaction_id: bytes
    code: int
    message: str
    version: bytes | None = None


Query = Ping | FindNode | GetPeers | AnnouncePeer
KrpcMessage = Query | Response | ErrorMessage

_QUERY_NAMES: dict[type[Query], bytes] = {
    Ping: b"ping",
    FindNode: b"find_node",
    GetPeers: b"get_peers",
    AnnouncePeer: b"announce_peer",
}


def encode_message(msg: KrpcMessage) -> bytes:
    """Bencode one KRPC message (our ``version`` goes in ``v`` when set)."""
    body: dict[bytes, object]
    match msg:
        case Ping() | FindNode() | GetPeers() | AnnouncePeer():
            kind = b"q"
            body = {b"q": _QUERY_NAMES[type(msg)], b"a": _query_args(msg)}
            if msg.read_only:
                body[b"ro"] = 1
        case Response():
            r: dict[bytes, object] = {b"id": msg.sender_id}
            if msg.nodes:
                r[b"nodes"] = encode_nodes(list(msg.nodes))
            if msg.values:
                r[b"values"] = [encode_peer(p) for p in msg.values]
            if msg.token is not None:
                r[b"token"] = msg.token
            kind = b"r"
            body = {b"r": r}
        case ErrorMessage():
            kind = b"e"
            body = error_body(msg.code, msg.message)
        case _:
            assert_never(msg)
    return encode_envelope(msg.transaction_id, kind, body, msg.version)


def _query_args(msg: Query) -> dict[bytes, object]:
    args: dict[bytes, object] = {b"id": msg.sender_id}
    match msg:
        case Ping():
            pass
        case FindNode():
            args[b"target"] = msg.target
        case GetPeers():
            args[b"info_hash"] = msg.info_hash
        case AnnouncePeer():
            args[b"info_hash"] = msg.info_hash
            args[b"port"] = msg.port
            args[b"token"] = msg.token
            args[b"implied_port"] = 1 if msg.implied_port else 0
        case _:
            assert_never(msg)
    return args


def decode_message(data: bytes) -> KrpcMessage:
    """Parse one datagram.

    Raises:
        BadQuery: a query with a usable transaction id but an unknown method
            (code 204) or malformed arguments (code 203); answer it.
        RemoteKrpcError: anything else that is not a KRPC message; drop it.
    """
    top, tid = decode_envelope(data, _DECODER, "krpc")
    version = decode_version(top)
    kind = top.get(b"y")
    if kind == b"q":
        return _decode_query(top, tid, version)
    if kind == b"r":
        return _decode_response(top, tid, version)
    if kind == b"e":
        return _decode_error(top, tid, version)
    raise RemoteKrpcError(f"krpc: 'y' is {kind!r}, not q, r or e")


def _bad(tid: bytes, what: str) -> BadQuery:
    return BadQuery(f"krpc: {what}", transaction_id=tid, code=ErrorCode.PROTOCOL)


def _id_arg(args: dict[bytes, object], key: bytes, tid: bytes) -> NodeId:
    value = args.get(key)
    if not isinstance(value, bytes):
        raise _bad(tid, f"argument {key.decode()!r} is missing or not a string")
    try:
        return node_id(value)
    except RemoteKrpcError as exc:
        raise _bad(tid, f"argument {key.decode()!r}: {exc}") from exc


def _decode_query(top: dict[bytes, object], tid: bytes, version: bytes | None) -> Query:
    method = top.get(b"q")
    args = top.get(b"a")
    if not isinstance(method, bytes):
        raise _bad(tid, "'q' is missing or not a string")
    if not isinstance(args, dict):
        raise _bad(tid, "'a' is missing or not a dictionary")
    ro = top.get(b"ro") == 1  # BEP 43; any other value means "not read-only"
    sender = _id_arg(args, b"id", tid)
    if method == b"ping":
        return Ping(transaction_id=tid, sender_id=sender, version=version, read_only=ro)
    if method == b"find_node":
        target = _id_arg(args, b"target", tid)
        return FindNode(
            transaction_id=tid,
            sender_id=sender,
            target=target,
            version=version,
            read_only=ro,
        )
    if method == b"get_peers":
        info_hash = _id_arg(args, b"info_hash", tid)
        return GetPeers(
            transaction_id=tid,
            sender_id=sender,
            info_hash=info_hash,
            version=version,
            read_only=ro,
        )
    if method == b"announce_peer":
        info_hash = _id_arg(args, b"info_hash", tid)
        token = args.get(b"token")
        if not isinstance(token, bytes) or len(token) > MAX_TOKEN_BYTES:
            raise _bad(
                tid, "announce_peer 'token' is missing, not a string or too long"
            )
        implied = args.get(b"implied_port", 0)
        if not isinstance(implied, int):
            raise _bad(tid, "announce_peer 'implied_port' is not an integer")
        port = args.get(b"port")
        if implied:
            # BEP 5: with implied_port the port argument is ignored
            port = port if isinstance(port, int) and 0 <= port <= 0xFFFF else 0
        elif not isinstance(port, int) or not 1 <= port <= 0xFFFF:
            raise _bad(tid, f"announce_peer 'port' {port!r} is not in 1..65535")
        return AnnouncePeer(
            transaction_id=tid,
            sender_id=sender,
            info_hash=info_hash,
            port=port,
            token=token,
            implied_port=bool(implied),
            version=version,
            read_only=ro,
        )
    raise BadQuery(
        f"krpc: method {method[:32]!r} is unknown",
        transaction_id=tid,
        code=ErrorCode.METHOD_UNKNOWN,
    )


def _decode_response(
    top: dict[bytes, object], tid: bytes, version: bytes | None
) -> Response:
    r = top.get(b"r")
    if not isinstance(r, dict):
        raise RemoteKrpcError("krpc: 'r' is missing or not a dictionary")
    sender = r.get(b"id")
    if not isinstance(sender, bytes):
        raise RemoteKrpcError("krpc: response 'id' is missing or not a string")
    nodes_raw = r.get(b"nodes", b"")
    values_raw = r.get(b"values", [])
    token = r.get(b"token")
    if not isinstance(nodes_raw, bytes):
        raise RemoteKrpcError("krpc: response 'nodes' is not a string")
    if not isinstance(values_raw, list):
        raise RemoteKrpcError("krpc: response 'values' is not a list")
    if token is not None and (
        not isinstance(token, bytes) or len(token) > MAX_TOKEN_BYTES
    ):
        raise RemoteKrpcError("krpc: response 'token' is not a string or too long")
    try:
        nodes = tuple((node_id(i), a) for i, a in decode_nodes(nodes_raw) if a.port)
        values: list[PeerAddr] = []
        for item in values_raw:
            if not isinstance(item, bytes):
                raise RemoteKrpcError("krpc: a 'values' item is not a string")
            peer = decode_peer(item)
            if peer.port:
                values.append(peer)
    except CompactFormatError as exc:
        raise RemoteKrpcError(f"krpc: response: {exc}") from exc
    return Response(
        transaction_id=tid,
        sender_id=node_id(sender),
        nodes=nodes,
        values=tuple(values),
        token=token,
        version=version,
    )


def _decode_error(
    top: dict[bytes, object], tid: bytes, version: bytes | None
) -> ErrorMessage:
    code, message = decode_error_body(top, "krpc")
    return ErrorMessage(transaction_id=tid, code=code, message=message, version=version)
