"""Run the fuzz targets by hand (long mode, issue 8).

    python -m tests.fuzz.run                          # every target, 1,000,000 inputs
    python -m tests.fuzz.run --target wire --runs 5000000
    python -m tests.fuzz.run --seconds 120 --jobs 2   # time-bounded, two at once
    python -m tests.fuzz.run --engine random          # without atheris
    python -m tests.fuzz.run --write-corpus           # refresh tests/fuzz/corpus/

With atheris installed (``pip install atheris``) each target runs in its own
coverage-guided libFuzzer process; new coverage inputs go to
``WORKDIR/<target>/corpus`` and crashing inputs to ``WORKDIR/<target>/``
(``crash-*``), never into the committed corpus. Without it (or with
``--engine random``) the seeded mutational engine of ``tests/fuzz/engine.py``
runs in this process. Either way one line per target gives the executions.
Exit status 1 when any target found a bug.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz.engine import CORPUS_DIR, fuzz
from tests.fuzz.targets import TARGETS, Target

DEFAULT_RUNS = 1_000_000
_EXECS = re.compile(rb"stat::number_of_executed_units:\s*(\d+)")
_DONE = re.compile(rb"Done (\d+) runs in (\d+) second")


@dataclass(frozen=True, slots=True)
class Outcome:
    target: str
    executions: int
    seconds: float
    bugs: int
    detail: str


def write_corpus(target: Target) -> None:
    """Write ``target``'s built-in seeds to tests/fuzz/corpus/<target>/."""
    folder = CORPUS_DIR / target.name
    folder.mkdir(parents=True, exist_ok=True)
    for seed in target.seeds():
        digest = hashlib.sha1(seed).hexdigest()[:16]
        (folder / f"seed-{digest}").write_bytes(seed)


def _run_atheris(
    target: Target, runs: int, seconds: float | None, workdir: Path
) -> Outcome:
    base = workdir / target.name
    corpus = base / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    seeds = base / "seeds"
    if seeds.exists():
        shutil.rmtree(seeds)
    seeds.mkdir()
    for i, seed in enumerate(target.seeds()):
        (seeds / f"builtin-{i}").write_bytes(seed)
    committed = CORPUS_DIR / target.name
    if committed.is_dir():
        for p in committed.iterdir():
            shutil.copy(p, seeds / p.name)
    cmd = [
        sys.executable,
        "-m",
        "tests.fuzz.atheris_main",
        target.name,
        f"-runs={runs}",
        f"-max_len={target.max_len}",
        f"-artifact_prefix={base}/",
        "-timeout=20",
        "-rss_limit_mb=3072",
        "-print_final_stats=1",
        str(corpus),
        str(seeds),
    ]
    if seconds is not None:
        cmd.insert(5, f"-max_total_time={int(seconds)}")
    start = time.monotonic()
    log = base / "fuzz.log"
    with log.open("wb") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    elapsed = time.monotonic() - start
    text = log.read_bytes()
    found = _EXECS.findall(text) or _DONE.findall(text)
    execs = (
        int(found[-1][0] if isinstance(found[-1], tuple) else found[-1]) if found else 0
    )
    crashes = sorted(base.glob("crash-*")) + sorted(base.glob("timeout-*"))
    crashes += sorted(base.glob("oom-*"))
    bugs = 1 if proc.returncode != 0 else 0
    detail = f"log {log}"
    if bugs:
        detail = (
            f"exit {proc.returncode}; inputs: {[str(c) for c in crashes]}; log {log}"
        )
    return Outcome(target.name, execs, elapsed, bugs, detail)


def _run_random(target: Target, runs: int, seconds: float | None) -> Outcome:
    result = fuzz(target, runs=runs, seconds=seconds, seed=int(time.time()))
    detail = ""
    if result.failures:
        f = result.failures[0]
        detail = f"input {f.data!r:.300}\n{f.error}"
    return Outcome(
        target.name, result.executions, result.seconds, len(result.failures), detail
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", action="append", choices=sorted(TARGETS))
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument(
        "--engine", choices=("auto", "atheris", "random"), default="auto"
    )
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--write-corpus", action="store_true")
    args = parser.parse_args(argv)
    targets = (
        [TARGETS[n] for n in args.target] if args.target else list(TARGETS.values())
    )
    if args.write_corpus:
        for t in targets:
            write_corpus(t)
        print(f"wrote seeds of {len(targets)} targets under {CORPUS_DIR}")
        return 0
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "random"
    workdir = args.workdir or Path(tempfile.gettempdir()) / "bitswarm-fuzz"
    print(
        f"engine {engine}; runs {args.runs}; seconds {args.seconds}; workdir {workdir}"
    )

    def one(t: Target) -> Outcome:
        if engine == "atheris":
            return _run_atheris(t, args.runs, args.seconds, workdir)
        return _run_random(t, args.runs, args.seconds)

    outcomes: list[Outcome] = []
    if engine == "atheris" and args.jobs > 1:
        with concurrent.futures.ThreadPoolExecutor(args.jobs) as pool:
            for o in pool.map(one, targets):
                _report(o)
                outcomes.append(o)
    else:
        for t in targets:
            o = one(t)
            _report(o)
            outcomes.append(o)
    total = sum(o.executions for o in outcomes)
    bugs = sum(o.bugs for o in outcomes)
    print(f"total {total:,} executions; {bugs} target(s) with bugs")
    return 1 if bugs else 0


def _report(o: Outcome) -> None:
    rate = o.executions / o.seconds if o.seconds else 0.0
    status = "BUG" if o.bugs else "ok"
    print(
        f"{o.target:18} {o.executions:>12,} execs {o.seconds:8.1f} s "
        f"{rate:10,.0f}/s  {status}",
        flush=True,
    )
    if o.bugs:
        print(f"    {o.detail}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
