"""Stop flows through a Redis Sentinel failover (issue 14): two bot replicas served in this process
on a primary + replica behind two Sentinels (real redis-server processes), the ModelArts emulator
and the Slack stand-in over loopback HTTP. A third of the way through, ``SENTINEL FAILOVER``.

    python -m bench failover [--flows 40] [--threads 8]

Prints flows, the failover time, duplicate stops, stops without a confirmation and missing
replies. A user who is told "can't reach my state store" tries again, as a person would; every
fourth flow is requested and never confirmed. tests/test_redis_sentinel.py runs the same flows.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import requests

from bot.flow.blocks import CONFIRM
from bot.modelarts.refs import V2Job
from botdev.standin.signing import slack_headers
from botdev.standin.slack import Message, SlackStandIn

USER = "U0ONCALL"
DOWN = "state store"                     # the bot's "can't reach my state store (Redis)"
ATTEMPTS = 5


@dataclass
class Flow:
    n: int
    job: V2Job
    confirm: bool                         # every fourth flow is never confirmed
    double: bool                          # confirm clicked on both replicas at once
    request: Message | None = None
    outcome: str = ""                     # stopped | expired | handled | unanswered | no request
    retries: int = 0                      # "state store" answers the user had to try again on
    finished_at: float = 0.0

    @property
    def channel(self) -> str:
        return f"C0FO{self.n:04d}"


@dataclass
class Run:
    flows: list[Flow]
    failover_s: float = 0.0               # SENTINEL FAILOVER until the sentinels name the other
    failover_at: float = 0.0
    stop_counts: dict[str, int] = field(default_factory=dict)
    replied: set[str] = field(default_factory=set)

    def summary(self) -> dict:
        confirmed = [f for f in self.flows if f.confirm]
        stopped = [f for f in self.flows if self.stop_counts[f.job.training_job_id]]
        after = [f for f in confirmed if f.finished_at > self.failover_at]
        return {
            "flows": len(self.flows), "confirmed": len(confirmed),
            "failover_s": round(self.failover_s, 3),
            "stops": len(stopped),
            "duplicate_stops": sum(max(0, c - 1) for c in self.stop_counts.values()),
            "stops_without_confirmation": sum(
                1 for f in self.flows if not f.confirm and self.stop_counts[f.job.training_job_id]),
            "missing_replies": sum(1 for f in stopped if f.job.training_job_id not in self.replied),
            "state_store_retries": sum(f.retries for f in self.flows),
            "expired_after_failover": sum(f.outcome == "expired" for f in confirmed),
            "confirmed_after_failover_stopped": sum(f.outcome == "stopped" for f in after),
            "confirmed_after_failover": len(after),
            "outcomes": {o: sum(f.outcome == o for f in self.flows)
                         for o in sorted({f.outcome for f in self.flows})},
            "odd": [self.line(f) for f in self.flows if self.odd(f)],
        }

    def odd(self, flow: Flow) -> bool:
        count = self.stop_counts[flow.job.training_job_id]
        expected = 1 if flow.outcome == "stopped" else 0
        return (count != expected or flow.outcome not in ("stopped", "not confirmed")
                or (count and flow.job.training_job_id not in self.replied))

    def line(self, flow: Flow) -> str:
        """One flow, for a failure message: what the user saw, stops, reply, timing."""
        job = flow.job.training_job_id
        return (f"flow {flow.n} {flow.outcome or '?'}: stops {self.stop_counts[job]}, "
                f"replied {job in self.replied}, retries {flow.retries}, finished "
                f"{flow.finished_at - self.failover_at:+.2f} s from the failover")


class Flows:
    """Sends signed commands and clicks to the replicas (by base URL) and reads the stand-in."""

    def __init__(self, urls: list[str], secret: str, slack: SlackStandIn, emulator) -> None:
        self.urls, self.secret, self.slack, self.emulator = urls, secret, slack, emulator
        self.local = threading.local()

    def post(self, n: int, body: str) -> int:
        if not hasattr(self.local, "http"):
            self.local.http = requests.Session()
        url = self.urls[n % len(self.urls)] + "/slack/events"
        return self.local.http.post(url, data=body.encode(), timeout=10,
                                    headers=slack_headers(self.secret, body)).status_code

    def said(self, name: str, needle: str) -> bool:
        return any(needle in c.params.get("text", "")
                   for c in self.slack.calls_to(f"response/{name}"))

    def command(self, flow: Flow, attempt: int) -> int:
        return self.post(flow.n, urlencode({
            "team_id": "T0FO", "channel_id": flow.channel, "user_id": USER, "user_name": "oncall",
            "command": "/modelarts", "text": f"stop {flow.job.training_job_id}",
            "api_app_id": "A0BOT", "trigger_id": f"{time.time()}.t",
            "response_url": self.slack.response_url(f"fo{flow.n}-r{attempt}")}))

    def click(self, flow: Flow, name: str, replica: int) -> int:
        msg = flow.request
        value = next(e["value"] for b in msg.blocks if b.get("type") == "actions"
                     for e in b["elements"] if e.get("action_id") == CONFIRM)
        payload = {
            "type": "block_actions", "api_app_id": "A0BOT", "team": {"id": "T0FO"},
            "user": {"id": USER, "team_id": "T0FO"}, "channel": {"id": flow.channel},
            "container": {"type": "message", "message_ts": msg.ts, "channel_id": flow.channel},
            "message": {"type": "message", "ts": msg.ts, "text": "", "blocks": msg.blocks},
            "trigger_id": f"{time.time()}.t", "response_url": self.slack.response_url(name),
            "actions": [{"type": "button", "action_id": CONFIRM, "block_id": "modelarts_stop",
                         "value": value, "action_ts": str(time.time())}]}
        return self.post(replica, urlencode({"payload": json.dumps(payload)}))

    def wait(self, predicate, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = predicate()
            if got:
                return got
            time.sleep(0.02)
        return None

    def requested(self, flow: Flow) -> Message | None:
        with self.slack._lock:
            found = [m for m in self.slack.messages.values()
                     if m.channel == flow.channel and m.thread_ts is None
                     and CONFIRM in json.dumps(m.blocks or [])]
        return found[0] if found else None

    def run(self, flow: Flow) -> Flow:
        for attempt in range(ATTEMPTS):
            self.command(flow, attempt)
            name = f"fo{flow.n}-r{attempt}"
            got = self.wait(lambda: self.requested(flow) or self.said(name, DOWN), 10)  # noqa: B023
            if isinstance(got, Message):
                flow.request = got
                break
            flow.retries += 1
            time.sleep(0.2)
        if not flow.request:
            flow.outcome = "no request"
        elif flow.confirm:
            self.confirm(flow)
        else:
            flow.outcome = "not confirmed"
        flow.finished_at = time.monotonic()
        return flow

    def confirm(self, flow: Flow) -> None:
        msg = flow.request
        for attempt in range(ATTEMPTS):
            names = [f"fo{flow.n}-c{attempt}-{i}" for i in range(2 if flow.double else 1)]
            threads = [threading.Thread(target=self.click, args=(flow, name, flow.n + 1 + i))
                       for i, name in enumerate(names)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            got = self.wait(lambda: self.answer(msg, names), 15)  # noqa: B023 - used at once
            if got != "retry":
                flow.outcome = got or "unanswered"
                return
            flow.retries += 1
            time.sleep(0.2)
        flow.outcome = "unanswered"

    def answer(self, msg: Message, names: list[str]) -> str | None:
        """What the confirm clicks named ``names`` got: the stop's reply in the thread, an
        ephemeral "expired" or "already handled" (single click), or "state store" (retry)."""
        if self.slack.thread_replies(msg.channel, msg.ts):
            return "stopped"
        for needle, what in (("expired", "expired"), ("already handled", "handled")):
            if len(names) == 1 and self.said(names[0], needle):
                return what
        return "retry" if all(self.said(n, DOWN) for n in names) else None


def run_flows(flows_io: Flows, sentinel, jobs: list[V2Job], threads: int = 8,
              reply_wait: float = 45.0) -> Run:
    """Run one flow per job; after a third of them finished, fail the primary over."""
    flows = [Flow(n, job, confirm=n % 4 != 3, double=n % 2 == 0) for n, job in enumerate(jobs)]
    run = Run(flows)
    done = threading.Semaphore(0)

    def one(flow: Flow) -> Flow:
        try:
            return flows_io.run(flow)
        finally:
            done.release()

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(one, f) for f in flows]
        for _ in range(max(1, len(flows) // 3)):
            done.acquire()
        run.failover_at = time.monotonic()
        run.failover_s = sentinel.failover()
        for future in futures:
            future.result()
    stopped = lambda: [f for f in flows if flows_io.emulator.stop_count(f.job)]  # noqa: E731

    def all_replied() -> bool:
        return all(flows_io.slack.thread_replies(f.channel, f.request.ts)
                   for f in stopped() if f.request)
    flows_io.wait(all_replied, reply_wait)
    run.stop_counts = {f.job.training_job_id: flows_io.emulator.stop_count(f.job) for f in flows}
    run.replied = {f.job.training_job_id for f in flows
                   if f.request and flows_io.slack.thread_replies(f.channel, f.request.ts)}
    return run


def main(argv: list[str] | None = None) -> int:
    from botdev.emulator import Emulator
    from botdev.standin.topologies import Procs, start_sentinel

    parser = argparse.ArgumentParser(prog="python -m bench failover", description=__doc__)
    parser.add_argument("--flows", type=int, default=40)
    parser.add_argument("--threads", type=int, default=8)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="failover-") as tmp:
        procs = Procs(Path(tmp))
        emulator, slack = Emulator(stop_delay=0.5), SlackStandIn()
        bots, servers = [], []
        try:
            sentinel = start_sentinel(procs)
            emulator.start("127.0.0.1", 0)
            slack.start()
            jobs = emulator.add_training_jobs(args.flows, name_prefix="team-a-failover-")
            for _ in range(2):
                bot, server = _replica(Path(tmp), sentinel, slack, emulator)
                bots.append(bot)
                servers.append(server)
            urls = [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
            run = run_flows(Flows(urls, SECRET, slack, emulator), sentinel, jobs, args.threads)
        finally:
            for bot in bots:
                bot.close()
            for server in servers:
                server.shutdown()
            slack.close()
            emulator.close()
            procs.close()
    result = run.summary()
    print(json.dumps(result, indent=2))
    bad = result["duplicate_stops"] + result["stops_without_confirmation"]
    return 1 if bad or result["missing_replies"] else 0


SECRET = "failover-signing-secret"  # noqa: S105 - the bench's own, local
ROLES = "roles:\n  oncall:\n    jobs: ['*']\nusers:\n  U0ONCALL: [oncall]\n"


def _replica(tmp: Path, sentinel, slack: SlackStandIn, emulator):
    from bot.app.httpd import serve_in_thread
    from bot.app.web import create_wsgi
    from bot.app.wiring import create_bot
    from bot.core.settings import load_settings
    from botdev.emulator import defaults
    from botdev.standin.slack import BOT_TOKEN

    roles = tmp / "roles.yml"
    roles.write_text(ROLES)
    settings = load_settings(
        SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=slack.api_url,
        REDIS_URL="redis://sentinel-named-primary/0", REDIS_SENTINELS=sentinel.sentinels,
        REDIS_SENTINEL_MASTER=sentinel.master, REDIS_KEY_PREFIX="failover:",
        ROLES_FILE=str(roles), MODELARTS_ENDPOINT=emulator.base_url,
        MODELARTS_PROJECT_ID=defaults.EMULATOR_PROJECT_ID, MODELARTS_AK=defaults.EMULATOR_AK,
        MODELARTS_SK=defaults.EMULATOR_SK, MODELARTS_TIMEOUT_SECONDS=5)
    bot = create_bot(settings, session=requests.Session())
    bot.start_background()
    return bot, serve_in_thread(create_wsgi(bot))
