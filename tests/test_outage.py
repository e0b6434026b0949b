"""Redis going away under the running background loops (alert dispatch, watches, owed replies):
one line naming the host when it goes, one when it is back, not a warning per thread and retry."""

from __future__ import annotations

import logging
import threading

import pytest
import redis

from bot.core.outage import Outage
from tests.plugins.slack import wait_until


def script_calls(url: str) -> int:
    stats = redis.Redis.from_url(url).info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("evalsha", "eval"))


class Records(logging.Handler):
    """Every record the process logs, kept (the root logger's level is lowered meanwhile)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(record)

    def at_least(self, level: int, since: int = 0) -> list[logging.LogRecord]:
        with self._lock:
            return [r for r in self.records[since:] if r.levelno >= level]

    def saying(self, text: str) -> list[logging.LogRecord]:
        with self._lock:
            return [r for r in self.records if text in r.getMessage()]


@pytest.fixture
def logged():
    root = logging.getLogger()
    handler, level = Records(), root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(level)


def wait_for(check, timeout: float = 60.0):
    return wait_until(check, timeout)


class TestUnderRunningLoops:
    def test_one_line_down_and_one_back(self, running, own_redis, logged):
        bot = running(REDIS_URL=own_redis.url).bot
        outage = bot.outage
        start = len(logged.records)   # what building the bot logged is not the outage's
        own_redis.stop()
        # The dispatcher (4 threads), the watches (2, every 0.2 s) and the owed replies (1)
        # keep failing: wait until they have, many times over.
        wait_for(lambda: outage.down and outage.failures >= 30)
        warnings = logged.at_least(logging.WARNING, start)
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        line = warnings[0].getMessage()
        assert f"Redis at 127.0.0.1:{own_redis.port} is not answering" in line

        own_redis.start()
        back = wait_for(lambda: logged.saying("answers again"))
        assert len(back) == 1 and f"127.0.0.1:{own_redis.port}" in back[0].getMessage()
        assert not outage.down
        # The loops run on against the new server (their scripts, many times): no more lines.
        wait_for(lambda: script_calls(own_redis.url) >= 50)
        assert len(logged.saying("is not answering")) == 1
        assert len(logged.saying("answers again")) == 1
        assert len(logged.at_least(logging.WARNING, start)) == 1

    def test_a_second_outage_is_told_again(self, running, own_redis, logged):
        bot = running(REDIS_URL=own_redis.url).bot
        for n in (1, 2):
            own_redis.stop()
            wait_for(lambda: bot.outage.down and bot.outage.failures >= 10)
            own_redis.start()
            wait_for(lambda n=n: len(logged.saying("answers again")) == n)
        assert len(logged.saying("is not answering")) == 2


class TestOutage:
    def test_errors_that_are_not_about_reaching_redis_are_left_to_the_caller(self, logged):
        outage = Outage("redis.example:6379")
        assert not outage.failed(redis.ResponseError("OOM command not allowed"), "watches")
        assert not outage.down and logged.records == []
        assert outage.failed(redis.TimeoutError("Timeout reading from socket"), "watches")
        assert outage.failed(redis.ConnectionError("refused"), "alert-dispatch")
        assert outage.down and outage.failures == 2
        assert len(logged.records) == 1

    def test_answered_without_an_outage_says_nothing(self, logged):
        outage = Outage("redis.example:6379")
        outage.answered()
        assert logged.records == []
