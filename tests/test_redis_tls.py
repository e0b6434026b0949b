"""Redis over TLS with an ACL user, as Huawei Cloud DCS offers it: a real TLS-only redis-server
(certificates from trustme, the default user off, one user limited to ``test:*`` keys and no
dangerous command), the bot's flows through it, and each way of getting it wrong told clearly."""

from __future__ import annotations

import pytest
import redis

from bot.app import doctor
from bot.core.errors import ConfigError
from bot.core.redis_conn import connect
from bot.core.settings import load_settings
from bot.modelarts.refs import V1Job
from tests.plugins.alerts import generic
from tests.test_stop_flow import JOB, VERSION, stop_and_confirm, wait_reply


@pytest.fixture
def tls_settings(tls_redis):
    return {"REDIS_URL": tls_redis.url, "REDIS_CA_FILE": tls_redis.ca_file}


def tls_keys(tls_redis, prefix: str) -> list[str]:
    with connect(load_settings(REDIS_URL=tls_redis.url,
                               REDIS_CA_FILE=tls_redis.ca_file)) as client:
        return [k.decode() for k in client.scan_iter(match=prefix + "*", count=500)]


class TestFlowsOverTls:
    def test_stop_flow_runs_on_the_acl_user(self, make_bot, slack_api, emulator, tls_redis,
                                            tls_settings, key_prefix):
        """Every key the flow touches is under the prefix, or the ACL user's ~test:* refuses."""
        bot = make_bot(**tls_settings)
        msg = stop_and_confirm(bot, slack_api)
        replies = slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert "Stop requested" in replies[0].text
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1
        assert any("{flow}" in k for k in tls_keys(tls_redis, key_prefix))

    def test_alert_is_queued_and_posted(self, make_alert_bot, slack_api, tls_redis,
                                        tls_settings, key_prefix):
        bot = make_alert_bot(**tls_settings)
        assert bot.alert(generic(summary="tls alert")).status_code == 202
        slack_api.wait_for(lambda: [c for c in slack_api.calls_to("chat.postMessage")
                                    if "tls alert" in c.params.get("text", "")])
        assert any("{alerts}" in k for k in tls_keys(tls_redis, key_prefix))

    def test_doctor_names_the_topology(self, bot_settings, tls_settings):
        assert doctor.check_redis(bot_settings(**tls_settings)) == "PING answered (standalone)"


class TestMistakes:
    def test_wrong_ca_fails_clearly_in_doctor(self, bot_settings, tls_redis):
        settings = bot_settings(REDIS_URL=tls_redis.url, REDIS_CA_FILE=tls_redis.wrong_ca_file)
        with pytest.raises(doctor.Problem) as caught:
            doctor.check_redis(settings)
        assert "certificate verify failed" in str(caught.value)
        assert tls_redis.password not in str(caught.value)

    def test_wrong_ca_costs_the_user_a_clear_reply_not_a_5xx(self, make_bot, slack_api,
                                                             emulator, tls_redis):
        bot = make_bot(REDIS_URL=tls_redis.url, REDIS_CA_FILE=tls_redis.wrong_ca_file)
        assert bot.command(f"stop {JOB} {VERSION}").status_code == 200
        wait_reply(slack_api, "U0ONCALL", "can't reach my state store (Redis)")
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

    def test_no_ca_means_the_system_store_which_does_not_trust_a_private_ca(
            self, bot_settings, tls_redis):
        with pytest.raises(doctor.Problem, match="certificate verify failed"):
            doctor.check_redis(bot_settings(REDIS_URL=tls_redis.url))

    def test_wrong_password_names_the_error_not_the_password(self, bot_settings, tls_redis,
                                                             tls_settings):
        url = tls_redis.url.replace(tls_redis.password, "not-the-password")
        with pytest.raises(doctor.Problem) as caught:
            doctor.check_redis(bot_settings(**{**tls_settings, "REDIS_URL": url}))
        assert "AuthenticationError" in str(caught.value)
        assert "not-the-password" not in str(caught.value)

    def test_plain_redis_url_to_a_tls_port_fails(self, bot_settings, tls_redis):
        url = tls_redis.url.replace("rediss://", "redis://")
        with pytest.raises(doctor.Problem, match="no answer from REDIS_URL"):
            doctor.check_redis(bot_settings(REDIS_URL=url))

    def test_ca_file_without_rediss_is_refused_at_start(self, tls_redis):
        with pytest.raises(ConfigError, match="REDIS_URL is not rediss://"):
            load_settings(REDIS_URL="redis://127.0.0.1:6379/0", REDIS_CA_FILE=tls_redis.ca_file)

    def test_missing_ca_file_is_refused_at_start(self, tmp_path, tls_redis):
        with pytest.raises(ConfigError, match="REDIS_CA_FILE .* is not a readable file"):
            load_settings(REDIS_URL=tls_redis.url, REDIS_CA_FILE=str(tmp_path / "none.pem"))

    def test_acl_user_may_not_touch_keys_outside_its_pattern(self, tls_redis, tls_settings):
        """The kit's ACL is real: the flows above passing means they kept to the prefix."""
        with connect(load_settings(**tls_settings)) as client, \
                pytest.raises(redis.exceptions.NoPermissionError):
            client.set("elsewhere:key", "1")
