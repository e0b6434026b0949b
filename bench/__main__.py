"""How fast the bot answers, and what it adds on top of Slack and ModelArts.

    python -m bench                 # full run (under a minute on 2 cores)
    python -m bench --quick         # a short smoke run
    python -m bench --out bench/results/latest.json
    python -m bench --network wan --rtt-ms 100,250   # HTTPS stand-ins behind a round-trip time

Starts a throwaway redis-server, the ModelArts emulator and the Slack stand-in (a process each),
the bot under its production server (``python -m bot serve``: gunicorn gthread) and the bare-Bolt
baseline under the same server (``python -m bench.baseline``), and a load generator in a process
of its own. Prints one table and writes the results as JSON. See docs/benchmark.md.
With ``--network wan`` the stand-ins are reached over HTTPS through ``bench.wan``'s fronts,
which add the round-trip time, and it times each flow kind against its floor instead.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import phases, report, servers, wan, wan_phases
from bench.load import LoadGenerator
from botdev.emulator import defaults
from botdev.standin.slack import BOT_TOKEN

SECRET = "bench-signing-secret"  # noqa: S105 - the benchmark's own, local
ALERTS_TOKEN = "bench-alerts-token"  # noqa: S105
PREFIX = "bench:"
ROOT = Path(__file__).resolve().parent.parent
ROLES = f"""roles:
  oncall:
    jobs: ["*"]
users:
  {phases.USER}: [oncall]
usergroups:
  {phases.GROUP}: [oncall]
