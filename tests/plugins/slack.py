"""Fixtures for the Slack side: the Web API stand-in, and the bot served over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import requests

from bot.app.httpd import serve_in_thread
from botdev.emulator import defaults
from botdev.standin.signing import slack_headers
from botdev.standin.slack import BOT_TOKEN, Message, SlackStandIn

SIGNING_SECRET = "sig-secret-7c1e5aa0d2"  # noqa: S105 - distinctive, so leaks can be grepped
TEAM = "T0STANDIN"
ROLES = """
roles:
  oncall:
    jobs: ["*"]
  team-a:
    jobs: ["team-a-*"]
  team-b:
    jobs: ["team-b-*"]
users:
  U0ONCALL: [oncall]
  U0ALICE: [team-a]
  U0BOB: [team-b]
usergroups:
  S0TEAMA: [team-a]
"""


class BotServer:
    """A WSGI app served on 127.0.0.1:0 in a thread, and a client that speaks Slack to it."""

    def __init__(self, wsgi, slack_api: SlackStandIn, secret: str = SIGNING_SECRET) -> None:
        self.httpd = serve_in_thread(wsgi)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.slack_api = slack_api
        self.secret = secret
        self.http = requests.Session()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.http.close()

    def post(self, body: str, *, timestamp: int | None = None, secret: str | None = None,
             headers: dict | None = None, path: str = "/slack/events") -> requests.Response:
        signed = slack_headers(secret or self.secret, body, timestamp)
        return self.http.post(self.url + path, data=body.encode(),
                              headers={**signed, **(headers or {})}, timeout=10)

    def command(self, text: str, user: str = "U0ONCALL", channel: str = "C0INCIDENT",
                **kwargs) -> requests.Response:
        body = urlencode({
            "token": "legacy-unused", "team_id": TEAM, "team_domain": "standin",
            "channel_id": channel, "channel_name": "incident", "user_id": user,
            "user_name": user.lower(), "command": "/modelarts", "text": text,
            "api_app_id": "A0BOT", "trigger_id": f"{time.time()}.trigger",
            "response_url": self.slack_api.response_url(f"cmd-{user}"),
        })
        return self.post(body, **kwargs)

    def click(self, action_id: str, value: str, user: str, channel: str, message_ts: str,
              blocks: list | None = None, **kwargs) -> requests.Response:
        payload = {
            "type": "block_actions", "api_app_id": "A0BOT", "token": "legacy-unused",
            "team": {"id": TEAM, "domain": "standin"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM},
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel,
                          "is_ephemeral": False},
            "channel": {"id": channel, "name": "incident"},
            "message": {"type": "message", "ts": message_ts, "text": "", "blocks": blocks or []},
            "trigger_id": f"{time.time()}.trigger",
            "response_url": self.slack_api.response_url(f"act-{user}"),
            "actions": [{"type": "button", "action_id": action_id, "block_id": "modelarts_stop",
                         "value": value, "action_ts": str(time.time())}],
        }
        return self.post(urlencode({"payload": json.dumps(payload)}), **kwargs)

    def click_button(self, message: Message, action_id: str, user: str, **kwargs):
        return self.click(action_id, button_value(message, action_id), user, message.channel,
                          message.ts, message.blocks, **kwargs)


def wait_until(check, timeout: float = 30.0):
    """``check()``'s first truthy value, polled every 50 ms; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while not (got := check()):
        if time.monotonic() > deadline:
            raise AssertionError("not reached before the deadline")
        time.sleep(0.05)
    return got


def button_value(message: Message, action_id: str) -> str:
    for block in message.blocks or []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == action_id:
                return element["value"]
    raise AssertionError(f"no {action_id} button on message {message.ts}")


def responses(slack_api: SlackStandIn, user: str) -> list[str]:
    """Texts sent to ``user`` ephemerally: response_url posts and chat.postEphemeral."""
    out = [c.params.get("text", "") for c in slack_api.calls
           if c.method.startswith("response/") and c.method.endswith(user)]
    out += [c.params.get("text", "") for c in slack_api.calls_to("chat.postEphemeral")
            if c.params.get("user") == user]
    return out


@pytest.fixture
def slack_api():
    standin = SlackStandIn()
    standin.start()
    yield standin
    standin.close()


@pytest.fixture
def roles_file(tmp_path: Path) -> Path:
    path = tmp_path / "roles.yml"
    path.write_text(ROLES)
    return path


@pytest.fixture
def bot_settings(redis_url, key_prefix, slack_api, emulator, roles_file):
    """Settings pointing at the real Redis, the stand-in and the emulator; override as needed."""
    from bot.core.settings import load_settings

    def make(**overrides):
        values = dict(
            SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
            SLACK_API_URL=slack_api.api_url, REDIS_URL=redis_url, REDIS_KEY_PREFIX=key_prefix,
            ROLES_FILE=str(roles_file), MODELARTS_ENDPOINT=emulator.base_url,
            MODELARTS_PROJECT_ID=defaults.EMULATOR_PROJECT_ID, MODELARTS_AK=defaults.EMULATOR_AK,
            MODELARTS_SK=defaults.EMULATOR_SK, MODELARTS_TIMEOUT_SECONDS=5,
        )
        values.update(overrides)
        return load_settings(**values)

    return make


@pytest.fixture
def make_bot(bot_settings, slack_api):
    """Build and serve a bot replica; each call is another replica sharing Redis."""
    from bot.app.web import create_wsgi
    from bot.app.wiring import create_bot

    servers: list[BotServer] = []

    def make(wrap=None, **overrides) -> BotServer:
        """``wrap(bot)``: the WSGI app to serve (default: ``create_wsgi``)."""
        bot = create_bot(bot_settings(**overrides), session=requests.Session())
        server = BotServer((wrap or create_wsgi)(bot), slack_api)
        server.bot = bot
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def running(make_bot):
    """A served replica with its background threads (the watch loop polls every 0.2 s), closed
    afterwards."""
    bots = []

    def make(**overrides) -> BotServer:
        bot = make_bot(**{"STOP_VERIFY_INTERVAL_SECONDS": 0.2, **overrides})
        bot.bot.start_background()
        bots.append(bot)
        return bot

    yield make
    for bot in bots:
        bot.bot.close()


@pytest.fixture
def serve_env(emulator, slack_api, redis_url, key_prefix, roles_file) -> dict[str, str]:
    """The environment of a real ``python -m bot serve`` against the emulator and stand-in."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {
        **keep,
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_api.api_url, "REDIS_URL": redis_url,
        "REDIS_KEY_PREFIX": key_prefix, "ROLES_FILE": str(roles_file),
        "MODELARTS_ENDPOINT": emulator.base_url,
        "MODELARTS_PROJECT_ID": defaults.EMULATOR_PROJECT_ID,
        "MODELARTS_AK": defaults.EMULATOR_AK, "MODELARTS_SK": defaults.EMULATOR_SK,
    }


def start_serve(env: dict[str, str], cwd: Path, port: int) -> subprocess.Popen:
    """``python -m bot serve`` on 127.0.0.1:``port``, its output captured; stop it with SIGTERM."""
    return subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=cwd,
                            env={**env, "HOST": "127.0.0.1", "PORT": str(port)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
