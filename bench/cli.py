"""The one entry point of the benchmarks: ``python -m bench <command> [options]``.

    python -m bench                      # the commands, one line each
    python -m bench loopback --quick     # a command's smallest run
    python -m bench wan --help           # a command's own options

Each command is a module with ``main(argv) -> int`` and a parser of its own, imported only when
the command is run: ``python -m bench -h`` imports none of them. See docs/benchmark.md.
"""

from __future__ import annotations

import argparse
import importlib
from typing import NamedTuple


class Command(NamedTuple):
    module: str
    help: str


COMMANDS = {
    # bench/perf: how fast, and what the bot adds
    "loopback": Command("bench.perf.loopback", "acks, flows, alerts, RSS, start-up on loopback"),
    "wan": Command("bench.perf.wan", "each flow kind over HTTPS behind a round-trip time"),
    "listing": Command("bench.perf.listing", "the answer to `list` over many running jobs"),
    "contention": Command("bench.perf.contention", "a stop's click while lists run alongside"),
    "slow-clients": Command("bench.perf.slow_clients",
                            "the bot's answers while slow clients hold connections"),
    "edge": Command("bench.perf.edge", "the edge benchmark (bench/perf/edge.py)"),
    # bench/chaos: promises kept under faults
    "chaos": Command("bench.chaos.run", "two replicas under faults; checks every promise"),
    "failover": Command("bench.chaos.failover", "stop flows through a Sentinel failover"),
    "storm": Command("bench.chaos.storm", "an alert storm over replicas: order, duplicates"),
    # bench/probes: small one-off measurements
    "guard": Command("bench.probes.guard", "the cost of the request guard, per request"),
    "metrics": Command("bench.probes.metrics", "the cost of the Prometheus metrics"),
    "expiry": Command("bench.probes.expiry", "how soon an expired request loses its buttons"),
    # the figures in README.md and docs/, from bench/results/*.json
    "figures": Command("bench.figures", "rewrite the docs' marked tables from bench/results"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", metavar="command")
    for name, command in COMMANDS.items():
        # The command's own parser reads the rest (its --help too): add_help=False here.
        sub.add_parser(name, help=command.help, add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, rest = p.parse_known_args(argv)
    if args.command is None:
        p.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command].module)
    return module.main(rest) or 0
