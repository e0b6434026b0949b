"""``GET /metrics`` and the ack timing of Slack requests, as WSGI pieces for bot.app.serve.

Under gunicorn (PROMETHEUS_MULTIPROC_DIR set) the answer sums every worker's files, plus the
process metrics (``process_*``) of the worker that answered. In one process (shell, tests) it is
the default registry, with its process and platform metrics.
"""

from __future__ import annotations

import hmac
import io
import os
import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import SecretStr

from bot.app.metrics_sample import Sampler
from bot.core import metrics

Wsgi = Callable[[dict, Callable], Iterable[bytes]]
MAX_PEEK = 1 << 20   # bot.app.web refuses larger bodies; those are not acks
# The classic text format, which generate_latest writes and every Prometheus reads.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def exposition() -> bytes:
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    ProcessCollector(registry=registry)
    return generate_latest(registry)


def authorized(environ: dict, token: SecretStr | None) -> bool:
    if token is None:
        return True
    want = b"Bearer " + token.get_secret_value().encode()
    return hmac.compare_digest(environ.get("HTTP_AUTHORIZATION", "").encode(), want)


def metrics_route(sampler: Sampler | None, token: SecretStr | None, *,
                  open_without_token: bool = False) -> Wsgi:
    """The ``/metrics`` route: 401 without the bearer token, GET only. No token set: 503, unless
    ``open_without_token`` (METRICS_OPEN) says the port is private: never open by omission."""

    def route(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if token is None and not open_without_token:
            return _answer(start_response, "503 Service Unavailable",
                           b"metrics are off: set METRICS_TOKEN (or METRICS_OPEN=true on a "
                           b"private port)\n")
        if not authorized(environ, token):
            return _answer(start_response, "401 Unauthorized", b"unauthorized\n",
                           [("WWW-Authenticate", 'Bearer realm="metrics"')])
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", b"GET only\n")
        if sampler:
            sampler.maybe_sample()
        return _answer(start_response, "200 OK", exposition(), ctype=CONTENT_TYPE)

    return route


def _answer(start_response: Callable, status: str, data: bytes, extra: list | None = None,
            ctype: str = "text/plain; charset=utf-8") -> list[bytes]:
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data))),
                            *(extra or [])])
    return [data]


def kind_of(raw: bytes) -> str | None:
    """A slash command ("command") or an interactive payload ("click"), from the form's names."""
    names = {part.split(b"=", 1)[0] for part in raw.split(b"&")}
    if b"command" in names:
        return "command"
    return "click" if b"payload" in names else None


def timed(app: Wsgi, path: str = "/slack/events") -> Wsgi:
    """Observe ``modelarts_bot_ack_seconds{kind}`` for each Slack request answered 200, from
    receipt to the response (signature check, parsing and the listener's ack included)."""

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != path or environ.get("REQUEST_METHOD") != "POST":
            return app(environ, start_response)
        start = time.perf_counter()
        kind = _peek(environ)
        status: list[str] = []

        def keep(s: str, headers: list, exc_info: object = None) -> Callable:
            status.append(s)
            return start_response(s, headers, exc_info)

        body = app(environ, keep)
        if kind and status and status[0].startswith("200"):
            metrics.ack(kind, time.perf_counter() - start)
        return body

    return application


def _peek(environ: dict) -> str | None:
    """Read the body (bot.app.web reads it again from the copy put back) and tell its kind."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None
    if not 0 < length <= MAX_PEEK:
        return None
    raw = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(raw)
    return kind_of(raw)
