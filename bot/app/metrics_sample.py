"""The gauges read from Redis (queue depths), sampled when ``/metrics`` is scraped, at most once
every ``every`` seconds per worker: a ZCARD/ZCOUNT pipeline and the alert backlog (a ZRANGE of the
channels with work and one LLEN each, pipelined), never a SCAN.

If Redis fails, the gauges become NaN (unknown, not zero) and the failure is counted.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable

import redis

from bot.core import metrics
from bot.core.keys import Keys

log = logging.getLogger(__name__)
OVERDUE_MS = 60_000   # an owed reply due this long ago should have been taken by some replica


class Sampler:
    def __init__(self, client: redis.Redis, prefix: str, *,
                 backlog: Callable[[], int] | None = None,
                 confirmations: Callable[[], int] | None = None, every: float = 5.0) -> None:
        """``backlog``: AlertQueue.backlog; ``confirmations``: a cheap count of pending
        confirmations, when the store offers one (else the gauge is NaN)."""
        self.redis = client
        self.owed = Keys(prefix).owed()[0]
        self.backlog = backlog
        self.confirmations = confirmations
        self.every = every
        self._lock = threading.Lock()
        self._last = -math.inf

    def maybe_sample(self) -> None:
        """Sample unless this worker did within ``every`` seconds (or is sampling now)."""
        if time.monotonic() - self._last < self.every or not self._lock.acquire(blocking=False):
            return
        try:
            self._last = time.monotonic()
            self.sample()
        finally:
            self._lock.release()

    def sample(self) -> None:
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(self.owed)
                pipe.zcount(self.owed, "-inf", int(time.time() * 1000) - OVERDUE_MS)
                pending, overdue = pipe.execute()
            metrics.OWED_PENDING.set(pending)
            metrics.OWED_OVERDUE.set(overdue)
            metrics.ALERTS_QUEUED.set(self.backlog() if self.backlog else math.nan)
            metrics.CONFIRMATIONS_PENDING.set(
                self.confirmations() if self.confirmations else math.nan)
        except redis.RedisError as exc:
            log.warning("metrics: could not sample the queues: %s", type(exc).__name__)
            metrics.SAMPLE_ERRORS.inc()
            for gauge in (metrics.OWED_PENDING, metrics.OWED_OVERDUE, metrics.ALERTS_QUEUED,
                          metrics.CONFIRMATIONS_PENDING):
                gauge.set(math.nan)
