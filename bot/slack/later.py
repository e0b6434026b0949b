"""The slow part of a listener, run on a pool after the ack, and the one report for its errors.

The app runs with ``process_before_response=True``: a listener runs in the request's thread and
its ack goes back as soon as it returns. Bolt's default instead runs the listener on a pool and
polls for the ack every 10 ms, which puts up to 10 ms on every ack. A listener acks, checks what
it can without I/O, and hands the rest (ModelArts, Redis, Slack calls) to ``Later``. Not Bolt's
lazy listeners: those deep-copy the request for each lazy function, about half of an ack's cost.

Two pools, so that a stop never queues behind a look-up:

    ack ──► later(work)         lookup pool (LOOKUP_WORKERS): lists, status, stop requests
        └─► later.urgent(work)  stop pool (STOP_WORKERS): confirm, cancel, the stop, its reply
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("bot.slack.app")


def report_error(error: BaseException) -> None:
    """Log an unhandled error with an id to find it by."""
    error_id = uuid.uuid4().hex[:12]
    log.error("unhandled error %s: %s", error_id, type(error).__name__, exc_info=error,
              extra={"error_id": error_id})


class Later:
    """``later(work, *args)``: run ``work(*args)`` on the lookup pool; ``later.urgent(work,
    *args)``: on the stop pool. An error is reported, not lost."""

    def __init__(self, executor: ThreadPoolExecutor | None = None, *,
                 urgent_executor: ThreadPoolExecutor | None = None,
                 stop_workers: int = 4, lookup_workers: int = 8) -> None:
        self.executor = executor or ThreadPoolExecutor(lookup_workers,
                                                       thread_name_prefix="after-ack-lookup")
        self.urgent_executor = urgent_executor or ThreadPoolExecutor(
            stop_workers, thread_name_prefix="after-ack-stop")

    def __call__(self, work: Callable[..., object], *args: object) -> None:
        self.executor.submit(self._run, work, *args)

    def urgent(self, work: Callable[..., object], *args: object) -> None:
        self.urgent_executor.submit(self._run, work, *args)

    @staticmethod
    def _run(work: Callable[..., object], *args: object) -> None:
        try:
            work(*args)
        except Exception as exc:  # noqa: BLE001 - the one handler for work after the ack
            report_error(exc)
