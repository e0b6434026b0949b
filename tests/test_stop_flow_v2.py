"""The stop flow for v2 training jobs end to end: signed requests to the served app, real Redis,
the emulator's v2 API and the Slack stand-in over loopback HTTP. The v1 tests stay in
test_stop_flow.py; both go through the same flow, so these check what differs and what must hold
for v2 too (exactly one terminate, whatever the clicks, retries and replicas)."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bot.alerts.blocks import STOP_REQUEST
from bot.flow.blocks import CONFIRM
from bot.modelarts.refs import V2Job
from botdev.emulator import (
    EMULATOR_DOMAIN,
    EMULATOR_PASSWORD,
    EMULATOR_USERNAME,
)
from tests.plugins.alerts import generic
from tests.plugins.slack import button_value, responses
from tests.test_stop_flow import request_message, stop_and_confirm

RESNET = V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347")     # team-a-resnet50, Running, 8 nodes
YOLO = V2Job("9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d")       # team-b-yolov8, Running
PENDING = V2Job("0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d")    # team-b-llm-eval, Pending
ENDED = {
    "Terminated": V2Job("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"),
    "Completed": V2Job("2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b"),
    "Failed": V2Job("4a5b6c7d-8e9f-4a0b-8c1d-2e3f4a5b6c7d"),
    "Abnormal": V2Job("5c6d7e8f-9a0b-4c1d-9e2f-3a4b5c6d7e8f"),
}
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def wait_reply(slack_api, user: str, needle: str) -> str:
    return slack_api.wait_for(
        lambda: next((t for t in responses(slack_api, user) if needle in t), None))


def thread_text(slack_api, msg, needle: str):
    """The first reply in ``msg``'s thread that contains ``needle`` (waits for it)."""
    return slack_api.wait_for(lambda: next(
        (m for m in slack_api.thread_replies(msg.channel, msg.ts) if needle in m.text), None))


def settle(seconds: float = 0.5) -> None:
    """Give work that must NOT happen a moment to show itself."""
    time.sleep(seconds)


class TestHappyPath:
    def test_confirmation_says_what_is_about_to_die(self, make_bot, slack_api, emulator):
        make_bot().command(f"stop {RESNET.training_job_id}")
        msg = request_message(slack_api)
        for needle in ("team-a-resnet50", RESNET.training_job_id, "phase Running",
                       "running for", "8 × GPU nodes", "created by alice", "<@U0ONCALL>"):
            assert needle in msg.text, needle
        assert emulator.stop_count(RESNET) == 0

    def test_one_terminate_and_the_thread_names_the_job(self, make_bot, slack_api, emulator):
        msg = stop_and_confirm(make_bot(), slack_api, RESNET.args)
        reply = thread_text(slack_api, msg, "Stop requested")
        assert "team-a-resnet50" in reply.text and RESNET.training_job_id in reply.text
        assert "Terminating" in reply.text
        assert emulator.stop_count(RESNET) == 1
        assert emulator.job(RESNET)["status"]["phase"] in ("Terminating", "Terminated")
        terminates = [r for r in emulator.requests if r.path.endswith("/actions")]
        assert len(terminates) == 1 and json.loads(terminates[0].body) == {
            "action_type": "terminate"}

    def test_pending_job_may_be_stopped(self, make_bot, slack_api, emulator):
        msg = stop_and_confirm(make_bot(), slack_api, PENDING.args, user="U0BOB")
        thread_text(slack_api, msg, "Stop requested")
        assert emulator.stop_count(PENDING) == 1

    def test_status_names_the_phase(self, make_bot, slack_api, emulator):
        make_bot().command(f"status {RESNET.training_job_id}", user="U0BOB")
        text = wait_reply(slack_api, "U0BOB", "*Running*")
        assert "team-a-resnet50" in text and "8 × GPU nodes" in text
        assert not slack_api.calls_to("chat.postMessage")

    def test_help_leads_with_the_v2_form(self, make_bot):
        text = make_bot().command("help").json()["text"]
        assert text.index("training_job_id") < text.index("job_id&gt; &lt;version_id")
        assert "Old-version jobs" in text


