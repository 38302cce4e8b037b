"""The Chord ring (Stoica et al., SIGCOMM 2001; Zave's corrected maintenance)."""
