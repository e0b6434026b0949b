"""Drains the alert queue into Slack: a few threads per process, cooperating across replicas.

Each step: pick a due channel, take its lease, handle its head item (post, bump the "seen N times"
count, or mark resolved), then finish (remove, pace, free the lease) or defer (429 Retry-After, or
a transient failure). One item per lease, so a channel's items go out one at a time, in order,
while other channels are worked on by other threads and replicas.

Delivery is at least once, made as close to exactly once as Slack allows:
  * an item leaves the queue only after Slack accepted it, so a crash re-delivers it;
  * the ts Slack gave is recorded under the item's id (``posted:{id}``) before the item is
    removed, and checked before posting, so a crash between the post and the removal is seen
    and not posted twice;
  * the window that remains is between Slack accepting the post and that record being written
    (a crash or lost connection there, or a stall longer than the lease while another replica
    takes over): chat.postMessage has no idempotency key, so that alert would be posted twice.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
import uuid
from collections.abc import Callable

import redis

from bot.alerts import blocks as ab
from bot.alerts.parse import Alert
from bot.alerts.queue import AlertQueue, Item
from bot.core.outage import Outage
from bot.core.slack_out import Answer, SlackOut

log = logging.getLogger(__name__)

LEASE_MS = 60_000          # longer than one Slack call can take (client timeout 10 s)
RETRY_MS = 5_000           # after a transient failure (network, 5xx, Redis)
IDLE_SECONDS = 0.25        # longest sleep before looking for due channels again
# Errors for which posting the same item again can never succeed: drop it to ``dead``.
POST_REFUSED = {"channel_not_found", "not_in_channel", "is_archived", "invalid_blocks",
                "msg_too_long", "no_text", "invalid_arguments", "restricted_action",
                "invalid_blocks_format", "too_many_attachments"}
UPDATE_REFUSED = {"message_not_found", "cant_update_message", "edit_window_closed",
                  "channel_not_found", "not_in_channel", "is_archived", "invalid_blocks"}


class Dispatcher:
    def __init__(self, queue: AlertQueue, slack: SlackOut, *, pace_seconds: float = 1.0,
                 threads: int = 4, prepare: Callable[[Alert], Alert] | None = None,
                 outage: Outage | None = None) -> None:
        """``slack`` must not retry 429s itself: Retry-After is honoured here, through Redis.
        ``prepare``: the look-up an alert asks for (``Alert.lookup``), just before its post
        (bot.alerts.lookup); it never raises. ``outage``: the bot's shared one (bot.core.outage:
        one line per Redis outage, not one per thread and retry); None: the dispatcher's own."""
        self.prepare = prepare
        self.outage = outage or Outage()
        self.queue = queue
        self.slack = slack
        self.pace_ms = math.ceil(pace_seconds * 1000)
        self.threads = threads
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        if self._workers:
            return
        self._stop.clear()
        for n in range(self.threads):
            worker = threading.Thread(target=self._run, name=f"alert-dispatch-{n}", daemon=True)
            worker.start()
            self._workers.append(worker)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop after the items in hand; what is still queued stays in Redis for any replica."""
        self._stop.set()
        self.wake.set()
        for worker in self._workers:
            worker.join(timeout)
        self._workers = []

    def _run(self) -> None:
        token = uuid.uuid4().hex
        while not self._stop.is_set():
            try:
                wait = self.step(token)
                self.outage.answered()
            except redis.RedisError as exc:
                if not self.outage.failed(exc, "alert-dispatch"):
                    log.warning("alert dispatch: Redis failed: %s", type(exc).__name__)
                wait = RETRY_MS / 1000
            except Exception:  # noqa: BLE001 - a worker must survive a bug in one item
                log.exception("alert dispatch: unexpected error")
                wait = RETRY_MS / 1000
            if wait:
                self.wake.wait(wait)
                self.wake.clear()

    # -- one step ----------------------------------------------------------------------------
    def step(self, token: str) -> float:
        """Handle at most one item; return how long to sleep before the next step (0: none)."""
        channels, next_due = self.queue.due()
        random.shuffle(channels)
        for channel in channels:
            kind, raw = self.queue.claim(channel, token, LEASE_MS)
            if kind == "item":
                self.handle(channel, token, Item.load(raw))
                return 0
        if channels:            # all leased by others, or waiting: look again shortly
            return 0.05
        return min(next_due, IDLE_SECONDS) if next_due is not None else IDLE_SECONDS

    def handle(self, channel: str, token: str, item: Item) -> None:
        answer = (self._post if item.kind == "post" else self._update)(channel, token, item)
        if answer is not None and not answer.ok:
            self._slack_failed(channel, token, item, answer)

    def _post(self, channel: str, token: str, item: Item) -> Answer | None:
        """Slack's answer when it failed (the caller defers or buries); None when done."""
        if self.queue.posted_ts(item.id):    # posted before a crash, not yet removed
            self.queue.finish(channel, token, item.raw, self.pace_ms)
            return None
        count, first_at = self.queue.first_seen(item.identity, item.id)
        assert item.alert is not None
        alert = item.alert
        if alert.lookup and self.prepare:
            alert = self.prepare(alert)
        text, blocks = ab.alert_message(alert, ab.Shown(count, first_at))
        answer = self.slack.post(channel, text, blocks)
        if not answer.ok:
            return answer
        self.queue.record_post(item, channel, answer.data["ts"], count, first_at, alert)
        self.queue.finish(channel, token, item.raw, self.pace_ms)
        return None

    def _update(self, channel: str, token: str, item: Item) -> Answer | None:
        """A bump ("seen N times") or a resolve: edit the alert's latest message."""
        where = self.queue.last(item.identity)
        found = self.queue.message(*where) if where else None
        if where is None or found is None:
            log.info("alert %s: no message to update for %s", item.kind, item.identity)
            self.queue.finish(channel, token, item.raw)
            return None
        alert, shown = found
        if item.kind == "bump":
            count = self.queue.take_bump(item.identity)
            if count is None or count <= shown.count:
                self.queue.finish(channel, token, item.raw)
                return None
            marked = self.queue.mark(*where, count=count)
        else:
            # "Stopped by @x" stays: the end event only says how it ended where nothing did.
            ended = ({"outcome": item.alert.ended} if item.alert and item.alert.ended
                     and not shown.outcome else {})
            marked = shown.resolved_at is not None or self.queue.mark(
                *where, resolved_at=time.time(), **ended)
        found = self.queue.message(*where) if marked else None
        if found is None:       # the record expired meanwhile: nothing left to update
            self.queue.finish(channel, token, item.raw)
            return None
        text, blocks = ab.alert_message(*found)
        answer = self.slack.update(where[0], where[1], text, blocks)
        if not answer.ok:
            return answer
        self.queue.finish(channel, token, item.raw)
        return None

    def _slack_failed(self, channel: str, token: str, item: Item, answer: Answer) -> None:
        error = answer.error or "unknown"
        extra = {"channel": channel, "item": item.id, "error_code": error}
        if answer.retry_after is not None:
            delay = math.ceil(answer.retry_after * 1000) + 1   # never early
            log.info("alert dispatch: 429 from Slack, waiting %d ms", delay, extra=extra)
            self.queue.defer(channel, token, delay)
        elif error in (POST_REFUSED if item.kind == "post" else UPDATE_REFUSED):
            log.error("alert dispatch: Slack refused the %s: %s", item.kind, error, extra=extra)
            self.queue.bury(channel, token, item, error)
        else:
            log.warning("alert dispatch: Slack failed: %s", error, extra=extra)
            self.queue.defer(channel, token, RETRY_MS)