class TestRefusals:
    @pytest.mark.parametrize("phase", sorted(ENDED))
    def test_phase_that_cannot_stop_is_named_and_nothing_called(self, make_bot, slack_api,
                                                                emulator, phase):
        make_bot().command(f"stop {ENDED[phase].training_job_id}")
        wait_reply(slack_api, "U0ONCALL", f"is {phase}, not running: nothing to stop")
        settle(0.3)
        assert not slack_api.calls_to("chat.postMessage")
        assert emulator.stop_count(ENDED[phase]) == 0
        assert not [r for r in emulator.requests if r.path.endswith("/actions")]

    def test_terminating_job_is_not_stopped_again(self, make_bot, slack_api, emulator):
        emulator.set_status(RESNET, "Terminating")
        make_bot().command(f"stop {RESNET.training_job_id}")
        wait_reply(slack_api, "U0ONCALL", "is Terminating, not running")
        assert emulator.stop_count(RESNET) == 0

    def test_role_is_checked_on_the_job_name(self, make_bot, slack_api, emulator):
        make_bot().command(f"stop {RESNET.training_job_id}", user="U0BOB")
        text = wait_reply(slack_api, "U0BOB", "may not stop")
        assert "team-a-resnet50" in text and "`team-a`" in text
        settle()
        assert emulator.stop_count(RESNET) == 0 and not slack_api.calls_to("chat.postMessage")

    def test_unknown_id_is_reported_with_its_code(self, make_bot, slack_api, emulator):
        make_bot().command(f"stop {UNKNOWN}")
        text = wait_reply(slack_api, "U0ONCALL", "Could not look up")
        assert "ModelArts.2775" in text and "HTTP 400" in text and UNKNOWN in text
        assert "Hint: no such training job" in text

    @pytest.mark.parametrize("text", [
        "stop 3faf5c03-aaa1-4cbe-879d-24b05d99734!",
        "stop 3faf5c03_aaa1_4cbe_879d_24b05d997347",
        "stop " + "a" * 37,
        "status 3faf5c03",
    ])
    def test_malformed_ids_are_refused_without_a_request(self, make_bot, slack_api, emulator,
                                                         text):
        resp = make_bot().command(text)
        assert resp.status_code == 200 and "Usage" in resp.json()["text"]
        settle(0.3)
        assert not emulator.requests and not slack_api.calls_to("chat.postMessage")


