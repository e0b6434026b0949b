"""One line when Redis stops answering and one when it answers again, however many background
threads notice: the alert dispatcher (4 threads), the watches (2) and the owed-replies recovery (1)
each retry every second or so, and each used to log its own warning each time.

    UP ──(a call fails: cannot reach Redis)──▶ DOWN: one WARNING naming the host (``where``)
    DOWN ──(more failures, any thread)──▶ DOWN: counted, not logged
    DOWN ──(a call answers)──▶ UP: one INFO, with how long and how many failed calls

"Cannot reach" is a ConnectionError (refused, reset, no primary, loading), a TimeoutError or a
CLUSTERDOWN: Redis is not there. Any other RedisError (a script's error, an OOM refusal) is Redis
answering: ``failed`` returns False and the caller logs it as before.

One Outage per bot (``create_bot`` makes it, with ``redis_conn.where``: host and port, never the
user or password), shared by its loops and by ``/readyz``; under gunicorn each worker has its own,
so each worker writes its pair of lines.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from redis.exceptions import ClusterDownError

log = logging.getLogger("bot.redis")
UNREACHABLE = (redis.ConnectionError, redis.TimeoutError, ClusterDownError)


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` says Redis could not be reached (not that it refused a command)."""
    return isinstance(exc, UNREACHABLE)


class Outage:
    def __init__(self, where: str = "", logger: logging.Logger = log) -> None:
        """``where``: host:port (bot.core.redis_conn.where); "" when not known."""
        self.where = where
        self.name = f"Redis at {where}" if where else "Redis"
        self.log = logger
        self.down_since: float | None = None   # monotonic; None while Redis answers
        self.failures = 0                      # failed calls in the current (or last) outage
        self._lock = threading.Lock()

    @property
    def down(self) -> bool:
        return self.down_since is not None

    def failed(self, exc: BaseException, who: str) -> bool:
        """Note a call by ``who`` that failed with ``exc``. True when it means Redis cannot be
        reached (the first such failure of an outage is logged here, the others counted); False
        for any other error, which the caller logs itself."""
        if not unreachable(exc):
            return False
        with self._lock:
            self.failures += 1
            if self.down_since is not None:
                return True
            self.down_since, self.failures = time.monotonic(), 1
        self.log.warning("%s is not answering (%s); background work waits for it",
                         self.name, type(exc).__name__,
                         extra={"redis": self.where, "error": type(exc).__name__, "loop": who})
        return True

    def answered(self) -> None:
        """A call answered: the end of an outage, if there was one (cheap when there was not)."""
        if self.down_since is None:
            return
        with self._lock:
            if self.down_since is None:
                return
            seconds, self.down_since = time.monotonic() - self.down_since, None
            failures = self.failures
        self.log.info("%s answers again, after %.1f s and %d failed calls",
                      self.name, seconds, failures,
                      extra={"redis": self.where, "outage_seconds": round(seconds, 1),
                             "failures": failures})
