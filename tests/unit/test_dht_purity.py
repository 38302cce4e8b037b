"""dht/core stays sans-I/O, and dht stays a leaf package (STYLE 1)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import dht

FORBIDDEN = {"asyncio", "aiohttp", "socket", "rich", "logging", "time", "os"}
ROOT = Path(dht.__file__).parent


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_dht_core_imports_no_io() -> None:
    for path in (ROOT / "core").rglob("*.py"):
        assert not imports(path) & FORBIDDEN, path
        text = path.read_text()
        # random.Random instances are passed in; module-level functions are not used
        assert not re.search(
            r"random\.(random|choice|randint|getrandbits|randbytes)\(", text
        )
        assert "open(" not in text


def test_dht_is_a_leaf() -> None:
    for path in ROOT.rglob("*.py"):
        assert not imports(path) & {"client", "tracker"}, path
