"""Distribution-time bounds for the swarm lab: client-server vs peer-to-peer.

The course notes (Kurose & Ross, "Scalability of P2P architectures") bound the
time to distribute a file of ``F`` bytes from one server (upload ``u_s``) to
``N`` peers (uploads ``u_i``, slowest download ``d_min``):

- client-server: ``D_cs >= max{N*F/u_s, F/d_min}``: the server alone sends
  all ``N`` copies, so the time grows linearly in ``N``;
- peer-to-peer: ``D_p2p >= max{F/u_s, F/d_min, N*F/(u_s + sum u_i)}``: the
  server sends each bit at least once, and every peer's upload adds to the
  capacity the ``N`` copies share, so the time flattens.

This module holds the bound arithmetic, the lab's settings (file size, rates,
piece size, unchoke slots: chosen to suit small files), the token-bucket
burst tolerance that a measured time may fall below a bound by, and the
results' JSON shape. It never touches a clock or a socket; the lab
(``client/lab.py``) runs the real transfers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from client.core.ratelimit import DEFAULT_BURST_S, MIN_BURST_BYTES
from client.errors import ClientError

__all__ = [
    "DEFAULT_FILE_SECONDS",
    "DEFAULT_NS",
    "DEFAULT_UPLOAD_RATE",
    "LabPoint",
    "LabSettings",
    "bound_cs",
    "bound_p2p",
    "burst_tolerance_s",
    "choose_piece_length",
    "lab_settings",
    "parse_n_list",
    "parse_size",
    "results_document",
]

# Bytes/s each downloading peer may upload (u). Modest, so that 33 engines in
# one Python process stay far from saturating the CPU (which would inflate the
# measured times instead of the network limits setting them).
DEFAULT_UPLOAD_RATE = 256 * 1024
# Seconds: F/u, the time one peer needs to upload one copy (the notes' unit).
# 8 s rather than 4: the last blocks' latency (about a second at N = 32, see
# docs/LAB.md) is then a smaller share of the time being measured.
DEFAULT_FILE_SECONDS = 8.0
# u_s = SERVER_FACTOR * u (the notes' example: the server uploads 10x a peer).
SERVER_FACTOR = 10
# d = DOWNLOAD_FACTOR * u: large enough that F/d_min never sets a bound here
# (F/d = F/(20u) < F/u_s), yet a real limit, so d_min is a number.
DOWNLOAD_FACTOR = 20
# The N values of a default run.
DEFAULT_NS = (1, 2, 4, 8, 16, 32)
# Largest N the lab accepts: every peer is an engine in one process.
MAX_N = 128
# Pieces the lab aims for: enough that N peers hold different pieces to trade
# early (a small file in 256 KiB pieces would be 2 pieces), few enough that
# the per-piece overhead (hash, have to every peer) stays small.
TARGET_PIECES = 64
# Bytes: the smallest piece (one request block, BEP 3) and the largest the
# lab picks for its small files.
MIN_PIECE_LENGTH = 16 * 1024
MAX_PIECE_LENGTH = 1024 * 1024
# Regular unchoke slots of a downloader in P2P mode (BEP 3 practice, plus one
# optimistic). Measured against N slots (unchoke every neighbour): at N = 32,
# 1.33 vs 1.90 times the bound. Each unchoked connection keeps a block
# reserved in the peer's upload bucket, so with k unchoked a requested block
# waits about k block-times; few slots keep that latency short.
P2P_PEER_SLOTS = 4

_SIZE_RE = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[kKmMgG]?)(?:i?[bB])?")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """Parse a size flag into bytes: ``"512K"``, ``"1.5M"``, ``"65536"``.

    Units are binary (K = 1024) and may be followed by ``B``/``iB``.

    Raises:
        ClientError: the text is not a positive size.
    """
    match = _SIZE_RE.fullmatch(text.strip())
    if match is None:
        raise ClientError(f"size {text!r} is not a number of bytes like 512K or 1M")
    value = round(float(match["num"]) * _UNITS[match["unit"].lower()])
    if value < 1:
        raise ClientError(f"size {text!r} must be at least 1 byte")
    return value


def parse_n_list(text: str) -> tuple[int, ...]:
    """Parse ``--n 1,2,4,8``: distinct peer counts, sorted.

    Raises:
        ClientError: an entry is not an integer in 1..MAX_N.
    """
    ns: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            n = int(part)
        except ValueError:
            raise ClientError(f"peer count {part!r} is not a whole number") from None
        if not 1 <= n <= MAX_N:
            raise ClientError(f"peer count {n} is outside 1..{MAX_N}")
        ns.add(n)
    if not ns:
        raise ClientError("no peer counts given")
    return tuple(sorted(ns))


def bound_cs(n: int, *, file_size: float, server_rate: float, d_min: float) -> float:
    """The client-server lower bound ``max{N*F/u_s, F/d_min}``, in seconds."""
    return max(n * file_size / server_rate, file_size / d_min)


def bound_p2p(
    n: int,
    *,
    file_size: float,
    server_rate: float,
    d_min: float,
    peer_rates: Sequence[float] | None = None,
    peer_rate: float | None = None,
) -> float:
    """The P2P lower bound ``max{F/u_s, F/d_min, N*F/(u_s + sum u_i)}``.

    Give the peers' upload rates either one by one (``peer_rates``, N of
    them) or as one rate shared by all N (``peer_rate``).

    Raises:
        ValueError: neither or both of ``peer_rates`` and ``peer_rate``, or
            ``peer_rates`` does not hold N rates.
    """
    if (peer_rates is None) == (peer_rate is None):
        raise ValueError("give exactly one of peer_rates and peer_rate")
    if peer_rates is not None:
        if len(peer_rates) != n:
            raise ValueError(f"{len(peer_rates)} peer rates for N = {n}")
        total = math.fsum(peer_rates)
    else:
        assert peer_rate is not None  # checked above
        total = n * peer_rate
    return max(
        file_size / server_rate,
        file_size / d_min,
        n * file_size / (server_rate + total),
    )


def _burst_bytes(rate: float) -> float:
    """A token bucket's default burst (client/core/ratelimit.py)."""
    return max(rate * DEFAULT_BURST_S, float(MIN_BURST_BYTES))


