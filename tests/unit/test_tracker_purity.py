"""tracker/core stays sans-I/O, and tracker stays a leaf package (STYLE 1)."""

from __future__ import annotations

import ast
from pathlib import Path

import tracker

FORBIDDEN = {"asyncio", "aiohttp", "socket", "rich", "logging", "time", "os", "random"}
ROOT = Path(tracker.__file__).parent


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_core_imports_no_io() -> None:
    for path in (ROOT / "core").glob("*.py"):
        text = path.read_text()
        bad = imports(path) & FORBIDDEN
        # the registry takes a random.Random instance; only the type is imported
        if path.name == "registry.py":
            bad.discard("random")
            assert "random.random(" not in text
            assert "random.choice(" not in text
        assert not bad, f"{path.name} imports {bad}"


def test_tracker_is_a_leaf() -> None:
    for path in ROOT.rglob("*.py"):
        assert not imports(path) & {"client", "dht"}, path
