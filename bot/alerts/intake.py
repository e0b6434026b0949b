"""``POST /alerts``: check the bearer token, validate, queue, answer 202. Posting comes later."""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Iterable

import redis

from bot.alerts.parse import MAX_BODY, parse
from bot.alerts.queue import AlertQueue
from bot.settings import Settings

log = logging.getLogger(__name__)
Wsgi = Callable[[dict, Callable], Iterable[bytes]]


def answer(start_response: Callable, status: str, body: dict,
           headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    data = (json.dumps(body) + "\n").encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data))), *(headers or [])])
    return [data]


def authorized(environ: dict, token: bytes) -> bool:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token)


def read_body(environ: dict) -> bytes | None:
    """The body, or None when it is larger than MAX_BODY (read no further than that)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or -1)
    except ValueError:
        length = -1
    if length > MAX_BODY:
        return None
    stream = environ["wsgi.input"]
    raw = stream.read(length) if length >= 0 else stream.read(MAX_BODY + 1)
    return None if len(raw) > MAX_BODY else raw


def intake(settings: Settings, queue: AlertQueue, wake: Callable[[], None]) -> Wsgi:
    secret = settings.ALERTS_TOKEN

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return answer(start_response, "405 Method Not Allowed", {"error": "POST only"},
                          [("Allow", "POST")])
        if secret is None or not secret.get_secret_value():
            return answer(start_response, "503 Service Unavailable", {
                "error": "the alert intake is off: set ALERTS_TOKEN to turn it on"})
        if not authorized(environ, secret.get_secret_value().encode()):
            return answer(start_response, "401 Unauthorized",
                          {"error": "missing or wrong bearer token"},
                          [("WWW-Authenticate", 'Bearer realm="alerts"')])
        raw = read_body(environ)
        got = parse(raw, settings.ALERTS_CHANNEL) if raw is not None else {
            "body": f"larger than {MAX_BODY // 1024} KiB"}
        if isinstance(got, dict):
            return answer(start_response, "400 Bad Request",
                          {"error": "invalid alert", "fields": got})
        accepted = []
        try:
            for n, alert in enumerate(got):
                done = queue.enqueue(alert)
                accepted.append({"index": n, "channel": alert.channel,
                                 "state": "resolved" if alert.resolved else "firing",
                                 "status": done.status, "id": done.id, "count": done.count})
        except redis.RedisError as exc:
            log.error("alert intake: Redis failed: %s", type(exc).__name__)
            return answer(start_response, "503 Service Unavailable", {
                "error": "the alert queue (Redis) is unavailable; retry",
                "accepted": accepted})
        wake()
        return answer(start_response, "202 Accepted", {"accepted": accepted})

    return application


def routes(bot) -> dict[str, Wsgi]:
    """The paths to pass to ``create_wsgi(bot, routes)``."""
    return {"/alerts": intake(bot.settings, bot.alerts, bot.dispatcher.wake.set)}
