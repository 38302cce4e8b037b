"""The DHT core, bytes in and outputs out: queries, errors, tokens, table, lookups."""

from __future__ import annotations

import random
from typing import Any

import bencodepy
from hypothesis import given, settings
from hypothesis import strategies as st

from dht.core import config as dht_config
from dht.core.compact import PeerAddr, decode_nodes
from dht.core.distance import NodeId, id_to_int
from dht.core.events import (
    AnnounceDone,
    LookupDone,
    LookupKind,
    Output,
    PeerAnnounced,
    SendDatagram,
)
from dht.core.kademlia.routing import NodeState, RoutingTable
from dht.core.kademlia.tokens import TokenManager
from dht.core.krpc import (
    AnnouncePeer,
    FindNode,
    GetPeers,
    Ping,
    Response,
    decode_message,
    encode_message,
)
from dht.core.mainline import DhtCore
from dht.core.peerstore import PeerStore

OWN = NodeId(bytes(20))
PEER = PeerAddr("127.0.0.1", 7000)
PUBLIC = PeerAddr("203.0.113.5", 7000)  # TEST-NET-3: documentation only, never sent


def nid(n: int) -> NodeId:
    return NodeId(n.to_bytes(20, "big"))


def make_core(node_id: NodeId = OWN, seed: int = 1) -> DhtCore:
    return DhtCore(node_id, random.Random(seed), dht_config.testing_config())


def sends(outs: list[Output]) -> list[SendDatagram]:
    return [o for o in outs if isinstance(o, SendDatagram)]


def reply_to(
    core: DhtCore, wire: bytes, addr: PeerAddr = PEER, now: float = 0.0
) -> dict[bytes, Any]:
    """Send one query; return the decoded bencoded reply to ``addr``."""
    outs = [o for o in sends(core.handle_datagram(wire, addr, now)) if o.addr == addr]
    replies = [bencodepy.decode(o.payload) for o in outs]
    replies = [r for r in replies if r[b"y"] != b"q"]
    assert len(replies) == 1, replies
    reply: dict[bytes, Any] = replies[0]
    return reply


def query(msg: Ping | FindNode | GetPeers | AnnouncePeer) -> bytes:
    return encode_message(msg)


# -- each query answered -------------------------------------------------------------


def test_dht_core_answers_ping_with_its_id_and_version() -> None:
    core = make_core()
    r = reply_to(core, query(Ping(transaction_id=b"t1", sender_id=nid(5))))
    assert r[b"t"] == b"t1"
    assert r[b"y"] == b"r"
    assert r[b"r"][b"id"] == OWN
    assert r[b"v"] == dht_config.DEFAULT_VERSION


def test_dht_core_pings_unknown_querier_and_adds_it_when_it_answers() -> None:
    core = make_core()
    outs = core.handle_datagram(
        query(Ping(transaction_id=b"t1", sender_id=nid(5))), PEER, 0.0
    )
    pings = [decode_message(o.payload) for o in sends(outs)]
    ping = next(m for m in pings if isinstance(m, Ping))
    assert len(core.routing_table) == 0
    answer = Response(transaction_id=ping.transaction_id, sender_id=nid(5))
    core.handle_datagram(encode_message(answer), PEER, 0.1)
    assert core.routing_table.contains(PEER)


def test_dht_core_read_only_querier_is_answered_but_not_pinged() -> None:
    core = make_core()
    outs = core.handle_datagram(
        query(Ping(transaction_id=b"t1", sender_id=nid(5), read_only=True)), PEER, 0.0
    )
    assert len(sends(outs)) == 1  # the reply only (BEP 43)


def fill(core: DhtCore, count: int, now: float = 0.0) -> list[tuple[NodeId, PeerAddr]]:
    """Put ``count`` nodes (ids 1 << 150 + i) into the table by answering pings."""
    nodes = []
    for i in range(count):
        node = (nid((1 << 150) + i * 7919), PeerAddr("127.0.0.1", 8000 + i))
        for o in sends(core.ping(node[1], now, node[0])):
            m = decode_message(o.payload)
            core.handle_datagram(
                encode_message(
                    Response(transaction_id=m.transaction_id, sender_id=node[0])
                ),
                node[1],
                now,
            )
        nodes.append(node)
    return nodes


