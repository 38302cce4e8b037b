"""Kademlia pieces of the Mainline DHT: routing table, lookups, tokens, peers."""
