"""Background threads that work through Redis-held entries (owed replies, watches).

Each thread calls ``step(token)`` until it finds nothing due, then waits ``every`` seconds. A
Redis failure or a bug in one entry is logged, and the loop goes on; Redis out of reach is told
once per outage, by the bot's shared ``Outage`` (bot.core.outage), not once per thread and tick.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

import redis

from bot.core.outage import Outage

log = logging.getLogger(__name__)


class Poller:
    def __init__(self, name: str, step: Callable[[str], bool],
                 outage: Outage | None = None) -> None:
        """``step(token)``: handle one due entry as owner ``token``; False when none is due.
        ``outage``: the bot's shared one (None: this poller's own)."""
        self.name = name
        self.step = step
        self.outage = outage or Outage()
        self._halt = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, every: float, threads: int = 1) -> None:
        if self._threads:
            return
        self._halt.clear()
        self._threads = [threading.Thread(target=self._run, args=(every,), daemon=True,
                                          name=f"{self.name}-{n}") for n in range(threads)]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._halt.set()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []

    def _run(self, every: float) -> None:
        token = uuid.uuid4().hex
        while not self._halt.is_set():
            try:
                while self.step(token) and not self._halt.is_set():
                    pass
                self.outage.answered()
            except redis.RedisError as exc:
                if not self.outage.failed(exc, self.name):
                    log.warning("%s: Redis failed: %s", self.name, type(exc).__name__)
            except Exception:  # noqa: BLE001 - the loop must survive a bug in one entry
                log.exception("%s: unexpected error", self.name)
            self._halt.wait(every)
