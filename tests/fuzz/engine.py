"""A small seeded mutational fuzzer: the fallback when atheris is missing,
and the engine of the CI smoke test (bounded, deterministic, no coverage
feedback). Inputs start from the target's seed corpus and are mutated the
way libFuzzer's default mutators do (bit flips, interesting integers,
inserted/erased/copied ranges, splices, dictionary tokens)."""

from __future__ import annotations

import random
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from tests.fuzz.targets import TARGETS, Target

__all__ = ["CORPUS_DIR", "Failure", "FuzzResult", "check_one", "fuzz", "load_corpus"]

CORPUS_DIR = Path(__file__).parent / "corpus"

# Values that sit on the edges of the limits the parsers enforce.
_INTERESTING_U32 = (
    0,
    1,
    2,
    5,
    13,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0x3FFF,
    0x4000,
    0x4001,
    0x20000,
    0x2000D,
    0x2000E,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFE,
    0xFFFFFFFF,
)
_TOKENS = (
    b"i0e",
    b"i-1e",
    b"i-0e",
    b"i01e",
    b"i9223372036854775808e",
    b"d",
    b"e",
    b"l",
    b"le",
    b"de",
    b"0:",
    b"20:",
    b"-6:",  # issue 8: a negative key length hung bencode.py
    b"-1:",
    b"4:info",
    b"5:files",
    b"4:path",
    b"6:length",
    b"12:piece length",
    b"6:pieces",
    b"4:name",
    b"2:..",
    b"1:/",
    b"2:C:",
    b"1:\\",
    b"1:\x00",
    b"1:m",
    b"8:msg_type",
    b"10:total_size",
    b"13:metadata_size",
    b"1:t",
    b"1:y",
    b"1:q",
    b"1:r",
    b"1:a",
    b"2:id",
    b"5:nodes",
    b"6:values",
    b"5:token",
    b"&",
    b"=",
    b"%",
    b"%00",
    b"%zz",
    b"info_hash=",
    b"numwant=",
    b"port=",
    b"ip=",
    b"x.pe=",
    b"xt=urn:btih:",
    b"tr=",
    b"xl=",
    b"[::1]:",
    b"\x13BitTorrent protocol",
)


@dataclass(frozen=True, slots=True)
class Failure:
    target: str
    data: bytes
    error: str


@dataclass(frozen=True, slots=True)
class FuzzResult:
    target: str
    executions: int
    seconds: float
    failures: tuple[Failure, ...]


def load_corpus(target: Target) -> list[bytes]:
    """The committed corpus files of ``target`` plus its built-in seeds."""
    out = list(target.seeds())
    folder = CORPUS_DIR / target.name
    if folder.is_dir():
        out += [p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()]
    return out or [b""]


def check_one(target: Target, data: bytes) -> str | None:
    """Run ``target`` on ``data``; the traceback text if it is a bug."""
    allowed = target.allowed()
    try:
        target.run(data)
    except allowed:
        return None
    except Exception:
        return traceback.format_exc()
    return None


def _mutate(
    rng: random.Random, data: bytes, corpus: list[bytes], max_len: int
) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        op = rng.randrange(9)
        n = len(buf)
        if op == 0 and n:  # flip a bit
            i = rng.randrange(n)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # set a byte
            buf[rng.randrange(n)] = rng.choice(
                (0, 0xFF, 0x7F, 0x80, rng.randrange(256))
            )
        elif op == 2:  # insert random bytes
            i = rng.randint(0, n)
            buf[i:i] = rng.randbytes(rng.randint(1, 8))
        elif op == 3 and n:  # erase a range
            i = rng.randrange(n)
            del buf[i : i + rng.randint(1, max(1, n // 4))]
        elif op == 4 and n:  # copy a range elsewhere
            i = rng.randrange(n)
            part = bytes(buf[i : i + rng.randint(1, 32)])
            j = rng.randint(0, n)
            buf[j:j] = part
        elif op == 5 and n >= 4:  # an interesting 32-bit value, big-endian
            i = rng.randrange(n - 3)
            buf[i : i + 4] = rng.choice(_INTERESTING_U32).to_bytes(4, "big")
        elif op == 6:  # a dictionary token
            i = rng.randint(0, n)
            buf[i:i] = rng.choice(_TOKENS)
        elif op == 7 and corpus:  # splice with another input
            other = rng.choice(corpus)
            i = rng.randint(0, n)
            j = rng.randint(0, len(other))
            buf = buf[:i] + other[j:]
        elif op == 8 and n:  # change an ASCII digit run
            i = rng.randrange(n)
            buf[i : i + 1] = str(rng.choice((0, 1, 9, 10, 19, 20, 255, 65536))).encode()
    return bytes(buf[:max_len])


def fuzz(
    target: Target,
    *,
    runs: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    stop_on_failure: bool = True,
) -> FuzzResult:
    """Run ``target`` on its corpus, then on mutants, until ``runs`` inputs
    or ``seconds`` have passed (whichever comes first)."""
    rng = random.Random(seed)
    corpus = load_corpus(target)
    failures: list[Failure] = []
    start = time.perf_counter()
    deadline = None if seconds is None else start + seconds
    execs = 0
    queue = list(corpus)
    while True:
        if runs is not None and execs >= runs:
            break
        if deadline is not None and execs % 64 == 0 and time.perf_counter() > deadline:
            break
        if queue:
            data = queue.pop()
        else:
            data = _mutate(rng, rng.choice(corpus), corpus, target.max_len)
        execs += 1
        error = check_one(target, data)
        if error is not None:
            failures.append(Failure(target.name, data, error))
            if stop_on_failure:
                break
    return FuzzResult(
        target=target.name,
        executions=execs,
        seconds=time.perf_counter() - start,
        failures=tuple(failures),
    )


def all_targets() -> list[Target]:
    return list(TARGETS.values())
