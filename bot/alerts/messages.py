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
from bot.modelarts.models import StopOutcome
from bot.modelarts.refs import JobRef

log = logging.getLogger(__name__)


class AlertMessages:
    def __init__(self, queue: AlertQueue, slack: SlackOut) -> None:
        self.queue = queue
        self.slack = slack

    def ref(self, channel: str, ts: str) -> JobRef | None:
        """The job the bot posted on this alert message, or None if unknown."""
        try:
            found = self.queue.message(channel, ts)
        except redis.RedisError:
            return None
        return found[0].ref if found else None

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
        try:
            self.queue.mark(c.channel, c.alert_ts, outcome=line)
            found = self.queue.message(c.channel, c.alert_ts)
        except redis.RedisError:
            log.warning("could not record the stop on the alert message",
                        extra={"channel": c.channel, "ts": c.alert_ts})
            found = None
        if found is None:  # no record (Redis down, or expired): still take the button away
            text = f"{line} {str(c.ref).capitalize()}."
            blocks = [section(text)]
        else:
            text, blocks = ab.alert_message(*found)
        self.slack.update(c.channel, c.alert_ts, text, blocks)   # a failure is logged there
