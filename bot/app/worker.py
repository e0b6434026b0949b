"""A gunicorn gthread worker that gives a connection a thread only once its request is complete.

Stock gthread reads headers and body inside the worker thread, so ``threads`` clients sending
one byte every few seconds hold every thread and ``/healthz`` times out. Here the main loop
reads each request without blocking (headers up to the blank line, then Content-Length bytes),
and only the whole request goes to a thread, which reads it from memory: ``Held.recv`` returns
the buffered bytes, then ``b""``, so no thread ever waits on a client.

A connection's states (all but IN A THREAD are watched by the main loop)::

    accept ─────────────────────────────────────────────► READING
    READING ─ request complete ─────────────────────────► IN A THREAD
    READING ─ 408 timeout, 413/431 too big, 411 chunked,
              400, 503 over budget, EOF ────────────────► closed
    IN A THREAD ─ keep-alive, bytes read past the request
                  (pipelined) ──────────────────────────► READING
    IN A THREAD ─ keep-alive ───────────────────────────► IDLE (gthread's keepalived_conns)
    IN A THREAD ─ Connection: close ────────────────────► closed
    IDLE ─ first byte of the next request ──────────────► READING
    IDLE ─ keepalive timeout ───────────────────────────► closed

READING has WEB_REQUEST_TIMEOUT_SECONDS from the accept (or from the first byte of a kept-alive
connection's next request); IDLE has gunicorn's ``keepalive``. Each worker holds at most
BUFFER_BUDGET bytes of unfinished requests: past it, a connection is answered 503 and closed.

Crash windows: a worker that dies (SIGKILL, OOM, or an exception on its main loop) drops what
READING connections had buffered, complete requests queued for a thread, and those IN A THREAD;
those clients see a reset and Slack re-sends (a confirm consumes its confirmation in one Redis
step, so a re-sent click stops nothing twice). A stopping worker (SIGTERM) closes READING
connections that have not started a request at once, and lets the rest finish within their
timeout, inside gunicorn's graceful_timeout.

Plain HTTP/1.1 only (TLS ends at the ingress): with gunicorn's own TLS or HTTP/2 it refuses to
start. Responses are still written from the thread: a client that does not read a response larger
than its socket buffers would hold a thread (ours are a few KB).
"""

from __future__ import annotations

import signal
import time
from functools import partial
from selectors import EVENT_READ

from gunicorn import http
from gunicorn.workers.gthread import TConn, ThreadWorker

MAX_HEADERS = 16 * 1024
MAX_BODY = 1 << 20          # bot.app.web.MAX_BODY: no route takes more
BUFFER_BUDGET = 64 << 20    # unfinished requests held by one worker, in bytes
READ_SIZE = 64 * 1024


