"""How long a confirm takes to reach ModelArts while many lists run (issue 18, item 3).

    python -m bench contention                   # 2,000 running v2 jobs, 5 stops, 20+20 lists
    python -m bench contention --stops 3 --lists 10

A throwaway redis-server, the ModelArts emulator and the Slack stand-in (a process each), the
bot served in this process on loopback, as in ``bench.perf.listing``. For each stop, U0ONCALL asks
``/modelarts stop <id>`` (no load yet) and gets the confirmation; then ``--lists`` lists by an
unmapped user (U0STRANGER) and as many by a mapped one (U0TEAMA) are POSTed at once, and, once
they are in, the Confirm click. Timed: from the click's POST to the stop's arrival at the
emulator (both ``time.monotonic``, one clock across processes on Linux). Then every list is
waited for (answered, refused or busy) before the next stop. Each wait has a deadline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import requests

from bench.harness import servers
from bench.perf.listing import ROLES, SECRET, command, write_seed
from bot.app.httpd import serve_in_thread
from bot.flow.blocks import CONFIRM
from botdev.emulator import defaults
from botdev.standin.signing import slack_headers
from botdev.standin.slack import BOT_TOKEN

DEADLINE = 120.0     # seconds for any one wait: a stop, or a round's lists
CLIENTS = 8          # POSTing threads: each ack takes milliseconds, so all lists are in at once


def job_id(n: int) -> str:
    """The id ``bench.perf.listing.write_seed`` gives its n-th job (team-c when n % 3 == 2)."""
    return f"{n:08x}-bbbb-4ccc-8ddd-{n:012x}"


def _emulator_process(conn, seed: str) -> None:
    """The emulator, stamping each request's arrival (``bench.harness.servers``' stamps v1
    stops only)."""
    from botdev.emulator import Emulator

    class Timed(Emulator):
        arrivals: list[tuple[str, str, float]] = []

        def record(self, received) -> None:
            self.arrivals.append((received.method, received.path, time.monotonic()))
            super().record(received)

    emulator = Timed(seed)
    conn.send(emulator.start("127.0.0.1", 0))
    while True:
        ask, arg = conn.recv()
        if ask == "close":
            emulator.close()
            conn.send(None)
            return
        if ask == "arrivals":
            conn.send(emulator.arrivals[arg:])


class Rig:
    def __init__(self, url: str, slack: servers.StandIn, emulator: servers.StandIn) -> None:
        self.url, self.slack, self.emulator = url, slack, emulator
        self.base = slack.url.removesuffix("api/")
        self.http = requests.Session()

    def post(self, body: str) -> None:
        """One signed POST; sent again (as Slack would) when the loopback server's accept
        queue was full and the connection was reset before any of it was read."""
        for attempt in range(3):
            try:
                resp = self.http.post(self.url, data=body.encode(),
                                      headers=slack_headers(SECRET, body), timeout=30)
                break
            except requests.ConnectionError:
                if attempt == 2:
                    raise
                time.sleep(0.05)
        resp.raise_for_status()

    def command(self, user: str, text: str, key: str) -> None:
        body = command(user, f"{self.base}response/{key}").replace("text=list",
                                                                   urlencode({"text": text}))
        self.post(body)

    def confirmation(self, ref: str, before: dict | None) -> dict:
        self.command("U0ONCALL", f"stop {ref}", "stop-request")
        return wait(lambda: _new(self.newest_request(), before), "the confirmation")

    def newest_request(self) -> dict | None:
        requests = self.slack.ask("requests", 0)[1]
        return requests[-1] if requests else None

    def click(self, request: dict) -> float:
        payload = {
            "type": "block_actions", "api_app_id": "A0BOT", "token": "legacy-unused",
            "team": {"id": "T0BENCH", "domain": "bench"},
            "user": {"id": "U0ONCALL", "username": "u0oncall", "team_id": "T0BENCH"},
            "container": {"type": "message", "message_ts": request["ts"],
                          "channel_id": request["channel"], "is_ephemeral": False},
            "channel": {"id": request["channel"], "name": "bench"},
            "message": {"type": "message", "ts": request["ts"], "blocks": request["blocks"],
                        "text": "stop request"},
            "trigger_id": f"{time.time():.6f}.trigger",
            "response_url": f"{self.base}response/confirm",
            "actions": [{"action_id": CONFIRM, "block_id": "modelarts_stop", "type": "button",
                         "value": request["value"], "action_ts": f"{time.time():.6f}"}],
        }
        started = time.monotonic()
        self.post(urlencode({"payload": json.dumps(payload)}))
        return started

    def stopped_at(self, ref: str, seen: int) -> float | None:
        return next((at for method, path, at in self.emulator.ask("arrivals", seen)
                     if method == "POST" and path.endswith(f"/training-jobs/{ref}/actions")),
                    None)


def _new(request: dict | None, before: dict | None) -> dict | None:
    return request if request and (before is None or request["ts"] != before["ts"]) else None


def wait(probe, what: str, deadline: float = DEADLINE):
    until = time.monotonic() + deadline
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > until:
            raise SystemExit(f"no {what} within {deadline:.0f} s")
        time.sleep(0.005)


def kind(text: str) -> str:
    return ("busy" if "busy, try again" in text else "refused" if "no role" in text
            else "answered")


def one_stop(rig: Rig, n: int, lists: int, pool: ThreadPoolExecutor,
             before: dict | None) -> tuple[float, dict[str, int], dict]:
    """(click → stop seconds, list answers by kind, the confirmation request) for job n."""
    ref = job_id(n)
    request = rig.confirmation(ref, before)
    seen_calls, seen_arrivals = rig.slack.ask("count"), len(rig.emulator.ask("arrivals", 0))
    keys = [(user, f"list-{n}-{user}-{k}") for k in range(lists)
            for user in ("U0STRANGER", "U0TEAMA")]
    posted = list(pool.map(lambda uk: rig.command(uk[0], "list", uk[1]), keys))
    started = rig.click(request)
    at = wait(lambda: rig.stopped_at(ref, seen_arrivals), f"stop of {ref}")
    mine = {key for _, key in keys}

    def answered():
        got = [(k, t) for k, t in rig.slack.ask("responses", seen_calls) if k in mine]
        return got if len({k for k, _ in got}) >= len(posted) else None

    kinds: dict[str, int] = {}
    for _, text in {k: t for k, t in wait(answered, "answer to every list")}.items():
        kinds[kind(text)] = kinds.get(kind(text), 0) + 1
    return at - started, kinds, request


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench contention", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="running v2 jobs (2000)")
    parser.add_argument("--stops", type=int, default=5, help="timed confirm clicks (5)")
    parser.add_argument("--lists", type=int, default=20,
                        help="concurrent lists per user, unmapped and mapped (20)")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)
    started = time.monotonic()
    seconds, kinds = measure(args)
    ms = sorted(s * 1000 for s in seconds)
    result = {"running_v2_jobs": args.jobs, "lists_per_stop": 2 * args.lists,
              "confirm_to_stop_ms": {"stops": len(ms), "p50": round(statistics.median(ms), 1),
                                     "max": round(ms[-1], 1)},
              "list_answers": kinds, "seconds": round(time.monotonic() - started, 1)}
    f = result["confirm_to_stop_ms"]
    print(f"confirm → stop, {args.jobs} running v2 jobs, {args.lists} lists by an unmapped user "
          f"and {args.lists} by a mapped one at each click, loopback: p50 {f['p50']} ms, "
          f"max {f['max']} ms over {f['stops']} stops; list answers {kinds}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def measure(args: argparse.Namespace) -> tuple[list[float], dict[str, int]]:
    """The stand-ins, a throwaway Redis and the bot in this process; ``--stops`` timed stops.
    Returns each stop's seconds and the list answers counted by kind."""
    from bot.app.web import create_wsgi
    from bot.app.wiring import create_bot
    from bot.core.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="bench-contention-") as tmp:
        root = Path(tmp)
        seed, roles = root / "seed.json", root / "roles.yml"
        write_seed(seed, args.jobs)
        roles.write_text(ROLES, encoding="utf-8")
        store = servers.ThrowawayRedis(root)
        emulator = servers.StandIn(_emulator_process, str(seed))
        slack = servers.slack_standin()
        try:
            settings = load_settings(
                SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=slack.url,
                REDIS_URL=store.url, REDIS_KEY_PREFIX="bench:", ROLES_FILE=str(roles),
                MODELARTS_ENDPOINT=emulator.url,
                MODELARTS_PROJECT_ID=defaults.EMULATOR_PROJECT_ID,
                MODELARTS_AK=defaults.EMULATOR_AK, MODELARTS_SK=defaults.EMULATOR_SK,
                LOG_LEVEL="WARNING")
            bot = create_bot(settings, session=requests.Session())
            httpd = serve_in_thread(create_wsgi(bot))
            rig = Rig(f"http://127.0.0.1:{httpd.server_address[1]}/slack/events", slack,
                      emulator)
            try:
                return stops(rig, args)
            finally:
                httpd.shutdown()
                httpd.server_close()
        finally:
            emulator.close()
            slack.close()
            store.stop()


def stops(rig: Rig, args: argparse.Namespace) -> tuple[list[float], dict[str, int]]:
    seconds, kinds, before = [], {}, None
    with ThreadPoolExecutor(CLIENTS) as pool:
        for n in range(args.stops):
            took, got, before = one_stop(rig, 3 * n, args.lists, pool, before)
            seconds.append(took)
            for k, v in got.items():
                kinds[k] = kinds.get(k, 0) + v
            print(f"stop {n + 1}: {took * 1000:.0f} ms, lists {got}", flush=True)
    return seconds, kinds
