"""bitswarm peer client."""
