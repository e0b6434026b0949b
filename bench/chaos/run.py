"""Chaos run: two bot replicas (`python -m bot serve`, gunicorn) sharing a throwaway Redis, the
ModelArts emulator and the Slack stand-in, all on loopback; thousands of mixed flows while
Redis restarts, ModelArts fails or stalls, Slack rate-limits and a replica is SIGKILLed.

    python -m bench chaos                          # the full run (about 6 minutes)
    python -m bench chaos --flows 60 --seconds 30  # a smoke run

At the end it checks the promises (see bench/chaos/check.py) against what the stand-ins
recorded and the replicas logged, prints the figures and writes them to bench/results/chaos.json.
Exit status 0 only when no promise was broken. Needs redis-server on PATH.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import redis

from bench.chaos.check import check
from bench.chaos.flows import ROLES, Flow, RecordingStandIn, Traffic, run_flow, seed
from bench.chaos.procs import RedisProc, Replica
from bot.core.keys import Keys
from botdev.emulator import EMULATOR_AK, EMULATOR_PROJECT_ID, Emulator

# Distinctive secret values: the run greps every log line, Slack call and HTTP answer for them.
SECRETS = {
    "SLACK_BOT_TOKEN": "xoxb-chaos-bot-token-5d1e8c2a9f",
    "SLACK_SIGNING_SECRET": "chaos-signing-secret-0b7e4f19",
    "MODELARTS_SK": "chaos-modelarts-sk-c4a1d9e07b",
    "ALERTS_TOKEN": "chaos-alerts-token-8e2f6b3d",
}
KINDS = {"confirm": 30, "double_click": 12, "alert": 18, "cancel": 7, "race": 5,
         "wrong_user": 5, "forged": 4, "denied": 4, "revoked": 2, "expired": 1, "status": 4,
         "lookup_fault": 3, "hostile": 5, "crowd": 8}
GLOBAL_FAULTS = ("replica_kill", "redis_restart", "slack_429_burst", "slack_429_window",
                 "slack_5xx")
CONFIRM_TTL = 20
RESULTS = Path(__file__).resolve().parents[1] / "results"


class Injector(threading.Thread):
    """Every ``every`` seconds, one fault on the shared pieces, cycling through all kinds."""

    def __init__(self, redis_proc: RedisProc, replicas: list[Replica], standin, traffic: Traffic,
                 every: float, rng: random.Random) -> None:
        super().__init__(name="chaos-injector", daemon=True)
        self.redis_proc, self.replicas, self.standin = redis_proc, replicas, standin
        self.traffic, self.every, self.rng = traffic, every, rng
        self.halt = threading.Event()
        self.errors: list[str] = []

    def run(self) -> None:
        n = 0
        while not self.halt.wait(self.every):
            kind = GLOBAL_FAULTS[n % len(GLOBAL_FAULTS)]
            try:
                self.inject(kind, n)
            except Exception as exc:  # noqa: BLE001 - report it, keep the run going
                self.errors.append(f"{kind}: {type(exc).__name__}: {exc}")
            with self.traffic.lock:
                self.traffic.faults[kind] += 1
            n += 1

    def inject(self, kind: str, n: int) -> None:
        if kind == "replica_kill":
            replica = self.replicas[(n // len(GLOBAL_FAULTS)) % len(self.replicas)]
            replica.kill()
            time.sleep(self.rng.uniform(1.0, 2.5))
            replica.start()
        elif kind == "redis_restart":
            self.redis_proc.restart(self.rng.uniform(2.0, 4.0))
        elif kind == "slack_429_burst":     # more 429s in a row than the client retries
            for _ in range(4):
                self.standin.fail_next("chat.postMessage", 429, {"retry_after": 1})
        elif kind == "slack_429_window":    # Slack's 1 message/s/channel, for 4 seconds
            self.standin.channel_interval = 1.0
            time.sleep(4)
            self.standin.channel_interval = None
        else:
            for _ in range(2):
                self.standin.fail_next("chat.postMessage", 500, {"error": "internal_error"})
            self.standin.fail_next("chat.update", 503, {"error": "service_unavailable"})


def replica_env(workdir: Path, redis_url: str, standin, emulator, roles: Path) -> dict[str, str]:
    import os

    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return {**keep, **SECRETS,
            "SLACK_API_URL": standin.api_url, "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": "chaos:", "ROLES_FILE": str(roles),
            "MODELARTS_ENDPOINT": emulator.base_url, "MODELARTS_PROJECT_ID": EMULATOR_PROJECT_ID,
            "MODELARTS_AK": EMULATOR_AK, "MODELARTS_TIMEOUT_SECONDS": "2",
            "CONFIRM_TTL_SECONDS": str(CONFIRM_TTL), "USERGROUP_CACHE_SECONDS": "0",
            "ALERT_POST_INTERVAL_SECONDS": "0.2", "WEB_CONCURRENCY": "1", "WEB_THREADS": "16",
            # Watches (bot/flow/watches.py): short, so that every stop is followed to its end
            # within the drain; the emulator's stops take 0.5 s.
            "STOP_VERIFY_INTERVAL_SECONDS": "0.5", "STOP_VERIFY_SECONDS": "30",
            "STOP_UNKNOWN_VERIFY_SECONDS": "10",
            "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1"}


def settled(redis_url: str) -> tuple[int, int]:
    """(alert items still queued, outcome replies still owed + stops still watched) in the
    shared Redis."""
    client = redis.Redis.from_url(redis_url, socket_timeout=2)
    keys = Keys("chaos:")
    try:
        queued = sum(client.llen(k) for k in client.scan_iter("chaos:{alerts}:q:*"))
        return queued, client.zcard(keys.owed()[0]) + client.zcard(keys.watches()[0])
    except redis.RedisError:
        return -1, -1
    finally:
        client.close()


@dataclass
class Stage:
    """What one chaos run starts: its work dir, Redis, stand-ins, replicas and traffic."""

    workdir: Path
    redis_proc: RedisProc
    standin: RecordingStandIn
    emulator: Emulator
    replicas: list[Replica]
    traffic: Traffic
    flows: list[Flow]


def stage(args: argparse.Namespace, rng: random.Random) -> Stage:
    workdir = Path(tempfile.mkdtemp(prefix="chaos-"))
    redis_proc = RedisProc(workdir)
    redis_proc.start()
    standin = RecordingStandIn(tokens=(SECRETS["SLACK_BOT_TOKEN"],))
    standin.start()
    data, jobs = seed(args.flows)
    (workdir / "jobs.json").write_text(json.dumps(data))
    emulator = Emulator(workdir / "jobs.json", sk=SECRETS["MODELARTS_SK"], stop_delay=0.5)
    emulator.start()
    roles = workdir / "roles.yml"
    roles.write_text(ROLES)
    env = replica_env(workdir, redis_proc.url, standin, emulator, roles)
    replicas = [Replica(f"replica-{i + 1}", env, workdir) for i in range(args.replicas)]
    traffic = Traffic(replicas, standin, emulator, SECRETS["SLACK_SIGNING_SECRET"],
                      SECRETS["ALERTS_TOKEN"], CONFIRM_TTL, rng)
    names = list(KINDS)
    kinds = rng.choices(names, weights=[KINDS[k] for k in names], k=args.flows)
    flows = [Flow(n, kind, job) for n, (kind, job) in enumerate(zip(kinds, jobs, strict=True))]
    return Stage(workdir, redis_proc, standin, emulator, replicas, traffic, flows)


def run(args: argparse.Namespace) -> dict:
    rng = random.Random(args.seed)
    st = stage(args, rng)
    injector = Injector(st.redis_proc, st.replicas, st.standin, st.traffic, args.fault_every, rng)
    halt = threading.Event()

    def sample() -> None:
        while not halt.wait(0.5):
            for replica in st.replicas:
                replica.sample_now()

    started = time.monotonic()
    try:
        for replica in st.replicas:
            replica.start()
        threading.Thread(target=sample, name="chaos-sampler", daemon=True).start()
        injector.start()
        flows = drive(args, st.traffic, st.flows, started)
        injector.halt.set()
        injector.join(30)
        heal(st.redis_proc, st.replicas, st.standin, st.emulator)
        flows_done = time.monotonic() - started
        drain(st.redis_proc.url, args.drain)
        for replica in st.replicas:
            replica.stop()
        halt.set()
        result = check(flows, st.standin, st.emulator.store.stop_counts(),
                       [r.log_path for r in st.replicas], st.replicas, st.traffic,
                       list(SECRETS.values()))
        result.update({"seconds_flows": round(flows_done, 1),
                       "seconds_total": round(time.monotonic() - started, 1),
                       "redis_restarts": st.redis_proc.restarts, "seed": args.seed,
                       "injector_errors": injector.errors,
                       "still_queued_or_owed": settled(st.redis_proc.url) if st.redis_proc.proc
                       else None})
        return result
    finally:
        halt.set()
        injector.halt.set()
        teardown(st, args.keep)


def drive(args: argparse.Namespace, traffic: Traffic, flows: list[Flow], started: float
          ) -> list[Flow]:
    """Start the flows spread over 3/4 of ``--seconds``, at most ``--concurrency`` at a time;
    wait for them. Returns the flows started (fewer if ``--seconds`` ran out)."""
    window = args.seconds * 0.75
    with ThreadPoolExecutor(args.concurrency, thread_name_prefix="flow") as pool:
        futures = []
        for n, flow in enumerate(flows):
            time.sleep(max(0.0, started + n * window / len(flows) - time.monotonic()))
            if time.monotonic() - started > args.seconds:
                flows = flows[:n]
                break
            futures.append(pool.submit(run_flow, traffic, flow))
        for future in futures:
            future.result()
    return flows


def drain(redis_url: str, seconds: float) -> None:
    """Wait (at most ``seconds``) until no alert is queued and no reply or watch is owed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        queued, owed = settled(redis_url)
        if queued == 0 and owed == 0:
            break
        time.sleep(1)
    time.sleep(2)  # anything late (a second reply, a double post) shows now


