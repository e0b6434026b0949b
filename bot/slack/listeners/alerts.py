"""The alert message's Stop button: treated exactly like ``/modelarts stop`` typed by the clicker.

Which job: the one the bot recorded for this message (channel and ts come from Slack's payload,
not from the button); the button's value is used only when no record is left. Either way
``flow.request`` runs the status check and the clicker's role check, so a forged value can stop
nothing the clicker could not stop by typing the command.
"""

from __future__ import annotations

from collections.abc import Callable

from slack_bolt import App

from bot.alerts.blocks import STOP_REQUEST
from bot.errors import InvalidIdError
from bot.flow.stop import StopFlow
from bot.modelarts.refs import JobRef, parse_ref
from bot.slack.later import Later
from bot.slack.listeners.actions import listener

Lookup = Callable[[str, str], "JobRef | None"]


def ref_from_value(value: str) -> JobRef | None:
    try:
        return parse_ref(value)
    except InvalidIdError:
        return None


def register(app: App, flow: StopFlow, later: Later, lookup: Lookup | None = None) -> None:
    def handle(user: str, value: str, channel: str, ts: str, blocks: list | None,
               notify: Callable[[str], None]) -> None:
        request_stop(flow, lookup, user, value, channel, ts, notify)

    app.action(STOP_REQUEST)(listener(STOP_REQUEST, handle, later))


def request_stop(flow: StopFlow, lookup: Lookup | None, user: str, value: str, channel: str,
                 ts: str, notify: Callable[[str], None]) -> None:
    """After the ack: which job (a Redis read), then the same request as the command's."""
    ref = (lookup(channel, ts) if lookup else None) or ref_from_value(value)
    if ref is None:
        notify("This alert does not say which job to stop. Use `/modelarts stop "
               "&lt;training_job_id&gt;`.")
        return
    flow.request(user, channel, ref, notify, thread_ts=ts, alert_ts=ts)
