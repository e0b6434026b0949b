"""Every stop followed to its end (issue 12), end to end: signed requests to the served app, real
Redis, the ModelArts emulator and the Slack stand-in over loopback HTTP. Short intervals come from
settings; every wait polls with a deadline."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from urllib.parse import urlencode

from bot.core.keys import Keys
from bot.core.slack_out import SlackOut
from bot.flow import blocks as b
from bot.flow.audit import Audit, AuditEntry
from bot.flow.blocks import CONFIRM
from bot.flow.confirmations import Confirmation, Result
from bot.flow.outcomes import OwedReplies
from bot.flow.watches import WatchEntry, Watches
from bot.modelarts.refs import V1Job, V2Job
from tests.plugins.alerts import generic
from tests.plugins.slack import TEAM, button_value
from tests.test_stop_flow import JOB, VERSION, request_message

REF = V1Job(JOB, VERSION)                                  # team-a-resnet, RUNNING
V2 = V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347")         # team-a-resnet50, Running
FAST = {"STOP_VERIFY_INTERVAL_SECONDS": 0.2}


def texts(slack_api, msg) -> list[str]:
    return [m.text for m in slack_api.thread_replies(msg.channel, msg.ts)]


def with_text(slack_api, msg, needle: str) -> list[str]:
    return [t for t in texts(slack_api, msg) if needle in t]


def status_calls(emulator, ref) -> int:
    path = (f"/training-jobs/{ref.job_id}/versions/{ref.version_id}" if isinstance(ref, V1Job)
            else f"/training-jobs/{ref.training_job_id}")
    return sum(1 for r in emulator.requests if r.method == "GET" and r.path.endswith(path))


def watched(redis_client, key_prefix) -> int:
    return redis_client.hlen(Keys(key_prefix).watches()[1])


def stop(bot, slack_api, args: str, user: str = "U0ONCALL"):
    """Request and confirm a stop; the request message."""
    bot.command(f"stop {args}", user=user)
    msg = request_message(slack_api)
    assert bot.click_button(msg, CONFIRM, user).status_code == 200
    return msg


class TestFollowedToTheEnd:
    def test_the_final_message_comes_after_killed_not_before(self, running, slack_api, emulator,
                                                             redis_client, key_prefix):
        emulator.stop_delay = 3600
        bot = running()
        msg = stop(bot, slack_api, f"{JOB} {VERSION}")
        reply = slack_api.wait_for(lambda: with_text(slack_api, msg, "Stop requested"))[0]
        assert "I'll post here when it has stopped" in reply
        slack_api.wait_for(lambda: status_calls(emulator, REF) >= 4, timeout=15)
        assert emulator.job(REF)["status"] == 9
        assert not with_text(slack_api, msg, "is KILLED"), "no final message before KILLED"
        emulator.set_status(REF, 12)     # the transition (advance() would skew AK/SK time)
        final = slack_api.wait_for(lambda: with_text(slack_api, msg, "is KILLED"))
        assert emulator.job(REF)["status"] == 12
        assert final[0].startswith(":white_check_mark: *team-a-resnet* is KILLED (stopped ")
        assert "s after the request)" in final[0]
        slack_api.wait_for(lambda: "Stopped by <@U0ONCALL> · KILLED at" in msg.text)
        slack_api.wait_for(lambda: watched(redis_client, key_prefix) == 0)
        calls = status_calls(emulator, REF)
        time.sleep(1)
        assert len(with_text(slack_api, msg, "is KILLED")) == 1
        assert status_calls(emulator, REF) == calls, "no status calls after the end"
        assert emulator.stop_count(REF) == 1
        verified = [f for _, f in redis_client.xrange(Keys(key_prefix).audit())
                    if f[b"event"] == b"verified"]
        assert len(verified) == 1, "one audit entry for the verified final state"
        assert (verified[0][b"outcome"], verified[0][b"state"]) == (b"stopped", b"KILLED")

    def test_a_v2_job_is_followed_to_terminated(self, running, slack_api, emulator):
        bot = running()
        msg = stop(bot, slack_api, V2.training_job_id)
        final = slack_api.wait_for(lambda: with_text(slack_api, msg, "is Terminated"), timeout=15)
        assert final[0].startswith(":white_check_mark: *team-a-resnet50* is Terminated")
        assert emulator.job(V2)["status"]["phase"] == "Terminated"
        slack_api.wait_for(lambda: "Stopped by <@U0ONCALL> · Terminated at" in msg.text)

    def test_a_job_that_ends_on_its_own_meanwhile_is_said_so(self, running, slack_api,
                                                             emulator):
        emulator.set_fault(REF, "stuck")
        bot = running()
        msg = stop(bot, slack_api, f"{JOB} {VERSION}")
        slack_api.wait_for(lambda: status_calls(emulator, REF) >= 3, timeout=15)
        emulator.set_status(REF, 11)    # FAILED, before the stop got there
        final = slack_api.wait_for(lambda: with_text(slack_api, msg, "is FAILED"))
        assert "ended on its own before the stop took effect" in final[0]
        slack_api.wait_for(lambda: "FAILED at" in msg.text and "ended on its own" in msg.text)


class TestDeadline:
    def test_stuck_in_killing_tells_the_requester_then_stops_checking(
            self, running, slack_api, emulator, redis_client, key_prefix):
        emulator.set_fault(REF, "stuck")
        bot = running(STOP_VERIFY_SECONDS=3, SUPPORT_CONTACT="C0PLATFORM1")
        msg = stop(bot, slack_api, f"{JOB} {VERSION}", user="U0ALICE")
        said = slack_api.wait_for(lambda: with_text(slack_api, msg, "still KILLING"), timeout=15)
        assert said[0].startswith(":warning: <@U0ALICE> ") and "after 3 s" in said[0]
        assert "ask <#C0PLATFORM1> if it stays like this" in said[0]      # SUPPORT_CONTACT
        assert "stopped watching" in said[0] and "Nothing was stopped again" in said[0]
        assert f"/modelarts status {JOB} {VERSION}" in said[0]
        slack_api.wait_for(lambda: "still KILLING" in msg.text and "no longer watched" in msg.text)
        slack_api.wait_for(lambda: watched(redis_client, key_prefix) == 0)
        calls = status_calls(emulator, REF)
        assert 2 <= calls <= 3 / 0.2 + 2 + 1, "bounded by deadline / interval (+ the request's)"
        time.sleep(1)
        assert status_calls(emulator, REF) == calls, "no more status calls"
        assert emulator.stop_count(REF) == 1 and emulator.job(REF)["status"] == 9


class TestOutcomeUnknown:
    def test_a_timed_out_stop_that_took_effect_is_settled_as_such(self, running, slack_api,
                                                                  emulator):
        emulator.stop_delay = 3600
        emulator.set_fault(REF, "slow", when="after", delay=2.0)
        bot = running(MODELARTS_TIMEOUT_SECONDS=1)
        msg = stop(bot, slack_api, f"{JOB} {VERSION}")
        unknown = slack_api.wait_for(lambda: with_text(slack_api, msg, "Outcome unknown"))
        assert "I'm checking its status" in unknown[0]
        took = slack_api.wait_for(lambda: with_text(slack_api, msg, "did take effect"),
                                  timeout=15)
        assert "is KILLING" in took[0] and "follow it" in took[0]
        emulator.set_status(REF, 12)     # the transition (advance() would skew AK/SK time)
        final = slack_api.wait_for(lambda: with_text(slack_api, msg, "is KILLED"))
        assert final[0].startswith(":white_check_mark: *team-a-resnet* is KILLED")
        assert emulator.stop_count(REF) == 1, "never a second stop"

    def test_a_timed_out_stop_without_effect_offers_a_fresh_stop(self, running, slack_api,
                                                                 emulator, redis_client,
                                                                 key_prefix):
        emulator.set_fault(REF, "drop", when="before", times=1)
        bot = running(STOP_UNKNOWN_VERIFY_SECONDS=2)
        msg = stop(bot, slack_api, f"{JOB} {VERSION}")
        slack_api.wait_for(lambda: with_text(slack_api, msg, "Outcome unknown"))
        said = slack_api.wait_for(lambda: [m for m in slack_api.thread_replies(msg.channel,
                                                                               msg.ts)
                                           if "did not take effect" in m.text], timeout=15)[0]
        assert said.text.startswith(":x: <@U0ONCALL> The stop did not take effect")
        assert "still RUNNING after 2 s" in said.text and "Nothing was stopped again" in said.text
        assert button_value(said, b.STOP_REQUEST) == REF.key
        slack_api.wait_for(lambda: "did not take effect" in msg.text)
        slack_api.wait_for(lambda: watched(redis_client, key_prefix) == 0)
        assert emulator.stop_count(REF) == 0, "never an automatic retry"

        click_in_thread(bot, said, "U0ALICE")
        fresh = request_message(slack_api, exclude=(msg.ts,))
        assert fresh.text.startswith("<@U0ALICE> asks to stop *team-a-resnet*")
        assert fresh.thread_ts == msg.ts, "the new confirmation is asked in the same thread"
        assert emulator.stop_count(REF) == 0


class TestInterrupted:
    def test_an_interrupted_stop_is_settled_by_an_unknown_watch(self, make_bot, running,
                                                                slack_api, emulator,
                                                                redis_client, key_prefix):
        """The replica consumed, sent the stop and died: recovery says "unknown", its DONE
        opens a watch, and the watch finds the stop took effect."""
        first = make_bot(**FAST)
        first.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        dead = OwedReplies(redis_client, key_prefix, SlackOut(first.bot.slack), 0.2,
                           audit=first.bot.flow.store.audit)
        owe = dead.owe(msg.ts)
        got = first.bot.flow.store.consume(button_value(msg, CONFIRM), "U0ONCALL", "confirmed",
                                           owe=owe)
        assert got.result is Result.OK
        emulator.store.stop(REF)        # the stop got through; then the replica died
        running()
        unknown = slack_api.wait_for(lambda: with_text(slack_api, msg, "interrupted"), timeout=15)
        assert "I'm checking its status" in unknown[0]
        slack_api.wait_for(lambda: with_text(slack_api, msg, "did take effect"), timeout=15)
        slack_api.wait_for(lambda: watched(redis_client, key_prefix) == 0, timeout=15)
        assert with_text(slack_api, msg, "is KILLED")
        assert emulator.stop_count(REF) == 1, "recovery and the watch never stop"


class TestAlert:
    def test_the_alert_message_shows_the_final_state(self, make_alert_bot, slack_api,
                                                     emulator):
        bot = make_alert_bot(**FAST)
        bot.alert(generic())
        alert = slack_api.wait_for(lambda: [m for m in slack_api.messages.values()
                                            if "Alert:" in m.text])[0]
        bot.click_button(alert, b.STOP_REQUEST, "U0ALICE")
        ask = request_message(slack_api)
        bot.click_button(ask, CONFIRM, "U0ALICE")
        slack_api.wait_for(lambda: "Stopped by <@U0ALICE> · KILLED at" in alert.text,
                           timeout=15)
        slack_api.wait_for(lambda: with_text(slack_api, alert, "is KILLED"))
        assert len(with_text(slack_api, alert, "is KILLED")) == 1 and "UTC" in alert.text
        assert emulator.stop_count(REF) == 1


class TestReplicas:
    def test_a_replica_dead_mid_watch_is_taken_over(self, make_bot, running, slack_api,
                                                    emulator, redis_client, key_prefix):
        """The watch's claimer dies holding its lease; another replica finishes the watch."""
        first = make_bot(**FAST)        # no background threads: its watch waits in Redis
        msg = stop(first, slack_api, f"{JOB} {VERSION}")
        slack_api.wait_for(lambda: watched(redis_client, key_prefix) == 1)
        dead = watches_for(first, redis_client, key_prefix, lease=1.5)
        time.sleep(1.1)                 # the first check is due
        assert dead.lease.claim("dead-replica", dead.lease_ms)
        second = running()
        final = slack_api.wait_for(lambda: with_text(slack_api, msg, "is KILLED"), timeout=15)
        assert final[0].startswith(":white_check_mark:")
        slack_api.wait_for(lambda: watched(redis_client, key_prefix) == 0)
        time.sleep(1)
        assert len(with_text(slack_api, msg, "is KILLED")) == 1
        assert second.bot.watches is not None and emulator.stop_count(REF) == 1

    def test_two_replicas_many_watches_one_final_message_each(self, running, slack_api,
                                                              emulator, redis_client,
                                                              key_prefix):
        refs = emulator.add_training_jobs(30, name_prefix="many-")
        emulator.stop_delay = 1.5
        one, two = running(), running()
        for n, ref in enumerate(refs):
            emulator.store.stop(ref)
            c = Confirmation(f"cid-{n}", "U0ONCALL", "C0MANY", "", f"{n}.000100", ref,
                             f"many-{n}", time.time())
            (one if n % 2 else two).bot.watches.open(c, "U0ONCALL", "accepted", time.time())
        slack_api.wait_for(lambda: watched(redis_client, key_prefix) == 0, timeout=30)
        time.sleep(1)
        for n in range(len(refs)):
            finals = [m.text for m in slack_api.thread_replies("C0MANY", f"{n}.000100")]
            assert len(finals) == 1 and f"*many-{n}* is Terminated" in finals[0], (n, finals)
        assert all(emulator.stop_count(ref) == 1 for ref in refs)


