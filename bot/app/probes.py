"""``/healthz`` and ``/readyz``: what the platform asks before it restarts a pod, or sends it
traffic.

    GET /healthz   liveness: this process serves HTTP. No I/O: a Redis outage must not get every
                   pod restarted (which would not bring Redis back).
    GET /readyz    readiness: 200 "ready" only when Redis answers PING and holds every Lua script
                   the bot registered (SCRIPT EXISTS; any it lost to a restart or a failover is
                   loaded again first, SCRIPT LOAD); else 503 and one line saying why, naming
                   Redis by host and port (never the user or password of REDIS_URL).

A pod that is not ready gets no traffic it could not serve; it is asked again at the next probe.
Each probe is two round trips (more when scripts were lost); it fails within the Redis client's
timeouts and its one retry (bot.core.redis_conn: 2 to 4 s when Redis does not answer at all), so
the probe's timeoutSeconds must be longer (deploy/kubernetes/deployment.yaml: 5).

Logging: Redis out of reach is the bot's ``Outage`` (one line per outage, shared with the
background loops); any other reason is logged when it first appears, not at every probe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

import redis

from bot.core import redis_conn
from bot.core.logs import ScrubSecrets
from bot.core.outage import Outage

log = logging.getLogger(__name__)
Wsgi = Callable[[dict, Callable], Iterable[bytes]]
MAX_REASON = 200


def answer(start_response: Callable, status: str, text: str) -> list[bytes]:
    data = text.encode()
    start_response(status, [("Content-Type", "text/plain; charset=utf-8"),
                            ("Content-Length", str(len(data))), ("Cache-Control", "no-store")])
    return [data]


def healthz(environ: dict, start_response: Callable) -> list[bytes]:
    return answer(start_response, "200 OK", "ok\n")


class Readiness:
    """The /readyz check of one bot: ``reason()`` is None when ready, else one line."""

    def __init__(self, client: object, where: str, outage: Outage | None = None,
                 secrets: Iterable[str] = ()) -> None:
        self.client = client
        self.where = where
        self.outage = outage or Outage(where)
        self.scrub = ScrubSecrets(secrets).scrub
        self.last: str | None = None   # the last reason logged (other than an outage)
        self._lock = threading.Lock()

    def reason(self) -> str | None:
        step = "did not answer PING"
        try:
            self.client.ping()
            step = "could not check or load the bot's Lua scripts"
            redis_conn.ensure_scripts(self.client)
        except redis.RedisError as exc:
            why = self.describe(step, exc)
            if not self.outage.failed(exc, "readyz"):
                self.note(why)
            return why
        self.outage.answered()
        self.note(None)
        return None

    def describe(self, step: str, exc: redis.RedisError) -> str:
        """One line, without a secret: the exception's type, and what Redis said when it
        answered with an error (NOPERM, NOSCRIPT, OOM ...)."""
        said = ""
        if isinstance(exc, redis.ResponseError):
            said = ": " + (str(exc).splitlines() or [""])[0]
        line = self.scrub(f"Redis at {self.where} {step} ({type(exc).__name__}{said})")
        return line[:MAX_REASON]

    def note(self, why: str | None) -> None:
        with self._lock:
            if why == self.last:
                return
            before, self.last = self.last, why
        if why:
            log.warning("not ready: %s", why)
        elif before:
            log.info("ready again")

    def route(self, environ: dict, start_response: Callable) -> list[bytes]:
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return answer(start_response, "405 Method Not Allowed", "GET only\n")
        why = self.reason()
        if why:
            return answer(start_response, "503 Service Unavailable", f"not ready: {why}\n")
        return answer(start_response, "200 OK", "ready\n")


def readiness(bot) -> Readiness:
    """The bot's /readyz (bot.app.wiring.Bot)."""
    settings = bot.settings
    return Readiness(bot.redis, redis_conn.where(settings), bot.outage,
                     settings.secret_values())