def test_dht_core_find_node_returns_k_closest_compact_nodes() -> None:
    core = make_core()
    fill(core, 20)
    nodes = [(n.id, n.addr) for n in core.routing_nodes()]  # 8 fit one bucket
    target = nodes[3][0]
    r = reply_to(
        core, query(FindNode(transaction_id=b"f", sender_id=nid(9), target=target))
    )
    got = decode_nodes(r[b"r"][b"nodes"])
    assert len(got) == len(nodes) == 8
    want = sorted(nodes, key=lambda n: id_to_int(n[0]) ^ id_to_int(target))[:8]
    assert [g[0] for g in got] == [w[0] for w in want]


def test_dht_core_get_peers_gives_token_and_nodes_then_values_after_announce() -> None:
    core = make_core()
    fill(core, 10)
    ih = nid(12345)
    r = reply_to(
        core, query(GetPeers(transaction_id=b"g", sender_id=nid(9), info_hash=ih))
    )
    token = r[b"r"][b"token"]
    assert b"values" not in r[b"r"]
    assert r[b"r"][b"nodes"]
    announce = AnnouncePeer(
        transaction_id=b"a", sender_id=nid(9), info_hash=ih, port=6881, token=token
    )
    outs = core.handle_datagram(query(announce), PEER, 1.0)
    assert PeerAnnounced(info_hash=ih, peer=PeerAddr("127.0.0.1", 6881)) in outs
    r = reply_to(
        core, query(GetPeers(transaction_id=b"g", sender_id=nid(9), info_hash=ih))
    )
    assert r[b"r"][b"values"] == [bytes([127, 0, 0, 1, 0x1A, 0xE1])]
    assert r[b"r"][b"nodes"]  # nodes are always included


def test_dht_core_announce_implied_port_uses_source_port() -> None:
    core = make_core()
    ih = nid(777)
    token = reply_to(
        core, query(GetPeers(transaction_id=b"g", sender_id=nid(9), info_hash=ih))
    )[b"r"][b"token"]
    announce = AnnouncePeer(
        transaction_id=b"a",
        sender_id=nid(9),
        info_hash=ih,
        port=1,
        token=token,
        implied_port=True,
    )
    outs = core.handle_datagram(query(announce), PEER, 1.0)
    assert PeerAnnounced(info_hash=ih, peer=PEER) in outs


def test_dht_core_bad_token_is_error_203() -> None:
    core = make_core()
    announce = AnnouncePeer(
        transaction_id=b"a",
        sender_id=nid(9),
        info_hash=nid(1),
        port=6881,
        token=b"nope",
    )
    r = reply_to(core, query(announce))
    assert r[b"y"] == b"e"
    assert r[b"e"][0] == 203


def test_dht_core_token_from_another_ip_is_rejected() -> None:
    core = make_core()
    ih = nid(5)
    token = reply_to(
        core, query(GetPeers(transaction_id=b"g", sender_id=nid(9), info_hash=ih))
    )[b"r"][b"token"]
    announce = AnnouncePeer(
        transaction_id=b"a", sender_id=nid(9), info_hash=ih, port=6881, token=token
    )
    r = reply_to(core, query(announce), addr=PeerAddr("127.0.0.2", 7000))
    assert r[b"e"][0] == 203


def test_dht_core_unknown_method_is_error_204() -> None:
    core = make_core()
    wire = b"d1:ad2:id20:abcdefghij0123456789e1:q4:vote1:t2:xy1:y1:qe"
    r = reply_to(core, wire)
    assert r[b"t"] == b"xy"
    assert r[b"e"][0] == 204


# -- tokens --------------------------------------------------------------------------


def test_dht_tokens_accepted_for_ten_minutes_then_rejected() -> None:
    tokens = TokenManager(random.Random(3), rotate_s=300)
    t = tokens.make("10.0.0.1", 0.0)
    assert tokens.check(t, "10.0.0.1", 299.0)
    assert tokens.check(t, "10.0.0.1", 599.0)  # previous secret
    assert not tokens.check(t, "10.0.0.1", 600.0)
    assert not tokens.check(t, "10.0.0.2", 1.0)


# -- robustness ----------------------------------------------------------------------

JUNK = [
    b"",
    b"\xff" * 50,
    b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe",  # short id -> 203
    b"d1:ad2:idi1ee1:q9:find_node1:t2:aa1:y1:qe",  # wrong type -> 203
    b"d1:rd2:id20:abcdefghij0123456789e1:t2:zz1:y1:re",  # unknown tid: ignored
    b"d1:eli201e3:bade1:t2:zz1:y1:ee",  # error for an unknown tid
    b"d1:t" + b"9" * 5000 + b":x1:y1:qe",  # oversized
    b"l" * 2000,
]


