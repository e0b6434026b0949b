"""The bot behind Redis Sentinel (a real primary + replica and two Sentinels, from
tests/plugins/topologies.py): it finds the primary through the Sentinels, and a
``SENTINEL FAILOVER`` in the middle of a run of flows stops nothing twice, nothing unconfirmed,
and leaves no confirmed stop unanswered (the flows are bench/chaos/failover.py's)."""

from __future__ import annotations

import pytest

from bench.chaos.failover import Flows, run_flows
from bot.app import doctor
from bot.core.errors import ConfigError
from bot.core.settings import load_settings
from botdev.standin.local import free_port
from tests.plugins.slack import SIGNING_SECRET
from tests.test_stop_flow import JOB, VERSION, wait_reply


@pytest.fixture
def on_sentinel(redis_sentinel) -> dict:
    """The Sentinels name the primary; REDIS_URL's host is not used (its user/db/TLS are)."""
    redis_sentinel.wait_stable(replica=False)
    return {"REDIS_URL": "redis://sentinel-named-primary/0",
            "REDIS_SENTINELS": redis_sentinel.sentinels,
            "REDIS_SENTINEL_MASTER": redis_sentinel.master}


class TestFailover:
    def test_failover_mid_run_no_duplicate_no_unconfirmed_every_stop_answered(
            self, make_bot, slack_api, emulator, redis_sentinel, on_sentinel):
        redis_sentinel.wait_stable()  # a replica in sync, so that the failover can start
        jobs = emulator.add_training_jobs(24, name_prefix="team-a-failover-")
        bots = [make_bot(**on_sentinel), make_bot(**on_sentinel)]
        before = redis_sentinel.master_port()
        run = run_flows(Flows([b.url for b in bots], SIGNING_SECRET, slack_api, emulator),
                        redis_sentinel, jobs, threads=6)
        got = run.summary()
        assert redis_sentinel.master_port() != before
        assert got["duplicate_stops"] == 0, got
        assert got["stops_without_confirmation"] == 0, got
        assert got["missing_replies"] == 0, got
        confirmed = [f for f in run.flows if f.confirm]
        assert {f.outcome for f in confirmed} <= {"stopped", "expired"}, got
        assert got["stops"] == sum(f.outcome == "stopped" for f in confirmed)
        assert got["confirmed_after_failover_stopped"] > 0, "the bot did not follow the failover"

    def test_doctor_names_the_master_the_sentinels_name(self, bot_settings, redis_sentinel,
                                                        on_sentinel):
        """Run after the failover above, this is the other server than at start."""
        port = redis_sentinel.master_port()
        assert doctor.check_redis(bot_settings(**on_sentinel)) == (
            f"PING answered (sentinel master modelarts at 127.0.0.1:{port})")


class TestMistakes:
    def test_dead_sentinels_cost_a_clear_reply_not_a_5xx(self, make_bot, slack_api):
        bot = make_bot(REDIS_SENTINELS=f"127.0.0.1:{free_port()}", REDIS_SENTINEL_MASTER="m")
        assert bot.command(f"stop {JOB} {VERSION}").status_code == 200
        wait_reply(slack_api, "U0ONCALL", "can't reach my state store (Redis)")

    def test_doctor_names_the_sentinel_settings(self, bot_settings, redis_sentinel):
        settings = bot_settings(REDIS_SENTINELS=redis_sentinel.sentinels,
                                REDIS_SENTINEL_MASTER="no-such-master")
        with pytest.raises(doctor.Problem, match="REDIS_SENTINELS / REDIS_SENTINEL_MASTER "
                                                 r"\(MasterNotFoundError"):
            doctor.check_redis(settings)

    @pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:x", "host:70000", ":26379"])
    def test_a_sentinel_that_is_not_host_port_is_refused(self, value):
        with pytest.raises(ConfigError, match="REDIS_SENTINELS: .* is not host:port"):
            load_settings(REDIS_SENTINELS=value, REDIS_SENTINEL_MASTER="m")

    def test_sentinels_without_a_master_name_are_refused(self):
        with pytest.raises(ConfigError, match="REDIS_SENTINEL_MASTER is missing"):
            load_settings(REDIS_SENTINELS="127.0.0.1:26379")
