"""What the metrics cost, and what ``/metrics`` shows after a short load.

    python -m bench metrics            # about 20 s on 2 cores
    python -m bench metrics --flows 20 --scrapes 200

1. Per call: each bot.core.metrics API call in multiprocess mode (values in mmap'd files, as under
   gunicorn), in a child process with PROMETHEUS_MULTIPROC_DIR set.
2. The same rig as ``python -m bench loopback`` (throwaway Redis, stand-ins in their own
   processes, the bot under gunicorn, 2 workers): ``--flows`` full stop flows with their Redis
   round trips (bench.harness.trips: the metrics must add none), then ``--scrapes`` GETs of
   /metrics one after another: latency and size. Then, the bot stopped, what one gauge sample
   costs in Redis (INFO commandstats) with 3 channels holding queued alerts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

import requests

from bench.harness import servers
from bench.harness.load import LoadGenerator
from bench.harness.rig import ALERTS_TOKEN, PREFIX, SECRET, environment, serve
from bench.perf import phases

CALLS = {
    "observe_modelarts": "m.observe_modelarts('v1', 'stop_version', 0.05)",
    "observe_modelarts(error)": "m.observe_modelarts('v1', 'stop_version', 0.05, 'BOT.TIMEOUT')",
    "observe_slack": "m.observe_slack('chat.postMessage', 0.01)",
    "stop_request": "m.stop_request('v1', 'accepted')",
    "decision": "m.decision('confirmed', None)",
    "ack": "m.ack('click', 0.002)",
}


def per_call() -> dict[str, float]:
    """Microseconds per call, best of 5 runs of 20000 (run in the child)."""
    from bot.core import metrics as m

    return {name: round(min(timeit.repeat(stmt, globals={"m": m}, number=20000, repeat=5))
                        / 20000 * 1e6, 2) for name, stmt in CALLS.items()}


def per_call_multiprocess(tmp: Path) -> dict[str, float]:
    folder = tmp / "micro"
    folder.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)}
    code = "import json; from bench.probes.metrics import per_call; print(json.dumps(per_call()))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,  # noqa: S603
                          text=True, check=True, timeout=120)
    return json.loads(done.stdout)


METRICS_TOKEN = "bench-metrics-token"  # noqa: S105 - the probe's own, local
BACKGROUND = ("cmdstat_info", "cmdstat_evalsha", "cmdstat_script", "cmdstat_eval")


def commands_processed(redis: servers.ThrowawayRedis) -> int:
    """Commands Redis ran, less scripts: the dispatcher and owed-reply polls run scripts, the
    gauge sampler none."""
    stats = redis.client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in BACKGROUND)


def sampler_cost(redis: servers.ThrowawayRedis, n: int = 200) -> dict:
    """One gauge sample's Redis commands and time, with the bot stopped (no background polls)
    and 3 channels with queued alerts."""
    from bot.alerts.queue import AlertQueue
    from bot.app.metrics_sample import Sampler

    queue = AlertQueue(redis.client, PREFIX, 0)
    for channel in ("C1", "C2", "C3"):
        redis.client.rpush(queue.key("q", channel), "{}")
        redis.client.zadd(queue.key("ready"), {channel: 0})
    sampler = Sampler(redis.client, PREFIX, backlog=queue.backlog, every=0)
    before, started = commands_processed(redis), time.perf_counter()
    for _ in range(n):
        sampler.sample()
    return {"ms_per_sample": round((time.perf_counter() - started) / n * 1000, 3),
            "redis_commands_per_sample": (commands_processed(redis) - before) / n,
            "redis_round_trips_per_sample": 3}


def scrapes(base: str, n: int) -> dict:
    took, size, text = [], 0, ""
    first = time.perf_counter()
    with requests.Session() as http:
        for _ in range(n):
            started = time.perf_counter()
            resp = http.get(base + "/metrics", timeout=10,
                            headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            took.append(time.perf_counter() - started)
            resp.raise_for_status()
            size, text = len(resp.content), resp.text
    return {"scrapes": n, "seconds": round(time.perf_counter() - first, 2),
            "ms": phases.summary(took), "bytes": size,
            "excerpt": [line for line in text.splitlines()
                        if line.startswith("modelarts_bot_") and "_bucket" not in line]}


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory(prefix="modelarts-bench-metrics-") as name:
        tmp = Path(name)
        out = {"per_call_us": per_call_multiprocess(tmp)}
        redis = servers.ThrowawayRedis(tmp)
        jobs = servers.write_seed(tmp / "jobs.json", 700000, args.flows + 5)
        slack, emulator = servers.slack_standin(), servers.emulator(tmp / "jobs.json")
        load = LoadGenerator(SECRET, ALERTS_TOKEN)
        try:
            env = {**environment(tmp, {"slack": slack.url, "redis": redis.url,
                                       "emulator": emulator.url}, args),
                   "METRICS_TOKEN": METRICS_TOKEN}   # unset, /metrics answers 503
            out.update(served(args, env, tmp, load, slack, emulator, redis, iter(jobs)))
            out["sample"] = sampler_cost(redis)
        finally:
            load.close()
            slack.close()
            emulator.close()
            redis.stop()
    return out


def served(args, env, tmp, load, slack, emulator, redis, jobs) -> dict:
    running: list[servers.Served] = []
    try:
        bot = serve(["-m", "bot", "serve"], env, tmp, "bot")
        running.append(bot)
        baseline = serve(["-m", "bench.harness.baseline"], env, tmp, "baseline")
        running.append(baseline)
        rig = phases.Rig(load, bot, {"baseline": baseline}, slack, emulator, redis, PREFIX, jobs)
        flows = phases.flows(rig, args.flows)
        return {"flows": {"flows": args.flows, "redis": flows["redis"],
                          "ack_idle_p50_ms": {k: v["p50"] for k, v in flows["ack_idle"].items()}},
                "scrape": scrapes(bot.base, args.scrapes)}
    finally:
        for closing in running:
            closing.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench metrics")
    parser.add_argument("--flows", type=int, default=10)
    parser.add_argument("--scrapes", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    result = run(args)
    excerpt = result["scrape"].pop("excerpt")
    print(json.dumps(result, indent=2))
    print("\n".join(excerpt))
    return 0
