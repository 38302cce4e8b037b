"""libFuzzer entry point for one target, run by ``tests.fuzz.run``:

    python -m tests.fuzz.atheris_main TARGET [libFuzzer flags] [corpus dirs]

The project's packages (and bencode.py) are imported under
``atheris.instrument_imports`` so coverage guides the mutations; an exception
outside the target's allowed types is a crash and libFuzzer writes the input
to its ``-artifact_prefix``.
"""

from __future__ import annotations

import contextlib
import sys

import atheris  # type: ignore[import-untyped]  # ships no stubs

from tests.fuzz.targets import TARGETS


def main() -> None:
    name = sys.argv[1]
    target = TARGETS[name]
    with atheris.instrument_imports(include=["client", "dht", "tracker", "bencodepy"]):
        # The targets import lazily: run the seeds once here so every module
        # they touch is imported (and so instrumented) now.
        allowed = target.allowed()
        for seed in target.seeds():
            with contextlib.suppress(*allowed):
                target.run(seed)

    def test_one_input(data: bytes) -> None:
        with contextlib.suppress(*allowed):
            target.run(data)

    atheris.Setup([sys.argv[0], *sys.argv[2:]], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
