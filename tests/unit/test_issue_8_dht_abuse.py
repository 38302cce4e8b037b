"""DHT abuse (issue 8): no amplification, no storage without a token."""

from __future__ import annotations

from dht.core.compact import PeerAddr
from dht.core.krpc import AnnouncePeer, FindNode, GetPeers, Ping
from tests.unit.test_dht_core import fill, make_core, nid, query, reply_to, sends

# The bound we promise (SECURITY.md): a reply is at most this many times the
# size of the query that caused it. Measured: the largest reply, get_peers on
# a swarm holding max_values_per_reply (50) peers plus 8 nodes and a token, is
# 701 bytes for a 94-byte query (7.5x); find_node 274 for 91 (3x); ping 65
# for 55 (1.2x). Under 1 KiB whatever the query, so never an amplifier of note.
AMPLIFICATION_BOUND = 8


def test_issue_8_replies_are_a_bounded_multiple_of_the_query() -> None:
    core = make_core()
    fill(core, 40)
    ih = nid(4242)
    # fill the swarm to its per-reply cap with announced peers
    for i in range(120):
        core._peers.add(ih, PeerAddr("127.0.0.1", 10000 + i), 0.0)
    queries = [
        query(Ping(transaction_id=b"p", sender_id=nid(9))),
        query(FindNode(transaction_id=b"f", sender_id=nid(9), target=nid(5))),
        query(GetPeers(transaction_id=b"g", sender_id=nid(9), info_hash=ih)),
    ]
    for wire in queries:
        replies = sends(core.handle_datagram(wire, PeerAddr("127.0.0.1", 7000), 1.0))
        answer = [r for r in replies if r.addr == PeerAddr("127.0.0.1", 7000)]
        assert answer
        for out in answer:
            assert len(out.payload) <= AMPLIFICATION_BOUND * len(wire), (
                f"{len(out.payload)} bytes for a {len(wire)}-byte query"
            )
    got = reply_to(
        core, query(GetPeers(transaction_id=b"g", sender_id=nid(9), info_hash=ih))
    )
    assert len(got[b"r"][b"values"]) <= core._cfg.max_values_per_reply


def test_issue_8_announce_without_a_valid_token_stores_nothing() -> None:
    core = make_core()
    ih = nid(99)
    for token in (b"", b"nope", b"x" * 20):
        r = reply_to(
            core,
            query(
                AnnouncePeer(
                    transaction_id=b"a",
                    sender_id=nid(9),
                    info_hash=ih,
                    port=6881,
                    token=token,
                )
            ),
        )
        assert r[b"y"] == b"e"
        assert r[b"e"][0] == 203
    assert len(core._peers) == 0
    got = reply_to(
        core, query(GetPeers(transaction_id=b"g", sender_id=nid(9), info_hash=ih))
    )
    assert b"values" not in got[b"r"]
