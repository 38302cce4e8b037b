"""Fixtures for the interop tier: libtorrent, our tracker, our DHT node.

Every test here runs against a real third-party client on 127.0.0.1; a
missing client is a skip locally and a failure in CI (``require_tool`` and
``require_libtorrent``; ``.ci/run`` sets ``BITSWARM_REQUIRE_INTEROP``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import ModuleType

import pytest

from dht import DhtNode
from dht import testing_config as dht_testing_config
from tests.interop.clients import require_libtorrent
from tests.interop.helpers import OurTracker


@pytest.fixture
def lt() -> ModuleType:
    """The libtorrent module (a skip locally, a failure in CI, if missing)."""
    return require_libtorrent()


@pytest.fixture
async def tracker() -> AsyncIterator[OurTracker]:
    """Our tracker, HTTP and UDP, announce interval 1 s, logging requests."""
    async with OurTracker() as server:
        yield server


@pytest.fixture
async def dht_node() -> AsyncIterator[DhtNode]:
    """A bitswarm DHT node on 127.0.0.1: the only bootstrap of every DHT."""
    async with DhtNode(config=dht_testing_config()) as node:
        yield node
