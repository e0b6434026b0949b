"""``POST /alerts``: check the bearer token, validate, queue, answer 202. Posting comes later.

A body is queued whole or not at all. When its alerts do not fit under a queue cap
(ALERT_QUEUE_PER_CHANNEL for one channel, ALERT_QUEUE_TOTAL for all), nothing of it is queued
and the answer is 429 with ``Retry-After`` and a body naming the cap; a sender (Alertmanager)
resends the whole body, so a partial accept would count its first alerts twice. More alerts for
one channel than its cap in a single body can never fit: 413. Each refused alert is counted in
``modelarts_bot_alerts_refused_total{reason}``.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Callable, Iterable

import redis

from bot.alerts.parse import MAX_BODY, parse
from bot.alerts.queue import AlertQueue, Full
from bot.core import metrics
from bot.core.settings import Settings

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


MAX_RETRY_AFTER = 3600


def retry_after(full: Full, pace_seconds: float) -> int:
    """Seconds until the excess could have drained at the dispatcher's pace (one channel posts
    one item per pace), at least 1."""
    return min(MAX_RETRY_AFTER, max(1, math.ceil(full.excess * pace_seconds)))


def refused(start_response: Callable, full: Full, count: int,
            pace_seconds: float) -> list[bytes]:
    """429 (or 413 when the body alone is over the cap) naming the cap; nothing was queued."""
    metrics.alerts_refused(f"{full.cap}_cap", count)
    where = f"channel {full.channel}" if full.channel else "all channels"
    setting = "ALERT_QUEUE_PER_CHANNEL" if full.cap == "channel" else "ALERT_QUEUE_TOTAL"
    body = {"cap": full.cap, "setting": setting, "limit": full.limit, "queued": full.queued,
            "adding": full.adding, "queued_now": 0, **({"channel": full.channel}
                                                       if full.channel else {})}
    if full.never_fits:
        return answer(start_response, "413 Content Too Large", {
            "error": f"this body alone has {full.adding} alerts to queue for {where}, more than "
                     f"the cap of {full.limit}: split it", **body})
    wait = retry_after(full, pace_seconds)
    return answer(start_response, "429 Too Many Requests", {
        "error": f"the alert queue for {where} is full ({full.queued} queued, cap "
                 f"{full.limit}): nothing of this body was queued; retry after {wait} s",
        "retry_after": wait, **body}, [("Retry-After", str(wait))])


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
        try:
            done = queue.enqueue_all(got)
        except redis.RedisError as exc:
            log.error("alert intake: Redis failed: %s", type(exc).__name__)
            return answer(start_response, "503 Service Unavailable", {
                "error": "the alert queue (Redis) is unavailable; retry", "accepted": []})
        if isinstance(done, Full):
            log.warning("alert intake: %s cap reached, %d alerts refused", done.cap, len(got),
                        extra={"channel": done.channel})
            return refused(start_response, done, len(got), settings.ALERT_POST_INTERVAL_SECONDS)
        accepted = [{"index": n, "channel": alert.channel,
                     "state": "resolved" if alert.resolved else "firing",
                     "status": one.status, "id": one.id, "count": one.count}
                    for n, (alert, one) in enumerate(zip(got, done, strict=True))]
        wake()
        return answer(start_response, "202 Accepted", {"accepted": accepted})

    return application


def routes(bot) -> dict[str, Wsgi]:
    """The paths to pass to ``create_wsgi(bot, routes)``."""
    return {"/alerts": intake(bot.settings, bot.alerts, bot.dispatcher.wake.set)}
