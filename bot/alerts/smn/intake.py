"""``POST /smn``: Huawei Cloud SMN pushes here. Verify, record, answer; the rest comes later.

    body ──▶ 413 over 64 KiB │ 400 not an SMN message ──▶ verify (bot.alerts.smn.verify): 403
    ──▶ read (bot.alerts.smn.read) ──▶ subscribe_url outside SMN_CONFIRM_HOSTS: 403
    ──▶ ONE enqueue script call (bot.alerts.queue): the message's alerts queued and its
        message_id remembered (``Once``), or nothing ──▶ 200 │ seen before: 200, nothing new
        │ Redis down or the queue full: 503, so that SMN delivers it again (it retries on 5xx)
    ──▶ after the answer: the subscription confirmed (one GET, no redirects), the stop watch of
        an ended job made due, the audit entry ``smn``; the dispatcher posts and looks jobs up.

Crash windows: a replica dying after the enqueue and before the confirming GET leaves the
subscription unconfirmed (SMN resends a confirmation only when asked; the notice is still
posted: confirm it from the console). The watch nudge and the audit entry are best effort.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import redis
import requests

from bot.alerts.intake import Wsgi, answer, read_body
from bot.alerts.queue import AlertQueue, Full, Once, Seen
from bot.alerts.smn.read import Reading, read, shape_problem
from bot.alerts.smn.verify import CertSource, Refused, Verifier, allowed_host
from bot.core import metrics
from bot.core.settings import Settings, csv
from bot.flow.audit import Audit
from bot.flow.watches import Watches

log = logging.getLogger(__name__)


class SmnIntake:
    def __init__(self, settings: Settings, queue: AlertQueue, wake: Callable[[], None],
                 audit: Audit, watches: Watches | None,
                 session: requests.Session | None = None) -> None:
        self.topics = settings.smn_topics
        self.events = tuple(csv(settings.SMN_EVENTS))
        # A topic URN's project id says which project's job an event is about.
        self.projects = {p.project_id: p.name for p in settings.projects}
        self.confirm_hosts = csv(settings.SMN_CONFIRM_HOSTS)
        self.max_age = settings.SMN_MAX_AGE_SECONDS
        self.session = session or requests.Session()
        pinned = (Path(settings.SMN_SIGNING_CERT_FILE).read_bytes()
                  if settings.SMN_SIGNING_CERT_FILE else None)
        self.verifier = Verifier(self.topics, CertSource(pinned, csv(settings.SMN_CERT_HOSTS),
                                                         self.session), self.max_age)
        self.queue, self.wake, self.audit, self.watches = queue, wake, audit, watches
        self.after = ThreadPoolExecutor(2, thread_name_prefix="smn-after")

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return answer(start_response, "405 Method Not Allowed", {"error": "POST only"},
                          [("Allow", "POST")])
        raw = read_body(environ)
        if raw is None:
            metrics.smn_message(None, "too_large")
            return answer(start_response, "413 Content Too Large", {"error": "over 64 KiB"})
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            body = None
        problem = shape_problem(body)
        if problem:
            metrics.smn_message(None, "invalid")
            return answer(start_response, "400 Bad Request", {"error": problem})
        kind = self.verifier.check(body, environ.get("HTTP_X_SMN_MESSAGE_TYPE"))
        if isinstance(kind, Refused):
            return self._refused(start_response, body, kind)
        reading = read(kind, body, self.topics[body["topic_urn"]], self.events, self.projects)
        if reading.confirm_url is not None and not allowed_host(reading.confirm_url,
                                                                self.confirm_hosts):
            return self._refused(start_response, body, Refused(
                "confirm_host", "subscribe_url is not https on an SMN_CONFIRM_HOSTS host"))
        return self._record(start_response, kind, body, reading)

    def _refused(self, start_response: Callable, body: dict, why: Refused) -> list[bytes]:
        log.warning("smn: refused (%s): %s", why.reason, why.detail,
                    extra={"topic": body.get("topic_urn"), "message_id": body.get("message_id")})
        metrics.smn_message(body.get("type"), f"refused_{why.reason}")
        return answer(start_response, "403 Forbidden", {"error": why.detail})

    def _record(self, start_response: Callable, kind: str, body: dict,
                reading: Reading) -> list[bytes]:
        once = Once(body["message_id"][:128], self.max_age)
        try:
            done = self.queue.enqueue_all(reading.alerts, once)
        except redis.RedisError as exc:
            log.error("smn: Redis failed: %s", type(exc).__name__)
            metrics.smn_message(kind, "redis_unavailable")
            return answer(start_response, "503 Service Unavailable",
                          {"error": "the bot cannot record the message now; deliver it again"})
        if isinstance(done, Full):
            metrics.smn_message(kind, "full")
            return answer(start_response, "503 Service Unavailable",
                          {"error": f"the alert queue is full ({done.cap} cap): deliver again"},
                          [("Retry-After", "60")])
        if isinstance(done, Seen):
            metrics.smn_message(kind, "duplicate")
            return answer(start_response, "200 OK", {"duplicate": True})
        metrics.smn_message(kind, "handled")
        if reading.alerts:
            self.wake()
        self.after.submit(self._after, kind, body, reading)
        return answer(start_response, "200 OK", {"accepted": reading.kind,
                                                  "alerts": len(reading.alerts)})

    def _after(self, kind: str, body: dict, reading: Reading) -> None:
        try:
            if reading.confirm_url:
                self._confirm(reading.confirm_url)
            if reading.job and self.watches:
                self.watches.check_now(reading.job)
        except Exception:  # noqa: BLE001 - a background step must not take the pool down
            log.exception("smn: after the answer")
        self.audit.write("smn", ref=reading.job, topic=body["topic_urn"],
                         message_id=body["message_id"][:128], smn_event=reading.event or kind,
                         outcome=reading.kind)

    def _confirm(self, url: str) -> None:
        host = urlsplit(url).hostname
        try:
            resp = self.session.get(url, timeout=5, allow_redirects=False)
        except requests.RequestException as exc:
            log.error("smn: could not confirm the subscription at %s: %s", host,
                      type(exc).__name__)
            return
        level = logging.INFO if resp.status_code == 200 else logging.ERROR
        log.log(level, "smn: subscription confirmation at %s answered %d", host,
                resp.status_code)


def routes(bot) -> dict[str, Wsgi]:
    """``/smn`` when SMN_TOPICS is set; nothing (404) otherwise."""
    if not bot.settings.smn_topics or bot.alerts is None:
        return {}
    return {"/smn": SmnIntake(bot.settings, bot.alerts, bot.dispatcher.wake.set,
                              bot.flow.store.audit, bot.watches)}
