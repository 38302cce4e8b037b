"""Handing memory back to the system after swarms expire (issue 8).

The registry keeps its peers in buffers from the C allocator (see
``tracker/core/registry.py``). glibc returns freed memory at the top of its
heap by itself, but memory freed in the middle stays mapped until
``malloc_trim`` is called. After a load of 100,000 peers expires, that is
the difference between RSS falling back near its idle level or staying ~10
MiB above it. This driver-side helper watches the registry's peer count and
calls ``malloc_trim(0)`` once it has fallen by half and by at least
:data:`TRIM_AFTER_PEERS` since the last trim; elsewhere (no glibc) it does
nothing.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable

__all__ = ["TRIM_AFTER_PEERS", "MemoryTrimmer"]

log = logging.getLogger(__name__)

TRIM_AFTER_PEERS = 10_000  # peers gone since the peak before a trim (~0.5 MiB)


def _load_malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to call
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    foreign: Callable[[int], int] = trim  # a ctypes foreign function
    return foreign


class MemoryTrimmer:
    """Call :meth:`observe` with the registry's peer count after each request;
    ``trim`` is injectable for tests (default: glibc's ``malloc_trim``)."""

    def __init__(self, trim: Callable[[int], int] | None = None) -> None:
        self._trim = trim if trim is not None else _load_malloc_trim()
        self._high = 0  # most peers seen since the last trim
        self.trims = 0

    def observe(self, peers: int) -> None:
        if peers >= self._high:
            self._high = peers
            return
        if self._high - peers < TRIM_AFTER_PEERS or peers * 2 > self._high:
            return
        log.debug("tracker: %d peers gone, trimming the heap", self._high - peers)
        self._high = peers
        self.trims += 1
        if self._trim is not None:
            self._trim(0)
