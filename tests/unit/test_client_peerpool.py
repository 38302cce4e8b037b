"""The peer pool: whom to dial next, with backoff and exclusions."""

from __future__ import annotations

from client.core.peerpool import PeerPool
from dht import PeerAddr

A = PeerAddr("127.0.0.1", 7001)
B = PeerAddr("127.0.0.1", 7002)
ME = PeerAddr("127.0.0.1", 7000)


def addrs(dials: list) -> list[PeerAddr]:  # type: ignore[type-arg]  # test helper
    return [d.addr for d in dials]


def test_own_and_banned_addresses_are_never_dialled() -> None:
    pool = PeerPool(retry_s=1.0)
    pool.own(ME)
    assert pool.add([ME, A, B], "tracker") == 2
    pool.ban(B)
    assert addrs(pool.to_dial(0.0, 10, complete=False)) == [A]


def test_failed_address_backs_off_exponentially_and_resets_on_attach() -> None:
    pool = PeerPool(retry_s=1.0)
    pool.add([A], "dht")
    assert addrs(pool.to_dial(0.0, 10, complete=False)) == [A]
    assert pool.to_dial(0.0, 10, complete=False) == []  # being dialled
    pool.dial_ended(A, "dht", 0.0)  # 1 failure: wait 2 s
    assert pool.to_dial(1.9, 10, complete=False) == []
    assert addrs(pool.to_dial(2.0, 10, complete=False)) == [A]
    pool.dial_ended(A, "dht", 2.0)  # 2 failures: wait 4 s
    assert pool.to_dial(5.9, 10, complete=False) == []
    assert addrs(pool.to_dial(6.0, 10, complete=False)) == [A]
    pool.attached(A)
    pool.dial_ended(A, "dht", 6.0)  # after a good connection: 2 s again
    assert addrs(pool.to_dial(8.0, 10, complete=False)) == [A]


def test_known_seeds_are_dropped_once_we_are_complete() -> None:
    pool = PeerPool(retry_s=1.0)
    pool.add([A, B], "pex")
    pool.seed(A)
    assert addrs(pool.to_dial(0.0, 10, complete=True)) == [B]
    assert not pool.add([], "pex")
    assert pool.to_dial(100.0, 10, complete=True) == []
