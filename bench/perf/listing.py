"""How long ``/modelarts list`` takes with many running jobs (issue 11: under 1 s p50 at 500).

    python -m bench listing                      # 500 running v2 jobs, 40 timed lists per user
    python -m bench listing --jobs 2000 --runs 20
    python -m bench listing --projects 3         # 3 projects (MODELARTS_PROJECTS) x 500 jobs

A throwaway redis-server, the ModelArts emulator and the Slack stand-in (a process each, as in
``python -m bench loopback``), the bot served in this process on loopback. Each run POSTs a signed
``/modelarts list`` and times it until the answer reaches the stand-in's response_url (both
stamps are ``time.monotonic``, one clock across processes on Linux). Users: U0ONCALL may stop
every job; U0TEAMA only ``team-a-*`` (a third of them), so the role filter counts the others.
With ``--projects N``, N emulator processes (each its own project id and endpoint, as regions
are) each hold ``--jobs`` running jobs, and the bot lists them all at once (issue 21: under 1 s
p50 at 3 x 500).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from urllib.parse import urlencode

import requests
import yaml

from bench.harness import servers
from bot.app.httpd import serve_in_thread
from bot.flow.finder import Finder
from botdev.emulator import defaults
from botdev.emulator.state import DEFAULT_SEED
from botdev.standin.signing import slack_headers
from botdev.standin.slack import BOT_TOKEN

SECRET = "bench-listing-secret"  # noqa: S105 - the benchmark's own, local
ROLES = """roles:
  oncall:
    jobs: ["*"]
  team-a:
    jobs: ["team-a-*"]
users:
  U0ONCALL: [oncall]
  U0TEAMA: [team-a]
