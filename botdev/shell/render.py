"""Slack Web API calls as terminal text. Pure: no I/O; the numbering of messages and buttons
is the only state, so that ``2`` typed at the prompt can name a button shown earlier.

A button's number is kept by (channel, message ts, action_id, value): when an edit
(chat.update) shows a button again, say an alert's Stop under a new "Seen 2 times" line, it
keeps the number it had, so a number typed after the edit still presses the button the user
saw. A button the edit leaves out is gone (its number presses nothing); one it adds gets a new
number. Ephemeral messages are never edited here: each of their buttons gets a number of its
own.

    #1 in C0SHELL:                                      a message (chat.postMessage)
       @U0YOU asks to stop *team-a-resnet* ...
       [1] Confirm stop   [2] Cancel                     buttons, numbered across the session
       └ #2 in the thread of #1:                        a thread reply, indented under it
           :white_check_mark: Stop requested ...
    #1 (edited):                                         chat.update
    (only visible to you) You may not stop ...          chat.postEphemeral, response_url
       *team-a-resnet50* (...)   [3] Stop              a list entry's button (ephemeral)
    Home tab of @U0YOU:                                 views.publish (a re-publish replaces
       *You are @U0YOU to ModelArts Bot* ...            the tab's buttons, as Slack does)
    · usergroups.users.list usergroup=S0TEAMA            any other Web API call
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass
from typing import Any

INDENT = "   "
EPHEMERAL = ("", "")   # where an ephemeral message's buttons sit: no channel message, no ts
HOME = "(home)"        # a Home tab's buttons: this for the channel, the view's id for the ts
_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


@dataclass(frozen=True)
class Button:
    number: int
    channel: str
    ts: str
    action_id: str
    value: str
    block_id: str
    label: str

    @property
    def ephemeral(self) -> bool:
        """On an ephemeral message (a list): Slack sends its click without a ``message``."""
        return (self.channel, self.ts) == EPHEMERAL

    @property
    def home(self) -> bool:
        """On a Home tab: Slack sends its click with the view, no channel and no message."""
        return self.channel == HOME


def mrkdwn(text: str) -> str:
    """Slack's markup as plain text: ``<@U1>`` → ``@U1``, ``<url|label>`` → ``label (url)``."""

    def link(match: re.Match) -> str:
        target, label = match.group(1), match.group(2)
        if target[:1] in "@#!":
            name = label or target[1:]
            return ("@" if target[0] == "@" else "#" if target[0] == "#" else "@") + name
        return f"{label} ({target})" if label else target

    return html.unescape(_LINK.sub(link, text))


def _text(obj: Any) -> str:
    return mrkdwn(str(obj.get("text", ""))) if isinstance(obj, dict) else ""


def _indent(text: str, prefix: str) -> list[str]:
    return [(prefix + line).rstrip() for line in text.splitlines() or [""]]


