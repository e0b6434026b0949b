"""Issue 18, item 3: lists and look-ups cannot stall stops. End to end over HTTP (real Redis, the
emulator, the Slack stand-in): unmapped users are refused before any ModelArts call, confirm and
cancel run on a pool of their own, lists are bounded per user and in all, and lists close
together share one scan of the running jobs."""

from __future__ import annotations

import pytest

from bot.flow.admission import ListSlots
from bot.flow.blocks import CANCEL, CONFIRM, STOP_REQUEST
from bot.modelarts.refs import V1Job
from tests.plugins.slack import responses
from tests.test_finder import (
    RESNET50,
    RUNNING,
    TEAM_A,
    answers,
    click_entry,
    listed,
    searches,
    wait_list,
)
from tests.test_stop_flow import request_message, wait_reply

BUSY = "busy, try again in a moment"
# What an unmapped user must not learn: the job's ids, its name, its state, the roles.
SECRETS = (RESNET50.training_job_id, "182626", "278813", "team-a", "resnet", "oncall",
           "Running", "RUNNING")


def v1_lists(emulator) -> list:
    return [r for r in emulator.requests if r.path.endswith("/training-jobs")]


def held(emulator) -> bool:
    """True once a scan has reached the emulator (where ``hold_lists`` keeps it)."""
    return bool(searches(emulator))


class TestUnmappedRefusedFirst:
    @pytest.mark.parametrize("text", [
        "list", "list team-a-*", "stop team-a-resnet50", "status team-a-resnet50",
        f"stop {RESNET50.args}", f"status {RESNET50.args}", "stop 182626 278813",
        "status 182626 278813", "history 182626 278813",
    ])
    def test_a_command_makes_no_modelarts_call_and_names_no_job(self, make_bot, slack_api,
                                                                 emulator, text):
        bot = make_bot()
        before = len(emulator.requests)
        assert bot.command(text, user="U0STRANGER").status_code == 200
        wait_reply(slack_api, "U0STRANGER", "no role")
        assert len(emulator.requests) == before
        for said in responses(slack_api, "U0STRANGER"):
            assert not [s for s in SECRETS if s in said], said
        assert not slack_api.calls_to("chat.postMessage")

    @pytest.mark.parametrize("alert_ts", [None, "1700000000.000777"])
    def test_a_stop_button_makes_no_modelarts_call(self, make_bot, slack_api, emulator,
                                                   alert_ts):
        """A list entry's button (ephemeral), and an alert's."""
        bot = make_bot()
        before = len(emulator.requests)
        if alert_ts:
            bot.click(STOP_REQUEST, RESNET50.key, "U0STRANGER", "C0INCIDENT", alert_ts)
        else:
            click_entry(bot, RESNET50.key, "U0STRANGER")
        said = wait_reply(slack_api, "U0STRANGER", "no role")[0]
        assert len(emulator.requests) == before
        assert not [s for s in SECRETS if s in said]

    def test_a_role_that_names_no_job_is_unmapped(self, make_bot, slack_api, emulator, tmp_path):
        roles = tmp_path / "empty-role.yml"
        roles.write_text('roles:\n  oncall:\n    jobs: ["*"]\n  idle:\n    jobs: []\n'
                         "users:\n  U0ONCALL: [oncall]\n  U0IDLE: [idle]\n")
        make_bot(ROLES_FILE=str(roles)).command("stop team-a-resnet50", user="U0IDLE")
        wait_reply(slack_api, "U0IDLE", "no role")
        assert emulator.requests == []

    def test_a_usergroup_member_is_admitted(self, make_bot, slack_api, emulator):
        slack_api.usergroups["S0TEAMA"] = ["U0CAROL"]
        make_bot().command("list", user="U0CAROL")
        assert {name for name, _ in listed(wait_list(slack_api, "U0CAROL"))} == TEAM_A


class TestStopsDoNotWaitForLists:
    @pytest.mark.parametrize("action", [CONFIRM, CANCEL])
    def test_a_click_is_handled_while_lists_fill_the_lookup_pool(self, make_bot, slack_api,
                                                                 emulator, action):
        """Eight lists held at the emulator, two lookup threads: the click still goes through
        (a single shared pool, as before, has the click queued behind the lists)."""
        bot = make_bot(LOOKUP_WORKERS=2, STOP_WORKERS=1, LISTS_PER_USER=8,
                       LISTS_MAX_CONCURRENT=8)
        bot.command(f"stop {RESNET50.args}")
        msg = request_message(slack_api)
        emulator.hold_lists()
        try:
            users = ["U0ONCALL", "U0ALICE", "U0BOB"] * 3
            for user in users[:8]:
                bot.command("list", user=user)
            slack_api.wait_for(lambda: held(emulator))
            assert bot.click_button(msg, action, "U0ONCALL").status_code == 200
            if action == CONFIRM:
                slack_api.wait_for(lambda: emulator.stop_count(RESNET50) == 1)
                reply = slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
                assert "Stop requested" in reply[0].text
            else:
                slack_api.wait_for(lambda: "Cancelled by" in msg.text)
                assert emulator.stop_count(RESNET50) == 0
            # The lists are all still in flight: none answered yet.
            assert not any(answers(slack_api, user) for user in set(users))
        finally:
            emulator.release_lists()
        slack_api.wait_for(lambda: sum(len(answers(slack_api, u)) for u in set(users)) == 8)


