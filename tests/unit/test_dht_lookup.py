"""The iterative lookup on its own: paging past dead entries that crowd the
8-node answers (dht.core.kademlia.lookup)."""

from __future__ import annotations

from dht.core.compact import PeerAddr
from dht.core.distance import NodeId, id_from_int
from dht.core.kademlia.lookup import CandidateState, Lookup
from dht.core.kademlia.routing import NodeInfo

TARGET = id_from_int(0)  # so a node's distance to the target is its id
OWN = id_from_int(1 << 159)


def node(d: int) -> tuple[NodeId, PeerAddr]:
    return id_from_int(d), PeerAddr("127.0.0.1", 10000 + d)


def answer(
    lk: Lookup, d: int, table: list[int], target: int = 0
) -> list[tuple[NodeId, PeerAddr]]:
    """What node ``d`` answers: the 8 entries of ``table`` closest to
    ``target``, itself left out (as a BEP 5 node does)."""
    own = sorted((t for t in table if t != d), key=lambda t: t ^ target)[: lk.k]
    return [node(t) for t in own]


def run(lk: Lookup, table: list[int], dead: set[int]) -> None:
    """Drive ``lk`` to the end: every node answers from the same ``table``;
    the ``dead`` never answer."""
    for _ in range(100):
        asked = lk.next_queries()
        pages = lk.next_pages()
        if lk.done:
            return
        assert asked or pages
        for c in asked:
            d = c.distance
            if d in dead:
                lk.on_failure(c.addr)
            else:
                assert c.id is not None
                lk.on_response(c.addr, c.id, tuple(answer(lk, d, table)), (), b"t")
        for c, page_target in pages:
            t = int.from_bytes(page_target, "big")
            lk.on_page_answer(c.addr, tuple(answer(lk, c.distance, table, t)))
    raise AssertionError("lookup did not end")


def start(first: int) -> Lookup:
    lk = Lookup(target=TARGET, own_id=OWN, k=8, alpha=3)
    nid, addr = node(first)
    lk.add_nodes([NodeInfo(id=nid, addr=addr)], depth=0)
    return lk


def found(lk: Lookup) -> list[int]:
    return [c.distance for c in lk.closest()]


def test_dht_lookup_pages_past_dead_entries_to_the_true_closest() -> None:
    # Distances 2 and 3 are dead; every answer lists them, so no plain
    # answer has room for 9 and 10, two of the true 8 closest live nodes.
    table = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 40, 41]
    lk = start(12)
    run(lk, table, dead={2, 3})
    assert found(lk) == [1, 4, 5, 6, 7, 8, 9, 10]
    assert 0 < lk.pages <= lk.max_pages


def test_dht_lookup_page_target_flips_the_bits_just_past_what_was_seen() -> None:
    table = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    lk = start(1)
    (c,) = lk.next_queries()
    lk.on_response(c.addr, node(1)[0], tuple(answer(lk, 1, table)), (), None)
    while asked := lk.next_queries():
        for c in asked:
            assert c.id is not None
            if c.distance in (2, 3):
                lk.on_failure(c.addr)
                continue
            lk.on_response(c.addr, c.id, tuple(answer(lk, c.distance, table)), (), None)
    pages = lk.next_pages()
    assert pages
    assert not lk.done
    # node 1 answered 2..9: seen up to 9, so its next page starts at 10
    assert (pages[0][0].distance, pages[0][1]) == (1, id_from_int(10))


def test_dht_lookup_without_failures_sends_no_pages() -> None:
    table = list(range(1, 30))
    lk = start(29)
    run(lk, table, dead=set())
    assert found(lk) == list(range(1, 9))
    assert lk.pages == 0


def test_dht_lookup_pages_stay_within_budget_and_a_failed_page_ends() -> None:
    table = list(range(1, 60))
    dead = set(range(2, 40, 2))  # half the close nodes dead
    lk = start(59)
    lk.max_pages = 3
    for _ in range(100):
        asked = lk.next_queries()
        pages = lk.next_pages()
        if lk.done:
            break
        for c in asked:
            if c.distance in dead:
                lk.on_failure(c.addr)
            else:
                assert c.id is not None
                answer_ = tuple(answer(lk, c.distance, table))
                lk.on_response(c.addr, c.id, answer_, (), None)
        for c, _ in pages:
            lk.on_page_answer(c.addr, (), answered=False)  # every page is lost
    assert lk.done
    assert lk.pages <= 3


def test_dht_lookup_page_answer_repeating_one_node_is_harmless() -> None:
    table = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    lk = start(1)
    (c,) = lk.next_queries()
    lk.on_response(c.addr, node(1)[0], tuple(answer(lk, 1, table)), (), None)
    for c in lk.next_queries():
        lk.on_failure(c.addr)
    for _ in range(20):
        for c in lk.next_queries():
            lk.on_failure(c.addr)
        for c, page_target in lk.next_pages():
            t = int.from_bytes(page_target, "big")
            lk.on_page_answer(c.addr, tuple([node(t)] * 8))  # 8 times one node
        if lk.done:
            break
    assert lk.done
    assert all(
        c.state is not CandidateState.IN_FLIGHT for c in lk.closest()
    )  # nothing left hanging
