"""No stale buttons (issue 22): a confirmation nobody clicked is edited "Expired" by the bot
itself, once, by one of the replicas. End to end: signed requests to served replicas with their
background loops, real Redis, the emulator and the Slack stand-in; every wait polls with a
deadline."""

from __future__ import annotations

import json
from dataclasses import replace

from bot.core.keys import Keys
from bot.flow import blocks as b
from bot.flow.blocks import CANCEL, CONFIRM
from bot.flow.confirmations import Confirmation
from bot.modelarts.refs import V1Job, V2Job
from tests.plugins.alerts import generic
from tests.plugins.slack import button_value, responses
from tests.test_alerts import wait_alerts
from tests.test_stop_flow import JOB, VERSION, has_buttons, request_message, settle

TTL = 5                      # the shortest CONFIRM_TTL_SECONDS allows
REF = V1Job(JOB, VERSION)    # team-a-resnet, RUNNING
EXPIRED = "Expired: nobody confirmed within 5 s. Nothing was stopped."


def updates_of(slack_api, msg) -> list[str]:
    return [c.params.get("text", "") for c in slack_api.calls_to("chat.update")
            if c.params.get("ts") == msg.ts]


def expiring(redis_client, key_prefix) -> int:
    zset, rec = Keys(key_prefix).expiring()
    return redis_client.zcard(zset) + redis_client.hlen(rec)


class TestExpiredWithoutAClick:
    def test_the_bot_edits_it_once_and_no_buttons_are_left(self, running, slack_api, emulator,
                                                          redis_client, key_prefix):
        bot = running(CONFIRM_TTL_SECONDS=TTL)
        assert bot.command(f"stop {JOB} {VERSION}").status_code == 200
        msg = request_message(slack_api)
        assert "within 5 s." in json.dumps(msg.blocks), "a TTL under a minute is in seconds"
        assert has_buttons(msg)
        slack_api.wait_for(lambda: EXPIRED in msg.text, timeout=TTL + 10)
        assert not has_buttons(msg)
        assert "asked to stop *team-a-resnet*" in msg.text
        slack_api.wait_for(lambda: expiring(redis_client, key_prefix) == 0)
        settle(2.5)                               # longer than a sweep: a second edit shows
        assert len(updates_of(slack_api, msg)) == 1
        assert emulator.stop_count(REF) == 0
        audit = [f for _, f in redis_client.xrange(Keys(key_prefix).audit())]
        assert [f[b"event"] for f in audit] == [b"requested", b"expired"]
        assert audit[1][b"job_id"] == str(JOB).encode()

    def test_two_replicas_edit_each_message_once(self, running, slack_api, redis_client,
                                                 key_prefix):
        first, second = running(CONFIRM_TTL_SECONDS=TTL), running(CONFIRM_TTL_SECONDS=TTL)
        assert first.command(f"stop {JOB} {VERSION}").status_code == 200
        one = request_message(slack_api)
        assert second.command("stop 3faf5c03-aaa1-4cbe-879d-24b05d997347").status_code == 200
        two = request_message(slack_api, exclude=(one.ts,))
        for msg in (one, two):
            slack_api.wait_for(lambda m=msg: EXPIRED in m.text, timeout=TTL + 10)
        slack_api.wait_for(lambda: expiring(redis_client, key_prefix) == 0)
        settle(2.5)
        assert [len(updates_of(slack_api, m)) for m in (one, two)] == [1, 1]
        expired = [f for _, f in redis_client.xrange(Keys(key_prefix).audit())
                   if f[b"event"] == b"expired"]
        assert len(expired) == 2, "one audit entry per expired request"

    def test_a_click_after_the_edit_stops_nothing(self, running, slack_api, emulator):
        bot = running(CONFIRM_TTL_SECONDS=TTL)
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        # What a client that missed the edit still shows.
        cid, stale = button_value(msg, CONFIRM), msg.blocks
        slack_api.wait_for(lambda: EXPIRED in msg.text, timeout=TTL + 10)
        bot.click(CONFIRM, cid, "U0ONCALL", msg.channel, msg.ts, stale)
        slack_api.wait_for(lambda: any("expired" in t for t in responses(slack_api, "U0ONCALL")))
        assert emulator.stop_count(REF) == 0

    def test_the_alert_loses_its_waiting_note(self, make_alert_bot, slack_api):
        bot = make_alert_bot(CONFIRM_TTL_SECONDS=TTL)
        assert bot.alert(generic()).status_code == 202
        alert = wait_alerts(slack_api, 1)[0]
        bot.click_button(alert, b.STOP_REQUEST, "U0ONCALL")
        msg = request_message(slack_api)
        slack_api.wait_for(lambda: "waiting for confirmation" in json.dumps(alert.blocks))
        slack_api.wait_for(lambda: EXPIRED in msg.text, timeout=TTL + 10)
        slack_api.wait_for(lambda: "waiting for confirmation" not in json.dumps(alert.blocks))
        assert "Stop" in json.dumps(alert.blocks), "the alert's own Stop button stays"


