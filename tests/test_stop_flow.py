"""The /modelarts stop flow end to end: signed requests to the served app, real Redis,
the ModelArts emulator and the Slack stand-in over loopback HTTP."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.core.keys import Keys
from bot.flow.audit import Audit
from bot.flow.blocks import CANCEL, CONFIRM
from bot.modelarts.refs import V1Job
from tests.plugins.slack import SIGNING_SECRET, button_value, responses

JOB, VERSION = 182626, 278813          # team-a-resnet, RUNNING
B_JOB, B_VERSION = 182801, 279100      # team-b-yolo, RUNNING


def request_message(slack_api, exclude: tuple[str, ...] = ()):
    """The first confirmation request (a message with a confirm button) not in ``exclude``."""
    def found():
        msgs = [m for m in slack_api.messages.values()
                if CONFIRM in json.dumps(m.blocks or []) and m.ts not in exclude]
        return msgs[0] if msgs else None
    return slack_api.wait_for(found)


def stop_and_confirm(bot, slack_api, args: str = f"{JOB} {VERSION}", user: str = "U0ONCALL"):
    """``/modelarts stop ARGS`` and a click on its Confirm; the request message."""
    assert bot.command(f"stop {args}", user=user).status_code == 200
    msg = request_message(slack_api)
    assert bot.click_button(msg, CONFIRM, user).status_code == 200
    return msg


def replies_with(slack_api, user: str, needle: str) -> list[str]:
    return [t for t in responses(slack_api, user) if needle in t]


def wait_reply(slack_api, user: str, needle: str):
    return slack_api.wait_for(lambda: replies_with(slack_api, user, needle))


def has_buttons(message) -> bool:
    return any(b.get("type") == "actions" for b in message.blocks or [])


def settle(seconds: float = 0.5) -> None:
    """Give work that must NOT happen a moment to show itself."""
    time.sleep(seconds)


class TestHappyPath:
    def test_confirm_stops_once_and_reports_in_thread(self, make_bot, slack_api, emulator):
        bot = make_bot()
        resp = bot.command(f"stop {JOB} {VERSION}")
        assert resp.status_code == 200
        msg = request_message(slack_api)
        assert "<@U0ONCALL>" in msg.text and "team-a-resnet" in msg.text
        assert str(JOB) in msg.text and str(VERSION) in msg.text and "RUNNING" in msg.text
        actions = next(b for b in msg.blocks if b["type"] == "actions")["elements"]
        assert [a["action_id"] for a in actions] == [CONFIRM, CANCEL]
        assert actions[0]["style"] == "danger"
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

        assert bot.click_button(msg, CONFIRM, "U0ONCALL").status_code == 200
        replies = slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert "Stop requested" in replies[0].text
        assert str(JOB) in replies[0].text and "team-a-resnet" in replies[0].text
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1
        slack_api.wait_for(lambda: "Stop requested" in msg.text and not has_buttons(msg))
        updates = [c.params["text"] for c in slack_api.calls_to("chat.update")]
        assert any("Stopping... confirmed by <@U0ONCALL>" in t for t in updates)

    def test_ack_comes_before_the_modelarts_lookup(self, make_bot, slack_api, emulator):
        emulator.set_fault(V1Job(JOB, VERSION), "slow", on="get", delay=1.5)
        bot = make_bot()
        started = time.monotonic()
        assert bot.command(f"stop {JOB} {VERSION}").status_code == 200
        assert time.monotonic() - started < 1.5
        request_message(slack_api)

    def test_help_and_empty_text_show_usage(self, make_bot, slack_api):
        bot = make_bot()
        for text in ("help", ""):
            resp = bot.command(text)
            assert resp.status_code == 200 and "Usage" in resp.json()["text"]
        assert not slack_api.calls_to("chat.postMessage")

    def test_status_is_ephemeral_for_a_mapped_user(self, make_bot, slack_api):
        bot = make_bot()
        bot.command(f"status {JOB} {VERSION}", user="U0BOB")
        text = wait_reply(slack_api, "U0BOB", "RUNNING")[0]
        assert "team-a-resnet" in text and "running time" in text
        assert not slack_api.calls_to("chat.postMessage")

    def test_status_refused_to_an_unmapped_user(self, make_bot, slack_api, emulator):
        make_bot().command(f"status {JOB} {VERSION}", user="U0STRANGER")
        wait_reply(slack_api, "U0STRANGER", "no role")


class TestRefusals:
    def test_not_running_names_the_status(self, make_bot, slack_api, emulator):
        make_bot().command("stop 182900 279300")
        wait_reply(slack_api, "U0ONCALL", "is COMPLETED, not running: nothing to stop")
        assert not slack_api.calls_to("chat.postMessage")
        assert emulator.stop_count(V1Job(182900, 279300)) == 0

    @pytest.mark.parametrize("user", ["U0BOB"])
    def test_denied_user_gets_the_role_that_would_allow(self, make_bot, slack_api, emulator, user):
        """A user whose role glob does not match team-a-* (an unmapped one is refused before
        any look-up: tests/test_contention.py)."""
        make_bot().command(f"stop {JOB} {VERSION}", user=user)
        text = wait_reply(slack_api, user, "may not stop")[0]
        assert "team-a-resnet" in text and "`team-a`" in text and "`oncall`" in text
        settle()
        assert not slack_api.calls_to("chat.postMessage")
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

    def test_usergroup_member_may_stop(self, make_bot, slack_api, emulator):
        slack_api.usergroups["S0TEAMA"] = ["U0CAROL"]
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}", user="U0CAROL")
        msg = request_message(slack_api)
        bot.click_button(msg, CONFIRM, "U0CAROL")
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_usergroup_membership_does_not_reach_other_teams(self, make_bot, slack_api, emulator):
        slack_api.usergroups["S0TEAMA"] = ["U0CAROL"]
        make_bot().command(f"stop {B_JOB} {B_VERSION}", user="U0CAROL")
        wait_reply(slack_api, "U0CAROL", "may not stop")
        assert emulator.stop_count(V1Job(B_JOB, B_VERSION)) == 0

    def test_bot_not_in_channel_asks_for_an_invite(self, make_bot, slack_api, redis_client,
                                                   key_prefix):
        slack_api.refused_channels["C0PRIVATE"] = "not_in_channel"
        make_bot().command(f"stop {JOB} {VERSION}", channel="C0PRIVATE")
        wait_reply(slack_api, "U0ONCALL", "/invite")
        assert not list(redis_client.scan_iter(match=Keys(key_prefix).pending("*")))


class TestMalformed:
    @pytest.mark.parametrize("text,needle", [
        ("stop", "`stop` needs a job: its name (`/modelarts stop team-a-resnet50`"),
        ("stop 182626", "looks like an old-version job id"),
        ("stop abc 278813", "job_id must be a positive integer"),
        ("stop 182626 -1", "version_id must be a positive integer"),
        ("stop 0 278813", "job_id must be a positive integer"),
        ("stop 182626 278813 now", "I got 3 words"),
        ("stop " + "9" * 5000, "characters long"),
        ("stop 182626\x00 278813", "control characters"),
        ("stop １８２６２６ 278813", "job_id must be a positive integer"),
        ("restart 182626 278813", "I don't know the command `restart`."),
        ("stpo 182626 278813", "I don't know the command `stpo`: did you mean `stop`?"),
        ("STAUTS 182626 278813", "did you mean `status`?"),
        ("histroy team-a-resnet", "did you mean `history`?"),
        ("<!channel> 182626", "the command `&lt;!channel&gt;`."),
    ])
    def test_usage_says_what_was_wrong(self, make_bot, slack_api, emulator, text, needle):
        resp = make_bot().command(text)
        assert resp.status_code == 200
        assert needle in resp.json()["text"] and "Usage" in resp.json()["text"]
        settle(0.2)
        assert not slack_api.calls_to("chat.postMessage")
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0


class TestNoJobNamed:
    @pytest.mark.parametrize("action", ["stop", "status", "history"])
    def test_each_of_the_three_forms_is_named(self, make_bot, action):
        text = make_bot().command(action).json()["text"]
        first = text.split("\n")[0]
        assert f"`/modelarts {action} team-a-resnet50`" in first                   # a name
        assert "&lt;project&gt;/&lt;name&gt;" in first
        assert f"`/modelarts {action} 3faf5c03-aaa1-4cbe-879d-24b05d997347`" in first  # v2 id
        assert f"`/modelarts {action} 182626 278813`" in first                     # v1 ids


class TestSupportContact:
    """SUPPORT_CONTACT in every message that tells a user to ask someone (issue 22)."""

    @pytest.mark.parametrize("value,shown", [
        ("C0PLATFORM1", "Ask <#C0PLATFORM1> to map you"),
        ("U0PLATFORM1", "Ask <@U0PLATFORM1> to map you"),
        ("S0PLATFORM1", "Ask <!subteam^S0PLATFORM1> to map you"),
        ("#ml-platform", "Ask #ml-platform to map you"),
        ("https://wiki.example/ml?a=1&b=2",
         "Ask <https://wiki.example/ml?a=1&amp;b=2|the platform team> to map you"),
    ])
    def test_an_unmapped_user_is_told_whom_to_ask(self, make_bot, slack_api, value, shown):
        make_bot(SUPPORT_CONTACT=value).command(f"stop {JOB} {VERSION}", user="U0STRANGER")
        assert shown in wait_reply(slack_api, "U0STRANGER", "no role")[0]

    def test_a_denied_user_and_status_name_it_too(self, make_bot, slack_api, emulator):
        bot = make_bot(SUPPORT_CONTACT="C0PLATFORM1")
        bot.command(f"stop {JOB} {VERSION}", user="U0BOB")
        assert "Ask <#C0PLATFORM1> to map you to one." in wait_reply(slack_api, "U0BOB",
                                                                     "may not stop")[0]
        bot.command("list", user="U0BOB")
        listed = slack_api.wait_for(lambda: [t for t in responses(slack_api, "U0BOB")
                                             if "not listed" in t])[0]
        assert "Ask <#C0PLATFORM1> if you need to." in listed

    def test_unset_keeps_the_old_words(self, make_bot, slack_api):
        make_bot().command(f"stop {JOB} {VERSION}", user="U0STRANGER")
        assert "Ask the platform team to map you." in wait_reply(slack_api, "U0STRANGER",
                                                                 "no role")[0]


class TestSigning:
    def test_bad_signature_is_401_and_does_nothing(self, make_bot, slack_api):
        resp = make_bot().command(f"stop {JOB} {VERSION}", secret="wrong-secret")
        assert resp.status_code == 401
        settle()
        assert not slack_api.calls

    def test_stale_timestamp_is_401(self, make_bot, slack_api):
        resp = make_bot().command(f"stop {JOB} {VERSION}", timestamp=int(time.time()) - 6 * 60)
        assert resp.status_code == 401
        settle()
        assert not slack_api.calls

    def test_signing_secret_never_in_a_response(self, make_bot):
        resp = make_bot().command("stop x y")
        assert SIGNING_SECRET not in resp.text


class TestClicks:
    def test_click_by_another_user_changes_nothing(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        bot.click_button(msg, CONFIRM, "U0ALICE")
        wait_reply(slack_api, "U0ALICE", "Only <@U0ONCALL> can confirm")
        assert has_buttons(msg) and emulator.stop_count(V1Job(JOB, VERSION)) == 0
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_twenty_concurrent_clicks_give_one_stop(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        value, blocks = button_value(msg, CONFIRM), msg.blocks
        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(
                lambda _: bot.click(CONFIRM, value, "U0ONCALL", msg.channel, msg.ts,
                                    blocks).status_code, range(20)))
        assert codes == [200] * 20
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        slack_api.wait_for(
            lambda: len(replies_with(slack_api, "U0ONCALL", "already handled")) == 19, timeout=20)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1
        assert len(slack_api.thread_replies(msg.channel, msg.ts)) == 1

    def test_slack_retry_of_a_click_stops_nothing_twice(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        value, blocks = button_value(msg, CONFIRM), msg.blocks
        bot.click(CONFIRM, value, "U0ONCALL", msg.channel, msg.ts, blocks)
        bot.click(CONFIRM, value, "U0ONCALL", msg.channel, msg.ts, blocks,
                  headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
        wait_reply(slack_api, "U0ONCALL", "already handled")
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        settle()
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1
        assert len(slack_api.thread_replies(msg.channel, msg.ts)) == 1

    def test_two_replicas_share_one_confirmation(self, make_bot, slack_api, emulator):
        one, two = make_bot(), make_bot()
        one.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        value, blocks = button_value(msg, CONFIRM), msg.blocks
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda i: (one, two)[i % 2].click(CONFIRM, value, "U0ONCALL",
                                                            msg.channel, msg.ts, blocks),
                          range(10)))
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        slack_api.wait_for(lambda: len(replies_with(slack_api, "U0ONCALL", "already handled")) == 9,
                          timeout=20)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_request_on_one_replica_confirm_on_the_other(self, make_bot, slack_api, emulator):
        one, two = make_bot(), make_bot()
        one.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        two.click_button(msg, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_expired_confirmation_stops_nothing_and_loses_buttons(self, make_bot, slack_api,
                                                                  emulator):
        bot = make_bot(CONFIRM_TTL_SECONDS=5)
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        time.sleep(5.5)
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        wait_reply(slack_api, "U0ONCALL", "expired")
        slack_api.wait_for(lambda: not has_buttons(msg))
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

    def test_cancel_by_requester(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        value = button_value(msg, CONFIRM)
        bot.click_button(msg, CANCEL, "U0ALICE")
        wait_reply(slack_api, "U0ALICE", "Only <@U0ONCALL> can cancel")
        bot.click_button(msg, CANCEL, "U0ONCALL")
        slack_api.wait_for(lambda: "Cancelled by <@U0ONCALL>" in msg.text and not has_buttons(msg))
        bot.click(CONFIRM, value, "U0ONCALL", msg.channel, msg.ts)
        wait_reply(slack_api, "U0ONCALL", "already handled")
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

    def test_role_is_checked_again_at_confirm(self, make_bot, slack_api, emulator, roles_file):
        slack_api.usergroups["S0TEAMA"] = ["U0CAROL"]
        bot = make_bot(USERGROUP_CACHE_SECONDS=0)
        bot.command(f"stop {JOB} {VERSION}", user="U0CAROL")
        msg = request_message(slack_api)
        slack_api.usergroups["S0TEAMA"] = []
        bot.click_button(msg, CONFIRM, "U0CAROL")
        slack_api.wait_for(lambda: "no longer holds a role" in msg.text)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

    def test_confirm_reads_the_cached_usergroup_with_its_consume(
            self, make_bot, slack_api, emulator, redis_client, key_prefix):
        """The re-check's cache read rides in the consume's round trip, and is still honoured."""
        slack_api.usergroups["S0TEAMA"] = ["U0CAROL"]
        bot = make_bot(USERGROUP_CACHE_SECONDS=300)
        bot.command(f"stop {JOB} {VERSION}", user="U0CAROL")
        msg = request_message(slack_api)
        redis_client.set(Keys(key_prefix).usergroup("S0TEAMA"), "[]", ex=300)
        bot.click_button(msg, CONFIRM, "U0CAROL")
        slack_api.wait_for(lambda: "no longer holds a role" in msg.text)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0
        assert len(slack_api.calls_to("usergroups.users.list")) == 1

    @pytest.mark.parametrize("payload", [
        {}, {"type": "block_actions"}, {"type": "block_actions", "actions": []},
        {"type": "block_actions", "user": {"id": "U0ONCALL"}, "actions": [{"action_id": CONFIRM}]},
        {"type": "block_actions", "user": {"id": 5}, "channel": {"id": "C"},
         "container": {"message_ts": "1.2"}, "actions": [{"action_id": CONFIRM, "value": 7}]},
    ])
    def test_malformed_click_payloads_stop_nothing(self, make_bot, slack_api, emulator, payload):
        from urllib.parse import urlencode

        resp = make_bot().post(urlencode({"payload": json.dumps(payload)}))
        assert resp.status_code < 500
        settle(0.2)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

    @pytest.mark.parametrize("action", [CONFIRM, CANCEL])
    def test_a_click_from_another_channel_consumes_nothing(self, make_bot, slack_api, emulator,
                                                           redis_client, key_prefix, action):
        """The channel is compared in the consume script: a click carrying another channel
        (the requester's own) is refused there, before anything moves, so no owed reply is
        opened (recovery would have posted a false "Outcome unknown") and the real button
        still stops the job, once."""
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        cid, keys = button_value(msg, action), Keys(key_prefix)
        bot.click(action, cid, "U0ONCALL", "C0ELSEWHERE", msg.ts, msg.blocks)
        wait_reply(slack_api, "U0ONCALL", "belongs to another channel")
        settle(0.3)
        assert redis_client.exists(keys.pending(cid)) and not redis_client.exists(keys.done(cid))
        owed_zset, owed_hash = keys.owed()
        assert not redis_client.zcard(owed_zset) and not redis_client.hlen(owed_hash)
        assert has_buttons(msg) and not slack_api.thread_replies(msg.channel, msg.ts)
        refused = [e for e in Audit(redis_client, key_prefix).read()
                   if e.get("event") == "refused"]
        assert [(e.get("outcome"), e.get("channel")) for e in refused] == [
            ("wrong_channel", "C0INCIDENT")]

        bot.click_button(msg, CONFIRM, "U0ONCALL")
        reply = slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))[0]
        assert "Stop requested" in reply.text
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1
        assert not replies_with(slack_api, "U0ONCALL", "already handled")

    def test_forged_confirmation_id_stops_nothing(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        bot.click(CONFIRM, "forged-id", "U0ONCALL", msg.channel, msg.ts, msg.blocks)
        wait_reply(slack_api, "U0ONCALL", "expired")
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0


class TestModelArtsFailures:
    @pytest.mark.parametrize("field", ["error_msg", "error_message"])
    def test_error_code_and_message_reach_the_thread(self, make_bot, slack_api, emulator, field):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        emulator.set_fault(V1Job(JOB, VERSION), "failure", error_code="ModelArts.0105",
                           error_msg="Error string", field=field, http_status=400)
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        reply = slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))[0]
        assert "ModelArts.0105" in reply.text and "Error string" in reply.text
        slack_api.wait_for(lambda: "Stop failed: ModelArts.0105" in msg.text)

    def test_500_with_html(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        emulator.set_fault(V1Job(JOB, VERSION), "html_500")
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        reply = slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))[0]
        assert "HTTP 500" in reply.text and "Stop failed" in reply.text

    def test_timeout_is_outcome_unknown_never_a_second_stop(self, make_bot, slack_api, emulator):
        bot = make_bot(MODELARTS_TIMEOUT_SECONDS=0.5)
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        emulator.set_fault(V1Job(JOB, VERSION), "slow", delay=1.5, when="after")
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        reply = slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))[0]
        assert "Outcome unknown" in reply.text
        slack_api.wait_for(lambda: emulator.stop_count(V1Job(JOB, VERSION)) == 1)
        settle(1.5)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_lookup_failure_is_reported_and_nothing_pending(self, make_bot, slack_api, emulator):
        emulator.set_fault(V1Job(JOB, VERSION), "html_500", on="get")
        make_bot().command(f"stop {JOB} {VERSION}")
        wait_reply(slack_api, "U0ONCALL", "Could not look up")
        assert not slack_api.calls_to("chat.postMessage")


class TestRedisDown:
    def test_redis_down_before_the_click_then_back(self, make_bot, slack_api, emulator,
                                                   own_redis):
        bot = make_bot(REDIS_URL=own_redis.url)
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        own_redis.stop()
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        wait_reply(slack_api, "U0ONCALL", "can't reach my state store (Redis)")
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0
        assert bot.http.get(bot.url + "/healthz", timeout=5).status_code == 200

        own_redis.start()  # empty again: the confirmation is gone, so the click is expired
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        wait_reply(slack_api, "U0ONCALL", "expired")
        bot.command(f"stop {JOB} {VERSION}")
        fresh = request_message(slack_api, exclude=(msg.ts,))
        bot.click_button(fresh, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: slack_api.thread_replies(fresh.channel, fresh.ts))
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_redis_down_at_request_tells_the_user_and_keeps_nothing(self, make_bot, slack_api,
                                                                    emulator, own_redis):
        bot = make_bot(REDIS_URL=own_redis.url)
        own_redis.stop()
        bot.command(f"stop {JOB} {VERSION}")
        wait_reply(slack_api, "U0ONCALL", "Nothing was stopped")
        posted = slack_api.calls_to("chat.postMessage")
        if posted:  # the request was posted before Redis failed: it must say it can't be confirmed
            msg = next(iter(slack_api.messages.values()))
            slack_api.wait_for(lambda: not has_buttons(msg) and "Not recorded" in msg.text)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0


class TestDecisionLog:
    def test_one_json_line_per_decision_without_secrets(self, make_bot, slack_api, emulator,
                                                        caplog):
        import logging

        from bot.core.logs import JsonFormatter

        caplog.set_level(logging.INFO, logger="bot.decision")
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: "Stop requested" in msg.text)
        lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records
                 if r.name == "bot.decision"]
        events = [line["event"] for line in lines]
        assert events == ["requested", "confirmed", "stopped"]
        stopped = lines[-1]
        assert stopped["user"] == "U0ONCALL" and stopped["channel"] == msg.channel
        assert stopped["job_id"] == JOB and stopped["version_id"] == VERSION
        assert stopped["outcome"] == "stop_requested" and "error_code" in stopped
        text = "\n".join(JsonFormatter().format(r) for r in caplog.records)
        assert SIGNING_SECRET not in text and "emulator-sk" not in text