"""
TEAMS = ("team-a", "team-b", "team-c")


def write_seed(path: Path, count: int, project: int = 0) -> None:
    """The default v1 jobs, and ``count`` running v2 jobs spread over three teams (ids and
    names of their own for each ``project``)."""
    default_v1 = yaml.safe_load(DEFAULT_SEED.read_text(encoding="utf-8"))["jobs"]
    now = int(time.time() * 1000)
    jobs = [{"id": f"{n:08x}-bbbb-4ccc-8ddd-{project:04x}{n:08x}",
             "name": f"{TEAMS[n % 3]}-bench-{project}-{n}",
             "phase": "Running", "user_name": "bench", "node_count": 1 + n % 8,
             "create_time": now - (count - n) * 1000} for n in range(count)]
    path.write_text(json.dumps({"jobs": default_v1, "training_jobs": jobs}), encoding="utf-8")


def project_id(n: int) -> str:
    """Project ``n``'s id: the emulator's default for the first."""
    return defaults.EMULATOR_PROJECT_ID if n == 0 else f"{n:032x}"


def command(user: str, response_url: str) -> str:
    return urlencode({
        "token": "legacy-unused", "team_id": "T0BENCH", "team_domain": "bench",
        "channel_id": "C0BENCH", "channel_name": "bench", "user_id": user,
        "user_name": user.lower(), "command": "/modelarts", "text": "list",
        "api_app_id": "A0BOT", "trigger_id": f"{time.time():.6f}.trigger",
        "response_url": response_url,
    })


def time_lists(url: str, slack: servers.StandIn, user: str, runs: int) -> list[float]:
    """Seconds from each POST to its answer at the response_url, one list at a time."""
    http, out = requests.Session(), []
    seen = len(slack.ask("calls", 0))
    for _ in range(runs):
        body = command(user, slack.url.removesuffix("api/") + f"response/{user}")
        started = time.monotonic()
        resp = http.post(url, data=body.encode(), headers=slack_headers(SECRET, body),
                         timeout=30)
        resp.raise_for_status()
        deadline = started + 30
        while True:
            calls = slack.ask("calls", seen)
            answers = [c for c in calls if c[0] == f"response/{user}"]
            if answers:
                out.append(answers[0][1] - started)
                seen += len(calls)
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"no answer to /modelarts list for {user} within 30 s")
            time.sleep(0.002)
    http.close()
    return out


def check(finder: Finder, count: int) -> None:
    """What each timed list answers: every running job read, a third of them team-a's
    (``count``: v2 jobs in all; each project also has the default seed's 3 running v1 jobs)."""
    found = finder.running()
    team_a = finder.allowed("U0TEAMA", found.jobs)
    v1 = 3 * len(finder.modelarts.names)
    if found.problems or len(found.jobs) != count + v1 or len(team_a) < count // 3:
        raise SystemExit(f"the list is wrong: {len(found.jobs)} jobs, {len(team_a)} of team-a, "
                         f"problems {found.problems}")


def summary(seconds: list[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {"runs": len(ms), "p50": round(statistics.median(ms), 1),
            "p99": round(ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))], 1),
            "max": round(ms[-1], 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench listing", description=__doc__)
    parser.add_argument("--jobs", type=int, default=500, help="running v2 jobs (default 500)")
    parser.add_argument("--runs", type=int, default=40, help="timed lists per user")
    parser.add_argument("--projects", type=int, default=1,
                        help="projects, each its own emulator with --jobs jobs (default 1: the "
                             "single-project settings)")
    parser.add_argument("--out", type=Path, help="also write the figures here as JSON")
    args = parser.parse_args(argv)

    from bot.app.web import create_wsgi
    from bot.app.wiring import create_bot
    from bot.core.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="bench-listing-") as tmp:
        root = Path(tmp)
        roles = root / "roles.yml"
        roles.write_text(ROLES, encoding="utf-8")
        emulators = []
        for p in range(args.projects):
            seed = root / f"seed-{p}.json"
            write_seed(seed, args.jobs, p)
            emulators.append(servers.emulator(seed, project_id(p)))
        store, slack = servers.ThrowawayRedis(root), servers.slack_standin()
        try:
            where = ({"MODELARTS_ENDPOINT": emulators[0].url,
                      "MODELARTS_PROJECT_ID": defaults.EMULATOR_PROJECT_ID}
                     if args.projects == 1 else {"MODELARTS_PROJECTS": json.dumps([
                         {"name": f"p{p}", "project_id": project_id(p), "endpoint": e.url}
                         for p, e in enumerate(emulators)])})
            settings = load_settings(
                SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SECRET, SLACK_API_URL=slack.url,
                REDIS_URL=store.url, REDIS_KEY_PREFIX="bench:", ROLES_FILE=str(roles),
                MODELARTS_AK=defaults.EMULATOR_AK, MODELARTS_SK=defaults.EMULATOR_SK,
                LOG_LEVEL="WARNING", **where,
                LIST_SHARE_SECONDS=0)    # each timed list scans: the scan is what is timed
            bot = create_bot(settings, session=requests.Session())
            httpd = serve_in_thread(create_wsgi(bot))
            url = f"http://127.0.0.1:{httpd.server_address[1]}/slack/events"
            try:
                check(Finder(bot.flow), args.jobs * args.projects)
                time_lists(url, slack, "U0ONCALL", 3)           # warm-up: connections, tokens
                figures = {user: summary(time_lists(url, slack, user, args.runs))
                           for user in ("U0ONCALL", "U0TEAMA")}
                pages = sum(1 for e in emulators for _, path, _ in e.ask("arrivals", 0)
                            if path.endswith("/training-job-searches"))
            finally:
                httpd.shutdown()
                httpd.server_close()
        finally:
            for e in emulators:
                e.close()
            slack.close()
            store.stop()
    lists_run = 1 + 3 + 2 * args.runs     # the check, the warm-up, the timed ones
    result = {"projects": args.projects, "running_v2_jobs": args.jobs * args.projects,
              "v2_search_calls_per_list": pages / lists_run, "list_answer_ms": figures}
    print(f"/modelarts list, {args.projects} project(s) x {args.jobs} running v2 jobs "
          f"(+3 v1 each), loopback; {pages / lists_run:.0f} v2 search pages per list")
    print(f"{'user':<10} {'runs':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for user, f in figures.items():
        print(f"{user:<10} {f['runs']:>5} {f['p50']:>8} {f['p99']:>8} {f['max']:>8}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0
