"""Every stop the bot may have sent gets exactly one outcome reply: when the replica dies after
sending it, when Slack refuses the reply for a while, and when recovery and a slow owner race.
Found by the chaos run (bench/chaos.py): a SIGKILL between the stop and the reply, and 429s
beyond the client's two retries, each left a confirmed stop without any reply."""

from __future__ import annotations

import time

import requests

from bot.flow.confirmations import make_confirmation
from bot.flow.outcomes import OwedReplies
from bot.slack.blocks import CONFIRM
from tests.test_stop_flow import JOB, VERSION, request_message


def outcome_replies(slack_api, msg) -> list[str]:
    return [m.text for m in slack_api.thread_replies(msg.channel, msg.ts)
            if m.text.startswith((":white_check_mark:", ":x:", ":warning:"))]


def owed_for(bot, redis_client, key_prefix, budget: float) -> OwedReplies:
    return OwedReplies(redis_client, key_prefix, bot.bot.slack, budget)


def confirmation(msg):
    return make_confirmation(requester="U0ONCALL", channel=msg.channel, ts=msg.ts,
                             thread_ts=msg.ts, job_id=JOB, version_id=VERSION,
                             job_name="team-a-resnet", version_name="V0002")


class TestOwedReplies:
    def test_a_replica_dying_after_the_stop_is_answered_by_another(
            self, make_bot, slack_api, emulator, redis_client, key_prefix):
        """The owner opened the debt and died; a live replica's recovery posts "unknown"."""
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        dead = owed_for(bot, redis_client, key_prefix, budget=0.2)
        assert dead.open(confirmation(msg), "U0ONCALL")
        bot.bot.start_background()
        try:
            slack_api.wait_for(lambda: outcome_replies(slack_api, msg), timeout=15)
            time.sleep(1.5)
        finally:
            bot.bot.close()
        replies = outcome_replies(slack_api, msg)
        assert len(replies) == 1 and "Outcome unknown" in replies[0]
        assert "interrupted" in replies[0] and f"/modelarts status {JOB} {VERSION}" in replies[0]
        assert emulator.stop_count(JOB, VERSION) == 0, "recovery must never stop"

    def test_the_reply_lands_after_slack_refuses_it_for_a_while(self, make_bot, slack_api,
                                                                emulator):
        bot = make_bot()
        bot.bot.start_background()
        try:
            bot.command(f"stop {JOB} {VERSION}")
            msg = request_message(slack_api)
            for _ in range(3):      # one more 429 than the client retries by itself
                slack_api.fail_next("chat.postMessage", 429, {"retry_after": 1})
            slack_api.fail_next("chat.postMessage", 500, {"error": "internal_error"})
            bot.click_button(msg, CONFIRM, "U0ONCALL")
            slack_api.wait_for(lambda: outcome_replies(slack_api, msg), timeout=30)
            time.sleep(1.5)
        finally:
            bot.bot.close()
        replies = outcome_replies(slack_api, msg)
        assert len(replies) == 1 and "Stop requested" in replies[0]
        assert emulator.stop_count(JOB, VERSION) == 1

    def test_a_slow_owner_overtaken_by_recovery_posts_nothing(
            self, make_bot, slack_api, redis_client, key_prefix):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        owed = owed_for(bot, redis_client, key_prefix, budget=0.0)
        c = confirmation(msg)
        owner = owed.open(c, "U0ONCALL")
        time.sleep(0.05)
        assert owed.recover_one("recovery")
        owed.deliver(c, owner, ":white_check_mark: Stop requested (the slow owner)")
        replies = outcome_replies(slack_api, msg)
        assert len(replies) == 1 and "Outcome unknown" in replies[0]
        assert not owed.recover_one("recovery"), "nothing is owed any more"

    def test_redis_down_before_the_stop_sends_no_stop(self, make_bot, slack_api, emulator,
                                                      own_redis):
        bot = make_bot(REDIS_URL=own_redis.url)
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        flow = bot.bot.flow
        c = confirmation(msg)
        own_redis.stop()
        assert flow.owed.open(c, "U0ONCALL") is None
        assert emulator.stop_count(JOB, VERSION) == 0


def test_unparsable_bodies_are_400_not_500(make_bot):
    """Found by the chaos run: Bolt parses the body before anything checks it."""
    bot = make_bot()
    for body in ("payload=%5B1%2C2%5D", "payload=%7Bnot-json", "payload=%22x%22",
                 "payload=%7B%22authorizations%22%3A5%7D"):
        assert bot.post(body).status_code == 400
    resp = requests.post(bot.url + "/slack/events", data=b"\xff\xfe", timeout=5)
    assert resp.status_code == 400
