"""Work after the ack: it runs on the pool, and an error in it is logged with an id, not lost."""

from __future__ import annotations

import logging
import threading

from bot.slack.later import Later


class TestLater:
    def test_runs_the_work_with_its_arguments_off_the_callers_thread(self):
        later, seen = Later(), []
        later(lambda a, b: seen.append((a, b, threading.current_thread().name)), 1, "x")
        later.executor.shutdown(wait=True)
        assert seen[0][:2] == (1, "x") and seen[0][2].startswith("after-ack")

    def test_an_error_is_logged_with_an_id(self, caplog):
        def boom() -> None:
            raise RuntimeError("lost connection")

        later = Later()
        with caplog.at_level(logging.ERROR, logger="bot.slack.app"):
            later(boom)
            later.executor.shutdown(wait=True)
        record = next(r for r in caplog.records if r.getMessage().startswith("unhandled error"))
        assert "RuntimeError" in record.getMessage() and len(record.error_id) == 12
        assert record.exc_info and record.exc_info[0] is RuntimeError
