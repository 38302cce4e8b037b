"""Shared test configuration.

asyncio debug mode is on for unit and simulation tests only: it halves loopback
throughput, so end-to-end and interop tests run without it (shared STYLE.md 7).
"""

from __future__ import annotations

import os
import shutil

import pytest


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    for item in items:
        path = str(item.path)
        for tier in ("sim", "e2e", "interop"):
            if f"{os.sep}tests{os.sep}{tier}{os.sep}" in path:
                item.add_marker(getattr(pytest.mark, tier))


def require_tool(name: str) -> str:
    """Path of a third-party tool; a skip locally, a failure in CI (CI=true)."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI") == "true" or os.environ.get("BITSWARM_REQUIRE_INTEROP"):
            pytest.fail(f"{name} is not installed but CI requires it")
        pytest.skip(f"{name} is not installed")
    return path
