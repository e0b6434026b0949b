"""The Home tab (bot/flow/home.py, bot/flow/home_view.py): its builders on their own, and end to
end over HTTP and Socket Mode (real Redis, the emulator, the Slack stand-in's views.publish):
a team member's tab, an unmapped user's, and a Stop pressed on it leading to one terminate."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import pytest
import requests

from bot.flow import history
from bot.flow import home_view as hv
from bot.flow.audit import Entry
from bot.flow.blocks import CONFIRM, STOP_REQUEST
from bot.modelarts.refs import parse_ref
from botdev.standin.slack import BOT_TOKEN, View
from tests.plugins.slack import ROLES, TEAM, button_value
from tests.test_finder import LLAMA, RESNET50, TEAM_A, job, searches, terminates
from tests.test_socket_mode import socket_bot, socket_slack  # noqa: F401
from tests.test_stop_flow import request_message, wait_reply

PROTECTED = ROLES + """
protected:
  - jobs: ["*-llama-*"]
"""
DM = "D0ALICEDM"


def home_event(user: str, channel: str | None = DM, tab: str = "home") -> dict:
    event = {"type": "app_home_opened", "user": user, "tab": tab,
             "event_ts": f"{time.time():.6f}"}
    if channel:
        event["channel"] = channel
    return {"token": "legacy-unused", "team_id": TEAM, "api_app_id": "A0BOT",
            "type": "event_callback", "event_id": f"Ev{time.time_ns()}",
            "event_time": int(time.time()), "event": event,
            "authorizations": [{"team_id": TEAM, "user_id": "UBOT0000", "is_bot": True}]}


def send_event(bot, body: dict) -> requests.Response:
    resp = bot.post(json.dumps(body), headers={"Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text
    return resp


def open_home(bot, user: str, channel: str | None = DM, tab: str = "home"):
    return send_event(bot, home_event(user, channel, tab))


def published(slack_api, user: str, count: int = 1, needle: str = "") -> View:
    """The user's Home view once it was published ``count`` times (and holds ``needle``)."""
    def got():
        view = slack_api.views.get(user)
        return view if view and view.publishes >= count and needle in dump(view.blocks) else None
    return slack_api.wait_for(got)


def dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def stop_entries(blocks: list[dict]) -> list[dict]:
    return [b for b in blocks if (b.get("accessory") or {}).get("action_id", "").startswith(
        STOP_REQUEST)]


def entry_of(view: View, name: str) -> dict:
    return next(b for b in stop_entries(view.blocks) if f"*{name}*" in b["text"]["text"])


