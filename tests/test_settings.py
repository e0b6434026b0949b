"""Settings and the command line: a wrong setting stops start-up with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bot.core.errors import ConfigError
from bot.core.settings import load_settings

SECRET = "sk-very-distinctive-9f8e7d"  # noqa: S105


def run_cli(*args: str, env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run([sys.executable, "-m", "bot", *args], env={**keep, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


class TestSettings:
    def test_defaults(self, tmp_path, monkeypatch):
        monkeypatch.chdir(tmp_path)
        for name in ("REDIS_URL", "PORT", "HOST", "SLACK_API_URL"):
            monkeypatch.delenv(name, raising=False)
        s = load_settings()
        assert s.REDIS_URL == "redis://localhost:6379/0" and s.PORT == 3000
        assert s.CONFIRM_TTL_SECONDS == 120 and s.ROLES_FILE == "roles.yml"
        assert s.SLACK_API_URL == "https://slack.com/api/" and s.MODELARTS_TIMEOUT_SECONDS == 10

    def test_ak_without_sk_names_the_variable(self):
        with pytest.raises(ConfigError, match="MODELARTS_SK is missing"):
            load_settings(MODELARTS_AK="AK123")

    def test_malformed_url_names_the_variable(self):
        with pytest.raises(ConfigError, match="MODELARTS_ENDPOINT") as err:
            load_settings(MODELARTS_ENDPOINT="modelarts.example.com")
        assert "\n" not in str(err.value)

    def test_secrets_are_secretstr_and_never_printed(self):
        s = load_settings(MODELARTS_AK="AK1", MODELARTS_SK=SECRET, SLACK_BOT_TOKEN=SECRET)
        assert SECRET not in repr(s) and SECRET not in str(s.model_dump())
        assert s.MODELARTS_SK.get_secret_value() == SECRET

    def test_no_credentials_at_all_is_a_problem(self):
        s = load_settings(MODELARTS_ENDPOINT="https://modelarts.cn-north-4.myhuaweicloud.com",
                          MODELARTS_PROJECT_ID="p")
        problems = s.problems(need_slack=False)
        assert any("MODELARTS_AK/MODELARTS_SK are missing" in p for p in problems)

    @pytest.mark.parametrize("endpoint", ["https://modelarts.cn-north-4.myhuaweicloud.com",
                                          "http://127.0.0.1:8090", "https://modelarts.corp"])
    def test_iam_user_needs_no_project_name(self, endpoint):
        """The token is scoped by MODELARTS_PROJECT_ID: whatever the endpoint names, nothing
        beyond what AK/SK users set is needed."""
        s = load_settings(MODELARTS_ENDPOINT=endpoint, MODELARTS_PROJECT_ID="p",
                          MODELARTS_IAM_ENDPOINT="https://iam.example.com",
                          MODELARTS_USERNAME="u", MODELARTS_PASSWORD=SECRET, MODELARTS_DOMAIN="d",
                          MODELARTS_PROJECT_NAME=None)
        assert s.problems(need_slack=False) == []

    def test_iam_user_still_needs_the_project_id(self):
        s = load_settings(MODELARTS_ENDPOINT="http://127.0.0.1:8090", MODELARTS_PROJECT_ID=None,
                          MODELARTS_IAM_ENDPOINT="https://iam.example.com",
                          MODELARTS_USERNAME="u", MODELARTS_PASSWORD=SECRET, MODELARTS_DOMAIN="d")
        assert any("MODELARTS_PROJECT_ID is missing" in p for p in s.problems(need_slack=False))

    def test_aksk_and_iam_user_together_is_contradictory(self):
        s = load_settings(MODELARTS_ENDPOINT="https://modelarts.cn-north-4.myhuaweicloud.com",
                          MODELARTS_PROJECT_ID="p", MODELARTS_AK="a", MODELARTS_SK=SECRET,
                          MODELARTS_USERNAME="u", MODELARTS_PASSWORD=SECRET)
        assert any("choose one" in p for p in s.problems(need_slack=False))


class TestStartUp:
    def test_serve_with_ak_but_no_sk_stops_with_one_line(self, tmp_path):
        done = run_cli("serve", env={"MODELARTS_AK": SECRET}, cwd=tmp_path)
        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "MODELARTS_SK is missing" in lines[0]
        assert "Traceback" not in done.stderr and SECRET not in done.stderr + done.stdout

    def test_serve_without_slack_token_names_it(self, tmp_path):
        done = run_cli("serve", env={}, cwd=tmp_path)
        assert done.returncode == 2 and "SLACK_BOT_TOKEN is missing" in done.stderr
        assert "Traceback" not in done.stderr

    def test_serve_with_a_broken_roles_file_says_where(self, tmp_path):
        (tmp_path / "roles.yml").write_text("roles:\n  oncall:\n    jobs: ['*']\n"
                                            "users:\n  U1: [nope]\n")
        env = {"SLACK_BOT_TOKEN": SECRET, "SLACK_SIGNING_SECRET": SECRET,
               "MODELARTS_ENDPOINT": "https://modelarts.cn-north-4.myhuaweicloud.com",
               "MODELARTS_PROJECT_ID": "p", "MODELARTS_AK": "a", "MODELARTS_SK": SECRET}
        done = run_cli("serve", env=env, cwd=tmp_path)
        assert done.returncode == 2
        assert "roles.yml" in done.stderr and "users.U1" in done.stderr and "'nope'" in done.stderr
        assert SECRET not in done.stderr + done.stdout and "Traceback" not in done.stderr


class TestEmptyIsUnset:
    """An empty value never switches a check off (issue 18, item 1)."""

    def test_empty_app_token_means_http_mode(self, monkeypatch, tmp_path):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("SLACK_APP_TOKEN", "")
        monkeypatch.setenv("SLACK_SIGNING_SECRET", "")
        s = load_settings()
        assert s.SLACK_APP_TOKEN is None and not s.socket_mode
        assert "SLACK_SIGNING_SECRET is missing: HTTP mode needs it to verify requests" \
            in s.problems()

    def test_empty_values_from_dotenv_and_arguments(self, monkeypatch, tmp_path):
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
        monkeypatch.delenv("METRICS_TOKEN", raising=False)
        (tmp_path / ".env").write_text("SLACK_APP_TOKEN=\nMETRICS_TOKEN=\n")
        s = load_settings()
        assert s.SLACK_APP_TOKEN is None and s.METRICS_TOKEN is None
        s = load_settings(SLACK_APP_TOKEN="", ALERTS_TOKEN="  ", REDIS_URL="")
        assert s.SLACK_APP_TOKEN is None and s.ALERTS_TOKEN is None
        assert s.REDIS_URL == "redis://localhost:6379/0"

    def test_http_app_is_not_built_without_a_secret(self):
        from bot.slack.app import create_app

        rest = dict(response_urls=None, socket_mode=False, alert_ids=None, later=None,
                    finder=None, history=None, home=None)
        with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
            create_app(None, None, None, **rest)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET"):
            create_app(None, None, "", **rest)  # type: ignore[arg-type]

    def test_the_http_edge_refuses_an_app_without_a_verifier(self):
        from bot.app.web import signed

        class NoVerifier:
            verifier = None

        assert not signed(NoVerifier(), b"command=/modelarts", {})


class TestFailClosedSettings:
    def test_credentials_go_over_https_unless_to_loopback(self):
        for name in ("MODELARTS_ENDPOINT", "MODELARTS_IAM_ENDPOINT"):
            with pytest.raises(ConfigError, match=f"{name} must be https://"):
                load_settings(**{name: "http://modelarts.example.com"})
            for ok in ("https://modelarts.example.com", "http://127.0.0.1:8089",
                       "http://localhost:1", "http://[::1]:8089"):
                assert getattr(load_settings(**{name: ok}), name) == ok

    @pytest.mark.parametrize("password", ["pa/ss", "pa#ss", "pa?ss"])
    def test_unreadable_redis_url_names_the_variable_not_the_password(self, password):
        url = f"redis://user:{password}word-7c1e@redis.example:6379/0"
        with pytest.raises(ConfigError, match="REDIS_URL cannot be read") as err:
            load_settings(REDIS_URL=url)
        assert "word-7c1e" not in str(err.value) and "user:" not in str(err.value)

    def test_redis_password_is_a_secret_value(self):
        s = load_settings(REDIS_URL="redis://:s3cr%2Ft-redis-pw@redis.example:6379/0")
        assert "s3cr/t-redis-pw" in s.secret_values() and "s3cr%2Ft-redis-pw" in s.secret_values()

    @pytest.mark.parametrize("name, value", [
        ("SLACK_SIGNING_SECRET", "REPLACE_ME"), ("SLACK_BOT_TOKEN", "xoxb-REPLACE_ME"),
        ("SLACK_SIGNING_SECRET", "your-signing-secret"), ("MODELARTS_SK", "your-secret-key"),
        ("ALERTS_TOKEN", "a-long-random-string"), ("METRICS_TOKEN", "REPLACE_ME"),
        ("REDIS_URL", "redis://:REPLACE_ME@redis.example.internal:6379/0"),
    ])
    def test_placeholders_stop_start_up_naming_the_variable(self, name, value):
        base = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "real-secret-1",
                "MODELARTS_ENDPOINT": "https://modelarts.example.com",
                "MODELARTS_PROJECT_ID": "0123456789abcdef", "MODELARTS_AK": "AK1",
                "MODELARTS_SK": "SK1"}
        assert load_settings(**base).problems() == []
        problems = load_settings(**{**base, name: value}).problems()
        assert len(problems) == 1 and problems[0].startswith(name)


class TestSupportContact:
    """SUPPORT_CONTACT (bot/core/contact.py): a channel, a user, a user group or a URL."""

    @pytest.mark.parametrize("value,text", [
        ("C0PLATFORM1", "<#C0PLATFORM1>"), ("G0PRIVATE01", "<#G0PRIVATE01>"),
        ("U0PLATFORM1", "<@U0PLATFORM1>"), ("W0ENTERPRS1", "<@W0ENTERPRS1>"),
        ("S0PLATFORM1", "<!subteam^S0PLATFORM1>"), ("#ml-platform", "#ml-platform"),
        ("@ml-oncall", "@ml-oncall"), ("  C0PLATFORM1 ", "<#C0PLATFORM1>"),
        ("https://wiki.example/ml?a=1&b=2",
         "<https://wiki.example/ml?a=1&amp;b=2|the platform team>"),
    ])
    def test_each_form_is_written_as_slack_shows_it(self, value, text):
        assert load_settings(SUPPORT_CONTACT=value).support_contact == text

    @pytest.mark.parametrize("value", [None, "", "   "])
    def test_unset_or_empty_keeps_the_platform_team(self, value):
        assert load_settings(SUPPORT_CONTACT=value).support_contact == "the platform team"

    @pytest.mark.parametrize("value", [
        "CHANGEME", "the ML team", "ftp://files.example/x", "https://x.example/a b",
        "https://x.example/<!channel>", "https://x.example/a|b", "#Has-Capitals", "<@U0ABC123>",
        "javascript:alert(1)", "https://", "@", "#",
    ])
    def test_anything_else_stops_start_up_naming_the_setting(self, value):
        with pytest.raises(ConfigError) as got:
            load_settings(SUPPORT_CONTACT=value)
        assert "SUPPORT_CONTACT" in str(got.value) and "a channel id" in str(got.value)
