"""How fast the bot answers on loopback, and what it adds on top of Slack and ModelArts.

    python -m bench loopback            # full run (under a minute on 2 cores)
    python -m bench loopback --quick    # a short smoke run
    python -m bench loopback --out bench/results/latest.json

Starts a throwaway redis-server, the ModelArts emulator and the Slack stand-in (a process each),
the bot under its production server (``python -m bot serve``: gunicorn gthread) and the bare-Bolt
baseline under the same server (``python -m bench.harness.baseline``), and a load generator in a
process of its own. Prints one table and writes the results as JSON. See docs/benchmark.md.
Over HTTPS behind a round-trip time instead: ``python -m bench wan`` (bench/perf/wan.py).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.harness import report, servers
from bench.harness.load import LoadGenerator
from bench.harness.rig import (
    ALERTS_TOKEN,
    GROUP,
    GROUP_USER,
    PREFIX,
    RESULTS,
    SECRET,
    add_server_args,
    environment,
    machine,
    serve,
)
from bench.perf import phases


def startup_runs(env: dict, tmp: Path, runs: int) -> list[float]:
    """Extra launches of the bot, only to time them; each is stopped at once."""
    out = []
    for n in range(runs):
        served = serve(["-m", "bot", "serve"], env, tmp, f"startup{n}")
        out.append(round(served.startup, 3))
        served.stop()
    return out


def measure(rig: phases.Rig, args: argparse.Namespace) -> dict:
    phases.command_acks(rig, 4, 20)              # warm-up: connections, lazy imports
    phases.confirm_acks(rig, 4, 20)
    acks: dict[str, dict] = {"command": {}, "confirm": {}}
    for c in args.levels:
        acks["command"][str(c)] = phases.command_acks(rig, c, args.requests)
    for c in args.levels:   # each confirm is a stop, followed to its end a few seconds later
        phases.drain_watches(rig)
        acks["confirm"][str(c)] = phases.confirm_acks(rig, c, args.requests)
    for kind in acks.values():
        for lvl in kind.values():
            lvl["ratio_p50"] = round(lvl["bot"]["p50"] / lvl["baseline"]["p50"], 2)
    rig.slack.ask("usergroup", (GROUP, [GROUP_USER]))
    phases.flows(rig, 1, GROUP_USER)     # fills the usergroup cache
    flows = {"direct": phases.flows(rig, args.flows),
             "usergroup": phases.flows(rig, args.flows, GROUP_USER)}
    alerts = {"intake": phases.alert_intake(rig, args.alerts, 100, 10),
              "storm": phases.storm(rig, args.storm, 3, 10)}
    return {"acks": acks, "flows": flows, "alerts": alerts}


def run(args: argparse.Namespace) -> dict:
    started, load_before = time.monotonic(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="modelarts-bench-") as name:
        tmp = Path(name)
        redis = servers.ThrowawayRedis(tmp)
        needed = 40 + len(args.levels) * args.requests + 2 * args.flows + 10
        jobs = servers.write_seed(tmp / "jobs.json", 700000, needed)
        slack, emulator = servers.slack_standin(), servers.emulator(tmp / "jobs.json")
        load = LoadGenerator(SECRET, ALERTS_TOKEN)
        running: list[servers.Served] = []
        try:
            env = environment(tmp, {"slack": slack.url, "redis": redis.url,
                                    "emulator": emulator.url}, args)
            runs = startup_runs(env, tmp, args.startup_runs)
            bot = serve(["-m", "bot", "serve"], env, tmp, "bot")
            running.append(bot)
            baselines = {"baseline": serve(["-m", "bench.harness.baseline"], env, tmp, "baseline"),
                         "bolt_default": serve(["-m", "bench.harness.baseline"],
                                               {**env, "BENCH_BOLT_DEFAULT": "1"}, tmp,
                                               "bolt_default")}
            running += baselines.values()
            runs.append(round(bot.startup, 3))
            rig = phases.Rig(load, bot, baselines, slack, emulator, redis, PREFIX, iter(jobs))
            result = measure(rig, args)
            result["rss_mb"] = bot.peak_rss_mb()
            result["baseline_rss_mb"] = baselines["baseline"].peak_rss_mb()
            result["startup_seconds"] = {"bot": round(statistics.median(runs), 3),
                                         "bot_runs": runs,
                                         "baseline": round(baselines["baseline"].startup, 3)}
        finally:
            for closing in running:
                closing.stop()
            load.close()
            slack.close()
            emulator.close()
            redis.stop()
    result.update({
        "quick": args.quick, "levels": args.levels, "requests_per_level": args.requests,
        "server": {"workers": args.workers, "threads": args.threads, "worker_class": "gthread"},
        "machine": {**machine(), "load_before": load_before, "load_after": os.getloadavg()},
        "seconds": round(time.monotonic() - started, 1),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })
    result["targets"] = report.targets(result)
    return result


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench loopback",
                                description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--out", type=Path, default=RESULTS / "latest.json",
                   help="bench/results/latest.json")
    p.add_argument("--requests", type=int, help="requests per concurrency level (400)")
    p.add_argument("--flows", type=int, help="sequential full flows counted (50)")
    p.add_argument("--levels", default="1,10,50", help="concurrent clients, comma-separated")
    add_server_args(p)
    args = p.parse_args(argv)
    args.levels = [int(c) for c in args.levels.split(",")]
    quick = args.quick
    args.requests = args.requests or (50 if quick else 400)
    args.flows = args.flows or (10 if quick else 50)
    args.alerts = 60 if quick else 300
    args.storm = 9 if quick else 30
    args.startup_runs = 0 if quick else 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = run(args)
    report.write(result, args.out)
    print(report.table(result))
    print(f"\nwrote {args.out} in {result['seconds']} s")
    return 0
