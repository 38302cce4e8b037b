"""docs/INTEROP.md stays true to the interop tests: every test is listed,
every listed name is a test, and the installed clients are the versions the
page says were tested."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import ModuleType

from tests.conftest import require_tool
from tests.interop.clients import run_tool

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "INTEROP.md"
HERE = Path(__file__).resolve().parent


def _tests_in_modules() -> set[str]:
    names: set[str] = set()
    for path in sorted(HERE.glob("test_interop_*.py")):
        if path.name == Path(__file__).name:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:
            if isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef
            ) and node.name.startswith("test_"):
                names.add(node.name)
    return names


def _tests_in_doc() -> set[str]:
    return set(re.findall(r"`(test_\w+)`", DOC.read_text(encoding="utf-8")))


def test_every_interop_test_is_in_the_doc_and_nothing_else() -> None:
    in_code = _tests_in_modules()
    in_doc = _tests_in_doc()
    assert in_code - in_doc == set(), "tests missing from docs/INTEROP.md"
    assert in_doc - in_code == set(), "docs/INTEROP.md names tests that don't exist"


def _doc_version(client: str) -> str:
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith(client):
            return cells[1]
    raise AssertionError(f"docs/INTEROP.md has no version row for {client}")


async def test_installed_clients_are_the_versions_in_the_doc(lt: ModuleType) -> None:
    assert lt.__version__.startswith(_doc_version("libtorrent") + ".")
    aria2 = await run_tool(require_tool("aria2c"), "--version")
    assert f"aria2 version {_doc_version('aria2')}." in aria2
    transmission = await run_tool(require_tool("transmission-cli"), "--version")
    assert f"transmission-cli {_doc_version('Transmission')} " in transmission
    mktorrent = await run_tool(require_tool("mktorrent"), "-h")
    assert f"mktorrent {_doc_version('mktorrent')} " in mktorrent
