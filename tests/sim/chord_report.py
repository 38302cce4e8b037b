"""Mean Chord lookup path length for N = 64, 256, 1024, 4096 vs 0.5 * log2(N).

Run by hand (not collected by pytest): ``python -m tests.sim.chord_report``.
Peer ids are SHA-1 of random addresses (m = 160); each ring is the converged
state ``ChordRing`` builds; 10,000 random keys are looked up from random
peers. Path length is counted as the Chord paper counts it: peers visited
while stepping through closest preceding fingers (and successor list) from
the asking peer to the key's predecessor, the asking peer not counted.
Every lookup's owner is checked against a sorted-list successor.
"""

from __future__ import annotations

import bisect
import math
import random
import statistics
import time

from dht.core.chord.ring import ChordRing, peer_id_for

SIZES = (64, 256, 1024, 4096)
KEYS = 10_000


def measure(n: int, seed: int) -> float:
    rng = random.Random(seed)
    ids: set[int] = set()
    while len(ids) < n:
        host = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        ids.add(peer_id_for(f"{host}:{rng.randrange(1024, 65536)}"))
    ring = ChordRing(list(ids))
    hops = []
    for _ in range(KEYS):
        key = rng.getrandbits(160)
        path = ring.lookup(rng.choice(ring.ids), key)
        i = bisect.bisect_left(ring.ids, key)
        assert path.owner == ring.ids[i % n]
        hops.append(path.hops)
    return statistics.fmean(hops)


def main() -> None:
    print(f"{'N':>6} {'mean path':>10} {'0.5*log2(N)':>12} {'ratio':>6} {'s':>5}")
    for n in SIZES:
        t0 = time.perf_counter()
        mean = measure(n, seed=n)
        half = 0.5 * math.log2(n)
        took = time.perf_counter() - t0
        print(f"{n:>6} {mean:>10.3f} {half:>12.1f} {mean / half:>6.3f} {took:>5.1f}")


if __name__ == "__main__":
    main()
