"""The alert message: pure builders from an alert record to Slack text and Block Kit.

Every field of the alert came from the sender, so every one goes through
``bot.flow.blocks.escape`` wherever it is shown, the fallback ``text`` included (Slack renders
it as mrkdwn in notifications): one line each, except the description, which keeps its lines.
The notes (``Shown.outcome``) are lines this bot built, already escaped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot.alerts.parse import Alert
from bot.flow.blocks import STOP_REQUEST, context, escape, job_name, mention, section

SEVERITY_EMOJI = {"critical": ":red_circle:", "error": ":red_circle:", "warning": ":warning:",
                  "info": ":information_source:"}


@dataclass(frozen=True)
class Shown:
    """What an alert message shows besides the alert: how often seen, and how it ended."""

    count: int = 1
    first_at: float | None = None
    outcome: str | None = None      # "Stopped by <@U> at 03:12 UTC", "Stop failed: ..."
    resolved_at: float | None = None
    pending: str | None = None      # "Stop requested by <@U> ..., waiting for confirmation"

    @property
    def stoppable(self) -> bool:
        return self.outcome is None and self.resolved_at is None


def hhmm(epoch: float) -> str:
    return time.strftime("%H:%M", time.gmtime(epoch)) + " UTC"


def button_value(alert: Alert) -> str:
    return alert.ref.key if alert.ref else ""


def title(alert: Alert) -> str:
    """The job's name, linked to its console page when the look-up gave one."""
    name = job_name(alert.job_name or "a training job", alert.link)
    return f"{name} ({alert.ref})" if alert.ref else name


def notice_message(alert: Alert) -> tuple[str, list[dict]]:
    """A plain notice: an SMN subscription, or a message the bot did not recognise."""
    head = f":incoming_envelope: {escape(alert.summary)}"
    blocks = [section(head)]
    if alert.description:
        blocks.append(section(escape(alert.description, lines=True)))
    return head, blocks


def alert_message(alert: Alert, shown: Shown) -> tuple[str, list[dict]]:
    if alert.notice:
        return notice_message(alert)
    severity = (alert.severity or "").lower()
    icon = ":white_check_mark:" if shown.resolved_at else SEVERITY_EMOJI.get(severity, ":bell:")
    about = f"{title(alert)}: " if alert.ref or alert.job_name else ""
    head = f"{icon} Alert: {about}{escape(alert.summary)}"
    facts = [f"*Status:* {escape(alert.status)}"]
    if alert.severity:
        facts.append(f"*Severity:* {escape(alert.severity)}")
    if alert.url:
        facts.append(f"<{alert.url}|Open the alert source>")
    blocks = [section(head), context("   ".join(facts))]
    if alert.description:
        blocks.append(section(escape(alert.description, lines=True)))
    if shown.stoppable and alert.stoppable:
        blocks.append({"type": "actions", "block_id": "modelarts_alert", "elements": [
            {"type": "button", "action_id": STOP_REQUEST, "style": "danger",
             "value": button_value(alert), "text": {"type": "plain_text", "text": "Stop"}}]})
    notes = []
    if shown.count > 1:
        since = f" since {hhmm(shown.first_at)}" if shown.first_at else ""
        notes.append(f"Seen {shown.count} times{since}.")
    if shown.outcome:
        notes.append(shown.outcome)
    elif shown.pending:
        notes.append(shown.pending)
    if shown.resolved_at:
        notes.append(f"Resolved at {hhmm(shown.resolved_at)}.")
    if notes:
        blocks.append(context(" ".join(notes)))
    text = f"{head} ({escape(alert.status)})" + (f" {' '.join(notes)}" if notes else "")
    return text, blocks


def stopped_line(user: str, at: float) -> str:
    return f"Stopped by {mention(user)} at {hhmm(at)}."


def stop_failed_line(error_code: str | None, unknown: bool) -> str:
    if unknown:
        return "Stop outcome unknown: ModelArts did not answer in time. Check the status."
    return f"Stop failed: {escape(error_code or 'unknown error')}"
