"""Alert storms: every distinct alert delivered once, in order per channel, Retry-After honoured,
across a restart and across two replicas draining one queue. Real HTTP, real Redis, and the Slack
stand-in answering 429 with Retry-After."""

from __future__ import annotations

import json
import re
import time
from collections import defaultdict

import pytest

from tests.plugins.alerts import generic

CHANNELS = ("C0STORMA", "C0STORMB", "C0STORMC")
NUMBER = re.compile(r"storm (\d+)\b")


@pytest.fixture
def limited(slack_api):
    """The stand-in allows one post per 0.05 s per channel and says so with 429 Retry-After."""
    slack_api.channel_interval = 0.05
    slack_api.retry_after_unit = 0.05
    return slack_api


def storm_alert(n: int) -> dict:
    return generic(channel=CHANNELS[n % len(CHANNELS)], summary=f"storm {n} loss is NaN")


def send(bots, count: int, start: int = 0) -> list[int]:
    """Send alerts ``start..start+count`` in order, round robin over ``bots``; return the codes."""
    return [bots[n % len(bots)].alert(storm_alert(n)).status_code
            for n in range(start, start + count)]


def delivered(slack_api) -> dict[str, list[int]]:
    """Per channel, the storm numbers of the messages Slack accepted, in the order it did."""
    out: dict[str, list[int]] = defaultdict(list)
    with slack_api._lock:
        messages = sorted(slack_api.messages.values(), key=lambda m: m.ts)
    for message in messages:
        found = NUMBER.search(message.text)
        if found and message.thread_ts is None:
            out[message.channel].append(int(found.group(1)))
    return out


def wait_delivered(slack_api, total: int, timeout: float = 45) -> dict[str, list[int]]:
    slack_api.wait_for(lambda: sum(map(len, delivered(slack_api).values())) >= total, timeout)
    time.sleep(0.5)  # anything extra (a double post) would show now
    return delivered(slack_api)


def assert_once_in_order(got: dict[str, list[int]], total: int) -> None:
    for channel, numbers in got.items():
        assert numbers == sorted(numbers), f"order broken in {channel}"
        assert all(CHANNELS[n % len(CHANNELS)] == channel for n in numbers)
    every = [n for numbers in got.values() for n in numbers]
    assert sorted(every) == list(range(total)), "an alert was lost or posted twice"


def retry_after_violations(slack_api) -> list[str]:
    """Calls to a channel made before the Retry-After of an earlier 429 on it had passed."""
    bad = []
    by_channel = defaultdict(list)
    for call in slack_api.calls_to("chat.postMessage"):
        by_channel[call.params.get("channel")].append(call)
    for channel, calls in by_channel.items():
        for i, limited_call in enumerate(calls):
            if limited_call.status != 429:
                continue
            until = limited_call.at + float(limited_call.answer_headers["Retry-After"])
            bad += [f"{channel}: {until - c.at:.4f}s early" for c in calls[i + 1:] if c.at < until]
    return bad


def count_429(slack_api) -> int:
    return sum(c.status == 429 for c in slack_api.calls_to("chat.postMessage"))


class TestStorm:
    def test_storm_delivers_each_alert_once_in_order_honouring_retry_after(
            self, make_alert_bot, limited):
        bot = make_alert_bot()
        assert set(send([bot], 60)) == {202}
        got = wait_delivered(limited, 60)
        assert_once_in_order(got, 60)
        assert set(got) == set(CHANNELS)
        assert count_429(limited) > 0, "the storm should have met Slack's rate limit"
        assert retry_after_violations(limited) == []
        assert bot.bot.alerts.backlog() == 0

    def test_two_replicas_drain_one_queue_without_double_posts(self, make_alert_bot, limited):
        one, two = make_alert_bot(), make_alert_bot()
        assert set(send([one, two], 45)) == {202}
        got = wait_delivered(limited, 45)
        assert_once_in_order(got, 45)
        assert retry_after_violations(limited) == []

    def test_pacing_keeps_posts_apart_without_429s(self, make_alert_bot, slack_api):
        """With the interval the dispatcher keeps, Slack's 1 post/s/channel is never exceeded."""
        slack_api.channel_interval = 0.2
        bot = make_alert_bot(ALERT_POST_INTERVAL_SECONDS=0.25)
        send([bot], 6)
        assert_once_in_order(wait_delivered(slack_api, 6), 6)
        assert count_429(slack_api) == 0


