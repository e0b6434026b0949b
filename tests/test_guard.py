"""The edge guard (bot/slack/guard.py, bot/app/web.py): bodies Slack never sends get a 4xx naming
what is wrong, over real HTTP to a served bot, and nothing runs. The property tests in
tests/test_properties.py generate such bodies at random; these are the named cases."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlencode

import pytest
from slack_bolt import BoltRequest

from bot.slack.guard import MAX_DEPTH, refusal, too_deep, unbuildable
from botdev.standin.signing import slack_headers
from botdev.standin.slack import SlackStandIn
from tests.plugins.slack import TEAM, responses
from tests.test_socket_mode import command_payload, socket_bot, socket_slack  # noqa: F401


def stops(emulator) -> int:
    """Stop calls that reached the emulator, for any job."""
    return sum(emulator.store.stop_counts().values())


def command_form(slack_api, text: str = "help", **changes) -> dict:
    form = {"token": "legacy-unused", "team_id": TEAM, "channel_id": "C0INCIDENT",
            "user_id": "U0ONCALL", "user_name": "oncall", "command": "/modelarts", "text": text,
            "api_app_id": "A0BOT", "trigger_id": "1.trigger",
            "response_url": slack_api.response_url("cmd-U0ONCALL")}
    form.update(changes)
    return {k: v for k, v in form.items() if v is not None}


def nested(levels: int) -> str:
    return "[" * levels + "]" * levels


def post_raw(bot, raw: bytes, content_type: str = "application/x-www-form-urlencoded",
             **headers):
    signed = {**slack_headers(bot.secret, raw), "Content-Type": content_type, **headers}
    return bot.http.post(bot.url + "/slack/events", data=raw, headers=signed, timeout=10)


class TestTooDeep:
    def test_counts_levels_of_lists_and_dicts(self):
        assert not too_deep([[1]], limit=2)
        assert too_deep([[[1]]], limit=2)
        assert too_deep({"a": [{"b": 1}]}, limit=2)
        assert not too_deep({"a": 1, "b": "x" * 10_000}, limit=1)

    def test_a_structure_far_deeper_than_the_recursion_limit_is_measured(self):
        deep: list = []
        for _ in range(100_000):
            deep = [deep]
        assert too_deep(deep)


SLACK = ("https://hooks.slack.com/", "https://slack.com/")   # Settings.response_url_prefixes
CMD = {"command": "/modelarts", "user_id": "U1", "channel_id": "C1",
       "response_url": "https://hooks.slack.com/commands/T1/1/x"}
CLICK = {"type": "block_actions", "actions": [{"action_id": "a"}], "user": {"id": "U1"}}
HOME = {"type": "event_callback", "team_id": "T1", "api_app_id": "A1",
        "event": {"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home",
                  "event_ts": "1.2"}}


class TestRefusal:
    @pytest.mark.parametrize(("body", "says"), [
        ([], "not a JSON object"),
        ({**CMD, "user_id": None}, "user_id"),
        ({k: v for k, v in CMD.items() if k != "channel_id"}, "channel_id"),
        ({k: v for k, v in CMD.items() if k != "response_url"}, "response_url"),
        ({**CMD, "user_id": 5}, "user_id"),
        ({**CMD, "user_id": "U" * 201}, "too long"),
        ({**CMD, "text": ["stop"]}, "text"),
        ({**CMD, "response_url": "\U0001f600" * 3}, "response_url"),
        ({**CMD, "response_url": "file:///etc/passwd"}, "response_url"),
        ({**CMD, "response_url": "http://[::1"}, "response_url"),
        ({**CMD, "response_url": "https://attacker.example/commands/T1/1/x"}, "Slack host"),
        ({**CMD, "response_url": "https://hooks.slack.com.attacker.example/x"}, "Slack host"),
        ({**CMD, "response_url": "https://hooks.slack.com@attacker.example/x"}, "Slack host"),
        ({**CMD, "response_url": "http://hooks.slack.com/commands/T1/1/x"}, "Slack host"),
        ({**CMD, "response_url": "https://slack.com.attacker.example/x"}, "Slack host"),
        ({**CLICK, "actions": [{"value": "x"}]}, "action_id"),
        ({**CLICK, "user": "U1"}, "user"),
        ({"type": "url_verification", "challenge": {"a": 1}}, "challenge"),
        ({**CMD, "type": "view_submission", "view": ["callback_id"]}, "types Slack sends"),
        ({**CMD, "command": "/other", "type": "block_suggestion", "action_id": []},
         "types Slack sends"),
        ({**CLICK, "message": {"blocks": json.loads(nested(MAX_DEPTH))}}, "nested deeper"),
        ({"type": "event_callback", "event": json.loads(nested(MAX_DEPTH))}, "nested deeper"),
        ({"type": "event_callback"}, "event object"),
        ({"type": "event_callback", "event": "app_home_opened"}, "event object"),
        ({"type": "event_callback", "event": {"user": "U1"}}, "event object"),
        ({**HOME, "event": {"type": "app_home_opened"}}, "user id"),
        ({**HOME, "event": {"type": "app_home_opened", "user": ["U1"]}}, "user id"),
        ({**HOME, "event": {"type": "app_home_opened", "user": "U" * 201}}, "user id"),
        ({**HOME, "event": {**HOME["event"], "channel": {"id": "D1"}}}, "channel"),
        ({**HOME, "event": {**HOME["event"], "tab": 1}}, "tab"),
    ])
    def test_a_body_slack_never_sends_is_a_400_that_names_what_is_wrong(self, body, says):
        got = refusal(body, response_urls=SLACK)
        assert got.status == 400 and says in got.reason

    @pytest.mark.parametrize("body", [
        {},
        {"type": "view_submission", "view": {"type": "modal", "callback_id": "v"}},
        {"type": "shortcut", "callback_id": "x", "user": {"id": "U1"}},
        {"type": "interactive_message", "callback_id": "x", "actions": [{"name": "n"}]},
        {"type": "block_suggestion", "action_id": []},
    ])
    def test_a_kind_this_app_does_not_serve_is_a_404_before_bolt_reads_it(self, body):
        assert refusal(body, response_urls=SLACK).status == 404

    @pytest.mark.parametrize("body", [
        {"type": "event_callback", "event": {"type": "app_mention", "user": "U1"}},
        {"type": "event_callback", "event": {"type": "message", "subtype": "bot_message"}},
        {**HOME, "event": {"type": "app_home_open", "user": "U1"}},
    ])
    def test_an_event_of_another_type_is_a_200_that_goes_no_further(self, body):
        """Slack retries an event answered otherwise (and at last turns the events off)."""
        got = refusal(body, response_urls=SLACK)
        assert got.status == 200 and got.ignored

    @pytest.mark.parametrize("body", [
        CMD, CLICK, {**CMD, "response_url": "https://slack.com/api/x"}, HOME,
        {**HOME, "event": {"type": "app_home_opened", "user": "U1"}},
        {**HOME, "event": {**HOME["event"], "view": {"type": "home", "blocks": []}}},
        {**CMD, "team_id": "T1", "enterprise_id": "E1", "text": "stop 1 2"},
        {**CLICK, "team": {"id": "T1"}, "channel": {"id": "C1"}, "message": {"blocks": [
            {"type": "rich_text", "elements": [{"type": "rich_text_section", "elements": [
                {"type": "text", "text": "x", "style": {"bold": True}}]}]}]}},
        {"ssl_check": "1", "token": "x"},
        {"type": "url_verification", "challenge": "abc", "token": "x"},
    ])
    def test_takes_what_slack_sends(self, body):
        assert refusal(body, response_urls=SLACK) is None

    @pytest.mark.parametrize("body", [
        {**CMD, "user": 5}, {**CMD, "authorizations": "abc"}, {**CMD, "enterprise": 5},
        {**CLICK, "channel": 7}, {**CLICK, "team": ["id"]},
    ])
    def test_bolt_cannot_build_a_request_from_context_fields_of_other_types(self, body):
        """Socket Mode asks this before Bolt builds the request; HTTP has web.refusal."""
        with pytest.raises((TypeError, AttributeError, KeyError, IndexError, ValueError)):
            BoltRequest(body=body, mode="socket_mode")
        assert unbuildable(body).status == 400

    def test_what_it_takes_bolt_builds_a_request_from(self):
        body = {**CLICK, "enterprise": "E1", "channel": "C1", "team": {"id": "T1"}}
        assert refusal(body, response_urls=SLACK) is None and unbuildable(body) is None
        context = BoltRequest(body=body, mode="socket_mode").context
        assert (context.user_id, context.channel_id, context.team_id) == ("U1", "C1", "T1")


class TestOverHttp:
    """The cases of issue 14, each once, against a served bot."""

    @pytest.mark.parametrize("missing", ["user_id", "channel_id"])
    def test_a_command_without_its_user_or_channel_is_a_400(self, make_bot, slack_api,
                                                             emulator, missing):
        bot = make_bot()
        resp = bot.post(urlencode(command_form(slack_api, "stop 182626 278813",
                                               **{missing: None})))
        assert resp.status_code == 400
        assert missing in resp.text
        time.sleep(0.3)   # work after an ack would show by now
        assert not slack_api.calls_to("chat.postMessage") and stops(emulator) == 0

    @pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 999, 1001, 50_000])
    def test_a_payload_nested_thousands_of_levels_deep_is_a_400(self, make_bot, levels):
        bot = make_bot()
        payload = '{"type": "block_actions", "actions": ' + nested(levels) + "}"
        resp = bot.post(urlencode({"payload": payload}))
        assert resp.status_code == 400
        assert "nested" in resp.text

    def test_an_events_api_body_nested_deep_is_a_400(self, make_bot):
        raw = ('{"type": "event_callback", "event": {"type": "x", "blocks": '
               + nested(5000) + "}}").encode()
        assert post_raw(make_bot(), raw, "application/json").status_code == 400

    def test_json_where_a_form_is_expected_is_read_as_json_and_checked(self, make_bot,
                                                                       slack_api):
        form = command_form(slack_api, "help", user_id=["U0ONCALL"])
        resp = post_raw(make_bot(), json.dumps(form).encode(), "application/json")
        assert resp.status_code == 400 and "user_id" in resp.text

    def test_a_body_that_is_not_utf8_is_a_400(self, make_bot, slack_api):
        raw = urlencode(command_form(slack_api, "help")).encode() + b"&x=\xff\xfe"
        resp = post_raw(make_bot(), raw)
        assert resp.status_code == 400 and "UTF-8" in resp.text

    @pytest.mark.parametrize("headers", [
        {"X-Slack-Request-Timestamp": "abc"},
        {"X-Slack-Request-Timestamp": b""},
        {"X-Slack-Request-Timestamp": "9" * 5000},
        {"X-Slack-Request-Timestamp": "\u0661\u0662".encode()},
        {"X-Slack-Signature": "v0=\u00e9".encode("latin-1")},
    ])
    def test_signature_headers_bolt_cannot_compare_are_a_401(self, make_bot, slack_api,
                                                             headers):
        raw = urlencode(command_form(slack_api, "help")).encode()
        assert post_raw(make_bot(), raw, **headers).status_code == 401

    @pytest.mark.parametrize("body", [
        {"command": "/modelarts", "text": "help"},
        {"payload": '{"type": "block_actions", "actions": 5}'},
        {"payload": '{"type": "view_submission"}'},
    ])
    def test_an_unsigned_body_is_a_401_whatever_it_holds(self, make_bot, body):
        """The signature is checked before the body: a forger learns nothing about the guard."""
        resp = make_bot().post(urlencode(body), secret="not-the-secret")  # noqa: S106
        assert resp.status_code == 401 and "refused" not in resp.text

    def test_an_unsigned_body_is_refused_before_it_is_parsed(self, make_bot, caplog):
        """A body Bolt could not even parse (deep, near the size limit) gets the 401, not the
        parser's 400: without the signature, nothing parses it."""
        deep = "payload=" + "%5B" * 200_000
        resp = make_bot().post(deep, secret="not-the-secret")  # noqa: S106
        assert resp.status_code == 401 and "refused" not in resp.text
        assert "refused a request body" not in caplog.text

    def test_a_command_whose_text_says_payload_reaches_the_listener(self, make_bot, slack_api):
        """Bolt reads any form holding the text "payload" as an interactive payload (``{}``):
        the guard gives the command back its form."""
        resp = make_bot().post(urlencode(command_form(slack_api, "help payload")))
        assert resp.status_code == 200 and "takes no arguments" in resp.text

    def test_such_a_form_is_still_checked(self, make_bot, slack_api):
        form = command_form(slack_api, "help payload", authorizations="abc")
        assert make_bot().post(urlencode(form)).status_code == 400
        form = command_form(slack_api, "help payload", user_id=None)
        resp = make_bot().post(urlencode(form))
        assert resp.status_code == 400 and "user_id" in resp.text

    def test_url_verification_and_ssl_check_still_answer(self, make_bot):
        bot = make_bot()
        raw = json.dumps({"type": "url_verification", "challenge": "c-123", "token": "x"})
        resp = post_raw(bot, raw.encode(), "application/json")
        assert resp.status_code == 200 and resp.json() == {"challenge": "c-123"}
        assert post_raw(bot, b"ssl_check=1&token=x").status_code == 200

    def test_app_home_opened_goes_through_and_other_events_are_a_200(self, make_bot,
                                                                     slack_api, emulator):
        bot = make_bot()
        other = {**HOME, "event": {"type": "member_joined_channel", "user": "U0ALICE"}}
        resp = post_raw(bot, json.dumps(other).encode(), "application/json")
        assert resp.status_code == 200 and resp.text.startswith("ignored")
        bad = {**HOME, "event": {"type": "app_home_opened", "user": 5}}
        assert post_raw(bot, json.dumps(bad).encode(), "application/json").status_code == 400
        home = {**HOME, "event": {**HOME["event"], "user": "U0ALICE", "channel": "D0ALICE"}}
        assert post_raw(bot, json.dumps(home).encode(), "application/json").status_code == 200
        slack_api.wait_for(lambda: slack_api.views.get("U0ALICE"))
        assert "U0ALICE" in slack_api.views and len(slack_api.views) == 1

    def test_the_valid_command_still_works(self, make_bot, slack_api):
        resp = make_bot().post(urlencode(command_form(slack_api, "help")))
        assert resp.status_code == 200 and "Usage" in resp.text


