"""The Stop button of an alert message and of each ``/modelarts list`` entry: treated exactly
like ``/modelarts stop`` typed by the clicker.

Which job: for an alert, the one the bot recorded for this message (channel and ts come from
Slack's payload, not from the button); the button's value is used only when no record is left.
A list entry sits on an ephemeral message: no record, no thread, no alert to update; its value is
the job. So is an entry of the Home tab (bot.flow.home), whose click comes from a view with no
channel: the confirmation is asked in the clicker's DM with the bot (the view says which).
Either way ``flow.request`` parses nothing further: the value is validated here (``parse_ref``),
and the request looks the job up again and checks the clicker's role, so a forged value can stop
nothing the clicker could not stop by typing the command. An unmapped clicker is refused before
either read (bot/flow/admission.py).
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
from bot.flow.click import Click
from bot.flow.stop import StopFlow, StopTarget
from bot.modelarts.refs import JobRef, parse_ref
from bot.slack.later import Later
from bot.slack.listeners.actions import click

log = logging.getLogger(__name__)
Lookup = Callable[[str, str], "StopTarget | None"]   # the alert's job, and its summary
# The alert's button, and the list's numbered ones (action ids are unique within a message).
NO_DM = ("I can't tell where to ask you to confirm this stop: open the bot's Home tab again "
         "and press Stop there, or use `/modelarts stop &lt;name&gt;` in a channel. Nothing was "
         "stopped.")
STOP_ACTIONS = re.compile(rf"^{STOP_REQUEST}(?::\d{{1,2}})?$")


def ref_from_value(value: str) -> JobRef | None:
    try:
        return parse_ref(value)
    except InvalidIdError:
        return None


def register(app: App, flow: StopFlow, later: Later, lookup: Lookup) -> None:
    def on_click(ack: Ack, body: dict, client: WebClient) -> None:
        ack()
        got = click(body, client)
        if got is None:
            log.warning("ignored a malformed %s payload", STOP_REQUEST)
            return
        later(request_stop, flow, lookup, got)

    app.action(STOP_ACTIONS)(on_click)


def request_stop(flow: StopFlow, lookup: Lookup, click: Click) -> None:
    """After the ack: which job (a Redis read for an alert), then the command's request.
    The alert message is the clicked one, unless the button sits on a list entry (ephemeral)
    or on a reply in a thread (bot.flow.watches: the request is asked in that thread)."""
    notify = click.notify
    if click.home and not click.channel:
        notify(NO_DM)
        return
    if not admitted(flow.roles, click.user, notify):
        return
    ts = None if click.ephemeral or click.home or click.thread else click.ts
    target = lookup(click.channel, ts) if ts else None
    ref = target.ref if target else ref_from_value(click.value)
    if ref is None:
        notify("This button does not say which job to stop. Use `/modelarts stop "
               "&lt;training_job_id&gt;` or `/modelarts list`.")
        return
    flow.request(click.user, click.channel, ref, notify, thread_ts=click.thread or ts,
                 alert_ts=ts, reason=target.reason if target else "")
    if click.home and flow.home:   # its "open requests" now show this one (or nothing new)
        flow.home.refresh(click.user)
