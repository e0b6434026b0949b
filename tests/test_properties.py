"""Property-based tests (hypothesis): the command parser on any text; and, sent signed over real
HTTP to a served replica, block_actions payloads with fields missing, of the wrong type, huge,
unicode or forged, command forms with keys missing or of the wrong type (as a form or as JSON),
every kind of Slack body nested thousands of levels deep at any field, bytes that are not UTF-8.
Never a 5xx, never an exception, never a stop outside the rules, and the replica keeps serving."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.alerts.blocks import STOP_REQUEST
from bot.flow.blocks import CANCEL, CONFIRM
from bot.flow.commands import Command, Invalid, parse
from bot.modelarts.refs import MAX_ID, V1Job, V2Job
from bot.slack.guard import MAX_DEPTH
from botdev.standin.signing import slack_headers
from tests.plugins.slack import TEAM
from tests.test_guard import stops
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
        elif got.action == "list":
            assert got.ref is None and got.name is None
        elif got.action != "help":
            assert got.action in ("stop", "status")
            assert isinstance(got.ref, V1Job | V2Job) != (got.name is not None)  # id or name

    @given(words, ids, ids, st.sampled_from([" ", "  ", "\t", "\u3000"]))
    def test_command_shaped_text(self, action, job, version, gap):
        got = parse(f"{action}{gap}{job}{gap}{version}")
        if isinstance(got, Command) and got.action in ("stop", "status") and got.name is None:
            ref = got.ref
            assert isinstance(ref, V1Job) and 0 < ref.job_id <= MAX_ID
            assert 0 < ref.version_id <= MAX_ID and int(job) == ref.job_id

    @given(st.integers(1, MAX_ID), st.integers(1, MAX_ID))
    def test_valid_ids_round_trip(self, job, version):
        assert parse(f"stop {job} {version}") == Command("stop", V1Job(job, version))

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

        @FIXTURE_OK
        @given(block_actions(cid, msg.channel, msg.ts))
        def click(body):
            if valid_confirm(body, cid, msg.channel) or valid_cancel(body, cid):
                return  # the one legitimate use of the button is checked below, once
            resp = bot.post(urlencode({"payload": json.dumps(body)}))
            assert resp.status_code < 500, resp.text
            assert stops(emulator) == 0

        click()
        time.sleep(0.5)   # work after the ack: a stop would show now
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0
        # The harness can see a stop when one happens. (The buttons may be gone: a click with a
        # wrong id but this message's ts marks the message expired; the confirmation stays.)
        bot.click(CONFIRM, cid, "U0ONCALL", msg.channel, msg.ts)
        # (Not "a thread reply appeared": a generated alert Stop click with this ts may have
        # posted a new request in the thread.)
        slack_api.wait_for(lambda: emulator.stop_count(V1Job(JOB, VERSION)) == 1)
        assert stops(emulator) == 1

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
    from botdev.standin.signing import slack_headers

    def post(raw: bytes):
        return bot.http.post(bot.url + "/slack/events", data=raw,
                             headers=slack_headers(bot.secret, raw), timeout=10)
    return post


def test_a_click_whose_message_or_container_is_not_an_object_is_read_without_error():
    """Found by the hypothesis test above: ``"message": true`` was an AttributeError (a 500)."""
    from bot.slack.listeners.actions import click

    body = {"user": {"id": "U0ALICE"}, "channel": {"id": "C1"}, "actions": [{"value": "v"}],
            "container": {"message_ts": "1.2"}, "message": True}
    got = click(body, None)
    assert (got.user, got.value, got.channel, got.ts, got.blocks) == ("U0ALICE", "v", "C1", "1.2",
                                                                       None)
    assert click({**body, "container": [1], "message": {"ts": "3.4"}}, None).ts == "3.4"
    assert click({**body, "container": "x", "message": 5}, None) is None


# Each kind of body Slack sends, as it sends it: "payload" is a form field holding JSON
# (interactivity), "json" a JSON body (Events API), "form" a form (slash commands).
USER = {"id": "U0ONCALL", "username": "oncall", "team_id": TEAM}
SLACK_BODIES = [
    ("payload", {"type": "block_actions", "user": USER, "team": {"id": TEAM},
                 "channel": {"id": "C0INCIDENT"},
                 "container": {"message_ts": "1.2", "channel_id": "C0INCIDENT"},
                 "message": {"ts": "1.2", "blocks": [{"type": "rich_text", "elements": [
                     {"type": "rich_text_section", "elements": [{"type": "text", "text": "x"}]}
                 ]}]},
                 "actions": [{"action_id": CONFIRM, "value": "no-such-id", "type": "button"}]}),
    ("payload", {"type": "view_submission", "user": USER, "team": {"id": TEAM},
                 "view": {"id": "V1", "type": "modal", "callback_id": "cb", "state": {"values": {
                     "b": {"a": {"type": "plain_text_input", "value": "x"}}}}}}),
    ("payload", {"type": "shortcut", "callback_id": "cb", "user": USER, "team": {"id": TEAM}}),
    ("payload", {"type": "message_action", "callback_id": "cb", "user": USER,
                 "channel": {"id": "C1"}, "message": {"ts": "1.2", "text": "x"}}),
    ("payload", {"type": "block_suggestion", "action_id": "a", "value": "x", "user": USER}),
    ("json", {"type": "event_callback", "team_id": TEAM,
              "event": {"type": "app_mention", "user": "U0ONCALL", "channel": "C1",
                        "blocks": [{"type": "section"}]},
              "authorizations": [{"team_id": TEAM, "user_id": "UBOT"}]}),
    ("json", {"type": "url_verification", "challenge": "c", "token": "x"}),
    ("json", {"command": "/modelarts", "text": "help", "user_id": "U0ONCALL",
              "channel_id": "C0INCIDENT", "team_id": TEAM, "response_url": "http://127.0.0.1:9"}),
]
SENTINEL = "\u0000deep\u0000"


def paths(value, path=()):
    """Every place in ``value``: the root, each dict value, each list item."""
    yield path
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, child in items:
        yield from paths(child, (*path, key))


def replaced(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def deep_json(levels: int, as_dict: bool) -> str:
    return ('{"a":' * levels + "1" + "}" * levels) if as_dict else "[" * levels + "]" * levels


@st.composite
def deep_bodies(draw):
    """(raw, content type, levels in all): a Slack body with one field, anywhere, replaced by a
    structure nested around the limit or thousands of levels deep."""
    how, body = draw(st.sampled_from(SLACK_BODIES))
    path = draw(st.sampled_from(list(paths(body))))
    levels = draw(st.sampled_from([1, MAX_DEPTH - 2, MAX_DEPTH, 500, 999, 1001, 30_000]))
    text = json.dumps(replaced(body, path, SENTINEL)).replace(
        json.dumps(SENTINEL), deep_json(levels, draw(st.booleans())))
    if how == "payload":
        return urlencode({"payload": text}).encode(), FORM, levels + len(path)
    return text.encode(), "application/json", levels + len(path)


FORM = "application/x-www-form-urlencoded"
COMMAND_KEYS = ["token", "team_id", "team_domain", "channel_id", "channel_name", "user_id",
                "user_name", "command", "text", "api_app_id", "trigger_id", "response_url"]


@st.composite
def command_bodies(draw, response_url: str):
    """(raw, content type, the form): a slash command with keys missing and values replaced,
    as Slack's form or as JSON (any JSON value then)."""
    form = {"token": "legacy-unused", "team_id": TEAM, "team_domain": "standin",
            "channel_id": "C0INCIDENT", "channel_name": "incident", "user_id": "U0ONCALL",
            "user_name": "oncall", "command": "/modelarts", "api_app_id": "A0BOT",
            "text": draw(st.sampled_from(["help", f"stop {JOB} {VERSION}", "status 1 2", ""])),
            "trigger_id": "1.trigger", "response_url": response_url}
    # Few keys at a time: one bad field in an otherwise valid form is the telling case.
    for key in draw(st.sets(st.sampled_from(COMMAND_KEYS), max_size=2)):
        del form[key]
    as_json = draw(st.booleans())
    for key in draw(st.sets(st.sampled_from(COMMAND_KEYS), max_size=2)):
        form[key] = draw(st.one_of(junk, huge) if as_json else st.one_of(st.text(max_size=20),
                                                                         huge))
    if as_json:
        return json.dumps(form).encode(), draw(st.sampled_from(["application/json", FORM])), form
    return urlencode(form).encode(), FORM, form


