"""Finding jobs without their ids: the parser's list and name forms, the list's message builders,
and end to end over HTTP (real Redis, the emulator, the Slack stand-in): ``/modelarts list``,
stop and status by name, and the list's Stop buttons, tampered ones included."""

from __future__ import annotations

import json
import re
import time

import pytest

from bot.flow import lists
from bot.flow.blocks import CONFIRM, STOP_REQUEST
from bot.flow.commands import Command, Invalid, parse
from bot.flow.finder import Found, NameFilter
from bot.modelarts.models import Failure, TrainingJob
from bot.modelarts.refs import V1Job, V2Job, parse_ref
from tests.plugins.slack import TEAM, button_value
from tests.test_stop_flow import request_message, settle, wait_reply

RESNET50 = V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347")     # team-a-resnet50, Running
LLAMA = V2Job("6b3e1f2a-9c4d-4e8f-a1b2-c3d4e5f60718")        # team-a-llama-sft, Running
YOLOV8 = V2Job("9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d")       # team-b-yolov8, Running
LLM_EVAL = V2Job("0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d")     # team-b-llm-eval, Pending
RESNET_V1 = V1Job(182626, 278813)                             # team-a-resnet, RUNNING
RUNNING = 7     # running jobs in the default seed: 4 v2 (one Pending) and 3 v1
TEAM_A = {"team-a-resnet50", "team-a-llama-sft", "team-a-resnet", "team-a-bert-finetune"}


def job(name: str, n: int = 0, **fields) -> TrainingJob:
    return TrainingJob(id=f"{n:08x}-aaaa-4bbb-8ccc-{n:012x}", name=name, phase="Running",
                       duration_ms=3_600_000, create_time_ms=n, **fields)


# -- the parser ----------------------------------------------------------------------------
class TestParser:
    @pytest.mark.parametrize("text,want", [
        ("list", Command("list")),
        ("LIST team-a-*", Command("list", pattern="team-a-*")),
        ("list resnet", Command("list", pattern="resnet")),
        ("stop team-a-resnet50", Command("stop", name="team-a-resnet50")),
        ("status team_b-yolo", Command("status", name="team_b-yolo")),
        ("stop " + "x" * 64, Command("stop", name="x" * 64)),
        ("stop 3faf5c03-aaa1-4cbe-879d-24b05d997347", Command("stop", RESNET50)),
        ("stop 182626 278813", Command("stop", RESNET_V1)),
        ("status 3FAF5C03AAA14CBE879D24B05D997347",
         Command("status", V2Job("3FAF5C03AAA14CBE879D24B05D997347"))),
    ])
    def test_forms(self, text, want):
        assert parse(text) == want

    def test_a_name_of_id_length_that_is_no_uuid_is_a_name(self):
        """32-36 characters that are not hex in the UUID shape: a name, not a v2 id."""
        assert parse("stop team-a-resnet50-imagenet-sweep-1") == Command(
            "stop", name="team-a-resnet50-imagenet-sweep-1")

    @pytest.mark.parametrize("text,needle", [
        ("list a b", "one filter"),
        ("list team/a", "wildcards"),
        ("list <b>", "wildcards"),
        ("list " + "a" * 65, "up to 64"),
        ("stop team-a-*", "try `/modelarts list` with a filter"),
        ("stop team.a", "a job name (up to 64 letters"),
        ("status " + "x" * 65, "a job name"),
        ("stop 182626", "add its version id"),
        ("status 182626", "`/modelarts status 182626 &lt;version_id&gt;`"),
        ("stop ｔｅａｍ", "a job name"),
        ("stop 3faf5c03_aaa1_4cbe_879d_24b05d997347", "looks like a training_job_id"),
        ("stop 3faf5c03-aaa1-4cbe-879d-24b05d99734", "looks like a training_job_id"),
        ("status cafe-f00d", "`/modelarts list cafe-f00d`"),
    ])
    def test_refusals_say_why(self, text, needle):
        got = parse(text)
        assert isinstance(got, Invalid) and needle in got.reason, got

    def test_a_name_with_few_hex_digits_or_other_letters_is_a_name(self):
        assert parse("stop cafe-f00") == Command("stop", name="cafe-f00")
        assert parse("stop team-a-3faf5c03") == Command("stop", name="team-a-3faf5c03")

    def test_usage_shows_list_and_names(self):
        assert "/modelarts list [filter]" in parse("stop a.b").message
        assert "training_job_id or name" in parse("stop a.b").message


