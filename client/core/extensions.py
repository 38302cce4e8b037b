"""The extension protocol's handshake (BEP 10), as pure functions and a small state.

BEP 10 carries extension messages in the peer wire's ``extended`` message (id
20, see :class:`client.core.wire.Extended`); the first payload byte is an
extension id and id 0 is the *extension handshake*, a bencoded dictionary:

* ``m``: extension name → message id. The ids are the ones the *sender* wants
  to receive, so we send ``ut_metadata`` to a peer with the id from *its*
  ``m`` and the peer sends to us with the ids from ours
  (:data:`UT_METADATA_ID`, :data:`UT_PEX_ID`). Id 0 means "disabled".
  Later handshakes on the same connection are additive: they carry changes.
* ``p`` (listen port), ``v`` (client name), ``yourip`` (the address the
  sender sees us at, 4 or 16 bytes), ``ipv4``/``ipv6`` (the sender's own
  addresses), ``reqq`` (how many outstanding requests it keeps).
* ``metadata_size`` comes from BEP 9: the info dictionary's size in bytes.

Parsing is tolerant where BEP 10 asks for it (unknown keys, unknown
extensions, optional keys of the wrong type are ignored) and strict about
the bencoding itself (via :mod:`client.core.bencode_span`) and about
``metadata_size``, which bounds an allocation.
"""

from __future__ import annotations

from dataclasses import dataclass

import bencodepy

from client.core import bencode_span
from client.core.wire import Extended
from client.errors import (
    LocalPeerProtocolError,
    MetainfoError,
    RemotePeerProtocolError,
)

__all__ = [
    "EXT_HANDSHAKE_ID",
    "LOCAL_EXTENSION_IDS",
    "MAX_METADATA_BYTES",
    "UT_METADATA",
    "UT_METADATA_ID",
    "UT_PEX",
    "UT_PEX_ID",
    "ExtHandshake",
    "ExtensionState",
    "decode_ext_dict",
    "encode_ext_handshake",
    "ext_handshake_message",
    "local_extension_name",
    "parse_ext_handshake",
]

EXT_HANDSHAKE_ID = 0  # extended-message id of the handshake itself (BEP 10)
UT_METADATA = "ut_metadata"  # BEP 9
UT_PEX = "ut_pex"  # BEP 11
# The ids WE assign in our 'm' dictionary: peers send these extensions to us
# with these ids. Any distinct non-zero bytes would do (BEP 10).
UT_METADATA_ID = 1
UT_PEX_ID = 2
LOCAL_EXTENSION_IDS: dict[str, int] = {UT_METADATA: UT_METADATA_ID, UT_PEX: UT_PEX_ID}
# Largest info dictionary we fetch or serve, bytes. A metadata_size above this
# would make us allocate on a peer's say-so; real torrents' info dicts are well
# under it (a 20-byte hash per piece: 16 MiB is ~800k pieces).
MAX_METADATA_BYTES = 16 * 1024 * 1024
MAX_EXT_ID = 255  # ids travel as one byte after the extended message id
MAX_VERSION_CHARS = 200  # longest 'v' we keep (it only goes to logs and the UI)
DEFAULT_REQQ = 250  # our 'reqq': libtorrent's default, and what we advertise


def decode_ext_dict(payload: bytes, *, what: str) -> dict[bytes, object]:
    """Decode one complete bencoded dictionary strictly (no trailing bytes).

    Args:
        payload: the bytes, exactly one bencoded value.
        what: what is being decoded, for messages ("ut_pex message").

    Raises:
        RemotePeerProtocolError: malformed bencode, trailing bytes, or not a
            dictionary.
    """
    try:
        value = bencode_span.decode(bytes(payload), what=what)
    except MetainfoError as exc:  # BencodeSyntaxError / TrailingDataError
        raise RemotePeerProtocolError(str(exc)) from exc
    if not isinstance(value, dict):
        raise RemotePeerProtocolError(
            f"{what}: bencoded value is a {type(value).__name__}, not a dictionary"
        )
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtHandshake:
    """A peer's extension handshake (BEP 10), with BEP 9's ``metadata_size``.

    ``m`` keeps entries whose id is 0 (BEP 10: "disabled"), so that a later
    handshake can switch an extension off; :class:`ExtensionState` applies
    that. Optional keys that were absent or of the wrong type are None.
    """

    m: dict[str, int]
    v: str | None = None
    p: int | None = None
    metadata_size: int | None = None
    reqq: int | None = None
    yourip: bytes | None = None
    ipv4: bytes | None = None
    ipv6: bytes | None = None