def not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


@st.composite
def non_utf8_bodies(draw):
    """A command form, an interactive payload or an event, with bytes that are not UTF-8."""
    how, body = draw(st.sampled_from(SLACK_BODIES))
    raw = (urlencode({"payload": json.dumps(body)}) if how == "payload" else json.dumps(body))
    raw = raw.encode()
    at = draw(st.integers(0, len(raw)))
    bad = draw(st.binary(min_size=1, max_size=8).filter(not_utf8))
    return raw[:at] + bad + raw[at:]


def post_signed(bot, raw: bytes, content_type: str = FORM):
    headers = {**slack_headers(bot.secret, raw), "Content-Type": content_type}
    return bot.http.post(bot.url + "/slack/events", data=raw, headers=headers, timeout=10)


def still_serving(bot) -> None:
    resp = bot.command("help")
    assert resp.status_code == 200 and "Usage" in resp.text


class TestEveryShape:
    """Issue 14, part 2: whatever a signed body holds, a 2xx or 4xx, and nothing stopped."""

    def test_deep_nesting_in_any_field_of_any_kind_is_refused(self, make_bot, emulator):
        bot = make_bot()

        @FIXTURE_OK
        @given(deep_bodies())
        def send(sample):
            raw, content_type, depth = sample
            resp = post_signed(bot, raw, content_type)
            assert resp.status_code < 500, resp.text
            if depth > MAX_DEPTH:
                assert resp.status_code == 400, resp.text

        send()
        still_serving(bot)
        time.sleep(0.3)
        assert stops(emulator) == 0

    def test_command_forms_missing_keys_or_of_wrong_types(self, make_bot, slack_api, emulator,
                                                          caplog):
        bot = make_bot()

        @FIXTURE_OK
        @given(command_bodies(slack_api.response_url("cmd-U0ONCALL")))
        def send(sample):
            raw, content_type, form = sample
            resp = post_signed(bot, raw, content_type)
            assert resp.status_code < 500, resp.text
            needed = ("user_id", "channel_id", "response_url")
            if form.get("command") and b"payload" not in raw and not all(
                    isinstance(form.get(k), str) and form[k] for k in needed):
                assert resp.status_code == 400, resp.text

        send()
        still_serving(bot)
        time.sleep(0.3)
        assert stops(emulator) == 0
        # Nor an error after the ack (a response_url that is not a URL was one).
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]

    def test_bytes_that_are_not_utf8_are_refused(self, make_bot, emulator):
        bot = make_bot()

        @FIXTURE_OK
        @given(non_utf8_bodies(), st.sampled_from([FORM, "application/json"]))
        def send(raw, content_type):
            assert post_signed(bot, raw, content_type).status_code == 400

        send()
        still_serving(bot)
        assert stops(emulator) == 0