def press(bot, view: View, entry: dict, user: str) -> requests.Response:
    """A Stop pressed on the Home tab, as Slack sends it: the container is the view, the view
    comes back with our private_metadata, and there is no channel, message or response_url."""
    button = entry["accessory"]
    payload = {
        "type": "block_actions", "api_app_id": "A0BOT", "token": "legacy-unused",
        "team": {"id": TEAM, "domain": "standin"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "container": {"type": "view", "view_id": view.id},
        "trigger_id": f"{time.time()}.trigger", "is_enterprise_install": False,
        "view": {"id": view.id, "team_id": TEAM, "type": "home", "blocks": view.blocks,
                 "private_metadata": view.private_metadata, "callback_id": view.callback_id,
                 "state": {"values": {}}, "hash": "1.h", "app_id": "A0BOT"},
        "actions": [{"type": "button", "action_id": button["action_id"],
                     "block_id": entry["block_id"], "value": button["value"],
                     "action_ts": str(time.time())}],
    }
    resp = bot.post(urlencode({"payload": json.dumps(payload)}))
    assert resp.status_code == 200, resp.text
    return resp


@pytest.fixture
def protected_roles(roles_file):
    roles_file.write_text(PROTECTED)
    return roles_file


# -- the builders ----------------------------------------------------------------------------
def entry(event: str, outcome: str = "", **fields) -> Entry:
    return Entry("1735689600000-0", {"event": event, "user": "U0ALICE",
                                     **({"outcome": outcome} if outcome else {}), **fields})


class TestPlainWords:
    @pytest.mark.parametrize(("event", "outcome", "want"), [
        ("stopped", "stop_requested", "stop requested: ModelArts accepted it"),
        ("denied", "no_role", "denied: no role of theirs allows this job"),
        ("confirmed", "awaiting_approval", "confirmed: waiting for a second person to approve"),
        ("verified", "ended_on_its_own", "followed up: the job ended on its own"),
        ("failed", "some_new_code", "failed: some new code"),
    ])
    def test_codes_become_words_as_history_says_them(self, event, outcome, want):
        assert hv.plain(entry(event, outcome)) == want == history.plain(event, outcome)

    def test_no_code_with_an_underscore_reaches_a_decision_line(self):
        for event, outcome in history.WORDS:
            line = hv.decision_line("U0ALICE", entry(event, outcome))
            assert "_" not in line.split("*")[1], line

    def test_a_line_names_the_job_and_who_else_acted(self):
        line = hv.decision_line("U0ALICE", entry(
            "approved", user="U0LEAD", requester="U0ALICE", job_name="team-a-x", api="v2",
            training_job_id="3faf5c03-aaa1-4cbe-879d-24b05d997347"))
        assert line == ("• `2025-01-01 00:00` *approved* · team-a-x "
                        "(v2:3faf5c03-aaa1-4cbe-879d-24b05d997347), by <@U0LEAD>")


class TestViewLimits:
    def test_sixty_jobs_and_every_source_failing_stay_well_under_100_blocks(self):
        seen = hv.Seen("U0ONCALL", [("oncall", None)], {"oncall": ("*",)},
                       jobs=[job(f"team-c-{n}", n) for n in range(60)], hidden=5,
                       problems=[f"source {n} not available" for n in range(12)], partial=True,
                       decisions=[entry("stopped", "stop_requested")] * 30)
        view = hv.home(seen, DM)
        assert len(view["blocks"]) <= 60 < hv.MAX_BLOCKS
        assert len(stop_entries(view["blocks"])) == 20
        assert dump(view).count("stop requested") == hv.LAST_DECISIONS
        assert all(len(b["text"]["text"]) <= 3000 for b in view["blocks"] if "text" in b)

    def test_the_stop_buttons_are_the_lists(self):
        from bot.flow import lists

        jobs = [job("team-a-x", 1), job("team-a-y", 2)]
        seen = hv.Seen("U0ALICE", [("team-a", None)], {"team-a": ("team-a-*",)}, jobs=jobs,
                       locked=frozenset({jobs[1].ref.key}))
        _, listed = lists.job_list(jobs, 0, heading="x", locked=seen.locked)
        assert stop_entries(hv.home(seen, DM)["blocks"]) == stop_entries(listed)
        assert ":lock:" in dump(stop_entries(listed)[1])

    def test_the_dm_rides_in_the_metadata_and_nothing_else_is_read_back(self):
        assert hv.dm_of(hv.home(hv.Seen("U1", [], {}), DM)["private_metadata"]) == DM
        for junk in ["", "x", "[]", '{"dm": "C0PUBLIC"}', '{"dm": 5}', '{"dm": "D1"}',
                     json.dumps({"dm": "D" + "A" * 300}), None, 7]:
            assert hv.dm_of(junk) is None

    def test_an_unmapped_user_sees_why_and_nothing_else(self):
        view = hv.unmapped(DM)
        assert len(view["blocks"]) == 2 and "You are in no role: ask the platform team." in dump(
            view)


# -- end to end ------------------------------------------------------------------------------
class TestHomeTab:
    def test_a_team_member_sees_their_roles_and_only_their_jobs_with_stop_buttons(
            self, make_bot, slack_api, protected_roles):
        bot = make_bot()
        open_home(bot, "U0ALICE")
        view = published(slack_api, "U0ALICE")
        text = dump(view.blocks)
        assert "You are <@U0ALICE> to ModelArts Bot" in text and "`team-a` (directly)" in text
        entries = stop_entries(view.blocks)
        names = {e["text"]["text"].split("*")[1] for e in entries}
        assert names == TEAM_A
        assert "team-b" not in text
        assert "3 running jobs are not listed" in text
        for n, e in enumerate(entries):
            assert e["accessory"]["action_id"] == f"{STOP_REQUEST}:{n}"
            parse_ref(e["accessory"]["value"])
        assert entry_of(view, "team-a-llama-sft")["text"]["text"].startswith(":lock: ")
        assert hv.dm_of(view.private_metadata) == DM
        assert "Your open requests:* none" in text
        assert len(view.blocks) < 40

    def test_a_role_held_through_a_user_group_says_which(self, make_bot, slack_api):
        slack_api.usergroups["S0TEAMA"] = ["U0CAROL"]
        open_home(make_bot(), "U0CAROL")
        view = published(slack_api, "U0CAROL")
        assert "`team-a` (through <!subteam^S0TEAMA>)" in dump(view.blocks)
        assert {e["text"]["text"].split("*")[1] for e in stop_entries(view.blocks)} == TEAM_A

    def test_an_unmapped_user_sees_why_and_no_job(self, make_bot, slack_api, emulator):
        open_home(make_bot(), "U0STRANGER")
        view = published(slack_api, "U0STRANGER")
        text = dump(view.blocks)
        assert "You are in no role: ask the platform team." in text
        assert "team-" not in text and not stop_entries(view.blocks)
        assert searches(emulator) == []

    def test_the_messages_tab_gets_nothing(self, make_bot, slack_api):
        bot = make_bot()
        open_home(bot, "U0ALICE", tab="messages")
        open_home(bot, "U0BOB")
        published(slack_api, "U0BOB")
        assert "U0ALICE" not in slack_api.views

    def test_a_second_opening_shares_the_first_scan(self, make_bot, slack_api, emulator):
        """Within LIST_SHARE_SECONDS the second tab costs no ModelArts call."""
        bot = make_bot(LIST_SHARE_SECONDS=60)
        open_home(bot, "U0ALICE")
        published(slack_api, "U0ALICE")
        before = len(emulator.requests)
        open_home(bot, "U0BOB")
        view = published(slack_api, "U0BOB")
        assert {e["text"]["text"].split("*")[1] for e in stop_entries(view.blocks)} == {
            "team-b-yolov8", "team-b-llm-eval", "team-b-yolo"}
        assert len(emulator.requests) == before

    def test_an_event_of_another_type_is_a_200_and_publishes_nothing(self, make_bot, slack_api,
                                                                      emulator):
        body = home_event("U0ALICE")
        body["event"] = {"type": "app_mention", "user": "U0ALICE", "channel": "C1",
                         "text": "<@UBOT0000> stop everything"}
        resp = send_event(make_bot(), body)
        assert resp.text.startswith("ignored")
        time.sleep(0.5)   # a publish would have come by now
        assert not slack_api.views and not emulator.requests


class TestHomeStop:
    def test_a_stop_on_the_home_tab_asks_in_the_dm_and_stops_once_after_the_confirm(
            self, make_bot, slack_api, emulator):
        bot = make_bot()
        open_home(bot, "U0ALICE")
        view = published(slack_api, "U0ALICE")
        press(bot, view, entry_of(view, "team-a-resnet50"), "U0ALICE")
        msg = request_message(slack_api)
        assert msg.channel == DM and RESNET50.training_job_id in msg.text
        assert not terminates(emulator)
        # The tab shows the open request (refreshed after the Stop).
        published(slack_api, "U0ALICE", 2, "waiting for your confirmation")
        value, blocks = button_value(msg, CONFIRM), msg.blocks
        for _ in range(2):
            bot.click(CONFIRM, value, "U0ALICE", msg.channel, msg.ts, blocks)
        slack_api.wait_for(lambda: slack_api.thread_replies(DM, msg.ts))
        wait_reply(slack_api, "U0ALICE", "already handled")
        assert emulator.stop_count(RESNET50) == 1 and len(terminates(emulator)) == 1
        # Refreshed after the outcome: the decision in plain words, the job no longer offered.
        after = published(slack_api, "U0ALICE", 3, "stop requested")
        assert "team-a-resnet50" not in dump(stop_entries(after.blocks))
        assert "stop_requested" not in dump(after.blocks)
        assert "stop sent" in dump(after.blocks)

    def test_a_stop_on_the_home_tab_is_checked_like_any_other(self, make_bot, slack_api,
                                                               emulator):
        """A value changed to a job the clicker may not stop is denied, in the DM."""
        bot = make_bot()
        open_home(bot, "U0ALICE")
        view = published(slack_api, "U0ALICE")
        forged = json.loads(json.dumps(entry_of(view, "team-a-resnet50")))
        forged["accessory"]["value"] = "v2:9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d"   # team-b
        press(bot, view, forged, "U0ALICE")
        denied = slack_api.wait_for(lambda: [c for c in slack_api.calls_to("chat.postMessage")
                                             if c.params.get("channel") == DM])
        assert denied[0].params["text"].startswith("You may not stop *team-b-yolov8*")
        time.sleep(0.3)
        assert not terminates(emulator) and request_count(slack_api) == 0

    def test_a_home_view_that_names_no_dm_stops_nothing_and_says_why(self, make_bot, slack_api,
                                                                      emulator):
        bot = make_bot()
        open_home(bot, "U0ALICE", channel=None)
        view = published(slack_api, "U0ALICE")
        assert view.private_metadata == ""
        press(bot, view, entry_of(view, "team-a-llama-sft"), "U0ALICE")
        told = slack_api.wait_for(lambda: [c for c in slack_api.calls_to("chat.postMessage")
                                           if c.params.get("channel") == "U0ALICE"])
        assert "Nothing was stopped" in told[0].params["text"]
        assert emulator.stop_count(LLAMA) == 0 and request_count(slack_api) == 0


def request_count(slack_api) -> int:
    return sum(CONFIRM in dump(m.blocks or []) for m in slack_api.messages.values())


class TestStandIn:
    def test_views_publish_refuses_more_than_100_blocks(self, slack_api):
        def publish(n: int) -> dict:
            view = {"type": "home", "blocks": [{"type": "divider"}] * n}
            return requests.post(slack_api.api_url + "views.publish", timeout=5,
                                 json={"user_id": "U1", "view": view},
                                 headers={"Authorization": f"Bearer {BOT_TOKEN}"}).json()
        assert publish(101)["error"] == "invalid_blocks"
        assert "U1" not in slack_api.views
        assert publish(100)["ok"] and len(slack_api.views["U1"].blocks) == 100


# -- Socket Mode -----------------------------------------------------------------------------
class TestSocketMode:
    def test_app_home_opened_over_the_socket_publishes_and_other_events_are_acked(
            self, socket_bot, socket_slack, slack_api):  # noqa: F811
        other = home_event("U0BOB")
        other["event"] = {"type": "reaction_added", "user": "U0BOB", "reaction": "x"}
        ignored = socket_slack.send("events_api", other)
        sent = socket_slack.send("events_api", home_event("U0ALICE"))
        socket_slack.ack(sent)
        socket_slack.ack(ignored)
        view = published(slack_api, "U0ALICE")
        assert {e["text"]["text"].split("*")[1] for e in stop_entries(view.blocks)} == TEAM_A
        assert "U0BOB" not in slack_api.views



def test_the_manifest_turns_the_home_tab_on_and_subscribes_to_the_one_event_the_edge_takes():
    from pathlib import Path

    import yaml

    from bot.slack.guard import HOME_EVENT

    manifest = yaml.safe_load((Path(__file__).parent.parent / "manifest.yml").read_text())
    home = manifest["features"]["app_home"]
    assert home["home_tab_enabled"] is True and home["messages_tab_enabled"] is True
    events = manifest["settings"]["event_subscriptions"]
    assert events["bot_events"] == [HOME_EVENT]
    assert events["request_url"] == manifest["settings"]["interactivity"]["request_url"]