class TestRestart:
    def test_alerts_queued_before_a_restart_are_delivered_after_it(
            self, make_alert_bot, slack_api):
        stopped = make_alert_bot(dispatch=False)
        assert set(send([stopped], 9)) == {202}
        time.sleep(0.5)
        assert not slack_api.calls_to("chat.postMessage")
        stopped.bot.close()
        stopped.close()
        make_alert_bot()
        assert_once_in_order(wait_delivered(slack_api, 9), 9)

    def test_a_replica_stopped_mid_drain_loses_and_repeats_nothing(
            self, make_alert_bot, slack_api):
        first = make_alert_bot(ALERT_POST_INTERVAL_SECONDS=0.3)
        send([first], 12)
        slack_api.wait_for(lambda: sum(map(len, delivered(slack_api).values())) >= 3)
        first.bot.close()
        make_alert_bot(ALERT_POST_INTERVAL_SECONDS=0.05)
        assert_once_in_order(wait_delivered(slack_api, 12), 12)

    def test_an_item_posted_before_a_crash_is_not_posted_again(
            self, make_alert_bot, slack_api, redis_client, key_prefix):
        """A crash between Slack's answer and the removal: the recorded ts says it was sent."""
        bot = make_alert_bot(dispatch=False)
        bot.alert(storm_alert(0))
        raw = redis_client.lindex(bot.bot.alerts.key("q", CHANNELS[0]), 0)
        item_id = json.loads(raw)["id"]
        redis_client.set(bot.bot.alerts.key("posted", item_id), f"{CHANNELS[0]} 1.2")
        bot.bot.start_background()
        deadline = time.monotonic() + 10
        while bot.bot.alerts.backlog() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bot.bot.alerts.backlog() == 0
        assert not slack_api.calls_to("chat.postMessage")

    def test_a_channel_slack_refuses_does_not_block_the_others(self, make_alert_bot, slack_api):
        slack_api.refused_channels[CHANNELS[1]] = "not_in_channel"
        bot = make_alert_bot()
        send([bot], 6)
        slack_api.wait_for(lambda: sum(map(len, delivered(slack_api).values())) >= 4)
        deadline = time.monotonic() + 10
        while bot.bot.alerts.backlog() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(n for ns in delivered(slack_api).values() for n in ns) == [0, 2, 3, 5]
        assert [d["error"] for d in bot.bot.alerts.dead()] == ["not_in_channel"] * 2


class TestCappedStorm:
    def test_a_storm_past_the_channel_cap_is_refused_and_the_rest_delivered_once(
            self, make_alert_bot, limited):
        """Ten POSTs of a burst for one channel no longer queue an hour of posts: past the cap
        they are 429s, and exactly the accepted ones are posted, in order."""
        bot = make_alert_bot(dispatch=False, ALERT_QUEUE_PER_CHANNEL=12)
        bodies = [generic(channel=CHANNELS[0], summary=f"storm {n} loss is NaN")
                  for n in range(0, 60, 3)]
        codes = [bot.alert(body).status_code for body in bodies]
        assert codes == [202] * 12 + [429] * 8
        assert bot.bot.alerts.backlog() == 12
        bot.bot.start_background()
        got = wait_delivered(limited, 12)
        assert got[CHANNELS[0]] == list(range(0, 36, 3))
        assert bot.bot.alerts.backlog() == 0
        assert int(bot.bot.redis.get(bot.bot.alerts.key("queued"))) == 0
