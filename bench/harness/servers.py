"""What the benchmark runs against: a throwaway redis-server, the two stand-ins, and a server.

Each stand-in (the Slack Web API, the ModelArts emulator) runs in a process of its own, so it
neither shares a GIL with the load generator nor with the other stand-in. The harness talks to
them over a pipe: what they received, and when (``time.monotonic``: on Linux that is
CLOCK_MONOTONIC, one clock for every process on the machine, so stamps compare across them).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import redis

from bot.flow.blocks import CONFIRM
from botdev.standin.local import free_port, start_redis, wait_healthy

JOB_ID = re.compile(r"job_id (\d+)")
STOP_PATH = re.compile(r"/training-jobs/(\d+)/versions/(\d+)/stop$")


# -- redis-server ------------------------------------------------------------------------------
class ThrowawayRedis:
    """A redis-server on a free port, no persistence, removed on ``stop()``."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if not binary:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = start_redis(self.port, workdir)
        self.client = redis.Redis(port=self.port, socket_connect_timeout=0.2)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# -- the stand-ins, each in its own process ------------------------------------------------------
def _slack_process(conn) -> None:
    from botdev.standin.slack import SlackStandIn

    slack = SlackStandIn()
    conn.send(slack.start())
    while True:
        ask, arg = conn.recv()
        if ask == "close":
            slack.close()
            conn.send(None)
            return
        with slack._lock:
            if ask == "interval":
                slack.channel_interval = arg
                conn.send(None)
            elif ask == "usergroup":
                slack.usergroups[arg[0]] = list(arg[1])
                conn.send(None)
            elif ask == "calls":   # [(method, at, status, channel, thread_ts, ts, answer ts)]
                conn.send([(c.method, c.at, c.status, c.params.get("channel"),
                            c.params.get("thread_ts"), c.params.get("ts"), c.answer.get("ts"))
                           for c in slack.calls[arg:]])
            elif ask == "count":
                conn.send(len(slack.calls))
            elif ask == "responses":   # [(response key, text)] of response_url posts in calls[arg:]
                conn.send([(c.method.removeprefix("response/"), c.params.get("text") or "")
                           for c in slack.calls[arg:] if c.method.startswith("response/")])
            elif ask == "requests":    # confirmation requests among messages[arg:], in order
                new = list(slack.messages.values())[arg:]
                conn.send((len(new), [confirmation_request(m) for m in new
                                      if m.blocks and _button(m.blocks)]))


def _button(blocks: list) -> str | None:
    for block in blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == CONFIRM:
                return element.get("value")
    return None


def confirmation_request(m) -> dict:
    found = JOB_ID.search(m.text)
    return {"channel": m.channel, "ts": m.ts, "value": _button(m.blocks), "blocks": m.blocks,
            "job_id": int(found.group(1)) if found else None}


def _emulator_process(conn, seed: str, project_id: str | None = None) -> None:
    from botdev.emulator import Emulator, defaults

    class Timed(Emulator):
        """Stamps each request's arrival, and each stop once the store has applied it (the
        emulator writes its 200 right after: tens of microseconds later)."""

        def __init__(self, seed_path: str) -> None:
            super().__init__(seed_path, project_id=project_id or defaults.EMULATOR_PROJECT_ID)
            self.arrivals: list[tuple[str, str, float]] = []
            self.stopped: list[tuple[int, int, float]] = []

        def record(self, received) -> None:
            self.arrivals.append((received.method, received.path, time.monotonic()))
            super().record(received)

    emulator = Timed(seed)
    store_stop = emulator.store.stop

    def stop(ref):
        answer = store_stop(ref)
        emulator.stopped.append((ref.job_id, ref.version_id, time.monotonic()))
        return answer

    emulator.store.stop = stop  # instrumentation only: the stop itself is the emulator's own
    conn.send(emulator.start("127.0.0.1", 0))
    while True:
        ask, arg = conn.recv()
        if ask == "close":
            emulator.close()
            conn.send(None)
            return
        if ask == "arrivals":
            conn.send(emulator.arrivals[arg:])
        elif ask == "stopped":
            conn.send(list(emulator.stopped))


class StandIn:
    """One stand-in process; ``ask(what, arg)`` returns what it answered."""

    def __init__(self, target, *args) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        self.url: str = self.conn.recv()

    def ask(self, what: str, arg=None):
        self.conn.send((what, arg))
        return self.conn.recv()

    def close(self) -> None:
        try:
            self.ask("close")
        except (EOFError, OSError):
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()


def slack_standin() -> StandIn:
    return StandIn(_slack_process)


def emulator(seed: Path, project_id: str | None = None) -> StandIn:
    """The emulator in a process of its own; ``project_id``: another project's (its own)."""
    return StandIn(_emulator_process, str(seed), project_id)


def write_seed(path: Path, first_job: int, count: int) -> list[tuple[int, int]]:
    """A seed file of ``count`` jobs, each with one RUNNING version: one honest stop each."""
    import json

    jobs = [{"job_id": first_job + n, "job_name": f"bench-{first_job + n}",
             "versions": [{"version_id": 500000 + n, "version_name": "V0001", "status": 8}]}
            for n in range(count)]
    path.write_text(json.dumps({"jobs": jobs}), encoding="utf-8")
    return [(j["job_id"], j["versions"][0]["version_id"]) for j in jobs]


# -- a gunicorn server in a subprocess -----------------------------------------------------------
class Served:
    """``python -m <module> serve``-style launch; ``startup`` is launch to first 200 /healthz."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.log = log.open("w")
        started = time.monotonic()
        self.proc = subprocess.Popen(  # noqa: S603 - this interpreter, our own arguments
            [sys.executable, *argv], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=log.parent)
        try:
            wait_healthy(self.base, self.proc, poll=0.005)
        except RuntimeError as exc:
            raise RuntimeError(f"{' '.join(argv)} did not start ({exc}); see {log}") from None
        self.startup = time.monotonic() - started

    def workers(self) -> list[int]:
        kids = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(k) for k in kids]

    def peak_rss_mb(self) -> dict[str, float]:
        """VmHWM (peak resident set) of the master and of each worker, in MB."""
        out = {"master": _hwm(self.proc.pid)}
        for n, pid in enumerate(sorted(self.workers())):
            out[f"worker{n + 1}"] = _hwm(pid)
        return out

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _hwm(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "VIRTUAL_ENV")}