def test_dht_core_junk_never_crashes_and_node_keeps_serving() -> None:
    core = make_core()
    for i, junk in enumerate(JUNK):
        outs = core.handle_datagram(junk, PeerAddr("127.0.0.1", 9000 + i), float(i))
        for o in sends(outs):
            msg = bencodepy.decode(o.payload)
            assert msg[b"y"] == b"e"
            assert msg[b"e"][0] in (203, 204)
    r = reply_to(core, query(Ping(transaction_id=b"ok", sender_id=nid(5))), now=100.0)
    assert r[b"t"] == b"ok"
    assert core.statistics(100.0).dropped_in >= len(JUNK) - 1


def test_dht_core_reply_from_wrong_address_or_tid_is_ignored() -> None:
    core = make_core()
    (out,) = sends(core.ping(PEER, 0.0, nid(5)))
    tid = decode_message(out.payload).transaction_id
    forged = encode_message(Response(transaction_id=tid, sender_id=nid(5)))
    core.handle_datagram(forged, PeerAddr("127.0.0.1", 7001), 0.1)
    assert len(core.routing_table) == 0
    core.handle_datagram(forged, PEER, 0.2)
    assert len(core.routing_table) == 1


def test_dht_core_reply_with_different_id_is_not_added() -> None:
    core = make_core()
    (out,) = sends(core.ping(PEER, 0.0, nid(5)))
    tid = decode_message(out.payload).transaction_id
    core.handle_datagram(
        encode_message(Response(transaction_id=tid, sender_id=nid(6))), PEER, 0.1
    )
    assert len(core.routing_table) == 0


def test_dht_core_public_source_rate_limited_loopback_not() -> None:
    core = make_core()
    ping = query(Ping(transaction_id=b"p", sender_id=nid(5), read_only=True))
    public = sum(
        len(sends(core.handle_datagram(ping, PUBLIC, 0.0))) for _ in range(200)
    )
    local = sum(len(sends(core.handle_datagram(ping, PEER, 0.0))) for _ in range(200))
    assert public < 100
    assert local == 200


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_dht_core_handle_datagram_any_bytes_only_returns_outputs(data: bytes) -> None:
    core = make_core()
    outs = core.handle_datagram(data, PEER, 0.0)
    assert isinstance(outs, list)
    core.tick(5.0)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([b"ping", b"find_node", b"get_peers", b"announce_peer", b"x"]),
    st.dictionaries(
        st.sampled_from(
            [b"id", b"target", b"info_hash", b"port", b"token", b"implied_port"]
        ),
        st.one_of(
            st.binary(max_size=24), st.integers(-5, 70000), st.lists(st.binary())
        ),
    ),
)
def test_dht_core_structured_junk_queries(
    method: bytes, args: dict[bytes, Any]
) -> None:
    core = make_core()
    wire = bencodepy.encode({b"t": b"aa", b"y": b"q", b"q": method, b"a": args})
    for o in sends(core.handle_datagram(wire, PEER, 0.0)):
        msg = bencodepy.decode(o.payload)
        if msg[b"y"] != b"q":  # our own verification ping has its own tid
            assert msg[b"t"] == b"aa"


# -- routing table -------------------------------------------------------------------


def test_dht_routing_splits_only_the_bucket_holding_our_id() -> None:
    table = RoutingTable(OWN, k=2)
    far = [nid((1 << 159) + i) for i in range(5)]  # first bit differs from ours
    for i, n in enumerate(far):
        table.heard_response(n, PeerAddr("127.0.0.1", 100 + i), 0.0)
    assert len(table) == 2  # bucket 0 full; it never splits
    near = [nid(i + 1) for i in range(4)]
    for i, n in enumerate(near):
        table.heard_response(n, PeerAddr("127.0.0.1", 200 + i), 0.0)
    assert len(table) == 6
    assert table.bucket_count > 2


def test_dht_routing_one_entry_per_public_ip_but_per_port_on_loopback() -> None:
    table = RoutingTable(OWN)
    table.heard_response(nid(1 << 150), PeerAddr("198.51.100.7", 1), 0.0)
    table.heard_response(nid(1 << 151), PeerAddr("198.51.100.7", 2), 0.0)
    table.heard_response(nid(1 << 152), PeerAddr("127.0.0.1", 1), 0.0)
    table.heard_response(nid(1 << 153), PeerAddr("127.0.0.1", 2), 0.0)
    table.heard_response(nid(1 << 154), PeerAddr("192.168.1.2", 2), 0.0)
    table.heard_response(nid(1 << 155), PeerAddr("192.168.1.2", 3), 0.0)
    assert len(table) == 5


