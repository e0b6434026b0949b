"""The edge guard in Socket Mode: envelopes whose payload Slack would never send are refused
before Bolt builds a request from them (no traceback, no ack, nothing run), and the connection
keeps serving."""

from __future__ import annotations

import json
import logging
import time

import pytest

from tests.test_guard import stops
from tests.test_socket_mode import command_payload, socket_bot, socket_slack  # noqa: F401

pytest.importorskip("websockets.sync.server", reason="websockets (the dev extra) is not installed")


def deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def bad_envelopes(slack_api) -> list[tuple[str, object]]:
    """(A payload that is not an object never reaches the app: slack_sdk's SocketModeRequest
    refuses it and logs the error itself.)"""
    command = command_payload(slack_api, "stop 182626 278813")
    return [
        ("slash_commands", {k: v for k, v in command.items() if k != "user_id"}),
        ("slash_commands", {**command, "channel_id": ["C0INCIDENT"]}),
        ("interactive", {"type": "block_actions", "user": 5, "actions": [{"action_id": "x"}]}),
        ("interactive", {"type": "block_actions", "user": {"id": "U0ONCALL"},
                         "actions": [{"action_id": "x", "value": deep(500)}]}),
        ("events_api", {"type": "event_callback", "event": "app_mention"}),
        ("events_api", {"type": "event_callback",
                        "event": {"type": "app_home_opened", "user": ["U0ONCALL"]}}),
    ]


def wait_until(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (got := predicate()):
        if time.monotonic() > deadline:
            raise TimeoutError("nothing happened in time")
        time.sleep(0.02)
    return got


class TestSocketModeGuard:
    def test_bad_payloads_are_refused_without_error_and_the_socket_keeps_serving(
            self, socket_bot, socket_slack, slack_api, emulator, caplog):  # noqa: F811
        caplog.set_level(logging.WARNING)
        bad = [socket_slack.send(kind, payload) for kind, payload in bad_envelopes(slack_api)]
        good = socket_slack.send("slash_commands", command_payload(slack_api, "help"))
        assert "Usage" in socket_slack.ack(good)["payload"]["text"]

        def refused():
            return [r for r in caplog.records if "refused a Socket Mode envelope" in r.message]
        assert len(wait_until(lambda: len(refused()) >= len(bad) and refused())) == len(bad)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert not [a for a in socket_slack.acks if a.get("envelope_id") in bad]
        assert not slack_api.calls_to("chat.postMessage") and stops(emulator) == 0

    def test_an_event_of_another_type_is_acked_and_goes_no_further(
            self, socket_bot, socket_slack, slack_api, caplog):  # noqa: F811
        """Acked (the socket's 2xx: Slack would send it again), and nothing runs."""
        caplog.set_level(logging.INFO)
        sent = socket_slack.send("events_api", {
            "type": "event_callback", "team_id": "T0STANDIN",
            "event": {"type": "app_mention", "user": "U0ONCALL", "text": "stop it"}})
        assert socket_slack.ack(sent)["envelope_id"] == sent
        assert wait_until(lambda: [r for r in caplog.records
                                   if "ignored a Socket Mode envelope" in r.message])
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert not slack_api.views and not slack_api.calls_to("chat.postMessage")

    def test_the_reason_is_logged_and_no_payload_value_is(self, socket_bot, socket_slack,  # noqa: F811
                                                           slack_api, caplog):
        caplog.set_level(logging.WARNING)
        payload = {**command_payload(slack_api, "help"), "user_id": ["U0SECRETISH"]}
        socket_slack.send("slash_commands", payload)
        record = wait_until(lambda: [r for r in caplog.records if "refused" in r.message])[0]
        assert "user_id" in record.message and "U0SECRETISH" not in record.message
        assert json.dumps(payload) not in caplog.text
