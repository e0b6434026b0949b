"""What the Slack edge costs a request: CPU in-process, and the ack p99 of concurrent clicks.

Two measures, run with ``python -m bench edge`` (``--n``, ``--clicks``, ``--rounds``,
``--json``):

- **CPU per request**: N signed requests of each kind (a slash command, a button click, an
  unsigned one) sent straight to the WSGI app ``serve`` runs (``bot.app.serve.application``),
  in this process. The figure is the CPU time of the request's own thread
  (``time.thread_time``: the edge, Bolt and the listener up to the ack; median and mean), so the
  work after the ack, on the pools, is not counted; ``process_time`` over the whole run, per
  request (the work after the ack included), is shown beside it.
- **ack p99 at C concurrent clicks**: ``python -m bot serve`` (gunicorn, WEB_CONCURRENCY=2) in
  a subprocess; C clients, each on its own keep-alive connection, send signed Confirm clicks at
  once, ``--rounds`` times; the time from the request's first byte to its answer, in ms.

Self-contained: it imports only public names of ``bot`` and ``botdev`` (the Slack stand-in, the
ModelArts emulator, Slack's signing). Redis: REDIS_URL (default redis://127.0.0.1:6379/0), under
a key prefix of its own, deleted at the end.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import logging
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import redis

from bot.flow.blocks import CONFIRM
from botdev.emulator import Emulator
from botdev.emulator.defaults import EMULATOR_AK, EMULATOR_PROJECT_ID, EMULATOR_SK
from botdev.standin.local import free_port, wait_healthy
from botdev.standin.signing import slack_headers
from botdev.standin.slack import BOT_TOKEN, SlackStandIn

SECRET = "bench-edge-signing-secret"  # noqa: S105 - the bench's own
TEAM = "T0BENCH"
USER = "U0ONCALL"
CHANNEL = "C0BENCH"
ROLES = f"roles:\n  oncall:\n    jobs: ['*']\nusers:\n  {USER}: [oncall]\n"
V2_ID = "3faf5c03-aaa1-4cbe-879d-24b05d997347"


# -- the bodies, as Slack sends them --------------------------------------------------------
def command_body(response_url: str) -> str:
    return urlencode({
        "token": "legacy-unused", "team_id": TEAM, "team_domain": "bench", "channel_id": CHANNEL,
        "channel_name": "bench", "user_id": USER, "user_name": "oncall", "command": "/modelarts",
        "text": f"status {V2_ID}", "api_app_id": "A0BOT", "is_enterprise_install": "false",
        "trigger_id": "1.trigger", "response_url": response_url})


def click_body(n: int, response_url: str) -> str:
    """A Confirm click on a confirmation that does not exist: acked, then found expired."""
    ts = f"1700000000.{n:06d}"
    payload = {
        "type": "block_actions", "user": {"id": USER, "username": "oncall", "team_id": TEAM},
        "api_app_id": "A0BOT", "token": "legacy-unused", "team": {"id": TEAM, "domain": "bench"},
        "container": {"type": "message", "message_ts": ts, "channel_id": CHANNEL,
                      "is_ephemeral": False},
        "trigger_id": f"{n}.trigger", "channel": {"id": CHANNEL, "name": "bench"},
        "message": {"type": "message", "ts": ts, "text": "stop request", "user": "UBOT0000",
                    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Stop?"}}]},
        "response_url": response_url,
        "actions": [{"action_id": CONFIRM, "block_id": "modelarts_stop",
                     "type": "button", "value": secrets.token_hex(16), "action_ts": "1.0"}],
    }
    return urlencode({"payload": json.dumps(payload)})


# -- the environment -------------------------------------------------------------------------
class Rig:
    """The Slack stand-in, the emulator, a roles file and the settings' environment."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-edge-"))
        self.slack = SlackStandIn()
        self.slack.start()
        self.emulator = Emulator()
        self.emulator.start()
        (self.dir / "roles.yml").write_text(ROLES)
        self.redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.prefix = f"bench-edge:{secrets.token_hex(4)}:"
        self.env = {
            "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SECRET, "SLACK_APP_TOKEN": "",
            "SLACK_API_URL": self.slack.api_url, "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.prefix, "ROLES_FILE": str(self.dir / "roles.yml"),
            "MODELARTS_ENDPOINT": self.emulator.base_url,
            "MODELARTS_PROJECT_ID": EMULATOR_PROJECT_ID, "MODELARTS_AK": EMULATOR_AK,
            "MODELARTS_SK": EMULATOR_SK, "MODELARTS_TIMEOUT_SECONDS": "5", "LOG_LEVEL": "ERROR",
        }

    def response_url(self) -> str:
        return self.slack.response_url("bench")

    def close(self) -> None:
        client = redis.Redis.from_url(self.redis_url)
        keys = list(client.scan_iter(match=self.prefix + "*", count=1000))
        for start in range(0, len(keys), 500):
            client.delete(*keys[start:start + 500])
        client.close()
        self.emulator.close()
        self.slack.close()