def watches_for(bot, redis_client, key_prefix, lease: float) -> Watches:
    return Watches(redis_client, key_prefix, bot.bot.modelarts, SlackOut(bot.bot.slack),
                   interval=0.2, span=60, unknown_span=10, lease_seconds=lease,
                   audit=bot.bot.flow.store.audit)


def click_in_thread(bot, message, user: str):
    """Click the Stop button of a message that sits in a thread: Slack's payload names it."""
    payload = {
        "type": "block_actions", "api_app_id": "A0BOT", "token": "legacy-unused",
        "team": {"id": TEAM, "domain": "standin"},
        "user": {"id": user, "username": user.lower(), "team_id": TEAM},
        "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel,
                      "is_ephemeral": False, "thread_ts": message.thread_ts},
        "channel": {"id": message.channel, "name": "incident"},
        "message": {"type": "message", "ts": message.ts, "thread_ts": message.thread_ts,
                    "text": message.text, "blocks": message.blocks},
        "trigger_id": f"{time.time()}.trigger",
        "response_url": bot.slack_api.response_url(f"act-{user}"),
        "actions": [{"type": "button", "action_id": b.STOP_REQUEST, "block_id": "modelarts_watch",
                     "value": button_value(message, b.STOP_REQUEST),
                     "action_ts": str(time.time())}],
    }
    resp = bot.post(urlencode({"payload": json.dumps(payload)}))
    assert resp.status_code == 200
    return resp


