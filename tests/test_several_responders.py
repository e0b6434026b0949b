"""Issue 20: several responders, one job. End to end over HTTP with real Redis, two replicas, the
ModelArts emulator and the Slack stand-in: one open request per job, "already" instead of a red
cross, a second person for protected jobs, and a reason on record."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.flow.blocks import APPROVE, CANCEL, CONFIRM, STOP_REQUEST
from bot.modelarts.refs import V1Job, V2Job
from tests.plugins.alerts import generic
from tests.plugins.slack import ROLES as BASE_ROLES
from tests.plugins.slack import button_value, responses
from tests.test_alerts import has_button, wait_alerts
from tests.test_audit import entries, wait_event
from tests.test_stop_flow import settle, wait_reply

RESNET = V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347")     # team-a-resnet50, Running
LLAMA = V2Job("6b3e1f2a-9c4d-4e8f-a1b2-c3d4e5f60718")      # team-a-llama-sft, Running
V1 = V1Job(182626, 278813)                                 # team-a-resnet, RUNNING
HELD = "Already being stopped"
RESPONDERS = [f"U0R{i}" for i in range(10)]
LEADS = [f"U0LEAD{i}" for i in range(4)]
# The suite's roles (tests/plugins/slack.py), plus on-call responders, approvers and a rule.
ROLES = BASE_ROLES.replace("users:\n", '  oncall-lead:\n    jobs: ["*"]\nusers:\n' + "".join(
    f"  {u}: [oncall]\n" for u in RESPONDERS) + "".join(
    f"  {u}: [oncall-lead]\n" for u in LEADS)) + """
protected:
  - jobs: ["*-llama-*", "prod-*"]
    approvers: [oncall-lead]
