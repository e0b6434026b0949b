"""An alert storm against the real intake, the real Redis and the Slack stand-in at Slack's pace.

    python -m bench storm                       # 300 alerts in 10 s over 3 channels, 2 replicas
    python -m bench storm --alerts 60 --seconds 2 --replicas 1 --pace 0
    python -m bench storm --smn --alerts 1000 --seconds 0 --channels 10   # signed SMN burst

With ``--smn`` each alert is a signed SMN Notification (JobHanged of a job of its own) to
``POST /smn``, one topic per channel, the certificate pinned: the intake's latency includes the
signature check, and each posted alert was looked up in the emulator first.

The stand-in allows one post per second per channel (Slack's chat.postMessage tier) and answers
429 with a whole-second Retry-After, as Slack does. Prints what was sent, how long the queue took to
drain, the 429s met, and the checks: order per channel, duplicates, lost alerts, calls made
before a Retry-After had passed. Needs Redis at REDIS_URL (default redis://127.0.0.1:6379/0);
its keys go under a prefix of their own and are deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import time
import uuid
from collections import defaultdict
from wsgiref.simple_server import WSGIServer

import redis
import requests

from bot.app.httpd import serve_in_thread
from bot.app.web import create_wsgi, routes
from bot.app.wiring import create_bot
from bot.core.settings import load_settings
from bot.flow.roles import parse_roles
from botdev.emulator import EMULATOR_AK, EMULATOR_PROJECT_ID, EMULATOR_SK, Emulator
from botdev.smn import SmnSigner
from botdev.smn import headers as smn_headers
from botdev.standin.slack import BOT_TOKEN, SlackStandIn

TOKEN = "bench-alerts-token"  # noqa: S105 - a local benchmark's own token
NUMBER = re.compile(r"storm (\d+)\b")


def serve(wsgi) -> tuple[WSGIServer, str]:
    httpd = serve_in_thread(wsgi)
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def topic(channel: str) -> str:
    return f"urn:smn:cn-north-4:{EMULATOR_PROJECT_ID}:storm-{channel.lower()}"


def run(args: argparse.Namespace) -> dict:
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    slack = SlackStandIn()
    slack.start()
    slack.channel_interval = 1.0          # Slack: about one message per second per channel
    emulator = Emulator()
    emulator.start("127.0.0.1", 0)
    channels = [f"C0STORM{chr(65 + i)}" for i in range(args.channels)]
    signer, smn = SmnSigner(), {}
    if args.smn:
        cert = signer.write_cert(f"/tmp/bench-smn-{prefix.split(':')[1]}.pem")  # noqa: S108
        smn = {"SMN_TOPICS": json.dumps({topic(c): c for c in channels}),
               "SMN_SIGNING_CERT_FILE": str(cert), "ALERT_QUEUE_TOTAL": 10 * args.alerts,
               "ALERT_QUEUE_PER_CHANNEL": 10 * args.alerts}
    settings = load_settings(
        SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=TOKEN, SLACK_API_URL=slack.api_url,
        REDIS_URL=redis_url, REDIS_KEY_PREFIX=prefix, MODELARTS_ENDPOINT=emulator.base_url,
        MODELARTS_PROJECT_ID=EMULATOR_PROJECT_ID, MODELARTS_AK=EMULATOR_AK,
        MODELARTS_SK=EMULATOR_SK, ALERTS_TOKEN=TOKEN, ALERT_POST_INTERVAL_SECONDS=args.pace,
        **smn)
    roles = parse_roles("roles:\n  oncall:\n    jobs: ['*']\n")
    bots = [create_bot(settings, roles=roles) for _ in range(args.replicas)]
    servers = [serve(create_wsgi(bot, routes(bot, metrics=False))) for bot in bots]
    for bot in bots:
        bot.start_background()
    jobs = emulator.add_training_jobs(args.alerts, "storm-") if args.smn else []
    bodies = [signer.notification(topic(channels[n % len(channels)]), json.dumps(
        {"event": "JobHanged", "training_job_id": jobs[n].training_job_id}),
        f"storm {n} job hanged") for n in range(len(jobs))]
    http = requests.Session()
    latencies, codes = [], defaultdict(int)
    started = time.monotonic()
    try:
        for n in range(args.alerts):
            time.sleep(max(0.0, started + n * args.seconds / args.alerts - time.monotonic()))
            body = bodies[n] if args.smn else {
                "channel": channels[n % len(channels)], "job_id": "182626",
                "version_id": "278813", "job_name": "team-a-resnet", "status": "RUNNING",
                "summary": f"storm {n} loss is NaN", "severity": "critical"}
            sent = time.monotonic()
            url = servers[n % len(servers)][1] + ("/smn" if args.smn else "/alerts")
            resp = http.post(url, data=json.dumps(body), timeout=10,
                             headers=smn_headers(body) if args.smn else
                             {"Authorization": f"Bearer {TOKEN}"})
            latencies.append(time.monotonic() - sent)
            codes[resp.status_code] += 1
        intake_done = time.monotonic() - started
        deadline = time.monotonic() + args.timeout
        while len(posted(slack)) < args.alerts and time.monotonic() < deadline:
            time.sleep(0.05)
        drained = time.monotonic() - started
        time.sleep(1.5)  # a double post would show now
        return report(args, slack, channels, latencies, codes, intake_done, drained)
    finally:
        for bot in bots:
            bot.close()
        for httpd, _ in servers:
            httpd.shutdown()
        slack.close()
        emulator.close()
        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.delete(*keys)


def posted(slack: SlackStandIn) -> list:
    with slack._lock:
        return sorted((m for m in slack.messages.values() if NUMBER.search(m.text)),
                      key=lambda m: m.ts)


def report(args, slack: SlackStandIn, channels, latencies, codes, intake_done, drained) -> dict:
    per_channel: dict[str, list[int]] = defaultdict(list)
    for message in posted(slack):
        per_channel[message.channel].append(int(NUMBER.search(message.text).group(1)))
    numbers = [n for ns in per_channel.values() for n in ns]
    calls = slack.calls_to("chat.postMessage")
    early = 0
    for channel in channels:
        mine = [c for c in calls if c.params.get("channel") == channel]
        for i, call in enumerate(mine):
            if call.status == 429:
                until = call.at + float(call.answer_headers["Retry-After"])
                early += sum(c.at < until for c in mine[i + 1:])
    latencies.sort()
    return {
        "alerts": args.alerts, "channels": len(channels), "replicas": args.replicas,
        "sent_over_seconds": round(intake_done, 2),
        "intake_status": dict(codes),
        "intake_latency_ms": {"p50": round(statistics.median(latencies) * 1000, 1),
                              "p99": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1),
                              "max": round(latencies[-1] * 1000, 1)},
        "time_to_drain_seconds": round(drained, 2),
        "delivered": len(numbers),
        "post_calls": len(calls),
        "429s_met": sum(c.status == 429 for c in calls),
        "calls_before_retry_after": early,
        "order_violations": sum(ns != sorted(ns) for ns in per_channel.values()),
        "duplicates": len(numbers) - len(set(numbers)),
        "lost": args.alerts - len(set(numbers)),
        "pace_seconds": args.pace,
        "intake": "POST /smn (signed SMN notifications)" if args.smn else "POST /alerts",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench storm",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--alerts", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=10.0, help="spread the alerts over this")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--pace", type=float, default=1.0,
                        help="ALERT_POST_INTERVAL_SECONDS (0: post as fast as 429s allow)")
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--smn", action="store_true",
                        help="signed SMN notifications to POST /smn instead of /alerts")
    args = parser.parse_args(argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    ok = (result["lost"] == 0 and result["duplicates"] == 0 and result["order_violations"] == 0
          and result["calls_before_retry_after"] == 0)
    return 0 if ok else 1
