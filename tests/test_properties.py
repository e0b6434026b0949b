"""Property-based tests (hypothesis): the command parser on any text, and block_actions payloads
with fields missing, of the wrong type, huge, unicode or forged, sent signed over real HTTP to a
served replica. Never a 5xx, never an exception, never a stop outside the rules."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.alerts.blocks import STOP_REQUEST
from bot.flow.commands import Command, Invalid, parse
from bot.modelarts.models import MAX_ID
from bot.modelarts.refs import V1Job
from bot.slack.blocks import CANCEL, CONFIRM
from tests.test_stop_flow import JOB, VERSION, request_message

# One bot served per test function; the examples loop over it (so the fixtures are not reset
# between examples, which is what the health check warns about: intended here).
FIXTURE_OK = settings(max_examples=60, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture,
                                             HealthCheck.too_slow])

ids = st.one_of(st.integers(min_value=-5, max_value=MAX_ID + 5).map(str),
                st.text(alphabet="0123456789", min_size=1, max_size=25),
                st.text(max_size=12))
words = st.one_of(st.sampled_from(["stop", "STOP", "status", "help", "Stop"]), st.text(max_size=8))


class TestParser:
    @given(st.text(max_size=300))
    def test_any_text_is_a_command_or_says_why(self, text):
        got = parse(text)
        assert isinstance(got, Command | Invalid)
        if isinstance(got, Invalid):
            assert got.reason and "Usage" in got.message
        elif got.action != "help":
            assert got.action in ("stop", "status")
            assert 0 < got.job_id <= MAX_ID and 0 < got.version_id <= MAX_ID

    @given(words, ids, ids, st.sampled_from([" ", "  ", "\t", "\u3000"]))
    def test_command_shaped_text(self, action, job, version, gap):
        got = parse(f"{action}{gap}{job}{gap}{version}")
        if isinstance(got, Command) and got.action != "help":
            assert 0 < got.job_id <= MAX_ID and 0 < got.version_id <= MAX_ID
            assert str(got.job_id) == job.lstrip("0") or int(job) == got.job_id

    @given(st.integers(1, MAX_ID), st.integers(1, MAX_ID))
    def test_valid_ids_round_trip(self, job, version):
        assert parse(f"stop {job} {version}") == Command("stop", job, version)

    @given(st.integers(MAX_ID + 1, 10**19 - 1), st.integers(1, MAX_ID))
    def test_ids_beyond_a_long_are_refused(self, job, version):
        assert isinstance(parse(f"stop {job} {version}"), Invalid)

    def test_none_is_help(self):
        assert parse(None) == Command("help")


junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=False),
              st.text(max_size=30)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=6)
huge = st.sampled_from(["x" * 5000, "\U0001f600" * 2000, "0" * 300, "\u202e\u0000\ufeff"])


def field(valid):
    """The valid value, missing (None means: drop the field), junk, or a huge string."""
    return st.one_of(st.just(valid), st.none(), junk, huge)


@st.composite
def block_actions(draw, cid: str, channel: str, ts: str):
    """A block_actions body built around a real pending confirmation, fields mangled at will."""
    action = {"type": "button", "block_id": "modelarts_stop", "action_ts": "1.2",
              "action_id": draw(st.one_of(st.sampled_from([CONFIRM, CANCEL, STOP_REQUEST]),
                                          junk)),
              "value": draw(st.one_of(st.just(cid), st.sampled_from(
                  [cid[::-1], cid + "x", f"{JOB}:{VERSION}", "0:0", "9" * 40 + ":1"]), junk,
                  huge))}
    body = {"type": draw(st.one_of(st.just("block_actions"), junk)),
            "user": draw(st.one_of(st.fixed_dictionaries(
                {"id": st.sampled_from(["U0ALICE", "U0BOB", "U0STRANGER", "U0ONCALL"])}),
                junk)),
            "channel": draw(field({"id": channel})),
            "container": draw(field({"message_ts": ts, "channel_id": channel})),
            "message": draw(field({"ts": ts, "blocks": []})),
            "team": draw(field({"id": "T0STANDIN"})),
            "actions": draw(st.one_of(st.just([action]), st.lists(st.just(action), max_size=3),
                                      junk))}
    return {k: v for k, v in body.items() if v is not None}


def valid_confirm(body: dict, cid: str, channel: str) -> bool:
    """The only click that may stop: Confirm on the real id, by the requester, in its channel."""
    try:
        action = body["actions"][0]
        return (action["action_id"] == CONFIRM and action["value"] == cid
                and body["user"]["id"] == "U0ONCALL" and body["channel"]["id"] == channel)
    except (KeyError, IndexError, TypeError):
        return False


def valid_cancel(body: dict, cid: str) -> bool:
    try:
        return (body["actions"][0]["action_id"] == CANCEL and body["actions"][0]["value"] == cid
                and body["user"]["id"] == "U0ONCALL")
    except (KeyError, IndexError, TypeError):
        return False


class TestClicks:
    def test_mangled_block_actions_never_5xx_and_stop_only_by_the_rules(
            self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        cid = next(e["value"] for b in msg.blocks if b["type"] == "actions"
                   for e in b["elements"] if e["action_id"] == CONFIRM)
        state = {"allowed": 0}

        @FIXTURE_OK
        @given(block_actions(cid, msg.channel, msg.ts))
        def click(body):
            if valid_confirm(body, cid, msg.channel) or valid_cancel(body, cid):
                return  # the one legitimate use of the button is checked below, once
            resp = bot.post(urlencode({"payload": json.dumps(body)}))
            assert resp.status_code < 500, resp.text
            assert emulator.stop_count(V1Job(JOB, VERSION)) == state["allowed"]

        click()
        time.sleep(0.5)   # work after the ack: a stop would show now
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0
        # The harness can see a stop when one happens. (The buttons may be gone: a click with a
        # wrong id but this message's ts marks the message expired; the confirmation stays.)
        bot.click(CONFIRM, cid, "U0ONCALL", msg.channel, msg.ts)
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_any_form_body_never_5xx(self, make_bot, emulator):
        post = _signed_bytes(make_bot())

        @FIXTURE_OK
        @given(st.one_of(
            st.binary(max_size=300),
            junk.map(lambda v: urlencode({"payload": json.dumps(v)}).encode()),
            st.text(max_size=200).map(lambda t: urlencode({"payload": t}).encode()),
            st.dictionaries(st.sampled_from(["command", "text", "user_id", "channel_id",
                                             "team_id", "response_url", "type"]),
                            st.text(max_size=40)).map(lambda d: urlencode(d).encode())))
        def send(raw):
            assert post(raw).status_code < 500

        send()
        time.sleep(0.3)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

    def test_commands_with_any_text_never_5xx(self, make_bot, emulator):
        bot = make_bot()

        @FIXTURE_OK
        @given(st.text(max_size=300), st.one_of(st.just("U0ONCALL"), st.text(max_size=20)))
        def command(text, user):
            assert bot.command(text, user=user or "U0X").status_code < 500

        command()
        time.sleep(0.5)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0


def _signed_bytes(bot):
    from bot.standin.signing import slack_headers

    def post(raw: bytes):
        return bot.http.post(bot.url + "/slack/events", data=raw,
                             headers=slack_headers(bot.secret, raw), timeout=10)
    return post


def test_a_click_whose_message_or_container_is_not_an_object_is_read_without_error():
    """Found by the hypothesis test above: ``"message": true`` was an AttributeError (a 500)."""
    from bot.slack.listeners.actions import click

    body = {"user": {"id": "U0ALICE"}, "channel": {"id": "C1"}, "actions": [{"value": "v"}],
            "container": {"message_ts": "1.2"}, "message": True}
    assert click(body) == ("U0ALICE", "v", "C1", "1.2", None)
    assert click({**body, "container": [1], "message": {"ts": "3.4"}})[3] == "3.4"
    assert click({**body, "container": "x", "message": 5}) is None
