"""The confirmation buttons. Ack first; the payload's fields are checked, never trusted."""

from __future__ import annotations

import logging
from collections.abc import Callable

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.core.slack_out import SlackOut
from bot.flow.blocks import APPROVE, CANCEL, CONFIRM
from bot.flow.click import Click
from bot.flow.home_view import dm_of
from bot.flow.stop import StopFlow
from bot.slack.later import Later

log = logging.getLogger(__name__)


def click(body: dict, client: WebClient | None) -> Click | None:
    """The click of a block_actions body, read once (its ``notify`` posts with ``client``);
    None if malformed."""
    if _dict(body.get("container")).get("type") == "view":
        return home_click(body, client)
    try:
        user = body["user"]["id"]
        value = body["actions"][0]["value"]
        channel = body["channel"]["id"]
        container, message = _dict(body.get("container")), _dict(body.get("message"))
        ts = container.get("message_ts") or message["ts"]
    except (KeyError, IndexError, TypeError):
        return None
    fields = (user, value, channel, ts)
    if not all(isinstance(f, str) and 0 < len(f) <= 200 for f in fields):
        return None
    blocks = message.get("blocks")
    return Click(user, value, channel, ts, blocks if isinstance(blocks, list) else None,
                 ephemeral(client, channel, user), on_ephemeral(body), reply_thread(body, ts))


def home_click(body: dict, client: WebClient | None) -> Click | None:
    """A click on the Home tab: Slack sends the view (its id, our ``private_metadata``) and no
    channel or message. The channel is the clicker's DM with the bot, as the view carries it
    (bot.flow.home_view.metadata): the confirmation is asked there, and so is anything the
    clicker must be told (a message in the DM: an ephemeral one there would go unseen, the user
    being on the Home tab). None if malformed or not from a Home view."""
    view = _dict(body.get("view"))
    try:
        user = body["user"]["id"]
        value = body["actions"][0]["value"]
        view_id = view.get("id") or _dict(body.get("container"))["view_id"]
    except (KeyError, IndexError, TypeError):
        return None
    if view.get("type") != "home" or not all(
            isinstance(f, str) and 0 < len(f) <= 200 for f in (user, value, view_id)):
        return None
    dm = dm_of(view.get("private_metadata"))
    return Click(user, value, dm or "", view_id, None, direct(client, dm or user), home=True)


def direct(client: WebClient | None, channel: str) -> Callable[[str], None]:
    """A notifier that posts to ``channel`` (a DM, or a user id: Slack posts that to the DM)."""
    out = SlackOut(client)

    def notify(text: str) -> None:
        out.post(channel, text)
    return notify


def reply_thread(body: dict, ts: str) -> str | None:
    """The thread of a clicked reply (Slack names it in the signed payload); None otherwise."""
    container, message = _dict(body.get("container")), _dict(body.get("message"))
    thread = container.get("thread_ts") or message.get("thread_ts")
    return thread if isinstance(thread, str) and 0 < len(thread) <= 40 and thread != ts else None


def on_ephemeral(body: dict) -> bool:
    """True when the button sits on an ephemeral message (a list answer): Slack then sends no
    ``message``, and nothing can thread under that message or edit it."""
    return _dict(body.get("container")).get("is_ephemeral") is True


def _dict(value: object) -> dict:
    """A payload part that should be an object; anything else (true, a list...) counts as none."""
    return value if isinstance(value, dict) else {}


def ephemeral(client: WebClient | None, channel: str, user: str) -> Callable[[str], None]:
    """A notifier for one user: SlackOut logs a failure and never raises."""
    out = SlackOut(client)

    def notify(text: str) -> None:
        out.ephemeral(channel, user, text)
    return notify


def listener(action_id: str, handle: Callable[[Click], object], later: Later):
    """A button listener: ack, read the click, hand it to ``handle`` after the ack, on the stop
    pool: a confirm or a cancel never waits behind lists and look-ups."""
    def on_click(ack: Ack, body: dict, client: WebClient) -> None:
        ack()
        got = click(body, client)
        if got is None:
            log.warning("ignored a malformed %s payload", action_id)
            return
        later.urgent(handle, got)
    return on_click


def register(app: App, flow: StopFlow, later: Later) -> None:
    app.action(CONFIRM)(listener(CONFIRM, flow.confirm, later))
    app.action(CANCEL)(listener(CANCEL, flow.cancel, later))
    app.action(APPROVE)(listener(APPROVE, flow.approve, later))