def encode_ext_handshake(
    *,
    metadata_size: int | None,
    listen_port: int | None,
    yourip: bytes | None,
    reqq: int = DEFAULT_REQQ,
    version: str = "bitswarm 0.1",
    ut_pex: bool = True,
) -> bytes:
    """Encode our extension handshake payload (without the wire framing).

    We always advertise ``ut_metadata``: with ``metadata_size`` we can serve
    the info dictionary, without it we are fetching it. Callers leave
    ``ut_pex`` off for private torrents (BEP 27).

    Args:
        metadata_size: the info dictionary's size in bytes, if we have it.
        listen_port: our TCP listen port (``p``), if we accept connections.
        yourip: the peer's address as we see it, 4 or 16 packed bytes.
        reqq: how many outstanding block requests we accept.
        version: our client name and version (``v``).
        ut_pex: whether to advertise BEP 11 peer exchange.

    Raises:
        LocalPeerProtocolError: an argument is out of range.
    """
    if not 1 <= reqq <= 0xFFFF:
        raise LocalPeerProtocolError(f"ext handshake: reqq {reqq} out of range")
    m: dict[bytes, int] = {UT_METADATA.encode(): UT_METADATA_ID}
    if ut_pex:
        m[UT_PEX.encode()] = UT_PEX_ID
    d: dict[bytes, object] = {b"m": m, b"reqq": reqq, b"v": version.encode()}
    if metadata_size is not None:
        if not 1 <= metadata_size <= MAX_METADATA_BYTES:
            raise LocalPeerProtocolError(
                f"ext handshake: metadata_size {metadata_size} not in "
                f"1..{MAX_METADATA_BYTES}"
            )
        d[b"metadata_size"] = metadata_size
    if listen_port is not None:
        if not 1 <= listen_port <= 0xFFFF:
            raise LocalPeerProtocolError(
                f"ext handshake: listen port {listen_port} out of range"
            )
        d[b"p"] = listen_port
    if yourip is not None:
        if len(yourip) not in (4, 16):
            raise LocalPeerProtocolError(
                f"ext handshake: yourip is {len(yourip)} bytes, not 4 or 16"
            )
        d[b"yourip"] = bytes(yourip)
    out: bytes = bencodepy.encode(d)  # sorts keys, as BEP 3 requires
    return out


def ext_handshake_message(
    *,
    metadata_size: int | None,
    listen_port: int | None,
    yourip: bytes | None,
    ut_pex: bool,
) -> Extended:
    """Our extension handshake as the peer wire's ``extended`` message with
    id 0, ready to send; the arguments are :func:`encode_ext_handshake`'s.

    Raises:
        LocalPeerProtocolError: an argument is out of range.
    """
    payload = encode_ext_handshake(
        metadata_size=metadata_size,
        listen_port=listen_port,
        yourip=yourip,
        ut_pex=ut_pex,
    )
    return Extended(ext_id=EXT_HANDSHAKE_ID, payload=payload)


def _opt_int(d: dict[bytes, object], key: bytes, lo: int, hi: int) -> int | None:
    value = d.get(key)
    if isinstance(value, int) and lo <= value <= hi:
        return value
    return None


def _opt_bytes(
    d: dict[bytes, object], key: bytes, sizes: tuple[int, ...]
) -> bytes | None:
    value = d.get(key)
    if isinstance(value, bytes) and len(value) in sizes:
        return value
    return None


