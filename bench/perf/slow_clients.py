"""Slow clients: does ``/healthz`` (and a signed command) still answer while clients trickle?

    python -m bench slow-clients                    # both workers, 16 and 32 slow connections
    python -m bench slow-clients --worker gthread   # only gunicorn's stock gthread (the "before")

Starts a throwaway redis-server, the stand-ins and the bot (``python -m bot serve``, or with
``--worker gthread`` the same server with gunicorn's stock worker) with WEB_CONCURRENCY=2 and
WEB_THREADS=8, then opens WEB_CONCURRENCY x WEB_THREADS (and twice that) connections to
127.0.0.1 that each send one header byte every 2 s, for at most --seconds (20). A connection
the server closes is opened again. Meanwhile it times GET /healthz and a signed
``/modelarts help`` every few seconds and prints whether each answered in under a second.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.harness import payloads, servers
from bench.harness.rig import SECRET, environment, serve
from botdev.standin.signing import slack_headers

REQUEST = b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: text/plain\r\n"
FAST = 1.0   # what "still answers" means here, in seconds


class Trickle:
    """``n`` connections sending one byte of a request that never ends every ``interval`` s."""

    def __init__(self, port: int, n: int, interval: float, seconds: float) -> None:
        self.port, self.interval = port, interval
        self.until = time.monotonic() + seconds
        self.stop = threading.Event()
        self.reconnects = 0
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()

    def client(self) -> None:
        while not self.stop.is_set() and time.monotonic() < self.until:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    for byte in REQUEST * 100:
                        sock.send(bytes([byte]))
                        if self.stop.wait(self.interval) or time.monotonic() >= self.until:
                            return
            except OSError:   # closed by the server (its request timeout): open another
                self.reconnects += 1

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(self.interval + 6)


def timed(call) -> float | None:
    """Seconds to a 200, or None (an error, a timeout, another status)."""
    started = time.monotonic()
    try:
        ok = call().status_code == 200
    except requests.RequestException:
        ok = False
    return round(time.monotonic() - started, 3) if ok else None


def probes(base: str, response_url: str) -> dict[str, float | None]:
    body = payloads.command("help", "U0BENCH", "C0INCIDENT", response_url).body
    return {
        "healthz": timed(lambda: requests.get(base + "/healthz", timeout=5)),
        "command": timed(lambda: requests.post(base + "/slack/events", data=body, timeout=5,
                                               headers=slack_headers(SECRET, body))),
    }


def attack(served: servers.Served, slack_url: str, n: int, args) -> dict:
    """Probes every --every seconds while ``n`` slow connections are open."""
    port = int(served.base.rsplit(":", 1)[1])
    trickle = Trickle(port, n, args.interval, args.seconds)
    response_url = slack_url.removesuffix("/api/") + "/response/slow"
    seen: dict[str, list] = {"healthz": [], "command": []}
    try:
        time.sleep(1.0)   # every connection open and its first byte sent
        while time.monotonic() + 5 < trickle.until:
            for name, took in probes(served.base, response_url).items():
                seen[name].append(took)
            time.sleep(args.every)
    finally:
        trickle.close()
    return {name: {"times": times, "fast": all(t is not None and t < FAST for t in times)}
            for name, times in seen.items()} | {"reconnects": trickle.reconnects}


def run(worker: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="modelarts-slow-") as name:
        tmp = Path(name)
        redis = servers.ThrowawayRedis(tmp)
        servers.write_seed(tmp / "jobs.json", 700000, 1)
        slack, emulator = servers.slack_standin(), servers.emulator(tmp / "jobs.json")
        bot = None
        try:
            env = environment(tmp, {"slack": slack.url, "redis": redis.url,
                                    "emulator": emulator.url}, args)
            argv = ["-m", "bot", "serve"] if worker == "buffering" else \
                ["-m", "bench", "slow-clients", "--stock-server"]
            bot = serve(argv, env, tmp, worker)
            n = args.workers * args.threads
            return {str(k): attack(bot, slack.url, k, args) for k in (n, 2 * n)}
        finally:
            if bot:
                bot.stop()
            slack.close()
            emulator.close()
            redis.stop()


def stock_server() -> int:
    """``python -m bot serve`` with gunicorn's own gthread worker: the "before"."""
    from bot.app.serve import Server
    from bot.core.settings import load_settings
    from bot.flow.roles import load_roles

    settings = load_settings()
    load_roles(settings.ROLES_FILE)
    Server(settings, {"worker_class": "gthread"}).run()
    return 0


def line(worker: str, n: str, result: dict) -> str:
    def show(probe: dict) -> str:
        times = " ".join("timeout" if t is None else f"{t:.3f}" for t in probe["times"])
        return f"{'yes' if probe['fast'] else 'NO '} ({times})"

    return (f"{worker:<10} {n:>5}  healthz < 1 s: {show(result['healthz'])}"
            f"  command < 1 s: {show(result['command'])}  reconnects: {result['reconnects']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench slow-clients",
                                description=__doc__.split("\n")[0])
    p.add_argument("--worker", choices=("both", "gthread", "buffering"), default="both")
    p.add_argument("--workers", type=int, default=2, help="WEB_CONCURRENCY (2)")
    p.add_argument("--threads", type=int, default=8, help="WEB_THREADS (8)")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between bytes (2)")
    p.add_argument("--seconds", type=float, default=20.0, help="length of each attack (20)")
    p.add_argument("--every", type=float, default=3.0, help="seconds between probes (3)")
    p.add_argument("--stock-server", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.stock_server:
        return stock_server()
    kinds = ("gthread", "buffering") if args.worker == "both" else (args.worker,)
    print(f"WEB_CONCURRENCY={args.workers} WEB_THREADS={args.threads}, one byte every "
          f"{args.interval:g} s for {args.seconds:g} s; probe times in s (timeout: 5 s)")
    print(f"{'worker':<10} {'slow':>5}")
    for worker in kinds:
        for n, result in run(worker, args).items():
            print(line(worker, n, result), flush=True)
    return 0