def request_size(data: bytes) -> int | str | None:
    """The size of the request ``data`` starts with; None while it is incomplete, or the status
    line to refuse it with."""
    end = data.find(b"\r\n\r\n", 0, MAX_HEADERS + 4)
    if end < 0:
        return "431 Request Header Fields Too Large" if len(data) > MAX_HEADERS else None
    length = None
    for line in data[:end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"transfer-encoding":
            return "411 Length Required"   # Slack sends Content-Length
        if name == b"content-length":
            if length is not None or not value.strip().isdigit():
                return "400 Bad Request"
            length = int(value)
    if (length or 0) > MAX_BODY:
        return "413 Content Too Large"
    size = end + 4 + (length or 0)
    return size if len(data) >= size else None


class Held:
    """The client socket as a thread sees it: ``recv`` serves the request read by the main loop,
    then ``b""``; everything else is the socket's own."""

    def __init__(self, sock) -> None:
        self.raw = sock
        self.data, self.pos = b"", 0

    def recv(self, size: int, flags: int = 0) -> bytes:
        out = self.data[self.pos:self.pos + size]
        self.pos += len(out)
        return out

    def hold(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def rest(self) -> bytes:
        out, self.data, self.pos = self.data[self.pos:], b"", 0
        return out

    def __getattr__(self, name: str):
        return getattr(self.raw, name)


class Conn(TConn):
    def __init__(self, cfg, sock, client, server) -> None:
        super().__init__(cfg, Held(sock), client, server)
        self.data_ready = True    # never wait for data in a thread (gthread's wait_for_data)
        self.pending = bytearray()
        self.deadline = 0.0


class BufferingWorker(ThreadWorker):
    request_timeout = 10.0   # set by worker_class(); bot.settings.WEB_REQUEST_TIMEOUT_SECONDS

    def init_process(self) -> None:
        self.reading: dict[Conn, None] = {}   # READING connections, oldest first
        self.buffered = 0
        cfg = self.cfg
        if cfg.is_ssl or cfg.http2_cleartext != "off" or getattr(cfg, "protocol", "http") != "http":
            raise RuntimeError("BufferingWorker serves plain HTTP/1.1: end TLS in front of it")
        super().init_process()

    def init_signals(self) -> None:
        """gunicorn's, and SIGHUP (which gunicorn leaves at its default in a worker: the worker
        would die) asks the app to re-read the roles file (bot.app.serve.Server.hangup)."""
        super().init_signals()
        signal.signal(signal.SIGHUP, self.handle_hup)

    def handle_hup(self, sig, frame) -> None:
        hangup = getattr(self.app, "hangup", None)
        if hangup:
            hangup()

    def accept(self, listener) -> None:
        try:
            sock, addr = listener.accept()
        except (BlockingIOError, ConnectionAbortedError, InterruptedError):
            return
        self.nr_conns += 1
        conn = Conn(self.cfg, sock, addr, listener.getsockname())
        conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)   # TConn.init keeps it
        self.start_reading(conn)

    def start_reading(self, conn: Conn) -> None:
        conn.deadline = time.monotonic() + self.request_timeout
        conn.sock.setblocking(False)
        self.reading[conn] = None
        self.poller.register(conn.sock, EVENT_READ, partial(self.on_request_bytes, conn))
        self.on_request_bytes(conn, conn.sock)   # bytes may be held already, or waiting

    def on_request_bytes(self, conn: Conn, _sock) -> None:
        try:
            data = conn.sock.raw.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError:
            data = b""
        if data:
            if self.buffered + len(data) > BUFFER_BUDGET:
                return self.close_reading(conn, "503 Service Unavailable")
            conn.pending += data
            self.buffered += len(data)
        size = request_size(conn.pending)
        if isinstance(size, str):
            return self.close_reading(conn, size)
        if size is not None:
            self.leave_reading(conn)
            conn.sock.hold(bytes(conn.pending))
            conn.pending = bytearray()
            self.enqueue_req(conn)
        elif data == b"":   # the client closed (or half-closed) before the end of a request
            self.close_reading(conn)

    def leave_reading(self, conn: Conn) -> None:
        self.poller.unregister(conn.sock)
        del self.reading[conn]
        self.buffered -= len(conn.pending)

    def close_reading(self, conn: Conn, status: str | None = None) -> None:
        self.leave_reading(conn)
        if status:
            try:   # a few bytes on a socket that has sent nothing back: never blocks
                conn.sock.raw.send(f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\n\r\n".encode())
            except OSError:
                pass
        self.nr_conns -= 1
        conn.close()

    def on_client_socket_readable(self, conn: Conn, client) -> None:
        """IDLE to READING: the next request starts."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.start_reading(conn)

    def finish_request(self, conn: Conn, fs) -> None:
        """Bytes read past the request (pipelined) go back to READING, not straight to a
        thread as in gthread; the rest is gthread's."""
        ok = not fs.cancelled() and fs.exception() is None and fs.result() is True
        if ok and self.alive:
            ahead = conn.parser.unreader.take_buffered() + conn.sock.rest()
            if ahead:
                conn.pending += ahead
                self.buffered += len(ahead)
                return self.start_reading(conn)
        super().finish_request(conn, fs)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.reading if c.deadline <= now]:
            self.close_reading(conn, "408 Request Timeout")
        if not self.alive:
            for conn in [c for c in self.reading if not c.pending]:
                self.close_reading(conn)


def worker_class(request_timeout: float) -> type[BufferingWorker]:
    """BufferingWorker with this request timeout (the class gunicorn's ``worker_class`` takes)."""
    return type("BufferingWorker", (BufferingWorker,), {"request_timeout": request_timeout})