class TestDecidedIsNeverEditedAsExpired:
    def test_confirmed_and_cancelled_requests_keep_their_last_words(
            self, running, slack_api, emulator, redis_client, key_prefix):
        bot = running(CONFIRM_TTL_SECONDS=TTL)
        bot.command(f"stop {JOB} {VERSION}")
        confirmed = request_message(slack_api)
        bot.click_button(confirmed, CONFIRM, "U0ONCALL")
        bot.command("stop 3faf5c03-aaa1-4cbe-879d-24b05d997347")
        cancelled = request_message(slack_api, exclude=(confirmed.ts,))
        bot.click_button(cancelled, CANCEL, "U0ONCALL")
        slack_api.wait_for(lambda: "Cancelled by" in cancelled.text)
        assert expiring(redis_client, key_prefix) == 0, "the consume removed both entries"
        settle(TTL + 3)
        assert all("Expired" not in t for m in (confirmed, cancelled)
                   for t in updates_of(slack_api, m))
        assert emulator.stop_count(REF) == 1

    def test_a_protected_request_awaiting_approval_says_nobody_approved(
            self, running, slack_api, roles_file):
        roles_file.write_text(roles_file.read_text() + 'protected:\n  - jobs: ["team-a-*"]\n')
        bot = running(CONFIRM_TTL_SECONDS=TTL)
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: "Waiting for a second person" in msg.text)
        slack_api.wait_for(lambda: "Expired: nobody approved within 5 s." in msg.text,
                           timeout=TTL + 10)
        assert not has_buttons(msg)


class TestTheWords:
    def c(self, **fields) -> Confirmation:
        base = Confirmation("cid", "U0ALICE", "C0", "1.1", "1.1", V2Job("3faf5c03-aaa1-4cbe-879d-"
                            "24b05d997347"), "team-a-resnet50", 0.0)
        return replace(base, **fields)

    def test_a_ttl_is_written_in_the_unit_it_has(self):
        assert [b.within(s) for s in (5, 30, 59, 60, 90, 120, 3600)] == [
            "5 s", "30 s", "59 s", "1 min", "1 min 30 s", "2 min", "60 min"]

    def test_the_request_says_within_30_s(self, emulator, modelarts_client):
        job = modelarts_client.lookup(REF)
        _, blocks = b.request_message(job, "U0ALICE", "cid", 30)
        assert "can confirm, within 30 s." in json.dumps(blocks)
        assert "(30s)" not in json.dumps(blocks) and "1 min" not in json.dumps(blocks)

    def test_expired_has_no_buttons_and_names_the_job(self):
        text, blocks = b.expired(self.c(), 120)
        assert text.endswith("Expired: nobody confirmed within 2 min. Nothing was stopped.")
        assert all(block["type"] != "actions" for block in blocks)
        assert "*team-a-resnet50*" in text
        assert "nobody approved" in b.expired(self.c(confirmed_by="U0ALICE"), 120)[0]
