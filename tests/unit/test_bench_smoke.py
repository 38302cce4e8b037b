"""CI smoke run of the benchmark suite (issue 7): ``python -m tests.bench
--quick`` must complete every benchmark with correct output (every copy
byte-equal to its original, torrents with mktorrent's piece hashes, metadata
for the right info hash, tracker replies well formed, DHT lookups finding the
announced peer). Speed is not checked here; floors are for full runs.

In CI (``BITSWARM_REQUIRE_INTEROP`` or ``CI=true``) every anchor client must
be present; elsewhere a missing one only leaves its anchor empty.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = {
    "transfer": ("1 transfer", "2 leecher RSS"),
    "create": ("3 create",),
    "magnet": ("4 magnet",),
    "swarm": ("5 swarm",),
    "tracker": ("6 tracker",),
    "dht": ("7 DHT",),
}
SMOKE_TIMEOUT_S = 150  # the quick suite must stay under 2 minutes


def _ci() -> bool:
    return bool(
        os.environ.get("CI") == "true" or os.environ.get("BITSWARM_REQUIRE_INTEROP")
    )


@pytest.mark.timeout(SMOKE_TIMEOUT_S + 20)
def test_quick_suite_completes_with_correct_output(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["mode"] == "quick"
    assert doc["errors"] == []
    assert set(doc["benchmarks"]) == set(BENCHES)
    for name, bench_labels in BENCHES.items():
        metrics = [m for m in doc["metrics"] if m["bench"] in bench_labels]
        assert metrics, f"{name}: no results"
        for m in metrics:
            assert m["bitswarm"], f"{name}: {m['name']} has no bitswarm value"
            assert all(v > 0 for v in m["bitswarm"]), m
    missing = [tool for tool, path in doc["clients"].items() if path is None]
    if _ci():
        assert missing == [], f"CI needs every anchor client: {missing}"
    if not missing:
        anchored = [m for m in doc["metrics"] if m["anchor_name"]]
        for m in anchored:
            assert m["anchor"], f"{m['bench']}: {m['name']} has no anchor value"
