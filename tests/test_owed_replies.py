"""Every stop the bot may have sent gets exactly one outcome reply: when the replica dies after
sending it, when Slack refuses the reply for a while, and when recovery and a slow owner race.
Found by the chaos run (bench/chaos/run.py): a SIGKILL between the stop and the reply, and 429s
beyond the client's two retries, each left a confirmed stop without any reply."""

from __future__ import annotations

import time
from dataclasses import replace

import requests

from bot.core.keys import Keys
from bot.core.slack_out import SlackOut
from bot.flow.blocks import CONFIRM
from bot.flow.confirmations import Result
from bot.flow.outcomes import OwedReplies
from bot.modelarts.refs import V1Job
from tests.plugins.slack import button_value
from tests.test_stop_flow import JOB, VERSION, request_message


def outcome_replies(slack_api, msg) -> list[str]:
    return [m.text for m in slack_api.thread_replies(msg.channel, msg.ts)
            if m.text.startswith((":white_check_mark:", ":x:", ":warning:"))]


def owed_for(bot, redis_client, key_prefix, budget: float) -> OwedReplies:
    return OwedReplies(redis_client, key_prefix, SlackOut(bot.bot.slack), budget,
                       post_lease_seconds=0.1, audit=bot.bot.flow.store.audit)


def consume(bot, msg, owed: OwedReplies):
    """Consume the request's confirmation the way a confirm click does, owing its reply."""
    owe = owed.owe(msg.ts)
    got = bot.bot.flow.store.consume(button_value(msg, CONFIRM), "U0ONCALL", "confirmed", owe=owe)
    assert got.result is Result.OK
    return replace(got.confirmation, ts=msg.ts, thread_ts=msg.ts), owe


class TestOwedReplies:
    def test_a_replica_dying_after_the_stop_is_answered_by_another(
            self, make_bot, slack_api, emulator, redis_client, key_prefix):
        """The owner opened the debt and died; a live replica's recovery posts "unknown"."""
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        dead = owed_for(bot, redis_client, key_prefix, budget=0.2)
        consume(bot, msg, dead)     # ... and the replica dies before it sends the stop
        bot.bot.start_background()
        try:
            slack_api.wait_for(lambda: outcome_replies(slack_api, msg), timeout=15)
            time.sleep(1.5)
        finally:
            bot.bot.close()
        replies = outcome_replies(slack_api, msg)
        assert len(replies) == 1 and "Outcome unknown" in replies[0]
        assert "interrupted" in replies[0] and f"/modelarts status {JOB} {VERSION}" in replies[0]
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0, "recovery must never stop"

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
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_a_slow_owner_overtaken_by_recovery_posts_nothing(
            self, make_bot, slack_api, redis_client, key_prefix):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        owed = owed_for(bot, redis_client, key_prefix, budget=0.0)
        c, owe = consume(bot, msg, owed)
        time.sleep(0.2)
        assert owed.recover_one("recovery")
        owed.deliver(c, owe, ":white_check_mark: Stop requested (the slow owner)")
        replies = outcome_replies(slack_api, msg)
        assert len(replies) == 1 and "Outcome unknown" in replies[0]
        assert not owed.recover_one("recovery"), "nothing is owed any more"

    def test_a_confirm_whose_role_is_gone_owes_nothing(self, make_bot, slack_api, emulator,
                                                        redis_client, key_prefix):
        slack_api.usergroups["S0TEAMA"] = ["U0CAROL"]
        bot = make_bot(USERGROUP_CACHE_SECONDS=0)
        bot.command(f"stop {JOB} {VERSION}", user="U0CAROL")
        msg = request_message(slack_api)
        slack_api.usergroups["S0TEAMA"] = []
        bot.click_button(msg, CONFIRM, "U0CAROL")
        slack_api.wait_for(lambda: "no longer holds a role" in msg.text)
        assert redis_client.zcard(Keys(key_prefix).owed()[0]) == 0
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0


def test_unparsable_bodies_are_400_not_500(make_bot):
    """Found by the chaos run: Bolt parses the body before anything checks it."""
    bot = make_bot()
    for body in ("payload=%5B1%2C2%5D", "payload=%7Bnot-json", "payload=%22x%22",
                 "payload=%7B%22authorizations%22%3A5%7D"):
        assert bot.post(body).status_code == 400
    resp = requests.post(bot.url + "/slack/events", data=b"\xff\xfe", timeout=5)
    assert resp.status_code == 400
