"""Why it ended (issue 22): the final message of a followed stop, and `status` of an ended v2 job,
show the job's last events (``GET /v2/{project_id}/training-jobs/{id}/events``): the emulator's
route, the client, the choice of events, and end to end (real Redis, the emulator and the Slack
stand-in over loopback; every wait polls with a deadline)."""

from __future__ import annotations

import requests

from bot.flow import blocks as b
from bot.flow.blocks import CONFIRM
from bot.modelarts import models
from bot.modelarts.client import _event_time
from bot.modelarts.models import Failure, JobEvent
from bot.modelarts.refs import V1Job, V2Job
from botdev.emulator import EMULATOR_PROJECT_ID
from tests.test_stop_flow import JOB, VERSION, request_message, settle, wait_reply

RESNET50 = V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347")   # team-a-resnet50, Running
VIT = V2Job("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f")        # team-a-vit-sweep, Terminated
WHY = "Last job events:"


def event_calls(emulator, ref: V2Job) -> list:
    path = f"/training-jobs/{ref.training_job_id}/events"
    return [r for r in emulator.requests if r.method == "GET" and r.path.endswith(path)]


def final_of(slack_api, msg, state: str = "is Terminated", timeout: float = 15) -> str:
    return slack_api.wait_for(lambda: next((m.text for m in slack_api.thread_replies(
        msg.channel, msg.ts) if state in m.text), None), timeout=timeout)


def ev(ms: int, level: str = "Info", source: str = "Job", message: str = "m") -> JobEvent:
    return JobEvent(ms, level, message, source)


class TestTheEmulatorServesEvents:
    def url(self, emulator, ref: V2Job) -> str:
        return (f"{emulator.base_url}/v2/{EMULATOR_PROJECT_ID}/training-jobs/"
                f"{ref.training_job_id}/events")

    def test_a_terminate_is_logged_and_pages_come_in_either_order(self, emulator,
                                                                   modelarts_client):
        emulator.stop_delay = 0
        assert modelarts_client.stop(RESNET50).is_success
        got = modelarts_client.events(RESNET50)
        assert [e.message for e in got[:2]] == ["Training job terminated by user.",
                                                "Training job is being terminated by user."]
        assert got[-1].message == "Training job created."
        assert all(e.source == "Job" and e.time_ms for e in got)

    def test_paging_level_and_bad_parameters(self, emulator, modelarts_client):
        emulator.set_status(RESNET50, "Failed")
        page = modelarts_client.job_events(RESNET50.training_job_id, limit=1)
        assert [e.message for e in page] == ["Training job failed."]
        signed = modelarts_client._call("job_events", "GET", modelarts_client._job_path(
            RESNET50.training_job_id) + "/events", [("level", "Error"), ("order", "asc")])
        body = signed.body
        assert body["total"] == 2 and body["order"] == "asc" and body["offset"] == 0
        assert [e["source"] for e in body["events"]] == ["Task", "Job"]
        bad = modelarts_client._call("job_events", "GET", modelarts_client._job_path(
            RESNET50.training_job_id) + "/events", [("limit", 101)])
        assert isinstance(bad, Failure) and bad.error_code == "ModelArts.2788"

    def test_unknown_job_unsigned_and_faults(self, emulator, modelarts_client):
        gone = V2Job("00000000-0000-4000-8000-000000000000")
        got = modelarts_client.events(gone)
        assert isinstance(got, Failure) and got.error_code == "ModelArts.2775"
        assert requests.get(self.url(emulator, RESNET50), timeout=5).status_code == 401
        emulator.set_fault(RESNET50, "failure", on="events", http_status=500,
                           error_code="ModelArts.0001", times=1)
        failed = modelarts_client.events(RESNET50)
        assert isinstance(failed, Failure) and failed.http_status == 500
        assert modelarts_client.lookup(RESNET50).phase == "Running", "a get is not an events call"
        assert not isinstance(modelarts_client.events(RESNET50), Failure), "times=1"


class TestTheClient:
    def test_a_v1_version_has_no_events_and_asks_nothing(self, emulator, modelarts_client):
        before = len(emulator.requests)
        assert modelarts_client.events(V1Job(JOB, VERSION)) == []
        assert len(emulator.requests) == before

    def test_times_in_either_form(self):
        assert _event_time(1_700_000_000_123) == 1_700_000_000_123
        assert _event_time(1_700_000_000) == 1_700_000_000_000
        assert _event_time("1700000000123") == 1_700_000_000_123
        assert _event_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
        assert _event_time("2023-11-14 22:13:20") == 1_700_000_000_000
        assert _event_time("yesterday") is None and _event_time(None) is None
        assert _event_time(True) is None and _event_time(-5) is None

    def test_an_answer_without_events_is_a_failure(self):
        from bot.modelarts.client import _job_event
        assert _job_event({"time": 1, "level": "Info"}) is None
        assert _job_event("text") is None
        assert models.BAD_RESPONSE.startswith("BOT.")