# -- CPU per request, in-process -------------------------------------------------------------
def environ(body: str, headers: dict[str, str]) -> dict:
    raw = body.encode()
    env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/slack/events", "QUERY_STRING": "",
           "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(raw)),
           "CONTENT_TYPE": "application/x-www-form-urlencoded", "wsgi.input": io.BytesIO(raw)}
    for name, value in headers.items():
        if name.lower() != "content-type":
            env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def cpu_per_request(rig: Rig, n: int) -> dict[str, dict[str, float]]:
    from bot.app.serve import application
    from bot.app.wiring import create_bot
    from bot.core.settings import load_settings

    logging.getLogger("bot").setLevel(logging.ERROR)   # the clicks' "expired" chat.update
    saved = {k: os.environ.get(k) for k in rig.env}
    os.environ.update(rig.env)
    try:
        bot = create_bot(load_settings())
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    wsgi = application(bot)
    kinds = {
        "command": lambda i: (body := command_body(rig.response_url()),
                              slack_headers(SECRET, body), 200),
        "click": lambda i: (body := click_body(i, rig.response_url()),
                            slack_headers(SECRET, body), 200),
        "unsigned": lambda i: (command_body(rig.response_url()),
                               {"X-Slack-Request-Timestamp": str(int(time.time())),
                                "X-Slack-Signature": "v0=" + "0" * 64}, 401),
    }
    out: dict[str, dict[str, float]] = {}
    try:
        for kind, make in kinds.items():
            requests = [make(i) for i in range(n + n // 10)]
            for body, headers, _ in requests[:n // 10]:     # warm-up
                _send(wsgi, body, headers)
            time.sleep(0.5)
            thread_cpu, proc0, wall0 = [], time.process_time(), time.perf_counter()
            for body, headers, want in requests[n // 10:]:
                env = environ(body, headers)
                t0 = time.thread_time()
                status = _call(wsgi, env)
                thread_cpu.append(time.thread_time() - t0)
                if status != want:
                    raise SystemExit(f"{kind}: HTTP {status}, expected {want}")
            wall = time.perf_counter() - wall0
            time.sleep(0.5)   # the work after the acks, on the pools, into process_time
            out[kind] = {"ack_thread_cpu_us": round(statistics.median(thread_cpu) * 1e6, 1),
                         "ack_thread_cpu_mean_us": round(sum(thread_cpu) / n * 1e6, 1),
                         "process_cpu_us": round((time.process_time() - proc0) / n * 1e6, 1),
                         "wall_us": round(wall / n * 1e6, 1)}
    finally:
        bot.close()
    return out


def _send(wsgi, body: str, headers: dict[str, str]) -> int:
    return _call(wsgi, environ(body, headers))


def _call(wsgi, env: dict) -> int:
    got: list[str] = []
    for _ in wsgi(env, lambda status, headers, exc_info=None: got.append(status)):
        pass
    return int(got[0].split()[0])


# -- ack p99 against serve -------------------------------------------------------------------
def ack_latency(rig: Rig, clicks: int, rounds: int) -> dict[str, float]:
    port = free_port()
    log = (rig.dir / "serve.log").open("w")
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "VIRTUAL_ENV")},
           **rig.env, "HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "2"}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=env, stdout=log,  # noqa: S603
                            stderr=subprocess.STDOUT, cwd=rig.dir)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        times: list[float] = []
        conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(clicks)]
        for r in range(rounds + 1):          # round 0 warms up connections and workers
            bodies = [click_body(r * clicks + i, rig.response_url()) for i in range(clicks)]
            got = _burst(conns, bodies)
            if r:
                times.extend(got)
            time.sleep(0.3)
        for conn in conns:
            conn.close()
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    times.sort()
    return {"n": len(times), "p50_ms": round(statistics.median(times), 1),
            "p99_ms": round(times[min(len(times) - 1, int(len(times) * 0.99))], 1),
            "max_ms": round(times[-1], 1)}


def _burst(conns: list[http.client.HTTPConnection], bodies: list[str]) -> list[float]:
    """All requests at once (a barrier), each on its own connection; ms to each answer."""
    barrier, out, lock = threading.Barrier(len(conns)), [], threading.Lock()

    def one(conn: http.client.HTTPConnection, body: str) -> None:
        headers = slack_headers(SECRET, body)
        barrier.wait()
        t0 = time.perf_counter()
        conn.request("POST", "/slack/events", body=body, headers=headers)
        resp = conn.getresponse()
        resp.read()
        took = (time.perf_counter() - t0) * 1000
        if resp.status != 200:
            raise RuntimeError(f"click answered HTTP {resp.status}")
        with lock:
            out.append(took)

    threads = [threading.Thread(target=one, args=pair) for pair in zip(conns, bodies, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench edge", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--n", type=int, default=300, help="requests of each kind, in-process")
    parser.add_argument("--clicks", type=int, default=50, help="concurrent clicks against serve")
    parser.add_argument("--rounds", type=int, default=10, help="bursts of --clicks")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--skip-serve", action="store_true", help="only the in-process CPU")
    args = parser.parse_args(argv)
    rig = Rig()
    try:
        result: dict[str, object] = {"cpu_per_request": cpu_per_request(rig, args.n)}
        if not args.skip_serve:
            result[f"ack_at_{args.clicks}_clicks"] = ack_latency(rig, args.clicks, args.rounds)
    finally:
        rig.close()
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"CPU per request, in-process ({args.n} each; µs):")
    for kind, row in result["cpu_per_request"].items():  # type: ignore[union-attr]
        print(f"  {kind:9} ack thread median {row['ack_thread_cpu_us']:7.1f} mean "
              f"{row['ack_thread_cpu_mean_us']:7.1f}   process "
              f"{row['process_cpu_us']:8.1f}   wall {row['wall_us']:8.1f}")
    for key, row in result.items():
        if key.startswith("ack_at_"):
            print(f"{key} against serve (WEB_CONCURRENCY=2, {row['n']} clicks): "  # type: ignore[index]
                  f"p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, max {row['max_ms']} ms")  # type: ignore[index]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
