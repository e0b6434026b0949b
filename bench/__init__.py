"""Benchmarks, chaos runs and probes of the bot: ``python -m bench <command>`` (bench/cli.py).

- ``bench.harness``: the rig they share (servers, load generator, payloads, TLS fronts, report).
- ``bench.perf``: how fast the bot answers and what it adds (loopback, WAN, listing, ...).
- ``bench.chaos``: promises kept under faults (chaos run, Sentinel failover, alert storm).
- ``bench.probes``: small one-off measurements (the request guard, the metrics).
"""
