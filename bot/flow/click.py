"""A button click, read once from Slack's payload by the listener (bot/slack/listeners) and
carried, as one value, to the work after the ack and to the stop flow."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Click:
    """Who clicked which button, where. ``value``: the button's (a confirmation id, or a job);
    ``ts``: the clicked message's; ``blocks``: its blocks (None when Slack sent none);
    ``notify``: an ephemeral message to the clicker; ``ephemeral``: the button sits on an
    ephemeral message (a list answer: nothing to thread under or edit); ``thread``: the thread
    of a clicked reply, when it is not the message itself; ``home``: the button sits on the
    Home tab (no message at all: ``channel`` is the clicker's DM with the bot, "" when the view
    did not say, and ``ts`` the view's id)."""

    user: str
    value: str
    channel: str
    ts: str
    blocks: list | None
    notify: Callable[[str], None]
    ephemeral: bool = False
    thread: str | None = None
    home: bool = False
