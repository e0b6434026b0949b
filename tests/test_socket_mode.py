"""Socket Mode against a local WebSocket server standing in for Slack's.

The Web API stand-in's apps.connections.open hands out the ws:// URL of ``SocketSlack``; the bot
connects to it as it would to Slack, receives envelopes, and acks each with its envelope_id.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid

import pytest
import requests

websockets_sync = pytest.importorskip("websockets.sync.server",
                                      reason="websockets (the dev extra) is not installed")

from bot.flow.blocks import CONFIRM  # noqa: E402
from bot.modelarts.refs import V1Job  # noqa: E402
from botdev.standin.local import free_port, wait_healthy  # noqa: E402
from botdev.standin.slack import APP_TOKEN, BOT_TOKEN  # noqa: E402
from tests.plugins.slack import TEAM, button_value  # noqa: E402


class SocketSlack:
    """Slack's Socket Mode endpoint: takes connections, sends envelopes, collects the acks."""

    def __init__(self) -> None:
        self.acks: list[dict] = []
        self.connections = 0
        self._ws = None
        self._cond = threading.Condition()
        self._server = websockets_sync.serve(self._serve, "127.0.0.1", 0)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/link"

    def close(self) -> None:
        self._server.shutdown()

    def _serve(self, ws) -> None:
        with self._cond:
            self._ws = ws
            self.connections += 1
            self._cond.notify_all()
        ws.send(json.dumps({"type": "hello", "num_connections": 1,
                            "debug_info": {"host": "standin"}}))
        for raw in ws:
            message = json.loads(raw)
            with self._cond:
                self.acks.append(message)
                self._cond.notify_all()

    def _wait(self, predicate, timeout: float = 10.0):
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError("Socket Mode stand-in: nothing arrived in time")
            return predicate()

    def wait_connected(self) -> None:
        self._wait(lambda: self._ws is not None)

    def send(self, kind: str, payload: dict, retry_attempt: int = 0,
             envelope_id: str | None = None) -> str:
        """Send one envelope; return its id."""
        envelope_id = envelope_id or str(uuid.uuid4())
        envelope = {"envelope_id": envelope_id, "type": kind, "payload": payload,
                    "accepts_response_payload": kind != "interactive",
                    "retry_attempt": retry_attempt,
                    "retry_reason": "timeout" if retry_attempt else ""}
        self._wait(lambda: self._ws is not None)
        self._ws.send(json.dumps(envelope))
        return envelope_id

    def ack(self, envelope_id: str, count: int = 1) -> dict:
        """Wait for ``count`` acks of ``envelope_id``; return the last."""
        def acked():
            got = [a for a in self.acks if a.get("envelope_id") == envelope_id]
            return got[count - 1] if len(got) >= count else None
        return self._wait(acked)


def command_payload(slack_api, text: str, user: str = "U0ONCALL") -> dict:
    return {"token": "unused", "team_id": TEAM, "team_domain": "standin",
            "channel_id": "C0INCIDENT", "channel_name": "incident", "user_id": user,
            "user_name": user.lower(), "command": "/modelarts", "text": text,
            "api_app_id": "A0BOT", "trigger_id": "1.trigger",
            "response_url": slack_api.response_url(f"cmd-{user}")}


def click_payload(slack_api, message, user: str = "U0ONCALL") -> dict:
    return {"type": "block_actions", "api_app_id": "A0BOT", "token": "unused",
            "team": {"id": TEAM, "domain": "standin"},
            "user": {"id": user, "username": user.lower(), "team_id": TEAM},
            "container": {"type": "message", "message_ts": message.ts,
                          "channel_id": message.channel, "is_ephemeral": False},
            "channel": {"id": message.channel, "name": "incident"},
            "message": {"type": "message", "ts": message.ts, "text": message.text,
                        "blocks": message.blocks},
            "trigger_id": "2.trigger", "response_url": slack_api.response_url(f"act-{user}"),
            "actions": [{"type": "button", "action_id": CONFIRM, "block_id": "modelarts_stop",
                         "value": button_value(message, CONFIRM), "action_ts": "1.0"}]}