class TestWhichEvents:
    def test_errors_then_the_jobs_own_then_the_rest_newest_first(self):
        got = b.why_events([ev(6, source="Task"), ev(5), ev(4, "Error", "Task"), ev(3),
                            ev(2, "Error"), ev(1, "Error")])
        assert [e.time_ms for e in got] == [2, 1, 4], "the job's errors, other errors, ..."
        assert [e.time_ms for e in b.why_events([ev(2, source="Task"), ev(1)])] == [1, 2]

    def test_at_most_three_each_on_one_line_cut_and_escaped(self):
        long = "x" * 500
        text = b.events_text([ev(1_700_000_000_000, "Error", message="boom <!here>\nstack..."),
                              ev(4, message=long), ev(3), ev(2)])
        lines = text.split("\n")
        assert lines[1] == WHY and len(lines) == 5
        assert lines[2] == "• 22:13 UTC Error: boom &lt;!here&gt;"
        assert max(len(line) for line in lines) < 230 and "…" in text
        assert b.events_text([]) == ""


class TestTheFinalMessage:
    def test_it_says_why_with_one_call_after_the_final_state(self, running, slack_api,
                                                             emulator):
        emulator.stop_delay = 1.0
        bot = running()
        bot.command(f"stop {RESNET50.training_job_id}")
        msg = request_message(slack_api)
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        final = final_of(slack_api, msg)
        assert final.startswith(":white_check_mark: *team-a-resnet50* is Terminated")
        assert f"\n{WHY}\n• " in final and "Training job terminated by user." in final
        settle(1)
        assert len(event_calls(emulator, RESNET50)) == 1, "one call, once it had ended"

    def test_a_failing_events_call_leaves_it_as_it_was(self, running, slack_api, emulator):
        emulator.set_fault(RESNET50, "failure", on="events", http_status=500,
                           error_code="ModelArts.0001")
        bot = running()
        bot.command(f"stop {RESNET50.training_job_id}")
        msg = request_message(slack_api)
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        final = final_of(slack_api, msg)
        assert final.startswith(":white_check_mark: *team-a-resnet50* is Terminated (stopped ")
        assert WHY not in final and final.endswith("after the request).")
        slack_api.wait_for(lambda: "Stopped by <@U0ONCALL> · Terminated at" in msg.text)
        assert len(event_calls(emulator, RESNET50)) == 1, "tried once, not again"

    def test_a_job_that_failed_on_its_own_shows_its_errors_first(self, running, slack_api,
                                                                  emulator):
        emulator.set_fault(RESNET50, "stuck")
        bot = running()
        bot.command(f"stop {RESNET50.training_job_id}")
        msg = request_message(slack_api)
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: len([r for r in emulator.requests if r.path.endswith(
            RESNET50.training_job_id)]) >= 3, timeout=15)
        assert not event_calls(emulator, RESNET50), "no events call before the final state"
        emulator.set_status(RESNET50, "Failed")
        final = final_of(slack_api, msg, "is Failed")
        why = final.split(f"{WHY}\n")[1].split("\n")
        assert "ended on its own" in final
        assert why[0].endswith("Error: Training job failed.")
        assert why[1].endswith("Error: [worker-0] Training finished. Exit code 1.")


class TestStatus:
    def test_an_ended_v2_job_says_why(self, make_bot, slack_api, emulator):
        make_bot().command(f"status {VIT.training_job_id}")
        text = wait_reply(slack_api, "U0ONCALL", "Terminated")[0]
        assert text.startswith("*team-a-vit-sweep*") and f"\n{WHY}\n" in text
        assert "Training job terminated by user." in text
        assert len(event_calls(emulator, VIT)) == 1

    def test_by_name_too(self, make_bot, slack_api):
        make_bot().command("status team-a-vit-sweep")
        text = wait_reply(slack_api, "U0ONCALL", "team-a-vit-sweep")[0]
        assert "No running job is named" in text and "Training job terminated by user." in text

    def test_a_running_job_asks_for_no_events(self, make_bot, slack_api, emulator):
        make_bot().command(f"status {RESNET50.training_job_id}")
        text = wait_reply(slack_api, "U0ONCALL", "Running")[0]
        assert WHY not in text and not event_calls(emulator, RESNET50)

    def test_a_failing_events_call_leaves_status_as_it_was(self, make_bot, slack_api, emulator):
        emulator.set_fault(VIT, "drop", on="events")
        make_bot().command(f"status {VIT.training_job_id}")
        text = wait_reply(slack_api, "U0ONCALL", "Terminated")[0]
        assert text.startswith("*team-a-vit-sweep* (training_job_id ") and WHY not in text
