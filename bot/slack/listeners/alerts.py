"""The Stop button of an alert message and of each ``/modelarts list`` entry: treated exactly
like ``/modelarts stop`` typed by the clicker.

Which job: for an alert, the one the bot recorded for this message (channel and ts come from
Slack's payload, not from the button); the button's value is used only when no record is left.
A list entry sits on an ephemeral message: no record, no thread, no alert to update; its value is
the job. Either way ``flow.request`` parses nothing further: the value is validated here
(``parse_ref``), and the request looks the job up again and checks the clicker's role, so a forged
value can stop nothing the clicker could not stop by typing the command. An unmapped clicker
is refused before either read (bot/flow/admission.py).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.core.errors import InvalidIdError
from bot.flow.admission import admitted
from bot.flow.blocks import STOP_REQUEST
from bot.flow.stop import StopFlow
from bot.modelarts.refs import JobRef, parse_ref
from bot.slack.later import Later
from bot.slack.listeners.actions import click, ephemeral, on_ephemeral

log = logging.getLogger(__name__)
Lookup = Callable[[str, str], "JobRef | None"]
# The alert's button, and the list's numbered ones (action ids are unique within a message).
STOP_ACTIONS = re.compile(rf"^{STOP_REQUEST}(?::\d{{1,2}})?$")


def ref_from_value(value: str) -> JobRef | None:
    try:
        return parse_ref(value)
    except InvalidIdError:
        return None


def register(app: App, flow: StopFlow, later: Later, lookup: Lookup | None = None) -> None:
    def on_click(ack: Ack, body: dict, client: WebClient) -> None:
        ack()
        got = click(body)
        if got is None:
            log.warning("ignored a malformed %s payload", STOP_REQUEST)
            return
        user, value, channel, ts, _ = got
        alert_ts = None if on_ephemeral(body) else ts
        thread = reply_thread(body, ts)    # a Stop offered in a thread (bot.flow.watches)
        later(request_stop, flow, lookup, user, value, channel, None if thread else alert_ts,
              ephemeral(client, channel, user), thread)

    app.action(STOP_ACTIONS)(on_click)


def request_stop(flow: StopFlow, lookup: Lookup | None, user: str, value: str, channel: str,
                 ts: str | None, notify: Callable[[str], None], thread: str | None = None) -> None:
    """After the ack: which job (a Redis read for an alert), then the command's request.
    ``ts``: the alert message's; None for a list entry. ``thread``: where a reply with a Stop
    button sits (the request is asked there)."""
    if not admitted(flow.roles, user, notify):
        return
    ref = (lookup(channel, ts) if lookup and ts else None) or ref_from_value(value)
    if ref is None:
        notify("This button does not say which job to stop. Use `/modelarts stop "
               "&lt;training_job_id&gt;` or `/modelarts list`.")
        return
    flow.request(user, channel, ref, notify, thread_ts=thread or ts, alert_ts=ts)


def reply_thread(body: dict, ts: str) -> str | None:
    """The thread of a clicked reply (Slack names it in the signed payload); None otherwise."""
    container, message = (v if isinstance(v, dict) else {}
                          for v in (body.get("container"), body.get("message")))
    thread = container.get("thread_ts") or message.get("thread_ts")
    return thread if isinstance(thread, str) and 0 < len(thread) <= 40 and thread != ts else None
