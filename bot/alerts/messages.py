"""Alert messages after they are posted: the stop outcome shown on them, the ids behind a click."""

from __future__ import annotations

import logging
import time

import redis

from bot.alerts import blocks as ab
from bot.alerts.queue import AlertQueue
from bot.core.slack_out import SlackOut
from bot.flow.blocks import section
from bot.flow.confirmations import Confirmation
from bot.flow.stop import MAX_REASON, StopTarget
from bot.modelarts.models import StopOutcome
from bot.modelarts.refs import JobRef

log = logging.getLogger(__name__)


class AlertMessages:
    def __init__(self, queue: AlertQueue, slack: SlackOut) -> None:
        self.queue = queue
        self.slack = slack

    def target(self, channel: str, ts: str) -> StopTarget | None:
        """The job the bot posted on this alert message, with the alert's summary as the stop's
        reason; None if unknown."""
        try:
            found = self.queue.message(channel, ts)
        except redis.RedisError:
            return None
        if not found or not found[0].ref:
            return None
        return StopTarget(found[0].ref, (found[0].summary or "")[:MAX_REASON])

    def find(self, channel: str, ref: JobRef) -> str | None:
        """The newest alert message about ``ref`` in ``channel`` (a request typed there shows
        on it), or None."""
        try:
            return self.queue.about(channel, ref.key)
        except redis.RedisError:
            return None

    def requested(self, c: Confirmation, line: str) -> None:
        """A request for the alert's job is pending (``line``), or no longer ("")."""
        self._note(c, pending=line)

    def stop_reported(self, c: Confirmation, user: str, outcome: StopOutcome) -> None:
        """StopFlow calls this once a stop confirmed from an alert has an outcome."""
        if not c.alert_ts:
            return
        self.show(c, ab.stopped_line(user, time.time()) if outcome.is_success
                  else ab.stop_failed_line(outcome.error_code, outcome.unknown))

    def final_state(self, c: Confirmation, line: str) -> None:
        """The watch that followed the stop ended (bot.flow.watches): ``line`` says how."""
        if c.alert_ts:
            self.show(c, line.removesuffix(".") + ".")

    def show(self, c: Confirmation, line: str) -> None:
        """Record ``line`` as the alert's outcome and show it on the alert message."""
        self._note(c, outcome=line)

    def _note(self, c: Confirmation, **fields: str) -> None:
        try:
            self.queue.mark(c.channel, c.alert_ts, **fields)
            found = self.queue.message(c.channel, c.alert_ts)
        except redis.RedisError:
            log.warning("could not record the stop on the alert message",
                        extra={"channel": c.channel, "ts": c.alert_ts})
            found = None
        if found is None and not fields.get("outcome"):
            return     # a pending note on a record that is gone: nothing to show it on
        if found is None:  # no record (Redis down, or expired): still take the button away
            text = f"{fields['outcome']} {str(c.ref).capitalize()}."
            blocks = [section(text)]
        else:
            text, blocks = ab.alert_message(*found)
        self.slack.update(c.channel, c.alert_ts, text, blocks)   # a failure is logged there
