"""The measurements, one function each, against a running ``Rig``."""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bench.harness import payloads
from bench.harness.load import LoadGenerator, Req, Sent
from bench.harness.rig import CHANNEL, USER
from bench.harness.servers import STOP_PATH, Served, StandIn, ThrowawayRedis, cpu_seconds
from bench.harness.trips import Monitor, per_flow


@dataclass
class Rig:
    load: LoadGenerator
    bot: Served
    baselines: dict[str, Served]     # "baseline" (the bot's Bolt mode), "bolt_default"
    slack: StandIn
    emulator: StandIn
    redis: ThrowawayRedis
    prefix: str
    jobs: Iterator[tuple[int, int]]
    clicked: set[str] = field(default_factory=set)
    calls: list[tuple] = field(default_factory=list)      # what the Slack stand-in received
    requests: list[dict] = field(default_factory=list)    # confirmation requests it was sent
    replies: dict[str, float] = field(default_factory=dict)  # thread_ts -> reply arrival
    _messages: int = 0

    def response_url(self, name: str) -> str:
        return self.slack.url.removesuffix("/api/") + f"/response/{name}"

    def sync(self) -> None:
        """Fetch what the Slack stand-in saw since the last sync (cheap: only the news)."""
        new = self.slack.ask("calls", len(self.calls))
        self.calls += new
        for call in new:   # the first reply in a thread: the outcome (a watch's comes later)
            if call[0] == "chat.postMessage" and call[4] and call[2] == 200:
                self.replies.setdefault(call[4], call[1])
        seen, found = self.slack.ask("requests", self._messages)
        self._messages += seen
        self.requests += found


