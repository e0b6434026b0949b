"""The chaos run's processes: a throwaway redis-server and bot replicas (`python -m bot serve`),
each of which can be killed with SIGKILL and started again on the same port."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from botdev.standin.local import free_port, start_redis, wait_healthy


class RedisProc:
    """redis-server on loopback with an append-only file fsynced on every write, so a restart
    (even after SIGKILL) keeps every write it acknowledged: what a production Redis must do."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.dir = workdir / "redis"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.restarts = 0

    def start(self) -> None:
        self.proc = start_redis(self.port, str(self.dir), "--appendonly", "yes",
                                "--appendfsync", "always", "--logfile",
                                str(self.dir / "redis.log"), timeout=20)

    def kill(self) -> None:
        if self.proc:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def restart(self, down_seconds: float) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()
        self.restarts += 1

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


def _tree(pid: int) -> list[int]:
    """``pid`` and its children (gunicorn: the arbiter and its workers)."""
    out = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for child in children:
        out += _tree(int(child))
    return out


def _rss_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB; zeros when it is gone."""
    got = {"VmRSS": 0, "VmHWM": 0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in got:
                got[name] = int(value.split()[0])
    except (OSError, ValueError):
        pass
    return got["VmRSS"], got["VmHWM"]


class Replica:
    """One `python -m bot serve` (gunicorn, one gthread worker) on a fixed loopback port."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "HOST": "127.0.0.1", "PORT": str(self.port)}
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.starts = 0
        self.kills = 0
        self.peak_rss_kib = 0          # largest (arbiter + workers) RSS seen while sampling
        self.peak_worker_hwm_kib = 0   # largest VmHWM of any of its processes
        self.unexpected_exits: list[int] = []
        self._lock = threading.Lock()

    def start(self, wait: float = 30.0) -> None:
        with self._lock:
            log = self.log_path.open("ab")
            self.proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
            log.close()
            self.starts += 1
        try:
            wait_healthy(self.url, self.proc, timeout=wait, poll=0.1)
        except RuntimeError as exc:
            raise RuntimeError(f"{self.name}: {exc}; see {self.log_path}") from None

    @property
    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the arbiter and its workers at once: a crash, no cleanup of any kind."""
        with self._lock:
            if self.proc is None:
                return
            self.sample()
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
            self.proc = None
            self.kills += 1

    def stop(self) -> None:
        with self._lock:
            if self.proc is None:
                return
            self.sample()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            self.proc = None

    def sample_now(self) -> None:
        """``sample`` under the replica's lock (from the sampling thread)."""
        with self._lock:
            self.sample()

    def sample(self) -> None:
        """Record memory now; note an exit we did not cause. Call with the lock held."""
        proc = self.proc
        if proc is None:
            return
        code = proc.poll()
        if code is not None:
            self.unexpected_exits.append(code)
            self.proc = None
            return
        pids = _tree(proc.pid)
        sizes = [_rss_kib(pid) for pid in pids]
        self.peak_rss_kib = max(self.peak_rss_kib, sum(rss for rss, _ in sizes))
        self.peak_worker_hwm_kib = max(self.peak_worker_hwm_kib,
                                       max((hwm for _, hwm in sizes), default=0))