def test_dht_routing_node_states_follow_bep5() -> None:
    table = RoutingTable(OWN, bad_after_failures=2)
    a, addr = nid(1 << 150), PeerAddr("127.0.0.1", 1)
    table.heard_response(a, addr, 0.0)
    assert table.state(a, 100.0) is NodeState.GOOD
    assert table.state(a, 16 * 60) is NodeState.QUESTIONABLE
    table.heard_query(a, addr, 16 * 60)
    assert table.state(a, 17 * 60) is NodeState.GOOD  # queried us after answering
    table.failed(addr, a, 17 * 60)
    table.failed(addr, a, 17 * 60)
    assert table.state(a, 17 * 60) is NodeState.BAD


def test_dht_routing_questionable_pinged_before_eviction() -> None:
    table = RoutingTable(OWN, k=2, bad_after_failures=2)
    olds = [(nid((1 << 159) + i), PeerAddr("127.0.0.1", 10 + i)) for i in range(2)]
    for n, a in olds:
        table.heard_response(n, a, 0.0)
    newcomer = (nid((1 << 159) + 50), PeerAddr("127.0.0.1", 99))
    # all good: the newcomer only waits
    assert table.heard_response(*newcomer, 60.0) == []
    assert not table.contains(newcomer[1])
    # 16 minutes later both are questionable: they are pinged, newcomer waits
    to_ping = table.heard_response(*newcomer, 16 * 60)
    assert {p.addr for p in to_ping} == {a for _, a in olds}
    assert not table.contains(newcomer[1])
    # one answers (stays), the other fails twice (bad) and is replaced
    table.heard_response(*olds[0], 16 * 60 + 1)
    table.failed(olds[1][1], olds[1][0], 16 * 60 + 2)
    table.failed(olds[1][1], olds[1][0], 16 * 60 + 3)
    assert table.contains(newcomer[1])
    assert not table.contains(olds[1][1])
    assert table.contains(olds[0][1])


def test_dht_routing_refresh_targets_fall_in_idle_bucket_ranges() -> None:
    rng = random.Random(4)
    own = nid(0)
    table = RoutingTable(own, k=1, refresh_after_s=900)
    table.heard_response(nid(1 << 159), PeerAddr("127.0.0.1", 1), 0.0)
    table.heard_response(nid(1 << 158), PeerAddr("127.0.0.1", 2), 0.0)
    assert table.refresh_targets(100.0, rng) == []
    targets = table.refresh_targets(901.0, rng)
    assert len(targets) == table.bucket_count
    assert id_to_int(targets[0]) >> 159 == 1  # bucket 0: first bit differs from ours
    assert table.refresh_targets(902.0, rng) == []


# -- peer store ----------------------------------------------------------------------


def test_dht_peer_store_expires_and_caps() -> None:
    store = PeerStore(ttl_s=1800, max_per_swarm=3, max_total=4)
    rng = random.Random(1)
    for i in range(5):
        store.add(b"a" * 20, PeerAddr("10.0.0.1", 1000 + i), float(i))
    assert len(store.get(b"a" * 20, 10.0, 50, rng)) == 3
    assert store.add(b"b" * 20, PeerAddr("10.0.0.2", 1), 10.0)
    assert not store.add(b"c" * 20, PeerAddr("10.0.0.3", 1), 10.0)  # total cap
    assert store.get(b"a" * 20, 1803.5, 50, rng) == [PeerAddr("10.0.0.1", 1004)]
    assert len(store.get(b"a" * 20, 10.0, 2, rng)) == 2  # bounded reply


# -- lookups -------------------------------------------------------------------------


def test_dht_lookup_does_not_wait_on_dead_node_past_timeout() -> None:
    cfg = dht_config.testing_config()
    core = make_core()
    fill(core, 3)
    lookup_id, outs = core.start_lookup(nid(1 << 150), 0.0, LookupKind.FIND_NODE)
    assert len(sends(outs)) == 3  # alpha queries in flight
    done: list[LookupDone] = []
    now = 0.0
    while not done:
        deadline = core.next_deadline()
        assert deadline is not None
        now = deadline
        done += [o for o in core.tick(now) if isinstance(o, LookupDone)]
    assert now <= cfg.query_timeout_s + 1e-9
    assert done[0].lookup_id == lookup_id
    assert done[0].nodes == ()


def test_dht_announce_with_no_nodes_finishes_at_once() -> None:
    core = make_core()
    _, outs = core.start_announce(nid(1), 6881, 0.0)
    assert any(isinstance(o, LookupDone) for o in outs)
    assert any(isinstance(o, AnnounceDone) and o.stored_at == () for o in outs)
