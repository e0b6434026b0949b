"""`python -m bot doctor` tells the truth (issue 23): run as a user runs it, against the
emulator and the Slack stand-in over HTTP (HTTPS with a test CA through the benchmark's TLS
front), and parsed line by line."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bench.harness import fronts as wan
from bot.app import doctor
from botdev.standin.local import DeadEnd, free_port
from tests.test_placeholders import SAMPLES, env_example, is_default, secret_yaml

ROOT = Path(__file__).resolve().parents[1]


def run_doctor(env: dict[str, str], cwd: Path) -> tuple[int, list[str]]:
    done = subprocess.run([sys.executable, "-m", "bot", "doctor"], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=90)
    assert done.stderr == "", done.stderr
    return done.returncode, done.stdout.strip().splitlines()


def line(lines: list[str], name: str) -> str:
    """The one line of check ``name``."""
    found = [x for x in lines if re.match(rf"^[A-Z]+ +{re.escape(name)}:", x)]
    assert len(found) == 1, lines
    return found[0]


def verdicts(lines: list[str]) -> dict[str, str]:
    """check name -> OK/WARN/FAIL/SKIP, for every check but settings."""
    out = {}
    for x in lines:
        m = re.match(r"^(OK|WARN|FAIL|SKIP) +([a-z0-9-]+):", x)
        if m and m.group(2) != "settings":
            out[m.group(2)] = m.group(1)
    return out


def failing(lines: list[str]) -> list[str]:
    return [x for x in lines if x.startswith("FAIL")]


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return wan.make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def untrusted_front(certs) -> Iterator:
    """``make(upstream_url)``: an HTTPS front whose CA the doctor does not trust."""
    fronts = []

    def make(upstream: str):
        fronts.append(wan.front(upstream, 0, certs))
        return fronts[-1]

    yield make
    for front in fronts:
        front.close()


@pytest.fixture
def listener():
    made: list[DeadEnd] = []

    def make(mode: str) -> DeadEnd:
        made.append(DeadEnd(mode))
        return made[-1]

    yield make
    for one in made:
        one.close()


class TestPlaceholders:
    def test_each_secret_yaml_value_fails_naming_its_variable(self, serve_env, tmp_path):
        """The Secret applied as shipped: one FAIL line per key, and the checks that do not
        need those keys (roles, SMN) still run."""
        secrets = dict(secret_yaml())
        code, lines = run_doctor({**serve_env, **secrets}, tmp_path)
        assert code == 1
        named = [re.match(r"FAIL  settings: ([A-Z_]+) ", x).group(1) for x in failing(lines)]
        assert sorted(named) == sorted(secrets)
        assert all("placeholder" in x for x in failing(lines))
        assert verdicts(lines) == {"redis": "SKIP", "modelarts": "SKIP", "modelarts-v1": "SKIP",
                                   "slack": "SKIP", "roles": "OK", "smn": "OK"}
        assert "redis.example.internal" not in "\n".join(lines)

    def test_each_env_example_value_fails_naming_its_variable(self, serve_env, roles_file,
                                                              tmp_path):
        """.env.example copied with every line uncommented and nothing filled in."""
        text = (ROOT / ".env.example").read_text()
        # MODELARTS_PROJECTS is the alternative to MODELARTS_ENDPOINT + MODELARTS_PROJECT_ID.
        text = re.sub(r"^# MODELARTS_PROJECTS=.*\n", "", text, flags=re.MULTILINE)
        (tmp_path / ".env").write_text(re.sub(r"^# ?([A-Z][A-Z0-9_]+=)", r"\1", text,
                                              flags=re.MULTILINE))
        env = {k: serve_env[k] for k in ("PATH", "HOME", "LANG") if k in serve_env}
        env.update(ROLES_FILE=str(roles_file), REDIS_URL=serve_env["REDIS_URL"])
        code, lines = run_doctor(env, tmp_path)
        assert code == 1
        placeholders = {n for n, v in env_example() if v.strip() and not is_default(n, v)
                        and SAMPLES.get(n) != v and n != "MODELARTS_PROJECTS"}
        said = {re.match(r"FAIL  settings: ([A-Z_]+) is a placeholder", x).group(1)
                for x in failing(lines) if "placeholder" in x}
        assert said == placeholders and len(said) >= 10
        for name in placeholders:   # each named once among the placeholder lines
            assert sum(f" {name} is a placeholder" in x for x in lines) == 1
        assert verdicts(lines)["redis"] == "OK" and verdicts(lines)["roles"] == "OK"
        assert verdicts(lines)["slack"] == "SKIP" and verdicts(lines)["modelarts"] == "SKIP"


class TestOneBadSetting:
    @pytest.mark.parametrize(("name", "value", "skipped"), [
        ("SLACK_API_URL", "ftp://slack.example/api/", {"slack"}),
        ("MODELARTS_ENDPOINT", "not a url", {"modelarts", "modelarts-v1"}),
        ("PORT", "eighty", set()),
        ("SLACK_BOT_TOKEN", "xoxb-REPLACE_ME", {"slack"}),
        ("METRICS_TOKEN", "another-long-random-string", set()),
        ("MODELARTS_SK", "", {"modelarts", "modelarts-v1"}),   # empty is unset: AK alone
        ("SMN_TOPICS", "{not json", {"smn"}),
    ])
    def test_one_fail_line_naming_it_once_and_the_other_checks_run(self, serve_env, tmp_path,
                                                                   name, value, skipped):
        code, lines = run_doctor({**serve_env, name: value}, tmp_path)
        assert code == 1
        assert len(failing(lines)) == 1, lines
        assert failing(lines)[0].startswith(f"FAIL  settings: {name}")
        assert f"{name}: {name}" not in failing(lines)[0]   # named once, not "X: X is ..."
        found = verdicts(lines)
        assert {c for c, v in found.items() if v == "SKIP"} == skipped
        assert all(v in ("OK", "SKIP") for v in found.values()), lines
        assert set(found) == {"redis", "modelarts", "modelarts-v1", "slack", "roles", "smn"}

    def test_serve_names_a_bad_url_once(self, serve_env, tmp_path):
        done = subprocess.run([sys.executable, "-m", "bot", "serve"],
                              env={**serve_env, "SLACK_API_URL": "ftp://x/"}, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert done.stderr.count("SLACK_API_URL") == 1, done.stderr


class TestModelArtsV1:
    def test_retired_is_said_only_for_404_apigw_0101(self, serve_env, tmp_path, emulator):
        emulator.retire_v1(True)
        code, lines = run_doctor(serve_env, tmp_path)
        assert code == 0
        assert line(lines, "modelarts-v1").startswith(
            "WARN  modelarts-v1: v1 not available here: old-version training is retired in this "
            "region (APIGW.0101 (HTTP 404)")

    def test_bad_credentials_are_named_not_called_retired(self, serve_env, tmp_path):
        code, lines = run_doctor({**serve_env, "MODELARTS_SK": "wrong-sk-5d1c"}, tmp_path)
        assert code == 1 and len(failing(lines)) == 1
        v1 = line(lines, "modelarts-v1")
        assert v1.startswith("WARN  modelarts-v1: v1 job list failed: APIGW.0301 (HTTP 401)")
        assert "retired" not in v1 and "wrong-sk-5d1c" not in "\n".join(lines)

    def test_connection_refused_is_named(self, serve_env, tmp_path):
        dead = f"http://127.0.0.1:{free_port()}"
        code, lines = run_doctor({**serve_env, "MODELARTS_ENDPOINT": dead}, tmp_path)
        assert code == 1
        assert line(lines, "modelarts") == (
            f"FAIL  modelarts: v2 job search: could not reach ModelArts: connection refused; "
            f"check MODELARTS_ENDPOINT ({dead}) and the network")
        v1 = line(lines, "modelarts-v1")
        assert v1.startswith("WARN  modelarts-v1: v1 job list: could not reach ModelArts: "
                             "connection refused") and "retired" not in v1

    def test_an_untrusted_certificate_is_named(self, serve_env, tmp_path, emulator,
                                               untrusted_front):
        front = untrusted_front(emulator.base_url)
        code, lines = run_doctor({**serve_env, "MODELARTS_ENDPOINT": front.url}, tmp_path)
        assert code == 1
        assert line(lines, "modelarts").startswith(
            "FAIL  modelarts: v2 job search: could not reach ModelArts: certificate verify "
            "failed")
        v1 = line(lines, "modelarts-v1")
        assert "certificate verify failed" in v1 and "retired" not in v1


class TestReadOnlyWording:
    @pytest.mark.parametrize(("mode", "why"), [
        ("drop", "closed the connection without an answer"), ("hold", "no answer in time")])
    def test_a_failed_search_could_not_reach_modelarts(self, serve_env, tmp_path, listener,
                                                        mode, why):
        server = listener(mode)
        env = {**serve_env, "MODELARTS_ENDPOINT": server.url, "MODELARTS_TIMEOUT_SECONDS": "0.5"}
        code, lines = run_doctor(env, tmp_path)
        assert code == 1
        assert line(lines, "modelarts").startswith(
            f"FAIL  modelarts: v2 job search: could not reach ModelArts: {why};")
        text = "\n".join(lines)
        assert "outcome unknown" not in text and "check the status" not in text


class TestSlack:
    def test_an_untrusted_certificate_names_the_url_and_the_reason(self, serve_env, tmp_path,
                                                                   slack_api, untrusted_front):
        front = untrusted_front(slack_api.api_url)
        url = front.url + "/api/"
        code, lines = run_doctor({**serve_env, "SLACK_API_URL": url}, tmp_path)
        assert code == 1 and len(failing(lines)) == 1
        assert line(lines, "slack").startswith(
            f"FAIL  slack: cannot reach {url} (certificate verify failed")
        assert slack_api.calls_to("auth.test") == []

    def test_a_refused_connection_names_the_url_and_the_reason(self, serve_env, tmp_path):
        url = f"http://127.0.0.1:{free_port()}/api/"
        code, lines = run_doctor({**serve_env, "SLACK_API_URL": url}, tmp_path)
        assert line(lines, "slack").startswith(f"FAIL  slack: cannot reach {url} "
                                               "(connection refused)")

    def test_not_the_slack_api_is_named(self, serve_env, tmp_path, emulator):
        """SLACK_API_URL pointed at another service: its HTTP status, and the setting."""
        url = emulator.base_url + "/api/"
        code, lines = run_doctor({**serve_env, "SLACK_API_URL": url}, tmp_path)
        assert line(lines, "slack") == (f"FAIL  slack: {url} answered HTTP 401, not as the "
                                        "Slack API does: check SLACK_API_URL")

    def test_the_three_scopes_are_ok(self, serve_env, tmp_path, slack_api):
        code, lines = run_doctor(serve_env, tmp_path)
        assert code == 0
        assert line(lines, "slack").endswith("scopes commands, chat:write, usergroups:read)")

    @pytest.mark.parametrize("granted", [("commands", "chat:write"), ("chat:write",), ()])
    def test_a_missing_scope_is_named(self, serve_env, tmp_path, slack_api, granted):
        slack_api.scopes = (*granted, "channels:read")
        code, lines = run_doctor(serve_env, tmp_path)
        assert code == 1 and len(failing(lines)) == 1
        missing = [s for s in doctor.REQUIRED_SCOPES if s not in granted]
        assert line(lines, "slack").startswith(
            f"FAIL  slack: the bot token lacks the scope{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}:")

    def test_no_scopes_header_fails_closed(self, serve_env, tmp_path, slack_api):
        slack_api.scopes = None
        code, lines = run_doctor(serve_env, tmp_path)
        assert code == 1
        assert "answered without x-oauth-scopes" in line(lines, "slack")

    def test_the_scopes_are_the_manifests(self):
        manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
        assert tuple(manifest["oauth_config"]["scopes"]["bot"]) == doctor.REQUIRED_SCOPES