def test_the_fresh_stop_is_the_alerts_button():
    from bot.alerts.blocks import STOP_REQUEST

    assert b.STOP_REQUEST == STOP_REQUEST


class TestStoredShape:
    """The typed entries keep the JSON that running replicas read and write."""

    KEYS = ["c", "user", "kind", "since", "deadline", "span", "owner", "say", "blocks", "end",
            "tries", "checks", "state", "error"]

    def confirmation(self) -> Confirmation:
        return Confirmation("cid-1", "U0ONCALL", "C0OPS", "1.2", "1.2", REF, "team-a-resnet", 1.0)

    def test_a_new_watch_has_the_fields_it_had_as_a_dict(self, redis_client, key_prefix):
        watches = Watches(redis_client, key_prefix, None, None, interval=5, span=600,
                          unknown_span=900, lease_seconds=1,
                          audit=Audit(redis_client, key_prefix, 90))
        raw = watches.entry(self.confirmation(), "U0ONCALL", "unknown", None).to_json()
        e = json.loads(raw)
        assert list(e) == self.KEYS and e["span"] == 900 and e["blocks"] is None
        assert WatchEntry.from_json(raw).to_json() == raw

    def test_a_checked_watch_carries_its_audit_entry_and_verdict(self):
        e = WatchEntry(self.confirmation(), "U0ONCALL", "accepted", 1.0, 601.0, 600, checks=1,
                       verdict="took_effect")
        assert json.loads(e.to_json())["audit"] == "" and AuditEntry.from_json("") is None
        audited = replace(e, audit=AuditEntry({"event": "verified"}))
        assert json.loads(json.loads(audited.to_json())["audit"]) == {"event": "verified"}
        assert list(json.loads(e.to_json()))[-2:] == ["verdict", "audit"]
