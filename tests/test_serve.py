"""The real command line against the stand-ins: `doctor`, and `serve` under gunicorn."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from urllib.parse import urlencode

import pytest
import requests

from bot.flow.blocks import CONFIRM
from bot.modelarts.refs import V1Job
from botdev.emulator import defaults
from botdev.standin.local import free_port, wait_healthy
from botdev.standin.signing import slack_headers
from tests.plugins.slack import SIGNING_SECRET, button_value, start_serve


@pytest.fixture
def env(serve_env) -> dict[str, str]:
    return serve_env


def stop_command(slack_api, name: str) -> str:
    """The form of ``/modelarts stop 182626 278813`` by the on-call user, answered at ``name``."""
    return urlencode({"command": "/modelarts", "text": "stop 182626 278813",
                      "user_id": "U0ONCALL", "channel_id": "C0INCIDENT", "team_id": "T0STANDIN",
                      "response_url": slack_api.response_url(name)})


def doctor(env: dict[str, str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bot", "doctor"], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


class TestDoctor:
    def test_all_checks_ok_against_the_stand_ins(self, env, tmp_path):
        done = doctor(env, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        lines = done.stdout.strip().splitlines()
        assert [line.split()[0] for line in lines[:6]] == ["OK"] * 6
        assert [line.split()[1] for line in lines[:6]] == [
            "settings:", "redis:", "modelarts:", "modelarts-v1:", "slack:", "roles:"]
        assert "v2 job search answered" in lines[2]

    def test_v1_retired_is_a_warning_not_a_failure(self, env, tmp_path, emulator):
        emulator.retire_v1(True)
        done = doctor(env, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "WARN  modelarts-v1: v1 not available here: old-version training is retired" \
            in done.stdout
        assert "OK    modelarts: credentials accepted (v2 job search answered)" in done.stdout

    def test_iam_settings_without_a_project_name(self, env, tmp_path, emulator):
        """Only what every IAM user has: the token is scoped by MODELARTS_PROJECT_ID."""
        iam = {k: v for k, v in env.items() if k not in ("MODELARTS_AK", "MODELARTS_SK")}
        iam.update(MODELARTS_IAM_ENDPOINT=emulator.base_url,
                   MODELARTS_USERNAME=defaults.EMULATOR_USERNAME,
                   MODELARTS_PASSWORD=defaults.EMULATOR_PASSWORD,
                   MODELARTS_DOMAIN=defaults.EMULATOR_DOMAIN)
        done = doctor(iam, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "FAIL" not in done.stdout and "WARN" not in done.stdout
        assert emulator.token_issues == 1
        assert defaults.EMULATOR_PASSWORD not in done.stdout + done.stderr

    def test_wrong_sk_names_the_failing_check_without_the_secret(self, env, tmp_path):
        wrong = "wrong-sk-3b9c7d1e"
        done = doctor({**env, "MODELARTS_SK": wrong}, tmp_path)
        assert done.returncode == 1
        failing = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
        assert len(failing) == 1 and failing[0].startswith("FAIL  modelarts:")
        assert "APIGW.0301" in failing[0]
        assert wrong not in done.stdout + done.stderr

    def test_bad_slack_token_and_dead_redis_are_named(self, env, tmp_path):
        done = doctor({**env, "SLACK_BOT_TOKEN": "xoxb-wrong-token",
                       "REDIS_URL": "redis://127.0.0.1:1/0"}, tmp_path)
        assert done.returncode == 1
        assert "FAIL  slack: auth.test failed (invalid_auth)" in done.stdout
        assert "FAIL  redis:" in done.stdout and "xoxb-wrong-token" not in done.stdout


@pytest.mark.slow
class TestServe:
    def test_gunicorn_serves_a_full_stop(self, env, tmp_path, slack_api, emulator, smn_signer,
                                         smn_cert_file):
        from tests.plugins.smn import TOPIC, deliver
        port = free_port()
        smn = {"SMN_TOPICS": json.dumps({TOPIC: "C0ALERTS"}),
               "SMN_SIGNING_CERT_FILE": smn_cert_file}
        proc = start_serve({**env, **smn, "WEB_CONCURRENCY": "2"}, tmp_path, port)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, proc)
            body = stop_command(slack_api, "serve")
            resp = requests.post(base + "/slack/events", data=body,
                                 headers=slack_headers(SIGNING_SECRET, body), timeout=5)
            assert resp.status_code == 200
            msg = slack_api.wait_for(lambda: next(iter(slack_api.messages.values()), None))
            payload = {"type": "block_actions", "user": {"id": "U0ONCALL"},
                       "team": {"id": "T0STANDIN"}, "channel": {"id": msg.channel},
                       "container": {"message_ts": msg.ts}, "message": {"ts": msg.ts},
                       "actions": [{"action_id": CONFIRM, "value": button_value(msg, CONFIRM)}]}
            body = urlencode({"payload": json.dumps(payload)})
            resp = requests.post(base + "/slack/events", data=body,
                                 headers=slack_headers(SIGNING_SECRET, body), timeout=5)
            assert resp.status_code == 200
            slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
            assert emulator.stop_count(V1Job(182626, 278813)) == 1
            bad = requests.post(base + "/slack/events", data=body,
                                headers=slack_headers("forged", body), timeout=5)
            assert bad.status_code == 401
            hanged = smn_signer.notification(json.dumps(
                {"event": "JobHanged", "training_job_id": "3faf5c03-aaa1-4cbe-879d-24b05d997347"}))
            assert deliver(base, {**hanged, "subject": "forged"}).status_code == 403
            assert deliver(base, hanged).status_code == 200
            slack_api.wait_for(lambda: any("team-a-resnet50" in m.text and m.channel == "C0ALERTS"
                                           for m in list(slack_api.messages.values())))
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=30)[0]
        assert SIGNING_SECRET not in out and defaults.EMULATOR_SK not in out
        assert "Booting worker" in out


def json_lines(out: str) -> list[dict]:
    """Every line of ``out`` as a JSON object (a line that is not one fails the test)."""
    records = []
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(record, dict) and record.keys() >= {"ts", "level", "logger", "msg"}
        records.append(record)
    return records


@pytest.mark.slow
class TestJsonLogs:
    """Every line ``serve`` writes, gunicorn's own included, is one JSON object."""

    def test_start_requests_sighup_and_stop(self, env, tmp_path, slack_api):
        port = free_port()
        home = tmp_path / "home"
        home.mkdir()
        proc = start_serve({**env, "WEB_CONCURRENCY": "2", "HOME": str(home),
                            "XDG_RUNTIME_DIR": str(home)}, tmp_path, port)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, proc)
            assert requests.get(base + "/readyz", timeout=10).status_code == 200
            body = stop_command(slack_api, "json")
            requests.post(base + "/slack/events", data=body,
                          headers=slack_headers(SIGNING_SECRET, body), timeout=5)
            slack_api.wait_for(lambda: next(iter(slack_api.messages.values()), None))
            proc.send_signal(signal.SIGHUP)
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=30)[0]
        records = json_lines(out)
        server = [r["msg"] for r in records if r["logger"] == "gunicorn.error"]
        for needle in ("Starting gunicorn", "Listening at", "Booting worker",
                       "Handling signal: hup", "Worker exiting", "Shutting down: Master"):
            assert any(needle in m for m in server), needle
        assert any(r["logger"] == "bot.decision" for r in records)
        assert not list(home.rglob("gunicorn.ctl"))   # gunicorn's control socket is off

    def test_a_worker_that_cannot_boot_says_why_in_json(self, env, tmp_path):
        """gunicorn prints the error of a worker that fails to boot: that line is JSON too."""
        done = subprocess.run([sys.executable, "-m", "bot", "serve"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60,
                              env={**env, "HOST": "127.0.0.1", "PORT": str(free_port()),
                                   "WEB_CONCURRENCY": "1", "REDIS_CLUSTER": "true",
                                   "REDIS_URL": "redis://127.0.0.1:1/0"})
        assert done.returncode != 0
        records = json_lines(done.stdout + done.stderr)
        assert any(r["logger"] == "stderr" and "Redis Cluster cannot be connected" in r["msg"]
                   for r in records)
        assert any(r["msg"] == "Reason: Worker failed to boot." for r in records)


class TestEmptyAppToken:
    """``SLACK_APP_TOKEN=`` (empty) is unset: HTTP mode, and HTTP mode is always signed."""

    def test_unsigned_command_is_refused(self, env, tmp_path, slack_api, emulator):
        port = free_port()
        proc = start_serve({**env, "SLACK_APP_TOKEN": "", "WEB_CONCURRENCY": "1"}, tmp_path, port)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(base, proc)
            body = stop_command(slack_api, "unsigned")
            resp = requests.post(base + "/slack/events", data=body, timeout=5,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
            assert resp.status_code == 401
            signed = requests.post(base + "/slack/events", data=body,
                                   headers=slack_headers(SIGNING_SECRET, body), timeout=5)
            assert signed.status_code == 200   # the mode is HTTP, not Socket Mode
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        assert emulator.stop_count(V1Job(182626, 278813)) == 0

    def test_empty_app_token_and_secret_stop_start_up(self, env, tmp_path):
        done = subprocess.run(
            [sys.executable, "-m", "bot", "serve"], cwd=tmp_path, capture_output=True, text=True,
            env={**env, "SLACK_APP_TOKEN": "", "SLACK_SIGNING_SECRET": ""}, timeout=60)
        assert done.returncode == 2
        assert "SLACK_SIGNING_SECRET is missing" in done.stderr