class TestNameFilter:
    def test_substring_any_case(self):
        f = NameFilter("ResNet")
        assert f.matches("team-a-resnet50") and not f.matches("team-a-vit")
        assert f.hint == "ResNet"

    def test_glob_matches_the_whole_name(self):
        f = NameFilter("team-a-*")
        assert f.matches("team-a-resnet") and f.matches("TEAM-A-x")
        assert not f.matches("xteam-a-resnet") and not f.matches("team-b-yolo")
        assert f.hint == "team-a-"

    def test_glob_hint_is_its_longest_literal_part(self):
        assert NameFilter("*-a-?esnet*").hint == "esnet"
        assert NameFilter("*").hint is None and NameFilter("*").matches("anything")

    def test_exact_is_case_sensitive_and_whole(self):
        f = NameFilter("team-a-resnet", exact=True)
        assert f.matches("team-a-resnet")
        assert not f.matches("team-a-resnet50") and not f.matches("Team-A-Resnet")


# -- the message builders ------------------------------------------------------------------
def entries_of(blocks: list[dict]) -> list[dict]:
    return [b for b in blocks if b.get("accessory", {}).get("type") == "button"]


class TestListMessage:
    def test_twenty_entries_then_how_many_more(self):
        jobs = [job(f"bulk-{n}", n) for n in range(60)]
        text, blocks = lists.list_message(jobs, 3, None, [])
        entries = entries_of(blocks)
        assert len(entries) == 20 and len(blocks) <= 50
        assert "and 40 more: narrow it with a filter" in json.dumps(blocks)
        assert "3 running jobs are not listed" in json.dumps(blocks)
        assert "*60 running jobs you may stop*" in blocks[0]["text"]["text"]
        ids = [e["accessory"]["action_id"] for e in entries]
        assert len(set(ids)) == 20 and all(re.match(rf"^{STOP_REQUEST}:\d+$", i) for i in ids)
        assert [parse_ref(e["accessory"]["value"]) for e in entries] == [j.ref for j in jobs[:20]]
        assert len(text) <= 3000

    def test_names_are_escaped_and_cut(self):
        evil = "<!channel>&" + "n" * 300
        _, blocks = lists.list_message([job(evil, flavor_name="<b>" * 900)], 0, "<x>", [])
        body = entries_of(blocks)[0]["text"]["text"]
        assert "<!channel>" not in json.dumps(blocks) and "&lt;!channel&gt;&amp;" in body
        assert len(body) <= 3000 and body.count("n") < 100
        assert "matching `&lt;x&gt;`" in blocks[0]["text"]["text"]

    def test_no_name_injects_a_mention_a_link_markup_or_a_line_into_any_text(self):
        """The fallback ``text`` carried the raw names: it is mrkdwn as well."""
        evil = "<!here>*b*_i_~s~`c`<https://evil.example|x>\nnext\u2066"
        for text, blocks in (lists.list_message([job(evil)], 0, None, []),
                             lists.several_message("x", [job(evil), job(evil, 1)], 0, []),
                             lists.not_found_message("x", [job(evil)], 0, [])):
            fields = [text] + [b["text"]["text"] if "text" in b else b["elements"][0]["text"]
                               for b in blocks]
            for field in fields:
                assert "<!here>" not in field and "<https://evil" not in field, field
                assert "*b*" not in field and "_i_" not in field and "`c`" not in field
                assert "~s~" not in field and "\u2066" not in field and "\nnext" not in field
            assert "&lt;!here&gt;" in text

    def test_a_name_with_underscores_inside_words_stays_as_typed(self):
        text, blocks = lists.list_message([job("team_b_yolo")], 0, None, [])
        assert "*team_b_yolo*" in entries_of(blocks)[0]["text"]["text"] and "team_b_yolo" in text

    def test_a_long_message_stops_early_and_counts_the_rest(self):
        jobs = [job("j", n, flavor_name="f" * 200, pool_name="p" * 200, user_name="u" * 200)
                for n in range(20)]
        _, blocks = lists.list_message(jobs, 0, None, [])
        shown = entries_of(blocks)
        assert 0 < len(shown) < 20
        texts = [b["text"]["text"] if "text" in b else b["elements"][0]["text"] for b in blocks]
        assert sum(map(len, texts)) < 12_000
        assert f"and {20 - len(shown)} more" in json.dumps(blocks)

    def test_fit_never_splits_an_entity(self):
        assert lists.fit("ab&amp;cd", 5) == "ab…"
        assert lists.fit("abc&lt;", 7) == "abc&lt;"
        assert lists.fit("a" * 10, 4) == "aaa…"

    def test_empty_list_for_an_unmapped_user_gives_the_count(self):
        text, blocks = lists.list_message([], 7, None, [])
        assert "No running job you may stop" in text and "7 running jobs are not listed" in text
        assert not entries_of(blocks)