class TestFailures:
    def test_409_for_a_job_that_ended_meanwhile_says_already(self, make_bot, slack_api, emulator):
        """The job ended between the request and the click: ModelArts' own 409, looked up once
        more: "already", no red cross."""
        bot = make_bot()
        bot.command(f"stop {RESNET.training_job_id}")
        msg = request_message(slack_api)
        emulator.set_status(RESNET, "Completed")
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        reply = thread_text(slack_api, msg, "already")
        assert "*team-a-resnet50* was already Completed" in reply.text
        assert ":x:" not in reply.text and "Stop failed" not in reply.text

    def test_409_for_a_running_job_reaches_the_thread_with_a_hint(self, make_bot, slack_api,
                                                                   emulator):
        """A 409 while the job still runs is a failure: code, status and the hint."""
        bot = make_bot()
        bot.command(f"stop {RESNET.training_job_id}")
        msg = request_message(slack_api)
        emulator.set_fault(RESNET, "failure", http_status=409, error_code="ModelArts.2796",
                           error_msg="The job status does not allow this operation")
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        reply = thread_text(slack_api, msg, "Stop failed")
        assert "ModelArts.2796" in reply.text and "HTTP 409" in reply.text
        assert "Hint: the job is not in a state that allows a stop" in reply.text
        assert "team-a-resnet50" in reply.text and RESNET.training_job_id in reply.text

    def test_400_error_code_and_message(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {RESNET.training_job_id}")
        msg = request_message(slack_api)
        emulator.set_fault(RESNET, "failure", http_status=400, error_code="ModelArts.2788",
                           error_msg="Invalid parameter")
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        reply = thread_text(slack_api, msg, "Stop failed")
        assert "ModelArts.2788" in reply.text and "Invalid parameter" in reply.text
        assert "HTTP 400" in reply.text

    def test_500_with_html(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {RESNET.training_job_id}")
        msg = request_message(slack_api)
        emulator.set_fault(RESNET, "html_500")
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        reply = thread_text(slack_api, msg, "Stop failed")
        assert "HTTP 500" in reply.text

    def test_timeout_is_outcome_unknown_and_one_terminate(self, make_bot, slack_api, emulator):
        bot = make_bot(MODELARTS_TIMEOUT_SECONDS=0.5)
        bot.command(f"stop {RESNET.training_job_id}")
        msg = request_message(slack_api)
        emulator.set_fault(RESNET, "slow", delay=1.5, when="after")
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        thread_text(slack_api, msg, "Outcome unknown")
        slack_api.wait_for(lambda: emulator.stop_count(RESNET) == 1)
        settle(1.5)
        assert emulator.stop_count(RESNET) == 1


class TestExactlyOnce:
    def test_twenty_concurrent_confirms_give_one_terminate(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {RESNET.training_job_id}")
        msg = request_message(slack_api)
        value, blocks = button_value(msg, CONFIRM), msg.blocks
        with ThreadPoolExecutor(20) as pool:
            codes = list(pool.map(lambda _: bot.click(CONFIRM, value, "U0ONCALL", msg.channel,
                                                      msg.ts, blocks).status_code, range(20)))
        assert codes == [200] * 20
        thread_text(slack_api, msg, "Stop requested")
        slack_api.wait_for(lambda: len([t for t in responses(slack_api, "U0ONCALL")
                                        if "already handled" in t]) == 19, timeout=20)
        assert emulator.stop_count(RESNET) == 1

    def test_slack_retry_of_the_click_terminates_once(self, make_bot, slack_api, emulator):
        bot = make_bot()
        bot.command(f"stop {RESNET.training_job_id}")
        msg = request_message(slack_api)
        value, blocks = button_value(msg, CONFIRM), msg.blocks
        bot.click(CONFIRM, value, "U0ONCALL", msg.channel, msg.ts, blocks)
        bot.click(CONFIRM, value, "U0ONCALL", msg.channel, msg.ts, blocks,
                  headers={"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
        wait_reply(slack_api, "U0ONCALL", "already handled")
        thread_text(slack_api, msg, "Stop requested")
        settle()
        assert emulator.stop_count(RESNET) == 1

    def test_two_replicas_one_terminate(self, make_bot, slack_api, emulator):
        one, two = make_bot(), make_bot()
        one.command(f"stop {RESNET.training_job_id}")
        msg = request_message(slack_api)
        value, blocks = button_value(msg, CONFIRM), msg.blocks
        with ThreadPoolExecutor(10) as pool:
            list(pool.map(lambda i: (one, two)[i % 2].click(CONFIRM, value, "U0ONCALL",
                                                            msg.channel, msg.ts, blocks),
                          range(10)))
        thread_text(slack_api, msg, "Stop requested")
        slack_api.wait_for(lambda: len([t for t in responses(slack_api, "U0ONCALL")
                                        if "already handled" in t]) == 9, timeout=20)
        assert emulator.stop_count(RESNET) == 1


class TestAuth:
    def test_iam_token_auth_with_only_the_usual_settings(self, make_bot, slack_api, emulator):
        """No AK/SK and no project name: the token is scoped by MODELARTS_PROJECT_ID."""
        bot = make_bot(MODELARTS_AK=None, MODELARTS_SK=None,
                       MODELARTS_IAM_ENDPOINT=emulator.base_url,
                       MODELARTS_USERNAME=EMULATOR_USERNAME, MODELARTS_PASSWORD=EMULATOR_PASSWORD,
                       MODELARTS_DOMAIN=EMULATOR_DOMAIN)
        msg = stop_and_confirm(bot, slack_api, RESNET.args)
        thread_text(slack_api, msg, "Stop requested")
        assert emulator.stop_count(RESNET) == 1 and emulator.token_issues == 1
        calls = [r for r in emulator.requests if r.path.startswith("/v2/")]
        assert calls and all(r.headers.get("X-Auth-Token") for r in calls)

    def test_aksk_signs_the_terminate_body(self, make_bot, slack_api, emulator):
        msg = stop_and_confirm(make_bot(), slack_api, RESNET.args)
        thread_text(slack_api, msg, "Stop requested")
        terminate = next(r for r in emulator.requests if r.path.endswith("/actions"))
        assert terminate.headers["Authorization"].startswith("SDK-HMAC-SHA256")


class TestAlerts:
    def test_alert_with_training_job_id_leads_to_the_v2_confirmation(
            self, make_alert_bot, slack_api, emulator):
        bot = make_alert_bot()
        body = generic(job_id=None, version_id=None, job_name="team-b-yolov8",
                       training_job_id=YOLO.training_job_id)
        assert bot.alert(body).status_code == 202
        alert = slack_api.wait_for(lambda: next(
            (m for m in slack_api.messages.values()
             if m.channel == "C0ALERTS" and STOP_REQUEST in json.dumps(m.blocks or [])), None))
        assert YOLO.training_job_id in alert.text and button_value(alert, STOP_REQUEST) == YOLO.key
        bot.click_button(alert, STOP_REQUEST, "U0BOB")
        ask = slack_api.wait_for(lambda: next(
            (m for m in slack_api.thread_replies(alert.channel, alert.ts)
             if CONFIRM in json.dumps(m.blocks or [])), None))
        assert "team-b-yolov8" in ask.text and "phase Running" in ask.text
        bot.click(CONFIRM, button_value(ask, CONFIRM), "U0BOB", ask.channel, ask.ts)
        slack_api.wait_for(lambda: "Stopped by <@U0BOB>" in alert.text)
        assert emulator.stop_count(YOLO) == 1

    def test_alertmanager_label_training_job_id(self):
        from bot.alerts.parse import parse

        body = {"version": "4", "alerts": [{
            "status": "firing", "annotations": {"summary": "loss is NaN"},
            "labels": {"alertname": "LossNaN", "training_job_id": YOLO.training_job_id,
                       "job_name": "team-b-yolov8", "slack_channel": "C0ALERTS"}}]}
        alerts = parse(json.dumps(body).encode())
        assert isinstance(alerts, list) and alerts[0].ref == YOLO

    def test_malformed_training_job_id_is_a_400_naming_the_field(self, make_alert_bot):
        resp = make_alert_bot().alert(generic(job_id=None, version_id=None,
                                              training_job_id="not an id"))
        assert resp.status_code == 400 and "training_job_id" in resp.text
