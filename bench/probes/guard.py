"""What the edge guard (bot/app/web.py ``refusal``, bot/slack/guard.py) costs a request, in-process.

    python -m bench guard

An HTTP request pays ``web.refusal`` at the edge (Bolt's own parse of the body, which Bolt then
does again) and ``guard.refusal`` in ``GuardedApp.dispatch`` (the check Socket Mode gets too).
Prints the median of 7 runs of each, in microseconds per request, for Slack's usual bodies and
for hostile ones (refused).
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from urllib.parse import urlencode

from slack_bolt import BoltRequest

from bot.app.web import refusal
from bot.slack import guard

FORM = "application/x-www-form-urlencoded"


def bodies() -> dict[str, tuple[bytes, str]]:
    command = urlencode({
        "token": "t", "team_id": "T0", "team_domain": "d", "channel_id": "C0INCIDENT",
        "channel_name": "incident", "user_id": "U0ONCALL", "user_name": "oncall",
        "command": "/modelarts", "text": "stop 182626 278813", "api_app_id": "A0",
        "trigger_id": "1.2", "response_url": "https://hooks.slack.com/commands/T0/1/x"})
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 200}},
              {"type": "actions", "elements": [
                  {"type": "button", "action_id": a, "value": "c" * 32,
                   "text": {"type": "plain_text", "text": a}} for a in ("confirm", "cancel")]}]
    click = {"type": "block_actions", "user": {"id": "U0ONCALL", "team_id": "T0"},
             "team": {"id": "T0"}, "channel": {"id": "C0INCIDENT"},
             "container": {"message_ts": "1.2", "channel_id": "C0INCIDENT"},
             "message": {"ts": "1.2", "text": "x", "blocks": blocks},
             "response_url": "https://hooks.slack.com/actions/T0/1/x",
             "actions": [{"action_id": "modelarts_stop_confirm", "value": "c" * 32,
                          "type": "button", "block_id": "b", "action_ts": "1.3"}]}
    return {
        "slash command": (command.encode(), FORM),
        "block_actions click": (urlencode({"payload": json.dumps(click)}).encode(), FORM),
        "refused: payload 999 levels deep": (
            urlencode({"payload": '{"a":' + "[" * 999 + "]" * 999 + "}"}).encode(), FORM),
        "refused: payload 50,000 levels deep": (
            urlencode({"payload": "[" * 50_000 + "]" * 50_000}).encode(), FORM),
        "refused: command without user_id": (
            command.replace("user_id=U0ONCALL&", "").encode(), FORM),
    }


URLS = ("https://hooks.slack.com/",)


def median_us(work, number: int = 200) -> float:
    return statistics.median(timeit.repeat(work, number=number, repeat=7)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    argparse.ArgumentParser(prog="python -m bench guard", description=__doc__.split("\n")[0]
                            ).parse_args(argv)
    print(f"{'body':<36} {'bytes':>7} {'edge us':>9} {'dispatch us':>12}  answer")
    for name, (raw, content_type) in bodies().items():
        refused = refusal(raw, content_type)
        body = None if refused else BoltRequest(
            body=raw.decode(), headers={"content-type": [content_type]}).body
        edge = median_us(lambda: refusal(raw, content_type))  # noqa: B023 - used at once
        dispatch = (median_us(lambda: guard.refusal(body, response_urls=URLS))  # noqa: B023
                    if body is not None else 0.0)
        refused = refused or guard.refusal(body, response_urls=URLS)
        answer = f"{refused.status} {refused.reason}" if refused else "to Bolt's listeners"
        print(f"{name:<36} {len(raw):>7} {edge:>9.1f} {dispatch:>12.1f}  {answer}")
    return 0
