"""Magnet URIs for BitTorrent v1 (BEP 9).

``magnet:?xt=urn:btih:<info-hash>&dn=<name>&tr=<tracker-url>&x.pe=<peer-address>``

* ``xt`` (also ``xt.1``, ``xt.2``...): ``urn:btih:`` and 40 hex digits or 32
  base32 characters, either case. Other URNs (``urn:btmh:``, BEP 52) are
  ignored; two *different* btih values are refused.
* ``dn``: display name; ``tr`` (also ``tr.N``): trackers, repeated, in order,
  duplicates dropped; ``x.pe``: ``HOST:PORT`` or ``[IPv6]:PORT`` peers;
  ``xl``: exact length in bytes. Unknown parameters are ignored.
* Values are percent-decoded as UTF-8 (RFC 3986); ``+`` stays a plus sign,
  since BEP 9 says nothing of form encoding. Invalid UTF-8 is replaced.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from client.core.metainfo import Metainfo
from client.errors import (
    MagnetConflictError,
    MagnetHashError,
    MagnetLengthError,
    MagnetMissingHashError,
    MagnetPeerError,
    NotAMagnetError,
)
from dht import PeerAddr

__all__ = ["Magnet", "magnet_from_metainfo", "parse_magnet"]

INFO_HASH_BYTES = 20  # SHA-1 infohash (BEP 3)
MAX_EXACT_LENGTH = (1 << 63) - 1  # xl cap: bytes, the int64 range libtorrent uses
MAX_MAGNET_CHARS = 64 * 1024  # longest URI we look at (a few hundred trackers)

_SCHEME = "magnet:?"
_BTIH = "urn:btih:"
_NUMBERED = re.compile(r"(xt|tr|dn|xl)(?:\.[0-9]+)?")
_HEX = re.compile(r"[0-9A-Fa-f]{40}")
_BASE32 = re.compile(r"[A-Za-z2-7]{32}")
_DIGITS = re.compile(r"[0-9]{1,19}")
_HOSTNAME = re.compile(
    r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Magnet:
    """A parsed BitTorrent v1 magnet link."""

    info_hash: bytes
    display_name: str | None = None
    trackers: tuple[str, ...] = ()
    peers: tuple[PeerAddr, ...] = ()
    exact_length: int | None = None

    def __post_init__(self) -> None:
        if len(self.info_hash) != INFO_HASH_BYTES:
            raise MagnetHashError(
                f"magnet: infohash is {len(self.info_hash)} bytes, not 20"
            )
        if self.exact_length is not None and not (
            0 <= self.exact_length <= MAX_EXACT_LENGTH
        ):
            raise MagnetLengthError(f"magnet: xl {self.exact_length} out of range")

    @property
    def info_hash_hex(self) -> str:
        return self.info_hash.hex()

    def to_uri(self) -> str:
        """The magnet URI: xt (hex), dn, xl, each tr, each x.pe."""
        parts = [f"xt={_BTIH}{self.info_hash.hex()}"]
        if self.display_name is not None:
            parts.append(f"dn={quote(self.display_name, safe='')}")
        if self.exact_length is not None:
            parts.append(f"xl={self.exact_length}")
        parts += [f"tr={quote(url, safe='')}" for url in self.trackers]
        parts += [f"x.pe={quote(str(peer), safe='[]:')}" for peer in self.peers]
        return _SCHEME + "&".join(parts)


def _parse_btih(value: str) -> bytes:
    text = value[len(_BTIH) :]
    shown = text[:64]
    if len(text) == 2 * INFO_HASH_BYTES:
        if not _HEX.fullmatch(text):
            raise MagnetHashError(
                f"magnet: btih {shown!r} holds characters that are not hex"
            )
        return bytes.fromhex(text)
    if len(text) == 32:
        if not _BASE32.fullmatch(text):
            raise MagnetHashError(
                f"magnet: btih {shown!r} holds characters that are not base32"
            )
        return base64.b32decode(text.upper())
    raise MagnetHashError(
        f"magnet: btih {shown!r} is {len(text)} characters; need 40 hex or 32 base32"
    )


def _parse_peer(value: str) -> PeerAddr:
    bad = MagnetPeerError(f"magnet: x.pe {value[:100]!r} is not HOST:PORT")
    host, sep, port = value.rpartition(":")
    if not sep or not _DIGITS.fullmatch(port) or not 0 < int(port) <= 0xFFFF:
        raise bad
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad from None
    elif not _HOSTNAME.fullmatch(host) or len(host) > 253:
        raise bad  # also refuses unbracketed IPv6 literals
    return PeerAddr(host, int(port))


def parse_magnet(uri: str) -> Magnet:
    """Parse a BEP 9 magnet URI.

    Raises:
        NotAMagnetError: the text does not start with ``magnet:?``, is too
            long, or holds undecodable bytes (lone surrogates).
        MagnetMissingHashError: no ``xt=urn:btih:`` parameter.
        MagnetHashError: a btih value is not 40 hex / 32 base32 characters.
        MagnetConflictError: two different btih values.
        MagnetPeerError: an ``x.pe`` is not ``HOST:PORT``.
        MagnetLengthError: ``xl`` is not a non-negative integer.
    """
    if uri[: len(_SCHEME)].lower() != _SCHEME:
        raise NotAMagnetError(
            f"not a magnet URI (expected 'magnet:?...'): {uri[:60]!r}"
        )
    if len(uri) > MAX_MAGNET_CHARS:
        raise NotAMagnetError(
            f"magnet: URI is {len(uri)} characters, over the cap of {MAX_MAGNET_CHARS}"
        )
    try:
        uri.encode("utf-8")
    except UnicodeEncodeError:
        # A command-line argument with bytes that are not UTF-8 arrives with
        # lone surrogates (PEP 383); they would break to_uri() and the UI.
        raise NotAMagnetError(
            f"magnet: URI holds bytes that are not UTF-8: {uri[:60]!r}"
        ) from None
    query = uri[len(_SCHEME) :].partition("#")[0]
    hashes: list[bytes] = []
    other_xt: list[str] = []
    name: str | None = None
    length: int | None = None
    trackers: list[str] = []
    peers: list[PeerAddr] = []
    for part in query.split("&"):
        raw_key, _, raw_value = part.partition("=")
        key = unquote(raw_key, errors="replace").lower()
        value = unquote(raw_value, errors="replace")
        numbered = _NUMBERED.fullmatch(key)
        kind = numbered.group(1) if numbered else key
        if kind == "xt":
            if value[: len(_BTIH)].lower() == _BTIH:
                hashes.append(_parse_btih(value))
            else:
                other_xt.append(value)
        elif kind == "dn":
            if name is None:
                name = value
        elif kind == "tr":
            if value and value not in trackers:
                trackers.append(value)
        elif kind == "x.pe":
            peer = _parse_peer(value)
            if peer not in peers:
                peers.append(peer)
        elif kind == "xl":
            if not _DIGITS.fullmatch(value):
                raise MagnetLengthError(
                    f"magnet: xl {value[:40]!r} is not a non-negative integer "
                    "(at most 19 digits)"
                )
            if length is None:
                length = int(value)
    if not hashes:
        if any(v[:9].lower() == "urn:btmh:" for v in other_xt):
            raise MagnetMissingHashError(
                "magnet: only a v2 'urn:btmh:' hash; v2-only torrents are not supported"
            )
        raise MagnetMissingHashError("magnet: missing 'xt=urn:btih:<infohash>'")
    if len(set(hashes)) > 1:
        shown = ", ".join(sorted({h.hex() for h in hashes}))
        raise MagnetConflictError(f"magnet: several different btih values: {shown}")
    return Magnet(
        info_hash=hashes[0],
        display_name=name,
        trackers=tuple(trackers),
        peers=tuple(peers),
        exact_length=length,
    )


def magnet_from_metainfo(meta: Metainfo) -> Magnet:
    """The magnet link of a torrent: hex infohash, name, every tracker, length."""
    return Magnet(
        info_hash=meta.info_hash,
        display_name=meta.name,
        trackers=meta.trackers,
        exact_length=meta.total_length,
    )