def drain_watches(rig: Rig, timeout: float = 180.0) -> None:
    """Wait until no stop is being followed (bot.flow.watches): the watches of one phase's stops
    fire a few seconds later and would otherwise load the next phase."""
    import redis

    from bot.core.keys import Keys

    client = redis.Redis(port=rig.redis.port)
    try:
        wait_for(lambda: client.zcard(Keys(rig.prefix).watches()[0]) == 0, timeout,
                 "the watches to end", every=0.5)
    finally:
        client.close()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile, in ms."""
    ordered = sorted(values)
    return round(ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)] * 1000, 2)


def summary(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95),
            "p99": pct(values, 99), "max": round(max(values) * 1000, 2)}


def latency(sent: list[Sent], expect: int = 200) -> dict:
    bad = sum(s.status != expect for s in sent)
    span = max(s.at + s.seconds for s in sent) - min(s.at for s in sent)
    return {**summary([s.seconds for s in sent]), "errors": bad,
            "per_second": round(len(sent) / span, 1) if span > 0 else None}


def wait_for(check: Callable[[], object], timeout: float = 120.0, what: str = "the bot",
             every: float = 0.005):
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)


def unclicked(rig: Rig) -> list[dict]:
    rig.sync()
    return [r for r in rig.requests if r["value"] not in rig.clicked]


def replies(rig: Rig) -> dict[str, float]:
    """thread_ts -> when the outcome reply reached the Slack stand-in."""
    rig.sync()
    return rig.replies


def commands(rig: Rig, n: int, user: str = USER) -> list[Req]:
    return [payloads.command(f"stop {job} {version}", user, CHANNEL, rig.response_url("cmd"))
            for job, version in (next(rig.jobs) for _ in range(n))]


# -- 1. ack latency ----------------------------------------------------------------------------
def command_acks(rig: Rig, c: int, n: int) -> dict:
    reqs = commands(rig, n)
    out = {name: latency(rig.load.run(s.base, reqs, c)) for name, s in rig.baselines.items()}
    before = len(unclicked(rig))
    bot = rig.load.run(rig.bot.base, reqs, c)
    wait_for(lambda: len(unclicked(rig)) >= before + n, what="the confirmation requests")
    return {"bot": latency(bot), **out}


def confirm_acks(rig: Rig, c: int, n: int) -> dict:
    batch = unclicked(rig)[:n]
    assert len(batch) == n, "not enough confirmations to click"
    reqs = [payloads.click(r, USER, rig.response_url("click")) for r in batch]
    out = {name: latency(rig.load.run(s.base, reqs, c)) for name, s in rig.baselines.items()}
    bot = rig.load.run(rig.bot.base, reqs, c)
    rig.clicked.update(r["value"] for r in batch)
    wait_for(lambda: all(r["ts"] in replies(rig) for r in batch), what="the outcome replies")
    return {"bot": latency(bot), **out, "added": added(rig, batch, bot)}


# -- 2. what the bot adds between the stand-ins ------------------------------------------------
def added(rig: Rig, batch: list[dict], sent: list[Sent]) -> dict:
    """Click sent -> stop request at the emulator; stop answered -> reply at the Slack stand-in."""
    arrived = {int(m.group(1)): at for method, path, at in rig.emulator.ask("arrivals", 0)
               if method == "POST" and (m := STOP_PATH.search(path))}
    answered = {job: at for job, _, at in rig.emulator.ask("stopped")}
    replied = replies(rig)
    to_stop, to_reply = [], []
    for request, s in zip(batch, sent, strict=True):
        job = request["job_id"]
        to_stop.append(arrived[job] - s.at)
        to_reply.append(replied[request["ts"]] - answered[job])
    return {"click_to_stop": summary(to_stop), "answer_to_reply": summary(to_reply)}


# -- 3. round trips and calls per full flow ----------------------------------------------------
def flows(rig: Rig, k: int, user: str = USER) -> dict:
    """``k`` full flows one after another: command, confirm, stop, reply. Each request goes
    to the idle baseline first, then to the bot (a new connection each: as Slack sends them)."""
    monitor = Monitor(rig.redis.port, rig.prefix)
    drain_watches(rig)
    rig.sync()
    slack_from = len(rig.calls)
    emulator_from = len(rig.emulator.ask("arrivals", 0))
    monitor.start()
    cpu_before = cpu(rig)
    started = time.monotonic()
    batch, sent, acks = [], [], []
    base: dict[str, list[Sent]] = {"command": [], "confirm": []}   # the same, to the baseline
    for req in commands(rig, k, user):
        job = int(req.body.split("stop+")[1].split("+")[0])
        base["command"] += rig.load.run(rig.baselines["baseline"].base, [req], 1)
        acks += rig.load.run(rig.bot.base, [req], 1)
        request = wait_for(lambda j=job: next((r for r in unclicked(rig) if r["job_id"] == j),
                                              None), what="the confirmation request")
        click = payloads.click(request, user, rig.response_url("click"))
        base["confirm"] += rig.load.run(rig.baselines["baseline"].base, [click], 1)
        sent += rig.load.run(rig.bot.base, [click], 1)
        rig.clicked.add(request["value"])
        batch.append(request)
        wait_for(lambda r=request: r["ts"] in replies(rig), what="the outcome reply")
        time.sleep(0.02)   # the flow's last calls (settle the message) end: the next ack is idle
    time.sleep(0.2)   # a late Slack call (the settled update) lands now
    drain_watches(rig)   # each stop followed to its end: counted too, apart from the flow
    seconds = time.monotonic() - started
    used = {name: round((t - cpu_before[name]) * 1000 / k, 2) for name, t in cpu(rig).items()}
    trips = per_flow(monitor.stop(), k, seconds)
    rig.sync()
    slack = Counter(c[0] for c in rig.calls[slack_from:])
    seen: set[str] = set()
    modelarts: Counter = Counter()
    for method, path, _ in rig.emulator.ask("arrivals", emulator_from):
        kind = "stop" if path.endswith("/stop") else "version"
        # A version looked up again after its stop is the watch's follow-up check.
        modelarts[f"{method} {kind}{' (follow-up)' if (kind, path) in seen else ''}"] += 1
        seen.add(("version", path.removesuffix("/stop")) if kind == "stop" else (kind, path))
    return {"flows": k, "user": user, "redis": trips,
            "slack_calls": {m: round(n / k, 2) for m, n in sorted(slack.items())},
            "modelarts_calls": {m: round(n / k, 2) for m, n in sorted(modelarts.items())},
            "cpu_ms_per_flow": used,
            "ack_idle": {"command": latency(acks), "confirm": latency(sent)},
            "baseline_ack_idle": {kind: latency(v) for kind, v in base.items()},
            "added": added(rig, batch, sent)}


def cpu(rig: Rig) -> dict[str, float]:
    """CPU seconds used so far: the bot (master and workers), each stand-in, Redis."""
    pids = {"bot": [rig.bot.proc.pid, *rig.bot.workers()], "slack_standin": [rig.slack.proc.pid],
            "emulator": [rig.emulator.proc.pid], "redis": [rig.redis.proc.pid]}
    return {name: sum(cpu_seconds(p) for p in ps) for name, ps in pids.items()}


# -- 5. alerts ---------------------------------------------------------------------------------
def alert_intake(rig: Rig, n: int, channels: int, c: int) -> dict:
    """Alerts accepted per second: ``n`` distinct alerts over many channels, ``c`` at a time."""
    reqs = [payloads.alert(i, f"C0ALERT{i % channels:03d}") for i in range(n)]
    sent = rig.load.run(rig.bot.base, reqs, c)
    out = latency(sent, expect=202)
    wait_for(lambda: posts(rig, "C0ALERT") >= n, what="the alerts to drain")
    return {"alerts": n, "channels": channels, "concurrency": c, "accepted_per_second":
            out["per_second"], "latency_ms": out}


def storm(rig: Rig, n: int, channels: int, c: int) -> dict:
    """``n`` alerts on ``channels`` channels at once; the stand-in allows 1 post/s/channel."""
    rig.slack.ask("interval", 1.0)
    rig.sync()
    first = len(rig.calls)
    reqs = [payloads.alert(10_000 + i, f"C0STORM{chr(65 + i % channels)}") for i in range(n)]
    sent = rig.load.run(rig.bot.base, reqs, c)
    wait_for(lambda: posts(rig, "C0STORM") >= n, timeout=n + 60, what="the storm to drain")
    rig.sync()
    calls = [x for x in rig.calls[first:] if x[0] == "chat.postMessage"]
    rig.slack.ask("interval", None)
    start = min(s.at for s in sent)
    done = max(x[1] for x in calls if x[2] == 200)
    return {"alerts": n, "channels": channels, "concurrency": c,
            "accepted": sum(s.status == 202 for s in sent),
            "accepted_per_second": latency(sent, expect=202)["per_second"],
            "time_to_drain_seconds": round(done - start, 2),
            "ideal_drain_seconds": math.ceil(n / channels) - 1,
            "429s_met": sum(x[2] == 429 for x in calls)}


def posts(rig: Rig, channel_prefix: str) -> int:
    rig.sync()
    return sum(1 for c in rig.calls if c[0] == "chat.postMessage"
               and c[2] == 200 and str(c[3]).startswith(channel_prefix))