# -- no value from outside can change a message's markup --------------------------------------
def markup(text: str) -> tuple:
    """What in a mrkdwn text is markup: mentions and links, bold, strike, code, line breaks,
    underscores at a word boundary (italics), and control characters."""
    import re
    import unicodedata

    loose = len(re.findall(r"(?<![^\W_])_|_(?![^\W_])", text))
    controls = sum(unicodedata.category(c) in ("Cc", "Cf") and c != "\n" for c in text)
    return (*(text.count(c) for c in "<>*~`\n"), loose, controls)


def text_fields(text: str, blocks: list[dict]) -> list[str]:
    out = [text]
    for block in blocks:
        if block.get("type") == "section":
            out.append(block["text"]["text"])
        out += [e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn"]
    return out


outside = st.text(max_size=60) | st.sampled_from(
    ["<!here>", "<https://evil.example|x>", "a\nb", "*b*", "_i_", "`c`", "~s~", "\u202e",
     "\x85\u2028", "&lt;", "<@U0ALICE>"])


class TestNoInjection:
    @given(outside, outside, outside, outside)
    def test_no_alert_field_changes_the_markup_of_any_text(self, name, status, summary,
                                                          severity):
        from bot.alerts.blocks import Shown, alert_message
        from bot.alerts.parse import Alert

        def fields(n, st_, su, se):
            alert = Alert("C0ALERTS", V1Job(1, 2), n, st_, su, se or None)
            return [markup(t) for t in text_fields(*alert_message(alert, Shown(2, 0.0)))]

        assert fields(name, status, summary, severity) == fields("x", "x", "x", severity and "x")

    @given(outside, st.integers(0, 3))
    def test_no_job_name_changes_the_markup_of_a_list(self, name, hidden):
        from bot.flow import lists
        from bot.modelarts.models import TrainingJob

        def fields(n):
            jobs = [TrainingJob(id=f"{i:08x}-aaaa-4bbb-8ccc-{i:012x}", name=n, phase="Running",
                                duration_ms=60_000, create_time_ms=i) for i in range(2)]
            return [markup(t) for t in text_fields(*lists.list_message(jobs, hidden, None, []))]

        assert fields(name) == fields("x")