@pytest.fixture
def socket_slack(slack_api):
    """The WebSocket stand-in, its URL handed out by the Web API stand-in."""
    server = SocketSlack()
    slack_api.socket_url = server.url
    yield server
    server.close()


@pytest.fixture
def socket_bot(bot_settings, socket_slack):
    """A bot connected over Socket Mode (no signing secret, no HTTP for Slack)."""
    from bot.app.socket_mode import create_handler
    from bot.app.wiring import create_bot

    bot = create_bot(bot_settings(SLACK_APP_TOKEN=APP_TOKEN, SLACK_SIGNING_SECRET=None),
                     session=requests.Session())
    handler = create_handler(bot)
    handler.connect()
    socket_slack.wait_connected()
    yield bot
    handler.close()
    bot.close()


class TestSocketMode:
    def test_slash_command_is_acked_over_the_socket_and_posts_the_request(
            self, socket_bot, socket_slack, slack_api):
        sent = socket_slack.send("slash_commands",
                                 command_payload(slack_api, "stop 182626 278813"))
        assert socket_slack.ack(sent)["envelope_id"] == sent
        message = slack_api.wait_for(lambda: next(iter(slack_api.messages.values()), None))
        assert message.channel == "C0INCIDENT"
        assert "<@U0ONCALL> asks to stop *team-a-resnet*" in message.text
        assert button_value(message, CONFIRM)

    def test_a_redelivered_confirm_stops_nothing_twice(
            self, socket_bot, socket_slack, slack_api, emulator):
        socket_slack.send("slash_commands", command_payload(slack_api, "stop 182626 278813"))
        message = slack_api.wait_for(lambda: next(iter(slack_api.messages.values()), None))
        click = click_payload(slack_api, message)
        first = socket_slack.send("interactive", click)
        socket_slack.ack(first)
        slack_api.wait_for(lambda: slack_api.thread_replies(message.channel, message.ts))
        assert emulator.stop_count(V1Job(182626, 278813)) == 1

        again = socket_slack.send("interactive", click, retry_attempt=1, envelope_id=first)
        assert again == first
        socket_slack.ack(first, count=2)
        slack_api.wait_for(lambda: [c for c in slack_api.calls_to("chat.postEphemeral")
                                    if "already handled" in c.params.get("text", "")])
        assert emulator.stop_count(V1Job(182626, 278813)) == 1
        assert len(slack_api.thread_replies(message.channel, message.ts)) == 1

    def test_a_malformed_command_is_answered_in_the_ack(self, socket_bot, socket_slack,
                                                        slack_api):
        sent = socket_slack.send("slash_commands", command_payload(slack_api, "stop 1"))
        ack = socket_slack.ack(sent)
        assert "looks like an old-version job id: add its version id" in ack["payload"]["text"]
        assert not slack_api.calls_to("chat.postMessage")


@pytest.mark.slow
def test_serve_with_an_app_token_uses_socket_mode_and_serves_healthz(
        emulator, slack_api, socket_slack, redis_url, key_prefix, roles_file, tmp_path):
    """``modelarts-bot serve`` with SLACK_APP_TOKEN: no signing secret, /healthz on PORT."""
    from botdev.emulator import defaults

    port = free_port()
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env = {**keep, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_APP_TOKEN": APP_TOKEN,
           "SLACK_API_URL": slack_api.api_url, "REDIS_URL": redis_url,
           "REDIS_KEY_PREFIX": key_prefix, "ROLES_FILE": str(roles_file),
           "MODELARTS_ENDPOINT": emulator.base_url,
           "MODELARTS_PROJECT_ID": defaults.EMULATOR_PROJECT_ID,
           "MODELARTS_AK": defaults.EMULATOR_AK, "MODELARTS_SK": defaults.EMULATOR_SK,
           "HOST": "127.0.0.1", "PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, proc)
        socket_slack.wait_connected()
        sent = socket_slack.send("slash_commands",
                                 command_payload(slack_api, "stop 182626 278813"))
        socket_slack.ack(sent)
        slack_api.wait_for(lambda: slack_api.messages)
        assert requests.post(base + "/slack/events", data="x", timeout=5).status_code == 404
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, out
    assert APP_TOKEN not in out and defaults.EMULATOR_SK not in out
