"""The load generator: a process of its own, ``c`` keep-alive connections on loopback, asyncio.

Each connection sends its next request as soon as the previous answer is read (closed loop, as
``ab -c`` or ``wrk`` do). Slack requests are signed right before they are sent, exactly as Slack
signs them (``botdev.standin.signing``); alerts carry the bearer token. Latency is taken at the
client: from just before the request is written to the last byte of the answer.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from botdev.standin.signing import slack_headers


@dataclass(frozen=True)
class Req:
    path: str
    body: str
    auth: str          # "slack" (signed) | "bearer"


@dataclass(frozen=True)
class Sent:
    at: float          # time.monotonic() just before the write
    seconds: float
    status: int


def _encode(host: str, req: Req, secret: str, token: str) -> bytes:
    body = req.body.encode()
    if req.auth == "slack":
        headers = slack_headers(secret, body)
    else:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    lines = [f"POST {req.path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _answer(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    if "content-length" in fields:
        await reader.readexactly(int(fields["content-length"]))
    elif fields.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _run(base: str, reqs: list[Req], concurrency: int, secret: str, token: str
               ) -> list[Sent]:
    url = urlsplit(base)
    host = url.netloc
    queue: asyncio.Queue[tuple[int, Req]] = asyncio.Queue()
    for n, req in enumerate(reqs):
        queue.put_nowait((n, req))
    out: list[Sent | None] = [None] * len(reqs)

    async def client() -> None:
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        try:
            while not queue.empty():
                n, req = queue.get_nowait()
                data = _encode(host, req, secret, token)
                at = time.monotonic()
                writer.write(data)
                status = await _answer(reader)
                out[n] = Sent(at, time.monotonic() - at, status)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(min(concurrency, len(reqs)))))
    return [s for s in out if s is not None]


def _serve(conn, secret: str, token: str) -> None:
    while True:
        job = conn.recv()
        if job is None:
            return
        base, reqs, concurrency = job
        conn.send(asyncio.run(_run(base, reqs, concurrency, secret, token)))


class LoadGenerator:
    """``run(base, reqs, c)`` sends them from the generator's process and returns ``Sent``s."""

    def __init__(self, signing_secret: str, alerts_token: str) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, signing_secret, alerts_token),
                                daemon=True)
        self.proc.start()

    def run(self, base: str, reqs: list[Req], concurrency: int) -> list[Sent]:
        self.conn.send((base, reqs, concurrency))
        return self.conn.recv()

    def close(self) -> None:
        self.conn.send(None)
        self.proc.join(5)