class TestListBounds:
    def test_a_second_list_by_the_same_user_is_busy(self, make_bot, slack_api, emulator):
        bot = make_bot(LISTS_PER_USER=1)
        emulator.hold_lists()
        try:
            bot.command("list", user="U0ALICE")
            slack_api.wait_for(lambda: held(emulator))
            bot.command("list team-a-*", user="U0ALICE")
            busy = wait_reply(slack_api, "U0ALICE", BUSY)[0]
            assert "team-" not in busy
        finally:
            emulator.release_lists()
        answer = wait_list(slack_api, "U0ALICE")
        assert {name for name, _ in listed(answer)} == TEAM_A
        assert len(answers(slack_api, "U0ALICE")) == 1

    def test_lists_beyond_the_total_are_busy(self, make_bot, slack_api, emulator):
        """Three users, two slots: whichever comes third is told to try again."""
        bot = make_bot(LISTS_PER_USER=1, LISTS_MAX_CONCURRENT=2)
        users = ("U0ONCALL", "U0ALICE", "U0BOB")
        emulator.hold_lists()
        try:
            for user in users:
                bot.command("list", user=user)
            slack_api.wait_for(lambda: any(BUSY in t for u in users
                                           for t in responses(slack_api, u)))
        finally:
            emulator.release_lists()
        slack_api.wait_for(lambda: sum(len(answers(slack_api, u)) for u in users) == 2)
        busy = [u for u in users if any(BUSY in t for t in responses(slack_api, u))]
        assert len(busy) == 1 and not answers(slack_api, busy[0])

    def test_slots_are_freed_when_a_list_ends(self):
        slots = ListSlots(per_user=1, total=1)
        with slots.slot("U1") as took, slots.slot("U2") as other:
            assert took and not other
        with slots.slot("U2") as took:
            assert took


class TestSharedScan:
    def test_lists_close_together_share_one_scan_and_keep_their_own_roles(
            self, make_bot, slack_api, emulator):
        bot = make_bot(LISTS_PER_USER=1, LISTS_MAX_CONCURRENT=4, LIST_SHARE_SECONDS=30)
        emulator.hold_lists()
        try:
            bot.command("list", user="U0ONCALL")
            slack_api.wait_for(lambda: held(emulator))
            bot.command("list", user="U0ALICE")       # while the scan runs
        finally:
            emulator.release_lists()
        everything = wait_list(slack_api, "U0ONCALL")
        assert len(listed(everything)) == RUNNING
        assert {name for name, _ in listed(wait_list(slack_api, "U0ALICE"))} == TEAM_A
        bot.command("list", user="U0BOB")             # after it ended, within the window
        bob = {name for name, _ in listed(wait_list(slack_api, "U0BOB"))}
        assert bob and all(name.startswith("team-b-") for name in bob)
        assert len(searches(emulator)) == 1 and len(v1_lists(emulator)) == 1

    def test_a_filtered_list_reads_through_its_own_scan(self, make_bot, slack_api, emulator):
        """A list with a filter asks the servers for that filter: it does not take an
        unfiltered scan's result, nor does another filter."""
        bot = make_bot(LIST_SHARE_SECONDS=30, LISTS_PER_USER=4)
        bot.command("list")
        wait_list(slack_api, "U0ONCALL")
        bot.command("list yolo")
        slack_api.wait_for(lambda: len(answers(slack_api, "U0ONCALL")) == 2)
        assert [s.get("filters") != searches(emulator)[0].get("filters")
                for s in searches(emulator)] == [False, True]

    def test_with_no_share_window_a_list_after_a_scan_scans_again(self, make_bot, slack_api,
                                                                  emulator):
        bot = make_bot(LIST_SHARE_SECONDS=0)
        for n in (1, 2):
            bot.command("list")
            slack_api.wait_for(lambda n=n: len(answers(slack_api, "U0ONCALL")) == n)
        assert len(searches(emulator)) == 2

    def test_a_scan_that_failed_is_not_kept(self, make_bot, slack_api, emulator):
        # Two slots: the first list frees its slot just after its answer, which the second
        # command may otherwise beat ("busy"): this test is about the shared scan.
        bot = make_bot(MODELARTS_PROJECT_ID="0" * 32, LIST_SHARE_SECONDS=30, LISTS_PER_USER=2)
        for n in (1, 2):
            bot.command("list")
            slack_api.wait_for(lambda n=n: len(
                [t for t in responses(slack_api, "U0ONCALL") if "could not list" in t]) == n)
        assert len(searches(emulator)) == 2


def test_stop_by_id_by_a_mapped_user_still_looks_the_job_up(make_bot, slack_api, emulator):
    """The refusal is for unmapped users only: a mapped one reaches the look-up."""
    make_bot().command("stop 182626 278813", user="U0BOB")
    wait_reply(slack_api, "U0BOB", "may not stop")
    assert emulator.stop_count(V1Job(182626, 278813)) == 0
