"""Tunables of the Mainline DHT core, with BEP 5's values as defaults."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_VERSION", "DhtConfig", "testing_config"]

# BEP 5 'v': two-letter client id plus a two-byte version. "BS" is not in
# BEP 20's list of assigned ids, which is all that is needed to be unambiguous.
DEFAULT_VERSION = b"BS\x00\x01"


@dataclass(frozen=True, slots=True, kw_only=True)
class DhtConfig:
    """Protocol parameters; durations in seconds, sizes in entries.

    Attributes:
        k: bucket size and lookup width (BEP 5: 8).
        alpha: queries in flight per lookup (Kademlia: 3).
        query_timeout_s: a query unanswered this long has failed.
        slow_after_s: a query outstanding this long stops counting against alpha.
        retransmit_after_s: resend an unanswered query after this long (same
            transaction, within ``query_timeout_s``), to ride out loss; 0 = never.
        good_window_s: BEP 5's 15 minutes of node goodness.
        bad_after_failures: queries in a row unanswered before a node is bad.
        bucket_refresh_s: BEP 5: refresh buckets unchanged for 15 minutes.
        token_rotate_s: BEP 5: the token secret changes every 5 minutes.
        peer_ttl_s: announced peers are kept 30 minutes.
        max_peers_per_swarm / max_peers_total: peer store caps.
        max_values_per_reply: peers in one get_peers reply (keeps it < 1 KiB).
        max_lookup_candidates: candidates one lookup remembers.
        max_transactions: queries outstanding at once, all lookups together.
        rate_limit_per_s / rate_limit_burst: queries accepted per public IP.
        maintenance_interval_s: how often tick() looks at refresh and expiry.
        upkeep_interval_s: how often the stalest table entry is pinged.
        upkeep_after_s: entries not heard from this long are due a ping.
        version: our BEP 5 ``v`` value, sent in every message.
    """

    k: int = 8
    alpha: int = 3
    query_timeout_s: float = 4.0
    slow_after_s: float = 1.0
    retransmit_after_s: float = 2.0
    good_window_s: float = 15 * 60
    bad_after_failures: int = 2
    bucket_refresh_s: float = 15 * 60
    token_rotate_s: float = 5 * 60
    peer_ttl_s: float = 30 * 60
    max_peers_per_swarm: int = 2000
    max_peers_total: int = 100_000
    max_values_per_reply: int = 50
    max_lookup_candidates: int = 256
    max_transactions: int = 4096
    rate_limit_per_s: float = 20.0
    rate_limit_burst: float = 50.0
    maintenance_interval_s: float = 30.0
    upkeep_interval_s: float = 5.0
    upkeep_after_s: float = 15 * 60
    version: bytes = DEFAULT_VERSION


def testing_config() -> DhtConfig:
    """Short timeouts for loopback tests and simulations."""
    return DhtConfig(
        query_timeout_s=1.0,
        slow_after_s=0.3,
        retransmit_after_s=0.25,
        upkeep_interval_s=1.0,
        upkeep_after_s=20.0,
    )


# Importing this into a test module must not make pytest collect it as a test.
testing_config.__test__ = False  # type: ignore[attr-defined]  # pytest's marker