"""


def environment(tmp: Path, rig_urls: dict, args: argparse.Namespace) -> dict[str, str]:
    roles = tmp / "roles.yml"
    roles.write_text(ROLES, encoding="utf-8")
    return {
        **servers.base_env(), "PYTHONPATH": str(ROOT),
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": rig_urls["slack"], "REDIS_URL": rig_urls["redis"],
        "REDIS_KEY_PREFIX": PREFIX, "ROLES_FILE": str(roles),
        "MODELARTS_ENDPOINT": rig_urls["emulator"],
        "MODELARTS_PROJECT_ID": defaults.EMULATOR_PROJECT_ID,
        "MODELARTS_AK": defaults.EMULATOR_AK, "MODELARTS_SK": defaults.EMULATOR_SK,
        "ALERTS_TOKEN": ALERTS_TOKEN, "HOST": "127.0.0.1",
        "WEB_CONCURRENCY": str(args.workers), "WEB_THREADS": str(args.threads),
        "LOG_LEVEL": "INFO",
    }


def serve(argv: list[str], env: dict, tmp: Path, name: str) -> servers.Served:
    port = servers.free_port()
    return servers.Served(argv, {**env, "PORT": str(port)}, tmp / f"{name}.log", port)


def startup_runs(env: dict, tmp: Path, runs: int) -> list[float]:
    """Extra launches of the bot, only to time them; each is stopped at once."""
    out = []
    for n in range(runs):
        served = serve(["-m", "bot", "serve"], env, tmp, f"startup{n}")
        out.append(round(served.startup, 3))
        served.stop()
    return out


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "cpu": cpu, "python": platform.python_version()}


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
    rig.slack.ask("usergroup", (phases.GROUP, [phases.GROUP_USER]))
    phases.flows(rig, 1, phases.GROUP_USER)     # fills the usergroup cache
    flows = {"direct": phases.flows(rig, args.flows),
             "usergroup": phases.flows(rig, args.flows, phases.GROUP_USER)}
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
            baselines = {"baseline": serve(["-m", "bench.baseline"], env, tmp, "baseline"),
                         "bolt_default": serve(["-m", "bench.baseline"],
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


def wan_once(args: argparse.Namespace, tmp: Path, rtt: float, certs: wan.Certs,
             stand_ins: dict, load: LoadGenerator, jobs) -> dict:
    """One WAN measurement at ``rtt`` ms: fronts, a bot that reaches the stand-ins through them."""
    slack, emulator, redis = stand_ins["slack"], stand_ins["emulator"], stand_ins["redis"]
    fronts = {"slack": wan.front(slack.url, rtt, certs),
              "modelarts": wan.front(emulator.url, rtt, certs)}
    bot = None
    try:
        env = {**environment(tmp, {"slack": fronts["slack"].url + "/api/", "redis": redis.url,
                                   "emulator": fronts["modelarts"].url}, args),
               **wan.trust_env(certs),
               # The answers to a command go to the stand-in itself, as Slack's to hooks.slack.com.
               "SLACK_RESPONSE_URLS": slack.url.removesuffix("/api/") + "/response/"}
        bot = serve(["-m", "bot", "serve"], env, tmp, f"bot-wan-{rtt:g}")
        rig = phases.Rig(load, bot, {}, slack, emulator, redis, PREFIX, jobs)
        return wan_phases.measure(rig, fronts, rtt, args.flows, args.warm)
    finally:
        if bot:
            bot.stop()
        for f in fronts.values():
            f.close()


def run_wan(args: argparse.Namespace) -> dict:
    started, load_before = time.monotonic(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="modelarts-bench-wan-") as name:
        tmp = Path(name)
        redis = servers.ThrowawayRedis(tmp)
        needed = len(args.rtt_ms) * (args.warm + args.flows) + 5
        jobs = iter(servers.write_seed(tmp / "jobs.json", 700000, needed))
        stand_ins = {"slack": servers.slack_standin(),
                     "emulator": servers.emulator(tmp / "jobs.json"), "redis": redis}
        load = LoadGenerator(SECRET, ALERTS_TOKEN)
        try:
            certs = wan.make_certs(tmp)
            runs = [wan_once(args, tmp, rtt, certs, stand_ins, load, jobs) for rtt in args.rtt_ms]
        finally:
            load.close()
            stand_ins["slack"].close()
            stand_ins["emulator"].close()
            redis.stop()
    return {"network": "wan", "quick": args.quick, "runs": runs,
            "server": {"workers": args.workers, "threads": args.threads, "worker_class": "gthread"},
            "machine": {**machine(), "load_before": load_before, "load_after": os.getloadavg()},
            "seconds": round(time.monotonic() - started, 1),
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run")
    p.add_argument("--out", type=Path, help="bench/results/latest.json (wan: wan.json)")
    p.add_argument("--network", choices=("loopback", "wan"), default="loopback",
                   help="wan: HTTPS stand-ins behind a round-trip time (bench/wan.py)")
    p.add_argument("--rtt-ms", default="100", help="wan: round-trip times, comma-separated")
    p.add_argument("--requests", type=int, help="requests per concurrency level (400)")
    p.add_argument("--flows", type=int, help="sequential full flows counted (50)")
    p.add_argument("--levels", default="1,10,50", help="concurrent clients, comma-separated")
    p.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY (2)")
    p.add_argument("--threads", type=int, default=8, help="WEB_THREADS (8)")
    args = p.parse_args(argv)
    args.levels = [int(c) for c in args.levels.split(",")]
    args.rtt_ms = [float(r) for r in args.rtt_ms.split(",")]
    quick = args.quick
    wan_mode = args.network == "wan"
    args.out = args.out or ROOT / "bench" / "results" / ("wan.json" if wan_mode else "latest.json")
    args.warm = 4 if quick else 8
    args.requests = args.requests or (50 if quick else 400)
    args.flows = args.flows or (4 if quick and wan_mode else 10 if quick else 30 if wan_mode
                                else 50)
    args.alerts = 60 if quick else 300
    args.storm = 9 if quick else 30
    args.startup_runs = 0 if quick else 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    wan_mode = args.network == "wan"
    result = run_wan(args) if wan_mode else run(args)
    report.write(result, args.out)
    print(report.wan_table(result) if wan_mode else report.table(result))
    print(f"\nwrote {args.out} in {result['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
