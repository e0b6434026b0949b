"""Running things locally: a free loopback port, and waiting for a server's /healthz."""

from __future__ import annotations

import socket
import subprocess
import time

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