def teardown(st: Stage, keep: bool) -> None:
    for replica in st.replicas:
        replica.kill() if replica.proc and not keep else None
    st.redis_proc.stop()
    st.standin.close()
    st.emulator.close()
    if keep:
        print(f"kept {st.workdir}", file=sys.stderr)
    else:
        shutil.rmtree(st.workdir, ignore_errors=True)


def heal(redis_proc: RedisProc, replicas: list[Replica], standin: RecordingStandIn,
         emulator: Emulator) -> None:
    """End every fault so that what is owed can be delivered."""
    emulator.clear_faults()
    standin.channel_interval = None
    standin.clear_failures()
    if redis_proc.proc is None:
        redis_proc.start()
    for replica in replicas:
        if not replica.up:
            replica.start()


FIGURES = ("flows", "faults_total", "stops", "confirmed_stops", "duplicates",
           "missing_outcome_replies", "duplicate_outcome_replies", "watches", "final_messages",
           "missing_final_messages", "duplicate_final_messages", "alerts_accepted",
           "lost_alerts", "duplicate_alerts", "stops_outside_the_rules", "crashes",
           "replica_kills", "redis_restarts", "slack_5xx", "secret_leaks", "seconds_total")


def table(result: dict) -> str:
    rows = [(name, result[name]) for name in FIGURES]
    rows += [(f"faults: {k}", v) for k, v in result["faults_injected"].items()]
    rows += [(f"peak memory {k} (MiB)", f"{v['rss_total']} rss, {v['max_process_hwm']} hwm")
             for k, v in result["peak_memory_mib"].items()]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench chaos",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=3000, help="how many flows, at most")
    parser.add_argument("--seconds", type=float, default=300.0,
                        help="start flows for at most this long (then drain)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=48, help="flows in flight at most")
    parser.add_argument("--fault-every", type=float, default=5.0, help="seconds between faults")
    parser.add_argument("--drain", type=float, default=90.0,
                        help="seconds to wait after the flows for owed posts")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--out", default=str(RESULTS / "chaos.json"))
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = parser.parse_args(argv)
    if not shutil.which("redis-server"):
        print("redis-server is not installed", file=sys.stderr)
        return 2
    result = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    if result["violations"]:
        print("\nviolations:\n" + json.dumps(result["violations"], indent=2))
    print(f"\nfigures written to {out}")
    return 0 if result["violation_count"] == 0 else 1
