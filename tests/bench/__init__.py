"""Benchmarks, run by hand (``python -m tests.bench.transfer``); pytest skips them."""