# -- end to end ----------------------------------------------------------------------------
def dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def answers(slack_api, user: str) -> list[dict]:
    """What the bot sent through the command's response_url, with blocks."""
    return [c.params for c in slack_api.calls
            if c.method == f"response/cmd-{user}" and c.params.get("blocks")]


def wait_list(slack_api, user: str, needle: str = "") -> dict:
    return slack_api.wait_for(lambda: next(
        (p for p in answers(slack_api, user) if needle in p.get("text", "")), None))


def listed(answer: dict) -> list[tuple[str, str]]:
    """(name, button value) of each entry, in order."""
    out = []
    for block in entries_of(answer["blocks"]):
        name = re.match(r"^\*(.+?)\* \(", block["text"]["text"]).group(1)
        out.append((name, block["accessory"]["value"]))
    return out


def click_entry(bot, value: str, user: str, channel: str = "C0INCIDENT", n: int = 0):
    """A click on a list entry's button, as Slack sends it from an ephemeral message: the
    container says so, and there is no ``message``."""
    payload = {
        "type": "block_actions", "api_app_id": "A0BOT", "token": "legacy-unused",
        "team": {"id": TEAM, "domain": "standin"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "container": {"type": "message", "message_ts": "1700000099.000001",
                      "channel_id": channel, "is_ephemeral": True},
        "channel": {"id": channel, "name": "incident"},
        "trigger_id": f"{time.time()}.trigger",
        "response_url": bot.slack_api.response_url(f"act-{user}"),
        "actions": [{"type": "button", "action_id": f"{STOP_REQUEST}:{n}", "block_id": f"job_{n}",
                     "value": value, "action_ts": str(time.time())}],
    }
    from urllib.parse import urlencode
    resp = bot.post(urlencode({"payload": json.dumps(payload)}))
    assert resp.status_code == 200
    return resp


def terminates(emulator) -> list:
    return [r for r in emulator.requests if r.method == "POST" and r.path.endswith("/actions")]


def searches(emulator) -> list[dict]:
    return [json.loads(r.body) for r in emulator.requests
            if r.path.endswith("/training-job-searches")]


class TestList:
    def test_all_running_jobs_newest_first_with_buttons(self, make_bot, slack_api, emulator):
        make_bot().command("list")
        answer = wait_list(slack_api, "U0ONCALL")
        got = listed(answer)
        assert len(got) == RUNNING
        assert {parse_ref(v) for _, v in got} >= {RESNET50, LLAMA, YOLOV8, LLM_EVAL, RESNET_V1}
        created = []
        for _, value in got:
            fields = emulator.job(parse_ref(value))
            created.append(fields["metadata"]["create_time"] if "metadata" in fields
                           else fields["create_time"])
        assert created == sorted(created, reverse=True)
        assert "not listed" not in answer["text"] and answer["response_type"] == "ephemeral"
        assert "phase Pending" in dump(answer["blocks"])       # Pending counts as running
        assert "8 × GPU nodes" in dump(answer["blocks"])
        assert not slack_api.calls_to("chat.postMessage")
        body = searches(emulator)[0]
        assert {"key": "phase", "operator": "in",
                "value": ["Creating", "Pending", "Running"]} in body["filters"]
        v1 = [r for r in emulator.requests if r.path.endswith("/training-jobs")]
        assert ("status", "8") in v1[0].query

    @pytest.mark.parametrize("pattern,want", [
        ("team-a-*", TEAM_A),
        ("YOLO", {"team-b-yolov8", "team-b-yolo"}),
        ("*-?esnet", {"team-a-resnet"}),
    ])
    def test_a_filter_narrows_it(self, make_bot, slack_api, pattern, want):
        make_bot().command(f"list {pattern}")
        answer = wait_list(slack_api, "U0ONCALL")
        assert {name for name, _ in listed(answer)} == want
        assert "matching" in answer["text"]

    def test_a_user_sees_only_what_they_may_stop_and_a_count(self, make_bot, slack_api):
        make_bot().command("list", user="U0ALICE")
        answer = wait_list(slack_api, "U0ALICE")
        assert {name for name, _ in listed(answer)} == TEAM_A
        assert "3 running jobs are not listed" in answer["text"]
        assert "team-b" not in dump(answer)

    def test_an_unmapped_user_is_refused_and_told_nothing_of_the_jobs(self, make_bot,
                                                                       slack_api, emulator):
        """Refused before any scan (issue 18): not even how many jobs run."""
        make_bot().command("list", user="U0STRANGER")
        text = wait_reply(slack_api, "U0STRANGER", "no role")[0]
        assert "team-" not in text and str(RUNNING) not in text
        assert searches(emulator) == []

    def test_usergroup_members_are_read_once_for_the_whole_list(self, make_bot, slack_api):
        slack_api.usergroups["S0TEAMA"] = ["U0CAROL"]
        make_bot().command("list", user="U0CAROL")
        answer = wait_list(slack_api, "U0CAROL")
        assert {name for name, _ in listed(answer)} == TEAM_A
        assert len(slack_api.calls_to("usergroups.users.list")) == 1

    def test_sixty_more_jobs_page_and_stay_within_slack_limits(self, make_bot, slack_api,
                                                               emulator):
        bulk = emulator.add_training_jobs(60, name_prefix="team-c-bulk-")
        make_bot().command("list")
        answer = wait_list(slack_api, "U0ONCALL")
        got = listed(answer)
        assert len(got) == 20 and len(answer["blocks"]) <= 50
        assert [parse_ref(v) for _, v in got] == list(reversed(bulk))[:20]   # newest first
        assert f"and {60 + RUNNING - 20} more: narrow it with a filter" in answer["text"]
        assert sorted(b["offset"] for b in searches(emulator)) == [0, 1]
        assert all(len(b["text"]["text"]) <= 3000 for b in answer["blocks"] if "text" in b)

    def test_v1_unavailable_is_named_and_v2_jobs_still_listed(self, make_bot, slack_api,
                                                              emulator):
        emulator.retire_v1(True)
        make_bot().command("list")
        answer = wait_list(slack_api, "U0ONCALL")
        assert {parse_ref(v) for _, v in listed(answer)} == {RESNET50, LLAMA, YOLOV8, LLM_EVAL}
        assert "v1 not available: `APIGW.0101` (HTTP 404)" in answer["text"]

    def test_both_sources_down_says_so(self, make_bot, slack_api, emulator):
        emulator.retire_v1(True)
        bot = make_bot(MODELARTS_PROJECT_ID="0" * 32)
        bot.command("list")
        text = wait_reply(slack_api, "U0ONCALL", "I could not list jobs")[0]
        assert "v2 not available" in text and "v1 not available" in text


class TestByName:
    def test_a_retired_v1_is_no_doubt_but_a_failing_one_is(self, make_bot, slack_api,
                                                            emulator):
        """In a region without v1, stop by name says nothing about v1; a source that fails
        otherwise might hide a job of the same name, so the user is told."""
        from tests.test_stop_flow import replies_with

        emulator.retire_v1(True)
        bot = make_bot()
        bot.command("stop team-a-resnet50", user="U0ALICE")
        request_message(slack_api)
        settle(0.3)
        assert not replies_with(slack_api, "U0ALICE", "Only part of ModelArts")
        retired = Failure("APIGW.0101", "The API does not exist", 404)
        failing = Failure("ModelArts.0010", "internal error", 500)
        assert Found(failures={"v1": retired}).doubts == []
        assert Found(failures={"v1": failing}).doubts == [lists.source_problem("v1", failing)]
        assert len(Found(failures={"v2": retired}).doubts) == 1

    def test_one_running_job_goes_straight_to_the_confirmation(self, make_bot, slack_api,
                                                               emulator):
        bot = make_bot()
        bot.command("stop team-a-resnet50", user="U0ALICE")
        msg = request_message(slack_api)
        assert RESNET50.training_job_id in msg.text and "team-a-resnet50" in msg.text
        assert msg.thread_ts is None
        bot.click_button(msg, CONFIRM, "U0ALICE")
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert emulator.stop_count(RESNET50) == 1 and len(terminates(emulator)) == 1

    def test_a_v1_name_goes_to_the_v1_confirmation(self, make_bot, slack_api):
        make_bot().command("stop team-a-resnet")
        msg = request_message(slack_api)
        assert "job_id 182626, version 278813" in msg.text

    def test_the_role_check_is_on_the_job_found(self, make_bot, slack_api, emulator):
        make_bot().command("stop team-b-yolov8", user="U0ALICE")
        text = wait_reply(slack_api, "U0ALICE", "may not stop")[0]
        assert "team-b-yolov8" in text
        settle()
        assert not slack_api.calls_to("chat.postMessage") and emulator.stop_count(YOLOV8) == 0

    def test_several_running_jobs_give_the_list_of_them(self, make_bot, slack_api, emulator):
        emulator.set_status(V1Job(182802, 279200), 8)      # v1 team-b-llm-eval runs too now
        make_bot().command("stop team-b-llm-eval", user="U0BOB")
        answer = wait_list(slack_api, "U0BOB", "named")
        assert {parse_ref(v) for _, v in listed(answer)} == {LLM_EVAL, V1Job(182802, 279200)}
        assert "2 running jobs named `team-b-llm-eval`" in answer["text"]
        settle()
        assert not slack_api.calls_to("chat.postMessage")

    def test_no_running_job_of_that_name_shows_similar_ones(self, make_bot, slack_api):
        make_bot().command("stop resnet", user="U0ALICE")
        answer = wait_list(slack_api, "U0ALICE", "No running job is named `resnet`")
        assert {name for name, _ in listed(answer)} == {"team-a-resnet50", "team-a-resnet"}
        assert not slack_api.calls_to("chat.postMessage")

    def test_similar_ones_are_at_most_five_and_only_those_the_user_may_stop(
            self, make_bot, slack_api, emulator):
        emulator.add_training_jobs(8, name_prefix="team-a-sweep-")
        emulator.add_training_jobs(3, name_prefix="team-b-sweep-")
        make_bot().command("stop sweep", user="U0ALICE")
        answer = wait_list(slack_api, "U0ALICE", "No running job is named")
        assert len(listed(answer)) == 5
        assert all(name.startswith("team-a-sweep-") for name, _ in listed(answer))
        assert "and 3 more" in answer["text"] and "3 running jobs are not listed" in answer["text"]

    def test_a_terminated_job_is_not_stopped_by_name(self, make_bot, slack_api, emulator):
        make_bot().command("stop team-a-vit-sweep")
        wait_list(slack_api, "U0ONCALL", "No running job is named `team-a-vit-sweep`")
        assert not terminates(emulator)

    def test_status_by_name_of_a_running_job(self, make_bot, slack_api):
        make_bot().command("status team-a-llama-sft", user="U0BOB")
        text = wait_reply(slack_api, "U0BOB", "*Running*")[0]
        assert LLAMA.training_job_id in text and "Ascend" in text

    def test_status_by_name_of_an_ended_job(self, make_bot, slack_api):
        make_bot().command("status team-a-vit-sweep")
        text = wait_reply(slack_api, "U0ONCALL", "No running job is named")[0]
        assert "*Terminated*" in text and "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f" in text

    def test_status_by_name_refused_to_an_unmapped_user(self, make_bot, slack_api, emulator):
        make_bot().command("status team-a-resnet50", user="U0STRANGER")
        wait_reply(slack_api, "U0STRANGER", "no role")
        assert not searches(emulator)


class TestListButton:
    def test_a_click_on_an_entry_leads_to_one_stop(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command("list team-a-resnet50", user="U0ALICE")
        [(name, value)] = listed(wait_list(slack_api, "U0ALICE"))
        click_entry(bot, value, "U0ALICE")
        msg = request_message(slack_api)
        assert msg.thread_ts is None and RESNET50.training_job_id in msg.text
        value, blocks = button_value(msg, CONFIRM), msg.blocks   # before the first edit
        for _ in range(2):
            bot.click(CONFIRM, value, "U0ALICE", msg.channel, msg.ts, blocks)
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        wait_reply(slack_api, "U0ALICE", "already handled")
        assert emulator.stop_count(RESNET50) == 1 and len(terminates(emulator)) == 1
        assert all(c.params["ts"] == msg.ts for c in slack_api.calls_to("chat.update"))

    def test_a_job_that_stopped_meanwhile_is_answered_with_its_phase(self, make_bot, slack_api,
                                                                     emulator):
        bot = make_bot()
        bot.command("list llama")
        [(_, value)] = listed(wait_list(slack_api, "U0ONCALL"))
        emulator.set_status(LLAMA, "Completed")
        click_entry(bot, value, "U0ONCALL")
        wait_reply(slack_api, "U0ONCALL", "is Completed, not running: nothing to stop")
        settle()
        assert not slack_api.calls_to("chat.postMessage") and not terminates(emulator)

    def test_a_value_changed_to_a_job_the_user_may_not_stop_is_denied(self, make_bot, slack_api,
                                                                      emulator):
        click_entry(make_bot(), YOLOV8.key, "U0ALICE")
        wait_reply(slack_api, "U0ALICE", "may not stop *team-b-yolov8*")
        settle()
        assert not slack_api.calls_to("chat.postMessage") and emulator.stop_count(YOLOV8) == 0

    def test_a_value_changed_to_another_job_asks_about_that_job(self, make_bot, slack_api,
                                                                emulator):
        """The confirmation names the job looked up from the value, whatever the entry said."""
        bot = make_bot()
        bot.command("list resnet50", user="U0ALICE")
        wait_list(slack_api, "U0ALICE")
        click_entry(bot, LLAMA.key, "U0ALICE")
        msg = request_message(slack_api)
        assert "team-a-llama-sft" in msg.text and "resnet" not in msg.text
        assert emulator.stop_count(LLAMA) == 0 and emulator.stop_count(RESNET50) == 0

    @pytest.mark.parametrize("value", [
        "v2:../../training-jobs", "v2:" + "z" * 31, "v1:0:278813", "v3:182626:278813",
        "v2:3faf5c03-aaa1-4cbe-879d-24b05d997347:x", "", "x" * 500,
    ])
    def test_a_malformed_value_stops_nothing(self, make_bot, slack_api, emulator, value):
        click_entry(make_bot(), value, "U0ONCALL")
        if value and len(value) <= 200:
            wait_reply(slack_api, "U0ONCALL", "does not say which job")
        settle()
        assert not slack_api.calls_to("chat.postMessage") and not terminates(emulator)
        assert not [r for r in emulator.requests if "/training-jobs/" in r.path]

    def test_an_unknown_job_is_looked_up_and_refused(self, make_bot, slack_api, emulator):
        click_entry(make_bot(), "v2:00000000-0000-4000-8000-000000000000", "U0ONCALL")
        wait_reply(slack_api, "U0ONCALL", "ModelArts.2775")
        settle()
        assert not slack_api.calls_to("chat.postMessage") and not terminates(emulator)

    def test_the_alert_button_still_threads_under_its_message(self, make_bot, slack_api):
        """A click that is not on an ephemeral message keeps the alert's behaviour."""
        bot = make_bot()
        bot.click(STOP_REQUEST, RESNET50.key, "U0ONCALL", "C0INCIDENT", "1700000000.000777")
        msg = request_message(slack_api)
        assert msg.thread_ts == "1700000000.000777"
        assert button_value(msg, CONFIRM)


def test_the_listing_benchmark_runs(tmp_path, capsys):
    """``python -m bench listing`` stays runnable (its figures are read, never asserted)."""
    from bench.perf import listing

    out = tmp_path / "listing.json"
    assert listing.main(["--jobs", "60", "--runs", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["v2_search_calls_per_list"] == 2
    assert set(result["list_answer_ms"]) == {"U0ONCALL", "U0TEAMA"}


# -- the shell -----------------------------------------------------------------------------
SHELL_SCRIPT = """\
/modelarts list team-a-*
3
/modelarts stop team-a-resnet50
8
quit
"""


class TestShell:
    def test_list_and_stop_by_name_in_the_shell(self, redis_url, tmp_path):
        from tests.test_shell import after, shell

        done = shell(SHELL_SCRIPT, redis_url, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        head = done.stdout.split("U0YOU> ")[0]
        assert "running: team-a-resnet50; team-a-llama-sft;" in head
        assert "try `/modelarts list`" in head
        listed_ = after(done.stdout, "U0YOU> /modelarts list team-a-*")
        assert ("(only visible to you) *5 running jobs you may stop* matching `team-a-*`:"
                in listed_)
        assert "(training_job_id 6b3e1f2a-9c4d-4e8f-a1b2-c3d4e5f60718)" in listed_
        assert "ap3 · *team-a-bert-ap3" in listed_       # the shell's second project (linked)
        assert "[3] Stop" in listed_ and "[5] Stop" in listed_
        clicked = after(done.stdout, "U0YOU> 3")
        assert "#1 in C0SHELL:" in clicked and "asks to stop *team-a-llama-sft*" in clicked
        assert "[6] Confirm stop   [7] Cancel" in clicked
        by_name = after(done.stdout, "U0YOU> /modelarts stop team-a-resnet50")
        assert "asks to stop *team-a-resnet50*" in by_name
        assert "[8] Confirm stop   [9] Cancel" in by_name
        confirmed = after(done.stdout, "U0YOU> 8")
        assert "Stopping... confirmed by @U0YOU" in confirmed
        assert "Stop requested for *team-a-resnet50*" in confirmed

    def test_render_numbers_an_ephemeral_list_button(self):
        from botdev.shell.render import Transcript

        t = Transcript()
        _, blocks = lists.list_message([job("team-a-x", 1)], 0, None, [])
        lines = t.ephemeral({"text": "x", "blocks": blocks}, "U0YOU", "U0YOU")
        assert lines[1].endswith("[1] Stop") or lines[2].endswith("[1] Stop")
        button = t.button(1)
        assert button.ephemeral and parse_ref(button.value) == job("team-a-x", 1).ref
        assert button.action_id == f"{STOP_REQUEST}:0"
