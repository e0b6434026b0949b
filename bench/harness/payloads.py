"""The bodies Slack sends for ``/modelarts stop`` and for a button click, and an alert's body."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from bench.harness.load import Req
from bot.flow.blocks import CONFIRM

TEAM = "T0STANDIN"
EVENTS = "/slack/events"


def command(text: str, user: str, channel: str, response_url: str) -> Req:
    body = urlencode({
        "token": "legacy-unused", "team_id": TEAM, "team_domain": "standin",
        "channel_id": channel, "channel_name": "incident", "user_id": user,
        "user_name": user.lower(), "command": "/modelarts", "text": text,
        "api_app_id": "A0BOT", "is_enterprise_install": "false",
        "trigger_id": f"{time.time():.6f}.trigger", "response_url": response_url,
    })
    return Req(EVENTS, body, "slack")


def click(request: dict, user: str, response_url: str, action_id: str = CONFIRM) -> Req:
    """A block_actions payload as Slack sends it, message blocks included."""
    payload = {
        "type": "block_actions", "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "api_app_id": "A0BOT", "token": "legacy-unused", "team": {"id": TEAM, "domain": "standin"},
        "container": {"type": "message", "message_ts": request["ts"],
                      "channel_id": request["channel"], "is_ephemeral": False},
        "trigger_id": f"{time.time():.6f}.trigger",
        "channel": {"id": request["channel"], "name": "incident"},
        "message": {"type": "message", "ts": request["ts"], "blocks": request["blocks"],
                    "text": "stop request", "user": "UBOT0000"},
        "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": "modelarts_stop", "type": "button",
                     "value": request["value"], "action_ts": f"{time.time():.6f}"}],
    }
    return Req(EVENTS, urlencode({"payload": json.dumps(payload)}), "slack")


def alert(n: int, channel: str) -> Req:
    """The shape ``bench.chaos.storm`` sends, with a distinct identity per alert."""
    body = {"channel": channel, "job_id": str(300000 + n), "version_id": "278813",
            "job_name": f"bench-alert-{n}", "status": "RUNNING",
            "summary": f"storm {n} loss is NaN", "severity": "critical"}
    return Req("/alerts", json.dumps(body), "bearer")
