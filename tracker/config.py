"""The tracker's configuration."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from tracker.errors import TrackerError

__all__ = [
    "DEFAULT_INTERVAL_S",
    "DEFAULT_MIN_INTERVAL_S",
    "DEFAULT_NUMWANT",
    "DEFAULT_PEER_TIMEOUT_S",
    "MAX_NUMWANT",
    "TrackerConfig",
    "testing_config",
]

DEFAULT_INTERVAL_S = 1800.0  # seconds between regular announces, sent as 'interval'
DEFAULT_MIN_INTERVAL_S = 900.0  # seconds, sent as 'min interval'
DEFAULT_PEER_TIMEOUT_S = 2 * DEFAULT_INTERVAL_S + 120.0  # two missed announces, seconds
DEFAULT_NUMWANT = 50  # peers returned when numwant is absent (BEP 3 suggests 50)
MAX_NUMWANT = 200  # cap on numwant: bounds the response size


@dataclass(frozen=True, slots=True, kw_only=True)
class TrackerConfig:
    """How a tracker listens and what it tells clients.

    ``interval_s`` and ``min_interval_s`` are sent rounded to whole seconds
    (bencode has no floats). ``trust_ip`` honours the announce ``ip``
    parameter; leave it off unless every client sits behind a proxy you run.
    """

    host: str = "127.0.0.1"
    port: int = 6969
    #: UDP tracker port (BEP 15); None serves HTTP only, 0 picks a free port
    udp_port: int | None = None
    interval_s: float = DEFAULT_INTERVAL_S
    min_interval_s: float = DEFAULT_MIN_INTERVAL_S
    peer_timeout_s: float = DEFAULT_PEER_TIMEOUT_S
    default_numwant: int = DEFAULT_NUMWANT
    max_numwant: int = MAX_NUMWANT
    trust_ip: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 0xFFFF:
            raise TrackerError(f"tracker config: port {self.port} is out of range")
        if self.udp_port is not None and not 0 <= self.udp_port <= 0xFFFF:
            raise TrackerError(
                f"tracker config: udp_port {self.udp_port} is out of range"
            )
        for name in ("interval_s", "min_interval_s"):
            if getattr(self, name) < 0:
                raise TrackerError(f"tracker config: {name} is negative")
        if self.peer_timeout_s <= 0:
            raise TrackerError("tracker config: peer_timeout_s must be positive")
        if self.max_numwant < 0 or self.default_numwant < 0:
            raise TrackerError("tracker config: numwant limits must be >= 0")


def testing_config(**overrides: Any) -> TrackerConfig:
    """Loopback, port 0, short intervals: what tests want."""
    base = TrackerConfig(
        host="127.0.0.1",
        port=0,
        interval_s=1.0,
        min_interval_s=0.0,
        peer_timeout_s=60.0,
    )
    return replace(base, **overrides)


# pytest collects any imported function named test*; this one is a helper.
testing_config.__test__ = False  # type: ignore[attr-defined]  # read by pytest