def parse_ext_handshake(payload: bytes) -> ExtHandshake:
    """Parse a peer's extension handshake payload (the bytes after id 0).

    Unknown keys are ignored, as are optional keys of the wrong type or out of
    range, ``m`` entries whose name is not UTF-8 or whose id is not 0..255,
    and an ``m`` that is not a dictionary.

    Raises:
        RemotePeerProtocolError: the payload is not one bencoded dictionary,
            or its ``metadata_size`` exceeds :data:`MAX_METADATA_BYTES`.
    """
    d = decode_ext_dict(payload, what="ext handshake")
    m: dict[str, int] = {}
    raw_m = d.get(b"m")
    if isinstance(raw_m, dict):
        for name, ext_id in raw_m.items():
            if not isinstance(ext_id, int) or not 0 <= ext_id <= MAX_EXT_ID:
                continue
            try:
                m[name.decode("utf-8")] = ext_id
            except UnicodeDecodeError:
                continue  # not a name we could recognise anyway
    metadata_size = d.get(b"metadata_size")
    if isinstance(metadata_size, int) and metadata_size > MAX_METADATA_BYTES:
        raise RemotePeerProtocolError(
            f"ext handshake: metadata_size {metadata_size} exceeds the "
            f"{MAX_METADATA_BYTES}-byte cap"
        )
    raw_v = d.get(b"v")
    v = (
        raw_v[:MAX_VERSION_CHARS].decode("utf-8", errors="replace")
        if isinstance(raw_v, bytes)
        else None
    )
    return ExtHandshake(
        m=m,
        v=v,
        p=_opt_int(d, b"p", 1, 0xFFFF),
        metadata_size=_opt_int(d, b"metadata_size", 1, MAX_METADATA_BYTES),
        reqq=_opt_int(d, b"reqq", 1, 2**31 - 1),
        yourip=_opt_bytes(d, b"yourip", (4, 16)),
        ipv4=_opt_bytes(d, b"ipv4", (4,)),
        ipv6=_opt_bytes(d, b"ipv6", (16,)),
    )


def local_extension_name(ext_id: int) -> str | None:
    """Name of the extension a peer means when it sends us ``ext_id``.

    Returns None for 0 (the handshake) and for ids we never assigned.
    """
    for name, local_id in LOCAL_EXTENSION_IDS.items():
        if local_id == ext_id:
            return name
    return None


class ExtensionState:
    """What one peer told us in its extension handshake(s).

    BEP 10 lets a peer send the handshake again; its ``m`` then holds only
    changes (an id of 0 disables that extension), and other keys replace
    earlier values when present.
    """

    __slots__ = ("_handshake", "_metadata_size", "_peer_ids")

    def __init__(self) -> None:
        self._peer_ids: dict[str, int] = {}
        self._handshake: ExtHandshake | None = None
        self._metadata_size: int | None = None

    def receive_handshake(self, payload: bytes) -> ExtHandshake:
        """Parse an extension handshake payload and record it.

        Raises:
            RemotePeerProtocolError: see :func:`parse_ext_handshake`.
        """
        handshake = parse_ext_handshake(payload)
        self.on_handshake(handshake)
        return handshake

    def on_handshake(self, handshake: ExtHandshake) -> None:
        """Record an already parsed handshake (merging into earlier ones)."""
        for name, ext_id in handshake.m.items():
            if ext_id == 0:
                self._peer_ids.pop(name, None)
            else:
                self._peer_ids[name] = ext_id
        if handshake.metadata_size is not None:
            self._metadata_size = handshake.metadata_size
        self._handshake = handshake

    @property
    def received(self) -> bool:
        """Whether the peer has sent an extension handshake yet."""
        return self._handshake is not None

    @property
    def handshake(self) -> ExtHandshake | None:
        """The latest handshake as received (not merged), if any."""
        return self._handshake

    @property
    def metadata_size(self) -> int | None:
        """The latest ``metadata_size`` the peer advertised, if any."""
        return self._metadata_size

    @property
    def peer_extensions(self) -> dict[str, int]:
        """A copy of the peer's enabled extensions: name → its id."""
        return dict(self._peer_ids)

    def peer_id_for(self, name: str) -> int | None:
        """The id to put in an ``extended`` message when SENDING ``name`` to
        this peer, or None if the peer has not enabled it."""
        return self._peer_ids.get(name)

    def supports(self, name: str) -> bool:
        """Whether the peer has enabled extension ``name``."""
        return name in self._peer_ids