class Transcript:
    """Turns each recorded call into lines; remembers message numbers and live buttons."""

    def __init__(self) -> None:
        self.messages: dict[tuple[str, str], int] = {}   # (channel, ts) -> #n
        self.buttons: dict[int, Button] = {}             # the buttons on screen
        # (channel, ts, action_id, value, nth such button in the message) -> its number
        self.numbers: dict[tuple[str, str, str, str, int], int] = {}
        self._seen: dict[tuple[str, str, str, str], int] = {}   # in the message being drawn
        self._next_message = 1
        self._next_button = 1

    # -- public ----------------------------------------------------------------------------
    def render(self, method: str, params: dict, answer: dict, viewer: str,
               status: int = 200) -> list[str]:
        """The lines for one Web API call (or response_url post) seen by ``viewer``."""
        if status != 200 or answer.get("ok") is False:
            error = answer.get("error") or f"HTTP {status}"
            return [f"! {method} failed: {error}"]
        if method == "chat.postMessage":
            return self._posted(params, answer)
        if method == "chat.update":
            return self._edited(params, answer)
        if method == "chat.postEphemeral":
            return self.ephemeral(params, str(params.get("user", "")), viewer)
        if method == "views.publish":
            return self.home_tab(params, answer)
        if method.startswith("response/"):
            user = method.removeprefix("response/").partition("-")[2]
            return self.ephemeral(params, user, viewer)
        shown = " ".join(f"{k}={v}" for k, v in sorted(params.items())
                         if k not in ("token", "blocks", "_raw"))
        return [f"· {method} {shown}".rstrip()]

    def ephemeral(self, params: dict, user: str, viewer: str) -> list[str]:
        """An ephemeral answer: the ack's body, response_url, or chat.postEphemeral."""
        if params.get("delete_original"):
            return ["(the message with the buttons was deleted)"]
        lines = self._body(params, EPHEMERAL).splitlines() or [""]
        if params.get("response_type") == "in_channel":
            return [f"(in the channel) {lines[0]}", *((INDENT + x).rstrip() for x in lines[1:])]
        who = "you" if not user or user == viewer else f"@{user}"
        return [f"(only visible to {who}) {lines[0]}",
                *((INDENT + x).rstrip() for x in lines[1:])]

    def home_tab(self, params: dict, answer: dict) -> list[str]:
        """A published Home view, as text; the buttons of the view it replaces are gone."""
        view = params.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                view = None
        view_id = str((answer.get("view") or {}).get("id", ""))
        for number in [k for k, b in self.buttons.items() if (b.channel, b.ts) == (HOME, view_id)]:
            del self.buttons[number]
        blocks = view.get("blocks") if isinstance(view, dict) else None
        body = self._body({"blocks": blocks}, (HOME, view_id))
        return [f"Home tab of @{params.get('user_id', '?')}:", *_indent(body, INDENT)]

    def button(self, number: int) -> Button | None:
        return self.buttons.get(number)

    # -- messages --------------------------------------------------------------------------
    def _posted(self, params: dict, answer: dict) -> list[str]:
        channel = str(answer.get("channel") or params.get("channel", ""))
        ts = str(answer.get("ts", ""))
        n = self._next_message
        self._next_message += 1
        self.messages[(channel, ts)] = n
        body = self._body(params, (channel, ts))
        parent = params.get("thread_ts")
        if parent:
            where = self.messages.get((channel, str(parent)))
            head = f"{INDENT}└ #{n} in the thread of " + (f"#{where}:" if where else f"{parent}:")
            return [head, *_indent(body, INDENT * 2 + "  ")]
        return [f"#{n} in {channel}:", *_indent(body, INDENT)]

    def _edited(self, params: dict, answer: dict) -> list[str]:
        channel = str(answer.get("channel") or params.get("channel", ""))
        ts = str(answer.get("ts") or params.get("ts", ""))
        for number in [k for k, b in self.buttons.items() if (b.channel, b.ts) == (channel, ts)]:
            del self.buttons[number]     # gone from Slack too; shown again, they keep their number
        n = self.messages.get((channel, ts))
        body = self._body(params, (channel, ts))
        return [f"#{n} (edited):" if n else f"message {ts} in {channel} (edited):",
                *_indent(body, INDENT)]

    def _body(self, params: dict, where: tuple[str, str] | None) -> str:
        self._seen = {}
        blocks = params.get("blocks")
        if isinstance(blocks, list) and blocks:
            return "\n".join(self._block(b, where) for b in blocks if isinstance(b, dict))
        return mrkdwn(str(params.get("text", "")))

    def _block(self, block: dict, where: tuple[str, str] | None) -> str:
        kind = block.get("type")
        if kind in ("section", "header"):
            fields = [_text(f) for f in block.get("fields") or []]
            text = "\n".join([_text(block.get("text")), *fields]).strip()
            accessory = block.get("accessory")
            if isinstance(accessory, dict) and accessory.get("type") == "button":
                text += "   " + self._element(accessory, block, where)
            return text
        if kind == "context":
            return "  ".join(_text(e) for e in block.get("elements") or [])
        if kind == "divider":
            return "-" * 40
        if kind == "actions":
            return "   ".join(self._element(e, block, where) for e in block.get("elements") or [])
        return f"({kind} block)"

    def _element(self, element: dict, block: dict, where: tuple[str, str] | None) -> str:
        label = _text(element.get("text")) or str(element.get("action_id", "?"))
        if element.get("type") != "button" or where is None:
            return f"[{label}]"
        action, value = str(element.get("action_id", "")), str(element.get("value", ""))
        n = self._number(where, action, value)
        self.buttons[n] = Button(n, where[0], where[1], action, value,
                                 str(block.get("block_id", "")), label)
        return f"[{n}] {label}"

    def _number(self, where: tuple[str, str], action: str, value: str) -> int:
        """The number this button had on its message before (an edit), else a new one."""
        same = (*where, action, value)
        nth = self._seen.get(same, 0)
        self._seen[same] = nth + 1
        key = (*same, nth)
        if where == EPHEMERAL or key not in self.numbers:   # an ephemeral one is never edited
            self.numbers[key] = self._next_button
            self._next_button += 1
        return self.numbers[key]
