"""Tunables of the Chord ring core."""

from __future__ import annotations

from dataclasses import dataclass

from dht.core.chord.ring import DEFAULT_BITS, MAX_BITS
from dht.core.config import DEFAULT_VERSION
from dht.errors import LocalKrpcError

__all__ = ["ChordConfig", "chord_testing_config"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChordConfig:
    """Protocol parameters; durations in seconds.

    Attributes:
        m: bits of the identifier circle (Chord paper: 160, SHA-1).
        successors: r, the successor-list length (the course notes: 2; the
            Chord paper suggests O(log N) for robustness).
        stabilize_interval_s: how often a peer asks its successor for its
            predecessor and successor list (Chord's ``stabilize``).
        fix_fingers_interval_s: how often the next stale finger is refreshed.
        check_predecessor_interval_s: how often the predecessor is pinged.
        query_timeout_s: a query unanswered this long has failed.
        retransmit_after_s: resend an unanswered query every this long
            (same transaction), to ride out loss; 0 = never.
        retransmits: at most this many resends within ``query_timeout_s``.
            A peer is taken for dead after one whole timeout, so every resend
            makes a false suspicion on a lossy path much rarer; false
            suspicions cost a stabilize round to repair.
        peer_ttl_s: announced peers live this long unless re-announced.
        max_peers_per_swarm / max_peers_total: key store caps.
        max_values_per_reply: peers in one get_peers reply.
        max_next_nodes: closest preceding peers in one find_successor reply.
        max_lookup_hops: a lookup visiting more peers than this has failed.
        max_transactions: queries outstanding at once.
        maintenance_interval_s: how often expired entries are dropped.
        version: our ``v`` value, sent in every message.
    """

    m: int = DEFAULT_BITS
    successors: int = 2
    stabilize_interval_s: float = 5.0
    fix_fingers_interval_s: float = 2.0
    check_predecessor_interval_s: float = 10.0
    query_timeout_s: float = 4.0
    retransmit_after_s: float = 1.0
    retransmits: int = 2
    peer_ttl_s: float = 30 * 60
    max_peers_per_swarm: int = 2000
    max_peers_total: int = 100_000
    max_values_per_reply: int = 50
    max_next_nodes: int = 8
    max_lookup_hops: int = 64
    max_transactions: int = 4096
    maintenance_interval_s: float = 60.0
    version: bytes = DEFAULT_VERSION

    def __post_init__(self) -> None:
        if not 1 <= self.m <= MAX_BITS:
            raise LocalKrpcError(f"chord: m = {self.m} is not in 1..{MAX_BITS}")
        if not 1 <= self.successors <= 32:
            raise LocalKrpcError("chord: the successor list holds 1..32 peers")


def chord_testing_config(*, m: int = DEFAULT_BITS, successors: int = 2) -> ChordConfig:
    """Short intervals and timeouts for loopback tests and simulations."""
    return ChordConfig(
        m=m,
        successors=successors,
        stabilize_interval_s=0.2,
        fix_fingers_interval_s=0.1,
        check_predecessor_interval_s=0.5,
        query_timeout_s=1.0,
        retransmit_after_s=0.3,
    )


chord_testing_config.__test__ = False  # type: ignore[attr-defined]  # pytest's marker
