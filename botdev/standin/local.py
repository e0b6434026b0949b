"""Running things locally: a free loopback port, a throwaway redis-server, waiting for a
server's /healthz, and a dead end (a port that drops or holds every connection). Used by the
shell, the tests and the benchmarks."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time

import redis
import requests


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(base_url: str, proc: subprocess.Popen, timeout: float = 30.0,
                 poll: float = 0.05) -> float:
    """Poll ``base_url``/healthz until it answers 200; the seconds it took. RuntimeError when
    ``proc`` exits first or ``timeout`` passes."""
    started = time.monotonic()
    while True:
        try:
            if requests.get(base_url + "/healthz", timeout=1).status_code == 200:
                return time.monotonic() - started
        except requests.RequestException:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited (code {proc.returncode}) before /healthz")
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"no 200 from {base_url}/healthz within {timeout:.0f} s")
        time.sleep(poll)


def start_redis(port: int, workdir: str, *extra: str, timeout: float = 10.0) -> subprocess.Popen:
    """A throwaway redis-server on 127.0.0.1:``port``, no snapshots, files in ``workdir``;
    returned once it answers PING. ``extra``: more options (e.g. "--appendonly", "yes")."""
    exe = shutil.which("redis-server") or "redis-server"
    proc = subprocess.Popen(  # noqa: S603 - a fixed command line of our own
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(workdir),
         *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2, socket_timeout=0.5)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
                return proc
            except redis.RedisError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
    finally:
        client.close()


class DeadEnd:
    """A loopback port that accepts each connection, then closes it unanswered once the request
    arrived (``drop``) or keeps it open and silent (``hold``). ``accepted``: how many came."""

    def __init__(self, mode: str) -> None:
        if mode not in ("drop", "hold"):
            raise ValueError("mode is drop or hold")
        self.mode = mode
        self.accepted = 0
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:   # closed
                return
            self.accepted += 1
            if self.mode == "drop":
                conn.recv(65536)
                conn.close()
            else:
                self._held.append(conn)

    def close(self) -> None:
        self._sock.close()
        for conn in self._held:
            conn.close()
