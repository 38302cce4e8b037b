"""Bounded runs of every fuzz target (issue 8); the long runs are
``python -m tests.fuzz.run``. Each target's seed corpus must run clean, then
the seeded mutational engine runs it for a short, fixed time."""

from __future__ import annotations

import pytest

from client.core.magnet import parse_magnet
from client.errors import NotAMagnetError
from tests.fuzz.engine import check_one, fuzz, load_corpus
from tests.fuzz.targets import TARGETS

SMOKE_SECONDS = 1.0  # per target; 15 targets stay well under 30 s


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_fuzz_target_smoke(name: str) -> None:
    target = TARGETS[name]
    for data in load_corpus(target):
        error = check_one(target, data)
        assert error is None, f"corpus input {data!r:.200} of {name}:\n{error}"
    result = fuzz(target, seconds=SMOKE_SECONDS, seed=8)
    assert result.executions > 20, result
    if result.failures:
        f = result.failures[0]
        pytest.fail(f"{name} raised on {f.data!r:.300}:\n{f.error}")


def test_issue_8_magnet_undecodable_bytes() -> None:
    # Found by the magnet target: a URI from the command line with a byte
    # that is not UTF-8 (a lone surrogate after PEP 383 decoding) parsed,
    # then Magnet.to_uri() raised UnicodeEncodeError.
    raw = (
        b"magnet:?xt=urn:btih:c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
        b"&tr=http%3A%2F%2F127.0.0.\x80%3A6969%2Fannounce"
    )
    with pytest.raises(NotAMagnetError, match="not UTF-8"):
        parse_magnet(raw.decode("utf-8", "surrogateescape"))
