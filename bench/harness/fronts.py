"""A wide-area network in front of a stand-in: HTTPS with a test CA, a round-trip time, and every
new connection counted.

    bot ──TLS, loopback──▶ Front (a process of its own) ──plain HTTP, kept alive──▶ stand-in

Each request is held for half an RTT before the front forwards it (its trip there: the stand-in
stamps it on arrival), and its answer for half an RTT before the front writes it back (the trip
back). The first request of a new connection waits one more RTT (the TLS handshake). The RTT
lives here, not in ``bot/``: the bot only sees an HTTPS URL and a CA it trusts through
``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE``, as in production.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from dataclasses import dataclass
from pathlib import Path

from bench.harness.servers import StandIn


@dataclass(frozen=True)
class Certs:
    ca: Path        # what the bot trusts (SSL_CERT_FILE, REQUESTS_CA_BUNDLE)
    server: Path    # the fronts' key and certificate chain, for 127.0.0.1


def make_certs(tmp: Path) -> Certs:
    import trustme

    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    certs = Certs(tmp / "wan-ca.pem", tmp / "wan-server.pem")
    ca.cert_pem.write_to_path(str(certs.ca))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(certs.server))
    return certs


def trust_env(certs: Certs) -> dict[str, str]:
    """The usual variables: urllib and urllib3 (slack_sdk) read the first, requests the second."""
    return {"SSL_CERT_FILE": str(certs.ca), "REQUESTS_CA_BUNDLE": str(certs.ca)}


class _Front:
    def __init__(self, upstream: int, rtt: float, idle_close: float | None) -> None:
        self.upstream = upstream
        self.rtt = rtt
        self.idle_close = idle_close
        self.connections: list[float] = []                      # accepted at
        self.requests: list[tuple[int, str, float, float]] = []  # conn, "GET /path", at, answered

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = len(self.connections)
        self.connections.append(time.monotonic())
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        handshake = self.rtt
        try:
            while True:
                try:
                    request = await asyncio.wait_for(_message(reader), self.idle_close)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return          # the client closed, or the connection sat idle too long
                read_at = time.monotonic()
                await _until(read_at + handshake + self.rtt / 2)
                handshake = 0.0
                at = time.monotonic()
                up_writer.write(request)
                try:
                    answer = await _message(up_reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return          # the stand-in dropped it: so does the front
                await _until(at + self.rtt / 2)
                writer.write(answer)
                await writer.drain()
                self.requests.append((conn, _line(request), at, time.monotonic()))
                if b"\r\nconnection: close\r\n" in answer.split(b"\r\n\r\n")[0].lower():
                    return
        finally:
            up_writer.close()
            writer.close()


async def _until(when: float) -> None:
    left = when - time.monotonic()
    if left > 0:
        await asyncio.sleep(left)


def _line(message: bytes) -> str:
    method, path, _ = message.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
    return f"{method} {path}"


async def _message(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 request or answer, as bytes: head and a Content-Length body (all our
    clients and stand-ins send one; nothing here sends a chunked body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
        elif name.strip().lower() == b"transfer-encoding":
            raise ValueError("chunked bodies are not supported by the WAN front")
    return head + (await reader.readexactly(length) if length else b"")


def _front_process(conn, upstream: int, rtt: float, server_pem: str,
                   idle_close: float | None) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(server_pem)
    front = _Front(upstream, rtt, idle_close)

    async def main() -> None:
        server = await asyncio.start_server(front.handle, "127.0.0.1", 0, ssl=context,
                                            backlog=512)
        port = server.sockets[0].getsockname()[1]
        conn.send(f"https://127.0.0.1:{port}")
        loop = asyncio.get_running_loop()
        while True:
            ask, arg = await loop.run_in_executor(None, conn.recv)
            if ask == "close":
                server.close()
                conn.send(None)
                return
            if ask == "connections":
                conn.send(front.connections[arg:])
            elif ask == "requests":
                conn.send(front.requests[arg:])

    asyncio.run(main())


def front(upstream_url: str, rtt_ms: float, certs: Certs,
          idle_close: float | None = None) -> StandIn:
    """A front for the stand-in at ``upstream_url`` (``http://127.0.0.1:port/...``); its
    ``url`` is ``https://127.0.0.1:port``. ``idle_close``: seconds after which it closes an idle
    connection (None: never)."""
    port = int(upstream_url.split("://", 1)[1].split("/", 1)[0].rsplit(":", 1)[1])
    return StandIn(_front_process, port, rtt_ms / 1000, str(certs.server), idle_close)