class TestResponseUrl:
    """A command is answered on its response_url after the ack, with what the bot knows (a
    job's status, a denial...): only on Slack's hosts (Settings.response_url_prefixes), over
    HTTP and Socket Mode alike. ``elsewhere`` is another stand-in: a host a forged or replayed
    body could name."""

    @pytest.fixture
    def elsewhere(self):
        other = SlackStandIn()
        other.start()
        yield other
        other.close()

    def test_a_command_answered_on_another_host_is_a_400_and_nothing_runs(
            self, make_bot, slack_api, emulator, elsewhere):
        bot = make_bot()
        form = command_form(slack_api, "status 182626 278813",
                            response_url=elsewhere.response_url("cmd-U0ONCALL"))
        resp = bot.post(urlencode(form))
        assert resp.status_code == 400 and "response_url is not on a Slack host" in resp.text
        assert elsewhere.response_url("") not in resp.text
        time.sleep(0.5)   # the look-up and its answer would have reached it by now
        assert not elsewhere.calls and not emulator.requests

    def test_slack_response_urls_adds_a_prefix_and_only_that(self, make_bot, slack_api,
                                                             emulator, elsewhere):
        bot = make_bot(SLACK_RESPONSE_URLS=elsewhere.base_url + "/response")
        outside = command_form(slack_api, "status 182626 278813",
                               response_url=elsewhere.base_url + "/hooks/cmd-U0ONCALL")
        assert bot.post(urlencode(outside)).status_code == 400
        inside = command_form(slack_api, "status 182626 278813",
                              response_url=elsewhere.response_url("cmd-U0ONCALL"))
        assert bot.post(urlencode(inside)).status_code == 200
        elsewhere.wait_for(lambda: [t for t in responses(elsewhere, "U0ONCALL")
                                    if "team-a-resnet" in t])

    def test_socket_mode_refuses_it_too(self, socket_bot, socket_slack, slack_api,  # noqa: F811
                                        emulator, elsewhere, caplog):
        caplog.set_level(logging.WARNING)
        bad = socket_slack.send("slash_commands", {
            **command_payload(slack_api, "status 182626 278813"),
            "response_url": elsewhere.response_url("cmd-U0ONCALL")})
        good = socket_slack.send("slash_commands", command_payload(slack_api, "help"))
        assert "Usage" in socket_slack.ack(good)["payload"]["text"]
        slack_api.wait_for(lambda: [r for r in caplog.records
                                    if "response_url is not on a Slack host" in r.getMessage()])
        time.sleep(0.5)
        assert not [a for a in socket_slack.acks if a.get("envelope_id") == bad]
        assert not elsewhere.calls and not emulator.requests
