"""Slow clients against ``serve`` (bot.app.worker): a thread is only given a complete request."""

from __future__ import annotations

import signal
import socket
import threading
import time
from urllib.parse import urlencode

import pytest
import requests

from bot.app import web, worker
from botdev.standin.local import free_port, wait_healthy
from botdev.standin.signing import slack_headers
from tests.plugins.slack import SIGNING_SECRET, start_serve

THREADS = 2


@pytest.fixture
def env(serve_env, tmp_path) -> dict[str, str]:
    return {**serve_env, "HOME": str(tmp_path)}   # where gunicorn would put its control socket


@pytest.fixture
def served(env, tmp_path):
    """``python -m bot serve``: one worker of THREADS threads, a 1 s request timeout; its port."""
    port = free_port()
    proc = start_serve({**env, "WEB_CONCURRENCY": "1", "WEB_THREADS": str(THREADS),
                        "WEB_REQUEST_TIMEOUT_SECONDS": "1"}, tmp_path, port)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert "Traceback" not in out, out


class Trickle:
    """Connections that send one byte of a request that never ends every 0.2 s, reopened when
    the server closes them."""

    def __init__(self, port: int, n: int) -> None:
        self.port, self.stop = port, threading.Event()
        self.threads = [threading.Thread(target=self.client, daemon=True) for _ in range(n)]
        for t in self.threads:
            t.start()
        time.sleep(0.5)   # every one connected, its first byte sent

    def client(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    for byte in b"POST /slack/events HTTP/1.1\r\nHost: bot\r\n" * 50:
                        sock.send(bytes([byte]))
                        if self.stop.wait(0.2):
                            return
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=15)
    sock.settimeout(15)
    _rest.pop(sock.fileno(), None)      # a closed socket's file number is reused
    return sock


def response(sock: socket.socket) -> bytes:
    """One response (headers and Content-Length body), or what came before the server closed.
    Bytes past it (a pipelined next response read in the same recv) stay for the next call."""
    data = _rest.pop(sock.fileno(), b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    if body[length:]:
        _rest[sock.fileno()] = body[length:]
    return head + b"\r\n\r\n" + body[:length]


_rest: dict[int, bytes] = {}


def closed_after(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; fails when it has not closed in 5 s."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        pytest.fail(f"still open after 5 s (got {data!r})")
    return data


def signed_help(slack_api) -> tuple[str, dict]:
    body = urlencode({"command": "/modelarts", "text": "help", "user_id": "U0ONCALL",
                      "channel_id": "C0INCIDENT", "team_id": "T0STANDIN",
                      "response_url": slack_api.response_url("slow")})
    return body, slack_headers(SIGNING_SECRET, body)


@pytest.mark.slow
class TestUnderSlowClients:
    def test_healthz_and_a_signed_command_still_answer(self, served, slack_api):
        """Three times as many trickling connections as threads take no thread."""
        base = f"http://127.0.0.1:{served}"
        trickle = Trickle(served, 3 * THREADS)
        try:
            assert requests.get(base + "/healthz", timeout=5).status_code == 200
            body, headers = signed_help(slack_api)
            resp = requests.post(base + "/slack/events", data=body, headers=headers, timeout=5)
            assert resp.status_code == 200
        finally:
            trickle.close()

    def test_an_unfinished_request_is_closed_after_the_request_timeout(self, served):
        with connect(served) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n")
            assert closed_after(sock).startswith(b"HTTP/1.1 408 ")

    def test_a_silent_connection_is_closed_too(self, served):
        with connect(served) as sock:
            assert closed_after(sock).startswith(b"HTTP/1.1 408 ")

    def test_a_body_over_1_mib_is_refused_before_it_is_sent(self, served):
        """Whatever the route: POST /healthz would otherwise answer 200 and ignore it."""
        with connect(served) as sock:
            sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: bot\r\n"
                         b"Content-Length: %d\r\n\r\n" % (web.MAX_BODY + 1))
            assert closed_after(sock).startswith(b"HTTP/1.1 413 ")

    def test_a_chunked_body_is_refused(self, served):
        with connect(served) as sock:
            sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: bot\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            assert closed_after(sock).startswith(b"HTTP/1.1 411 ")

    def test_no_control_socket(self, served, tmp_path):
        """Two instances on one host would overwrite each other's gunicorn.ctl."""
        assert not list(tmp_path.rglob("gunicorn.ctl"))


@pytest.mark.slow
class TestKeepAlive:
    def test_two_requests_on_one_connection(self, served):
        with requests.Session() as session:
            for _ in range(2):
                assert session.get(f"http://127.0.0.1:{served}/healthz", timeout=5).ok
            pools = session.get_adapter("http://").poolmanager.pools
            assert [pools[key].num_connections for key in pools.keys()] == [1]

    def test_pipelined_requests_are_both_answered(self, served):
        with connect(served) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n" * 2)
            assert response(sock).startswith(b"HTTP/1.1 200 ")
            assert response(sock).startswith(b"HTTP/1.1 200 ")

    def test_the_next_request_on_a_kept_alive_connection_is_timed_too(self, served):
        with connect(served) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\nGET /hea")
            assert response(sock).startswith(b"HTTP/1.1 200 ")
            assert closed_after(sock).startswith(b"HTTP/1.1 408 ")


class TestRequestSize:
    """``worker.request_size``: how the main loop knows a request is complete."""

    def test_incomplete_headers_and_body(self):
        assert worker.request_size(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
        assert worker.request_size(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabc") is None

    def test_complete_with_a_pipelined_rest(self):
        head = b"POST / HTTP/1.1\r\ncontent-length: 3\r\n\r\n"
        assert worker.request_size(head + b"abcGET") == len(head) + 3

    def test_refusals(self):
        assert worker.request_size(b"GET / HTTP/1.1\r\nX: " + b"a" * 17000).startswith("431")
        assert worker.request_size(
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
        ).startswith("400")

    def test_the_body_cap_is_the_apps(self):
        assert worker.MAX_BODY == web.MAX_BODY
