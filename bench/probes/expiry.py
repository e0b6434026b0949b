"""How soon an expired request loses its buttons, and how often it is edited (issue 22).

    python -m bench expiry                     # 40 requests, 2 replicas, TTL 5 s: about 20 s
    python -m bench expiry --requests 100 --replicas 3

A throwaway redis-server, the emulator and the Slack stand-in in this process, and ``--replicas``
bots built as ``serve`` builds them, each running its background loops (the sweeper among them).
``--requests`` stop requests for as many running v2 jobs go through the flow (no click ever
comes); then it waits for every request message to be edited. Reported: the lag from each
confirmation's expiry (its created_at + TTL) to its chat.update reaching the stand-in, as p50,
p95 and max, and the edits per message (the promise: exactly 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.harness.servers import ThrowawayRedis


def run(n: int, replicas: int, ttl: int) -> dict:
    from bot.app.wiring import create_bot
    from bot.core.settings import load_settings
    from botdev.emulator import EMULATOR_AK, EMULATOR_PROJECT_ID, EMULATOR_SK, Emulator
    from botdev.standin.slack import BOT_TOKEN, SlackStandIn

    tmp = Path(tempfile.mkdtemp(prefix="bench-expiry-"))
    store, emulator, slack = ThrowawayRedis(tmp), Emulator(), SlackStandIn()
    emulator.start()
    slack.start()
    roles = tmp / "roles.yml"
    roles.write_text("roles:\n  oncall:\n    jobs: ['*']\nusers:\n  U0ONCALL: [oncall]\n")
    secret = "bench-signing-secret"  # noqa: S105 - a fake: nothing is signed here
    settings = load_settings(
        _env_file=None, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=secret,
        SLACK_API_URL=slack.api_url, REDIS_URL=store.url, ROLES_FILE=str(roles),
        MODELARTS_ENDPOINT=emulator.base_url, MODELARTS_PROJECT_ID=EMULATOR_PROJECT_ID,
        MODELARTS_AK=EMULATOR_AK, MODELARTS_SK=EMULATOR_SK, CONFIRM_TTL_SECONDS=ttl)
    bots = [create_bot(settings, session=requests.Session()) for _ in range(replicas)]
    try:
        for bot in bots:
            bot.start_background()
        refs = emulator.add_training_jobs(n, "bench-expiry-")
        asked = [bots[i % replicas].flow.request("U0ONCALL", "C0BENCH", ref, lambda _t: None)
                 for i, ref in enumerate(refs)]
        done = [c for c in asked if c is not None]
        deadline = time.time() + ttl + 60
        while time.time() < deadline and not all(
                "Expired:" in slack.messages[(c.channel, c.ts)].text for c in done):
            time.sleep(0.2)
        time.sleep(3)       # longer than a sweep: a second edit would show
        updates = slack.calls_to("chat.update", ok_only=True)
        wall = time.time() - time.monotonic()      # the stand-in stamps calls with monotonic()
        lags, edits = [], []
        for c in done:
            mine = [u for u in updates if u.params.get("ts") == c.ts]
            edits.append(len(mine))
            if mine:
                lags.append(mine[0].at + wall - (c.created_at + ttl))
    finally:
        for bot in bots:
            bot.close()
        slack.close()
        emulator.close()
        store.stop()
    lags.sort()
    return {"requests": n, "posted": len(done), "replicas": replicas, "ttl_s": ttl,
            "edited": len(lags), "edits_per_message": sorted(set(edits)),
            "lag_s": {"p50": round(statistics.median(lags), 2),
                      "p95": round(lags[int(0.95 * (len(lags) - 1))], 2),
                      "max": round(lags[-1], 2)} if lags else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench expiry", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=40)
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--ttl", type=int, default=5, help="CONFIRM_TTL_SECONDS (at least 5)")
    args = p.parse_args(argv)
    result = run(args.requests, args.replicas, args.ttl)
    print(json.dumps(result, indent=2))
    ok = result["edited"] == result["posted"] and result["edits_per_message"] == [1]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
