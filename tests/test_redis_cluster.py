"""The bot on a real 3-master Redis Cluster (tests/plugins/topologies.py), with {flow}, {alerts}
and {iam} each on its own master: the stop flow end to end, 20 concurrent confirms, an alert
storm. redis-py's RedisCluster refuses a script, MULTI or multi-key command whose keys span slots,
so these passing shows every such step keeps to one subsystem's hash tag (bot/core/keys.py)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from bot.app import doctor
from bot.core.errors import ConfigError
from bot.core.redis_conn import connect
from bot.core.settings import load_settings
from bot.flow.blocks import CONFIRM
from bot.modelarts.refs import V1Job
from botdev.standin.local import free_port
from botdev.standin.topologies import Procs, start_cluster
from tests.plugins.slack import button_value
from tests.test_alert_storm import (  # noqa: F401 - limited is a fixture
    CHANNELS,
    assert_once_in_order,
    limited,
    retry_after_violations,
    send,
    wait_delivered,
)
from tests.test_stop_flow import (
    JOB,
    VERSION,
    replies_with,
    request_message,
    stop_and_confirm,
    wait_reply,
)

TAGS = ("{flow}", "{alerts}", "{iam}")


@pytest.fixture
def on_cluster(redis_cluster) -> dict:
    return {"REDIS_URL": redis_cluster.url, "REDIS_CLUSTER": True}


def bot_keys(on_cluster: dict, prefix: str) -> list[str]:
    """Every key under ``prefix`` on every master."""
    with connect(load_settings(**on_cluster)) as client:
        return [k.decode() for k in client.scan_iter(match=prefix + "*", count=500)]


class TestStopFlow:
    def test_confirm_stops_once_and_reports_in_thread(self, make_bot, slack_api, emulator,
                                                      on_cluster, key_prefix):
        bot = make_bot(**on_cluster)
        msg = stop_and_confirm(bot, slack_api)
        replies = slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert "Stop requested" in replies[0].text
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1
        keys = bot_keys(on_cluster, key_prefix)
        assert keys and all(any(tag in k for tag in TAGS) for k in keys), keys

    def test_usergroup_member_stops_through_the_cached_membership(
            self, make_bot, slack_api, emulator, on_cluster):
        """The confirm reads the usergroup cache with the consume: both in the {flow} slot."""
        slack_api.usergroups["S0TEAMA"] = ["U0CAROL"]
        bot = make_bot(**on_cluster)
        bot.command(f"stop {JOB} {VERSION}", user="U0CAROL")
        msg = request_message(slack_api)
        bot.click_button(msg, CONFIRM, "U0CAROL")
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_twenty_concurrent_confirms_give_one_stop(self, make_bot, slack_api, emulator,
                                                      on_cluster):
        one, two = make_bot(**on_cluster), make_bot(**on_cluster)
        one.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        value, blocks = button_value(msg, CONFIRM), msg.blocks
        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(lambda i: (one, two)[i % 2].click(
                CONFIRM, value, "U0ONCALL", msg.channel, msg.ts, blocks).status_code, range(20)))
        assert codes == [200] * 20
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        slack_api.wait_for(
            lambda: len(replies_with(slack_api, "U0ONCALL", "already handled")) == 19, timeout=20)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1


class TestAlerts:
    def test_storm_delivers_each_alert_once_in_order(self, make_alert_bot, limited,  # noqa: F811
                                                     on_cluster, key_prefix):
        one, two = make_alert_bot(**on_cluster), make_alert_bot(**on_cluster)
        assert set(send([one, two], 45)) == {202}
        got = wait_delivered(limited, 45)
        assert_once_in_order(got, 45)
        assert set(got) == set(CHANNELS)
        assert retry_after_violations(limited) == []
        assert one.bot.alerts.backlog() == 0
        assert any("{alerts}" in k for k in bot_keys(on_cluster, key_prefix))


class TestClusterDown:
    def test_a_dead_cluster_costs_the_user_a_clear_reply_not_a_5xx(
            self, make_bot, slack_api, emulator, tmp_path):
        """A cluster of the test's own, killed after the bot learnt its slot map."""
        procs = Procs(tmp_path)
        try:
            cluster = start_cluster(procs)
            bot = make_bot(REDIS_URL=cluster.url, REDIS_CLUSTER=True)
        finally:
            procs.close()
        assert bot.command(f"stop {JOB} {VERSION}").status_code == 200
        wait_reply(slack_api, "U0ONCALL", "can't reach my state store (Redis)")
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

    def test_no_start_up_node_is_a_connection_error(self):
        settings = load_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                                 REDIS_CLUSTER=True)
        with pytest.raises(redis.ConnectionError, match="Redis Cluster cannot be connected"):
            connect(settings)


class TestDoctorAndSettings:
    def test_doctor_says_cluster_with_three_masters(self, bot_settings, on_cluster):
        assert doctor.check_redis(bot_settings(**on_cluster)) == (
            "PING answered (cluster with 3 masters)")

    def test_doctor_names_the_dead_start_up_node(self, bot_settings):
        settings = bot_settings(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                                REDIS_CLUSTER=True)
        with pytest.raises(doctor.Problem, match=r"REDIS_URL \(a Cluster start-up node\)"):
            doctor.check_redis(settings)

    def test_a_database_other_than_0_is_refused(self):
        with pytest.raises(ConfigError, match="a Redis Cluster has only 0"):
            load_settings(REDIS_URL="redis://127.0.0.1:7000/2", REDIS_CLUSTER=True)

    def test_cluster_and_sentinels_together_are_refused(self):
        with pytest.raises(ConfigError, match="choose one topology"):
            load_settings(REDIS_CLUSTER=True, REDIS_SENTINELS="127.0.0.1:26379",
                          REDIS_SENTINEL_MASTER="m")