def burst_tolerance_s(rates: Iterable[float]) -> float:
    """How far below a bound a measured time may fall, in seconds.

    Each rate limit is a token bucket that starts full: by time ``t`` it has
    passed at most ``burst + rate * t`` bytes. Every bound above divides some
    amount of data by a sum of rates; with the bursts added to the data, the
    time shrinks by at most ``max(burst_i / rate_i)`` over the buckets
    involved (0.1 s for rates of 160 KiB/s and more, which is the default
    ``DEFAULT_BURST_S``; longer for slower buckets, whose burst is at least one
    16 KiB block).
    """
    return max((_burst_bytes(r) / r for r in rates), default=0.0)


def choose_piece_length(file_size: int, target_pieces: int = TARGET_PIECES) -> int:
    """A power-of-two piece size giving about ``target_pieces`` pieces.

    Small pieces let a peer forward a piece soon after it arrived (a piece is
    only shared once it is whole and verified), which is what lets P2P
    approach its bound; the floor is one 16 KiB request block.
    """
    want = max(1, file_size // max(1, target_pieces))
    length = MIN_PIECE_LENGTH
    while length * 2 <= want and length * 2 <= MAX_PIECE_LENGTH:
        length *= 2
    return length


@dataclass(frozen=True, slots=True, kw_only=True)
class LabSettings:
    """What one lab run uses; rates in bytes/s, sizes in bytes.

    Attributes:
        file_size: F.
        upload_rate: u, each downloading peer's upload limit.
        server_rate: u_s, the server's upload limit.
        download_rate: d, each downloading peer's download limit (d_min).
        piece_length: bytes per piece of the lab's torrent.
        peer_slots: downloaders' regular unchoke slots in P2P mode (the
            server always unchokes all N downloaders, so it serves them all
            at once in both modes).
        rechoke_interval_s: choke rounds (BEP 3 says 10 s; the lab's
            transfers last seconds).
    """

    file_size: int
    upload_rate: float
    server_rate: float
    download_rate: float
    piece_length: int
    peer_slots: int = P2P_PEER_SLOTS
    rechoke_interval_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("file_size", "upload_rate", "server_rate", "download_rate"):
            if not getattr(self, name) > 0:
                raise ClientError(f"lab: {name} must be positive")
        if self.piece_length < MIN_PIECE_LENGTH:
            raise ClientError(f"lab: piece length below {MIN_PIECE_LENGTH} bytes")
        if self.peer_slots < 1:
            raise ClientError("lab: peers need at least one unchoke slot")

    @property
    def num_pieces(self) -> int:
        return -(-self.file_size // self.piece_length)

    def server_slots(self, n: int) -> int:
        """The server's unchoke slots for N downloaders (either mode: all)."""
        return max(1, n)

    def bound_cs(self, n: int) -> float:
        return bound_cs(
            n,
            file_size=self.file_size,
            server_rate=self.server_rate,
            d_min=self.download_rate,
        )

    def bound_p2p(self, n: int) -> float:
        return bound_p2p(
            n,
            file_size=self.file_size,
            server_rate=self.server_rate,
            d_min=self.download_rate,
            peer_rate=self.upload_rate,
        )

    @property
    def tolerance_s(self) -> float:
        """The rate limiters' burst: how far below a bound a time may be."""
        return burst_tolerance_s(
            (self.upload_rate, self.server_rate, self.download_rate)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "F": self.file_size,
            "u": self.upload_rate,
            "u_s": self.server_rate,
            "d": self.download_rate,
            "piece_size": self.piece_length,
            "pieces": self.num_pieces,
            "unchoke_slots": {
                "cs_server": "N",
                "p2p_server": "N",
                "p2p_peer": self.peer_slots,
                "optimistic": 1,
            },
            "rechoke_interval_s": self.rechoke_interval_s,
            "burst_tolerance_s": self.tolerance_s,
        }


def lab_settings(
    *,
    file_size: int | None = None,
    upload_rate: float | None = None,
    server_rate: float | None = None,
    download_rate: float | None = None,
    piece_length: int | None = None,
) -> LabSettings:
    """The lab's settings, with the notes' defaults for what is not given.

    Defaults: ``u = 256 KiB/s``, ``F = 8 s * u`` (2 MiB), ``u_s = 10u``,
    ``d = 20u``, and a piece size giving about 64 pieces (16 KiB minimum).

    Raises:
        ClientError: a value is not positive.
    """
    u = float(upload_rate if upload_rate is not None else DEFAULT_UPLOAD_RATE)
    if not u > 0:
        raise ClientError("lab: upload rate must be positive")
    size = file_size if file_size is not None else round(DEFAULT_FILE_SECONDS * u)
    return LabSettings(
        file_size=size,
        upload_rate=u,
        server_rate=float(server_rate) if server_rate else SERVER_FACTOR * u,
        download_rate=float(download_rate) if download_rate else DOWNLOAD_FACTOR * u,
        piece_length=piece_length or choose_piece_length(size),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class LabPoint:
    """One N: measured and bound times, seconds.

    Attributes:
        cpu_cs: process CPU seconds per wall second during the
            client-server run (1.0 = the event loop's core is saturated);
            likewise ``cpu_p2p``.
        load: the machine's load average during the runs (other processes
            competing for the cores slow the swarm down too).
    """

    n: int
    measured_cs: float
    bound_cs: float
    measured_p2p: float
    bound_p2p: float
    cpu_cs: float = 0.0
    cpu_p2p: float = 0.0
    load: float = 0.0

    @property
    def ratio_cs(self) -> float:
        return self.measured_cs / self.bound_cs

    @property
    def ratio_p2p(self) -> float:
        return self.measured_p2p / self.bound_p2p

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "measured_cs": self.measured_cs,
            "bound_cs": self.bound_cs,
            "measured_p2p": self.measured_p2p,
            "bound_p2p": self.bound_p2p,
            "ratio_cs": self.ratio_cs,
            "ratio_p2p": self.ratio_p2p,
            "cpu_cs": self.cpu_cs,
            "cpu_p2p": self.cpu_p2p,
            "load": self.load,
        }


def results_document(
    settings: LabSettings, points: Sequence[LabPoint]
) -> dict[str, Any]:
    """The ``--out`` JSON: the settings and one entry per N."""
    return {
        "settings": settings.to_json(),
        "results": [p.to_json() for p in points],
    }
