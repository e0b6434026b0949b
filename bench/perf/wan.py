"""The bot over a WAN: HTTPS stand-ins behind a round-trip time.

    python -m bench wan                    # RTT 100 ms
    python -m bench wan --rtt-ms 100,250   # both; writes bench/results/wan.json
    python -m bench wan --quick            # 4 flows

The stand-ins are reached over HTTPS through ``bench.harness.fronts``, which add the round-trip
time. The measurements: each flow kind, one flow at a time, timed from the request the bot got
to the call it caused reaching Slack or ModelArts (as the stand-in behind the front stamped it).

Floors, in round trips (RTT), with connections already open. A call's request reaches the far
side half an RTT after it is sent, and its answer is back one RTT after. Redis and the bot's
own work are loopback-fast and left out.

- command -> confirmation posted: 1.5. The bot must GET the version (1 RTT: the role check
  needs the job name, the message shows its status) before it posts (0.5 RTT to arrive).
- click -> stop call: 0.5. The stop depends only on the confirmation consumed in Redis; the
  "Stopping..." ``chat.update`` depends on nothing the stop returns, so it need not go first.
- click -> thread reply: 1.5. The reply carries the stop's answer (1 RTT), then 0.5 RTT to
  arrive. The final ``chat.update`` of the request message can go at the same time.
- alert intake -> alert posted: 0.5. The alert is queued in Redis, then posted.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.harness import payloads, report, servers
from bench.harness.fronts import Certs, front, make_certs, trust_env
from bench.harness.load import LoadGenerator
from bench.harness.rig import (
    ALERTS_TOKEN,
    CHANNEL,
    PREFIX,
    RESULTS,
    SECRET,
    add_server_args,
    environment,
    machine,
    serve,
)
from bench.harness.servers import STOP_PATH, StandIn
from bench.perf.phases import Rig, pct, replies, unclicked, wait_for

FLOORS_RTT = {"command_to_confirmation": 1.5, "click_to_stop": 0.5,
              "click_to_reply": 1.5, "alert_to_post": 0.5}


def _posted_at(rig: Rig) -> dict[str, float]:
    """Message ts -> when its chat.postMessage reached the Slack stand-in."""
    rig.sync()
    return {c[6]: c[1] for c in rig.calls if c[0] == "chat.postMessage" and c[2] == 200 and c[6]}


def _updates(rig: Rig, ts: str) -> int:
    rig.sync()
    return sum(1 for c in rig.calls if c[0] == "chat.update" and c[5] == ts and c[2] == 200)


def stop_flows(rig: Rig, k: int) -> dict[str, list[float]]:
    """``k`` full flows one after another; seconds per flow kind."""
    out: dict[str, list[float]] = {"command_to_confirmation": [], "click_to_stop": [],
                                   "click_to_reply": []}
    for _ in range(k):
        req = payloads.command(f"stop {' '.join(map(str, next(rig.jobs)))}", "U0BENCH",
                               CHANNEL, rig.response_url("cmd"))
        job = int(req.body.split("stop+")[1].split("+")[0])
        (cmd,) = rig.load.run(rig.bot.base, [req], 1)
        request = wait_for(lambda j=job: next((r for r in unclicked(rig) if r["job_id"] == j),
                                              None), what="the confirmation request")
        out["command_to_confirmation"].append(_posted_at(rig)[request["ts"]] - cmd.at)
        click = payloads.click(request, "U0BENCH", rig.response_url("click"))
        (sent,) = rig.load.run(rig.bot.base, [click], 1)
        rig.clicked.add(request["value"])
        wait_for(lambda r=request: r["ts"] in replies(rig), what="the outcome reply")
        out["click_to_reply"].append(rig.replies[request["ts"]] - sent.at)
        stops = {int(m.group(1)): at for method, path, at in rig.emulator.ask("arrivals", 0)
                 if method == "POST" and (m := STOP_PATH.search(path))}
        out["click_to_stop"].append(stops[job] - sent.at)
        # The request message's two updates ("Stopping...", settled) land before the next flow.
        wait_for(lambda r=request: _updates(rig, r["ts"]) >= 2, what="the settled message")
    return out


def alerts(rig: Rig, k: int, first: int) -> list[float]:
    """``k`` alerts one after another, each to a channel of its own; seconds to its post."""
    out = []
    for n in range(first, first + k):
        channel = f"C0WAN{n:07d}"
        body = payloads.alert(50_000 + n, channel)
        (sent,) = rig.load.run(rig.bot.base, [body], 1)
        assert sent.status == 202, f"alert intake answered {sent.status}"
        at = wait_for(lambda c=channel: next((x[1] for x in _sync_calls(rig) if x[3] == c
                                              and x[0] == "chat.postMessage" and x[2] == 200),
                                             None), what="the alert post")
        out.append(at - sent.at)
    return out


def _sync_calls(rig: Rig) -> list[tuple]:
    rig.sync()
    return rig.calls


def counted(fronts: dict[str, StandIn]) -> dict[str, int]:
    return {host: len(f.ask("connections", 0)) for host, f in fronts.items()}


def measure(rig: Rig, fronts: dict[str, StandIn], rtt_ms: float, flows: int, warm: int,
            settle: float = 6.0) -> dict:
    """Warm up (connections opened in every worker), then count and time the steady run.
    ``settle``: seconds after the warm-up flows, so that the follow-up checks of their stops
    (bot/flow/watches.py, every STOP_VERIFY_INTERVAL_SECONDS: 5) have run once too."""
    first = int(rtt_ms) * 1000     # alert ids and channels of their own in each run
    stop_flows(rig, warm)
    alerts(rig, warm, first)
    time.sleep(settle)
    before = counted(fronts)
    timed = stop_flows(rig, flows)
    mid = counted(fronts)
    timed["alert_to_post"] = alerts(rig, flows, first + warm)
    after = counted(fronts)
    kinds = {}
    for kind, seconds in timed.items():
        floor = FLOORS_RTT[kind] * rtt_ms
        kinds[kind] = {**_summary(seconds), "floor_ms": floor, "floor_rtt": FLOORS_RTT[kind],
                       "p50_over_floor": round(pct(seconds, 50) / floor, 2)}
    per = {"stop_flow": {h: round((mid[h] - before[h]) / flows, 2) for h in fronts},
           "alert": {h: round((after[h] - mid[h]) / flows, 2) for h in fronts}}
    return {"rtt_ms": rtt_ms, "flows": flows, "warm_up_flows": warm, "kinds": kinds,
            "new_connections_per_flow": per,
            "new_connections_steady": {h: after[h] - before[h] for h in fronts},
            "opened_by": {h: opened_by(f, before[h], after[h]) for h, f in fronts.items()},
            "connections_warm_up": before}


def opened_by(front: StandIn, first: int, end: int) -> dict[str, int]:
    """The first request of each connection the front accepted in [first, end), by kind."""
    firsts: dict[int, str] = {}
    for conn, line, _, _ in front.ask("requests", 0):
        if first <= conn < end:
            firsts.setdefault(conn, line.split("?")[0])
    return dict(Counter(firsts.values()))


def _summary(values: list[float]) -> dict:
    return {"n": len(values), "p50": round(pct(values, 50), 1),
            "p99": round(pct(values, 99), 1), "max": round(max(values) * 1000, 1)}


def wan_once(args: argparse.Namespace, tmp: Path, rtt: float, certs: Certs,
             stand_ins: dict, load: LoadGenerator, jobs) -> dict:
    """One WAN measurement at ``rtt`` ms: fronts, a bot that reaches the stand-ins through them."""
    slack, emulator, redis = stand_ins["slack"], stand_ins["emulator"], stand_ins["redis"]
    fronts = {"slack": front(slack.url, rtt, certs),
              "modelarts": front(emulator.url, rtt, certs)}
    bot = None
    try:
        env = {**environment(tmp, {"slack": fronts["slack"].url + "/api/", "redis": redis.url,
                                   "emulator": fronts["modelarts"].url}, args),
               **trust_env(certs),
               # The answers to a command go to the stand-in itself, as Slack's to hooks.slack.com.
               "SLACK_RESPONSE_URLS": slack.url.removesuffix("/api/") + "/response/"}
        bot = serve(["-m", "bot", "serve"], env, tmp, f"bot-wan-{rtt:g}")
        rig = Rig(load, bot, {}, slack, emulator, redis, PREFIX, jobs)
        return measure(rig, fronts, rtt, args.flows, args.warm)
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
            certs = make_certs(tmp)
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
    p = argparse.ArgumentParser(prog="python -m bench wan", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="a short smoke run (4 flows)")
    p.add_argument("--out", type=Path, default=RESULTS / "wan.json", help="bench/results/wan.json")
    p.add_argument("--rtt-ms", default="100", help="round-trip times, comma-separated")
    p.add_argument("--flows", type=int, help="sequential flows of each kind counted (30)")
    add_server_args(p)
    args = p.parse_args(argv)
    args.rtt_ms = [float(r) for r in args.rtt_ms.split(",")]
    args.warm = 4 if args.quick else 8
    args.flows = args.flows or (4 if args.quick else 30)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    result = run_wan(args)
    report.write(result, args.out)
    print(report.wan_table(result))
    print(f"\nwrote {args.out} in {result['seconds']} s")
    return 0