"""


@pytest.fixture
def roles_file(tmp_path):
    path = tmp_path / "roles.yml"
    path.write_text(ROLES)
    return path


def confirmations(slack_api) -> list:
    """Every message that ever carried a Confirm button (a confirmation request)."""
    return [c for c in slack_api.calls_to("chat.postMessage", ok_only=True)
            if CONFIRM in json.dumps(c.params.get("blocks") or [])]


def request_for(slack_api, job: str):
    """The confirmation request naming ``job`` (waits for it)."""
    def found():
        return next((m for m in list(slack_api.messages.values())
                     if job in m.text and m.thread_ts is None and
                     CONFIRM in json.dumps(m.blocks or [])), None)
    return slack_api.wait_for(found)


def thread(slack_api, msg, needle: str, timeout: float = 10.0):
    return slack_api.wait_for(lambda: next(
        (m for m in slack_api.thread_replies(msg.channel, msg.ts) if needle in m.text), None),
        timeout=timeout)


def events(redis_client, key_prefix, event: str) -> list:
    return [e for e in entries(redis_client, key_prefix) if e.get("event") == event]


class TestOneOpenRequest:
    def test_a_second_user_is_told_who_asked_and_where(self, make_bot, slack_api, emulator,
                                                       redis_client, key_prefix):
        a, b = make_bot(), make_bot()
        a.command("stop team-a-resnet50", user="U0ALICE")
        msg = request_for(slack_api, "team-a-resnet50")
        b.command("stop team-a-resnet50", user="U0ONCALL")
        said = wait_reply(slack_api, "U0ONCALL", HELD)[0]
        assert "<@U0ALICE> asked at" in said and "UTC" in said
        assert f"/archives/{msg.channel}/p{msg.ts.replace('.', '')}" in said   # the permalink
        assert "Press Confirm there, or wait for the outcome in its thread." in said
        assert len(confirmations(slack_api)) == 1 and emulator.stop_count(RESNET) == 0
        refused = wait_event(redis_client, key_prefix, "refused")
        assert refused.get("outcome") == "already_requested"
        assert refused.get("user") == "U0ONCALL"
        # The first request still works, and stops once.
        a.click_button(msg, CONFIRM, "U0ALICE")
        thread(slack_api, msg, "Stop requested")
        assert emulator.stop_count(RESNET) == 1

    def test_while_the_stop_is_followed_a_new_request_is_refused_too(
            self, make_bot, slack_api, emulator):
        emulator.stop_delay = 30          # Terminating for a while: the watch holds the job
        bot = make_bot()
        bot.command(f"stop {RESNET.args}", user="U0ALICE")
        msg = request_for(slack_api, "team-a-resnet50")
        bot.click_button(msg, CONFIRM, "U0ALICE")
        thread(slack_api, msg, "Stop requested")
        bot.command(f"stop {RESNET.args}", user="U0ONCALL")
        said = slack_api.wait_for(lambda: [t for t in responses(slack_api, "U0ONCALL")
                                           if HELD in t or "not running" in t.lower()])[0]
        assert HELD in said or "Terminating" in said
        assert emulator.stop_count(RESNET) == 1 and len(confirmations(slack_api)) == 1

    def test_ten_concurrent_requests_over_two_replicas_give_one_confirmation(
            self, make_bot, slack_api, emulator, redis_client, key_prefix):
        replicas = [make_bot(), make_bot()]
        with ThreadPoolExecutor(10) as pool:
            answers = list(pool.map(
                lambda i: replicas[i % 2].command(f"stop {RESNET.args}", user=RESPONDERS[i]),
                range(10)))
        assert [r.status_code for r in answers] == [200] * 10
        slack_api.wait_for(lambda: len(confirmations(slack_api)) == 1 and sum(
            1 for u in RESPONDERS if any(HELD in t for t in responses(slack_api, u))) == 9)
        settle(0.5)
        assert len(confirmations(slack_api)) == 1 and emulator.stop_count(RESNET) == 0
        asker = next(u for u in RESPONDERS if not any(HELD in t for t in
                                                      responses(slack_api, u)))
        for u in RESPONDERS:
            if u != asker:
                assert any(f"<@{asker}> asked at" in t for t in responses(slack_api, u))
        assert len(events(redis_client, key_prefix, "requested")) == 1

    def test_after_a_cancel_a_new_request_is_allowed(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {RESNET.args}", user="U0ALICE")
        first = request_for(slack_api, "team-a-resnet50")
        bot.click_button(first, CANCEL, "U0ALICE")
        slack_api.wait_for(lambda: "Cancelled" in first.text or "cancelled" in first.text)
        bot.command(f"stop {RESNET.args}", user="U0ONCALL")
        slack_api.wait_for(lambda: len(confirmations(slack_api)) == 2)
        assert not any(HELD in t for t in responses(slack_api, "U0ONCALL"))

    def test_after_expiry_a_new_request_is_allowed(self, make_bot, slack_api, emulator):
        bot = make_bot(CONFIRM_TTL_SECONDS=5)
        bot.command(f"stop {RESNET.args}", user="U0ALICE")
        request_for(slack_api, "team-a-resnet50")
        bot.command(f"stop {RESNET.args}", user="U0ONCALL")
        wait_reply(slack_api, "U0ONCALL", HELD)
        time.sleep(5.3)
        bot.command(f"stop {RESNET.args}", user="U0ONCALL")
        slack_api.wait_for(lambda: len(confirmations(slack_api)) == 2)
        assert emulator.stop_count(RESNET) == 0

    def test_a_refused_stop_frees_the_job(self, make_bot, slack_api, emulator):
        """A stop ModelArts refuses while the job still runs: the next request may go on."""
        bot = make_bot()
        bot.command(f"stop {RESNET.args}", user="U0ALICE")
        msg = request_for(slack_api, "team-a-resnet50")
        emulator.set_fault(RESNET, "failure", http_status=400, error_code="ModelArts.2788",
                           error_msg="Invalid parameter")
        bot.click_button(msg, CONFIRM, "U0ALICE")
        thread(slack_api, msg, "Stop failed")
        emulator.clear_faults()
        bot.command(f"stop {RESNET.args}", user="U0ONCALL")
        slack_api.wait_for(lambda: len(confirmations(slack_api)) == 2)


class TestAlertWhilePending:
    def test_an_alert_stop_opens_nothing_and_the_alert_shows_the_request(
            self, make_alert_bot, slack_api, emulator):
        bot = make_alert_bot()
        bot.alert(generic())
        alert = wait_alerts(slack_api, 1)[0]
        bot.command(f"stop {V1.args}", user="U0ALICE", channel="C0ALERTS")
        slack_api.wait_for(lambda: len(confirmations(slack_api)) == 1)
        slack_api.wait_for(lambda: "Stop requested by <@U0ALICE>, waiting for confirmation"
                           in json.dumps(alert.blocks))
        bot.click_button(alert, STOP_REQUEST, "U0ONCALL")
        said = wait_reply(slack_api, "U0ONCALL", HELD)[0]
        assert "<@U0ALICE> asked at" in said
        settle(0.3)
        assert len(confirmations(slack_api)) == 1 and emulator.stop_count(V1) == 0
        assert has_button(alert)          # the alert's own Stop stays until the job is stopped


class TestAlready:
    def test_a_job_already_terminating_is_no_failure(self, running, slack_api, emulator,
                                                     redis_client, key_prefix):
        bot = running()
        bot.command(f"stop {RESNET.args}", user="U0ALICE")
        msg = request_for(slack_api, "team-a-resnet50")
        emulator.set_status(RESNET, "Terminating")   # stopped from the console meanwhile
        bot.click_button(msg, CONFIRM, "U0ALICE")
        reply = thread(slack_api, msg, "already")
        assert reply.text.startswith(":information_source: *team-a-resnet50* was already "
                                     "Terminating: someone or something else stopped it first. "
                                     "Nothing more to do.")
        assert ":x:" not in reply.text
        slack_api.wait_for(lambda: "Already Terminating" in msg.text)
        assert ":x:" not in msg.text and "failed" not in msg.text.lower()
        entry = wait_event(redis_client, key_prefix, "already")
        assert entry.get("outcome") == "already_stopping" and entry.get("state") == "Terminating"
        emulator.set_status(RESNET, "Terminated")
        thread(slack_api, msg, "Terminated", timeout=20)   # the follow-through still reports

    def test_a_v1_job_already_killing(self, make_bot, slack_api, emulator, redis_client,
                                      key_prefix):
        bot = make_bot()
        bot.command(f"stop {V1.args}", user="U0ALICE")
        msg = request_for(slack_api, "team-a-resnet")
        emulator.set_status(V1, 9)                    # KILLING
        bot.click_button(msg, CONFIRM, "U0ALICE")
        reply = thread(slack_api, msg, "already")
        assert "*team-a-resnet* was already KILLING" in reply.text and ":x:" not in reply.text
        assert wait_event(redis_client, key_prefix, "already").get("outcome") == \
            "already_stopping"

    def test_a_job_that_ended_is_already_ended(self, make_bot, slack_api, emulator,
                                               redis_client, key_prefix):
        bot = make_bot()
        bot.command(f"stop {RESNET.args}", user="U0ALICE")
        msg = request_for(slack_api, "team-a-resnet50")
        emulator.set_status(RESNET, "Failed")
        bot.click_button(msg, CONFIRM, "U0ALICE")
        reply = thread(slack_api, msg, "already")
        assert "was already Failed" in reply.text and ":x:" not in reply.text
        assert wait_event(redis_client, key_prefix, "already").get("outcome") == "already_ended"
        bot.command(f"stop {RESNET.args}", user="U0ONCALL")   # ended: no claim, just the state
        wait_reply(slack_api, "U0ONCALL", "Failed")
        assert not any(HELD in t for t in responses(slack_api, "U0ONCALL"))


class TestProtected:
    def ask(self, bot, slack_api, user: str = "U0ALICE", reason: str = ""):
        bot.command(f"stop team-a-llama-sft{f' -- {reason}' if reason else ''}", user=user)
        return request_for(slack_api, "team-a-llama-sft")

    def confirmed(self, bot, slack_api, msg, user: str = "U0ALICE"):
        bot.click_button(msg, CONFIRM, user)
        slack_api.wait_for(lambda: APPROVE in json.dumps(msg.blocks or []))
        return msg

    def test_request_confirm_refusals_and_one_approval(self, make_bot, slack_api, emulator,
                                                       redis_client, key_prefix):
        a, b = make_bot(), make_bot()
        msg = self.ask(a, slack_api)
        assert "Protected: needs a second person (roles: `oncall-lead`)" in msg.text
        self.confirmed(a, slack_api, msg)
        assert ("Confirmed by <@U0ALICE>. Waiting for a second person (roles: `oncall-lead`)"
                in msg.text)
        assert CANCEL in json.dumps(msg.blocks) and CONFIRM not in json.dumps(msg.blocks)
        settle(0.3)
        assert emulator.stop_count(LLAMA) == 0
        # The requester, an unmapped user and a mapped user without an approver role: refused.
        b.click_button(msg, APPROVE, "U0ALICE")
        wait_reply(slack_api, "U0ALICE", "second person")
        b.click_button(msg, APPROVE, "U0STRANGER")
        wait_reply(slack_api, "U0STRANGER", "can't approve")
        b.click_button(msg, APPROVE, "U0ONCALL")
        said = wait_reply(slack_api, "U0ONCALL", "can't approve")[0]
        assert "`oncall-lead`" in said
        settle(0.3)
        assert emulator.stop_count(LLAMA) == 0 and APPROVE in json.dumps(msg.blocks)
        assert {e.get("outcome") for e in events(redis_client, key_prefix, "denied")} >= \
            {"not_approver"}
        # An approver: one terminate; the thread names both.
        b.click_button(msg, APPROVE, LEADS[0])
        reply = thread(slack_api, msg, "Stop requested")
        assert f"Confirmed by <@U0ALICE>, approved by <@{LEADS[0]}>." in reply.text
        assert emulator.stop_count(LLAMA) == 1
        approved = wait_event(redis_client, key_prefix, "approved")
        assert approved.get("approver") == LEADS[0] and approved.get("requester") == "U0ALICE"
        stopped = wait_event(redis_client, key_prefix, "stopped")
        assert stopped.get("approver") == LEADS[0]

    def test_twenty_concurrent_approvals_give_one_terminate(self, make_bot, slack_api,
                                                            emulator):
        replicas = [make_bot(), make_bot()]
        msg = self.confirmed(replicas[0], slack_api, self.ask(replicas[0], slack_api))
        value = button_value(msg, APPROVE)
        with ThreadPoolExecutor(20) as pool:
            answers = list(pool.map(lambda i: replicas[i % 2].click(
                APPROVE, value, LEADS[i % 4], msg.channel, msg.ts), range(20)))
        assert [r.status_code for r in answers] == [200] * 20
        thread(slack_api, msg, "Stop requested")
        settle(0.8)
        assert emulator.stop_count(LLAMA) == 1
        assert len([m for m in slack_api.thread_replies(msg.channel, msg.ts)
                    if "Stop requested" in m.text]) == 1

    def test_an_approval_after_the_ttl_stops_nothing(self, make_bot, slack_api, emulator):
        bot = make_bot(CONFIRM_TTL_SECONDS=5)
        msg = self.confirmed(bot, slack_api, self.ask(bot, slack_api))
        time.sleep(5.3)
        bot.click_button(msg, APPROVE, LEADS[0])
        wait_reply(slack_api, LEADS[0], "expired")
        settle(0.3)
        assert emulator.stop_count(LLAMA) == 0
        bot.command("stop team-a-llama-sft", user="U0ONCALL")   # and the job is free again
        slack_api.wait_for(lambda: len(confirmations(slack_api)) == 2)

    def test_an_unprotected_job_stops_on_the_first_confirm(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {RESNET.args}", user="U0ALICE")
        msg = request_for(slack_api, "team-a-resnet50")
        assert "Protected" not in msg.text
        bot.click_button(msg, CONFIRM, "U0ALICE")
        thread(slack_api, msg, "Stop requested")
        assert emulator.stop_count(RESNET) == 1

    def test_list_marks_protected_jobs_and_help_explains(self, make_bot, slack_api):
        bot = make_bot()
        bot.command("list team-a-*", user="U0ALICE")
        listing = slack_api.wait_for(lambda: next(
            (c.params for c in slack_api.calls if c.method == "response/cmd-U0ALICE"
             and "team-a-llama-sft" in json.dumps(c.params.get("blocks"))), None))
        sections = {s["text"]["text"].split("\n")[0]: s for s in listing["blocks"]
                    if s.get("accessory")}
        assert [n for n in sections if n.startswith(":lock:")] == \
            [n for n in sections if "team-a-llama-sft" in n]
        assert ":lock: protected" in json.dumps(listing["blocks"])
        usage = bot.command("help").json()["text"]
        assert "second person" in usage and "--" in usage


class TestReason:
    def test_a_reason_in_the_three_messages_and_the_audit(self, running, slack_api, emulator,
                                                          redis_client, key_prefix):
        emulator.stop_delay = 0.3
        bot = running()
        bot.command(f"stop {RESNET.args} -- loss is NaN <since> step 4k", user="U0ALICE")
        msg = request_for(slack_api, "team-a-resnet50")
        assert "Reason: loss is NaN &lt;since&gt; step 4k" in msg.text
        bot.click_button(msg, CONFIRM, "U0ALICE")
        assert "Reason: loss is NaN" in thread(slack_api, msg, "Stop requested").text
        assert "Reason: loss is NaN" in thread(slack_api, msg, "Terminated", timeout=20).text
        for event in ("requested", "confirmed", "stopped"):
            assert wait_event(redis_client, key_prefix, event).get("reason") == \
                "loss is NaN <since> step 4k"

    @pytest.mark.parametrize("text, needle", [
        (f"stop {'x' * 10} -- " + "r" * 301, "300"),
        ("stop team-a-resnet50 -- ", "reason"),
        ("status team-a-resnet50 -- why", "only"),
    ])
    def test_a_bad_reason_is_named_and_changes_nothing(self, make_bot, slack_api, emulator,
                                                       text, needle):
        bot = make_bot()
        answer = bot.command(text, user="U0ALICE")
        said = answer.json()["text"] if answer.content else wait_reply(slack_api, "U0ALICE",
                                                                      needle)[0]
        assert needle in said
        settle(0.2)
        assert not emulator.requests and not confirmations(slack_api)

    def test_an_alert_summary_is_the_reason(self, make_alert_bot, slack_api, emulator,
                                            redis_client, key_prefix):
        bot = make_alert_bot()
        bot.alert(generic())
        alert = wait_alerts(slack_api, 1)[0]
        bot.click_button(alert, STOP_REQUEST, "U0ALICE")
        ask = slack_api.wait_for(lambda: next(
            (m for m in slack_api.thread_replies(alert.channel, alert.ts)
             if has_button(m, CONFIRM)), None))
        assert "Reason: loss is NaN" in ask.text
        assert wait_event(redis_client, key_prefix, "requested").get("reason") == "loss is NaN"
