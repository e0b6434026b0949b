"""Benchmarks and load runs; each module runs with ``python -m bench.<name>``."""
