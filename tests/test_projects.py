"""Issue 21: one bot for several ModelArts projects. End to end over HTTP: two projects on two
emulator endpoints (each its own project id; one IAM for both), real Redis, the Slack stand-in."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bot.core.errors import ConfigError
from bot.core.settings import load_settings
from bot.flow.blocks import CONFIRM, STOP_REQUEST
from bot.modelarts.refs import V1Job, V2Job, parse_ref
from botdev.emulator import (
    EMULATOR_DOMAIN,
    EMULATOR_PASSWORD,
    EMULATOR_PROJECT_ID,
    EMULATOR_USERNAME,
    Emulator,
)
from tests.plugins.alerts import generic
from tests.plugins.slack import responses
from tests.test_alerts import wait_alerts
from tests.test_audit import wait_event
from tests.test_stop_flow import settle, wait_reply

SECOND_ID = "fedcba9876543210fedcba9876543210"
BJ4_RESNET = V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347", "bj4")       # team-a-resnet50
BJ4_YOLO = V2Job("9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "bj4")         # team-b-yolov8
AP3_YOLO = V2Job("5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6", "ap3")         # the same name
AP3_BERT = V2Job("8a9b0c1d-2e3f-4a5b-8c6d-7e8f9a0b1c2d", "ap3")         # team-a-bert-ap3


@pytest.fixture
def second(emulator):
    """The second project: its own emulator (endpoint, project id), the first one's IAM."""
    emu = Emulator(stop_delay=1.0, seed_project="ap3", project_id=SECOND_ID,
                   project_name="ap-southeast-3", gate=emulator.gate)
    emu.start("127.0.0.1", 0)
    yield emu
    emu.close()


def projects(emulator, second, first_name: str = "bj4") -> str:
    return json.dumps([
        {"name": first_name, "project_id": EMULATOR_PROJECT_ID, "region": "cn-north-4",
         "endpoint": emulator.base_url},
        {"name": "ap3", "project_id": SECOND_ID, "region": "ap-southeast-3",
         "endpoint": second.base_url}])


@pytest.fixture
def multi(make_bot, emulator, second):
    def make(first_name: str = "bj4", **overrides):
        # Console links off: these tests read the project labels (links: tests/test_links.py).
        return make_bot(MODELARTS_ENDPOINT=None, MODELARTS_PROJECT_ID=None,
                        MODELARTS_PROJECTS=projects(emulator, second, first_name),
                        **{"MODELARTS_CONSOLE_URL": "off", **overrides})
    return make


def local(ref):
    """The ref as the emulator of its project knows it (an emulator has one project)."""
    return replace(ref, project="default")


def asks(slack_api) -> list:
    return [m for m in slack_api.messages.values() if CONFIRM in json.dumps(m.blocks or [])]


def stops(emu) -> list:
    return [r for r in emu.requests if r.method == "POST" and r.path.endswith("/actions")]


def listed(slack_api, user: str, needle: str) -> dict:
    return slack_api.wait_for(lambda: next(
        (c.params for c in slack_api.calls if c.method == f"response/cmd-{user}"
         and needle in json.dumps(c.params.get("blocks") or c.params.get("text"))), None))


class TestSettings:
    def test_projects_exclude_the_single_project_settings(self, emulator, second):
        with pytest.raises(ConfigError) as err:
            load_settings(MODELARTS_PROJECTS=projects(emulator, second),
                          MODELARTS_ENDPOINT=emulator.base_url)
        assert "MODELARTS_ENDPOINT and MODELARTS_PROJECT_ID" in str(err.value)

    @pytest.mark.parametrize("value, needle", [
        ("[", "not valid JSON"), ("[]", "non-empty JSON list"),
        ('[{"name": "BJ4", "project_id": "p", "region": "cn-north-4"}]', "name must be 1-32"),
        ('[{"name": "a", "project_id": "p"}]', "needs a region (or an endpoint)"),
        ('[{"name": "a", "project_id": "p", "region": "cn-north-4"},'
         ' {"name": "a", "project_id": "q", "region": "cn-north-4"}]', "names a more than once"),
        ('[{"name": "a", "project_id": "p", "endpoint": "http://modelarts.example.com"}]',
         "must be https://"),
        ('[{"name": "a", "project_id": "p", "region": "cn-north-4", "workspaces": ["x"]}]',
         "workspaces must be a list of workspace ids"),
    ])
    def test_a_bad_entry_is_named(self, value, needle):
        with pytest.raises(ConfigError) as err:
            load_settings(MODELARTS_PROJECTS=value)
        assert needle in str(err.value)

    def test_a_region_gives_the_standard_endpoint(self):
        got = load_settings(MODELARTS_PROJECTS=json.dumps([
            {"name": "gy2", "project_id": "p", "region": "cn-southwest-2"},
            {"name": "sg", "project_id": "q", "region": "ap-southeast-1"}])).projects
        assert got[0].endpoint == "https://modelarts.cn-southwest-2.myhuaweicloud.com"
        assert got[1].endpoint == "https://modelarts.ap-southeast-1.myhuaweicloud.cn"
        assert got[0].workspaces == ("0",)

    def test_refs_keep_their_old_keys_in_the_default_project(self):
        assert V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347").key == \
            "v2:3faf5c03-aaa1-4cbe-879d-24b05d997347"
        assert BJ4_RESNET.key == "bj4/v2:3faf5c03-aaa1-4cbe-879d-24b05d997347"
        assert parse_ref(BJ4_RESNET.key) == BJ4_RESNET
        assert parse_ref("ap3/v1:182626:278813") == V1Job(182626, 278813, "ap3")
        assert BJ4_RESNET.args == "bj4/3faf5c03-aaa1-4cbe-879d-24b05d997347"


class TestList:
    def test_both_projects_in_one_list_each_labelled(self, multi, slack_api, emulator, second):
        multi().command("list", user="U0ONCALL")
        got = listed(slack_api, "U0ONCALL", "team-a-bert-ap3")
        text = json.dumps(got["blocks"])
        assert "ap3 \\u00b7 *team-a-bert-ap3*" in text and "bj4 \\u00b7 *team-a-resnet50*" in text
        assert "ap3 \\u00b7 *team-b-yolov8*" in text and "bj4 \\u00b7 *team-b-yolov8*" in text
        values = [b["accessory"]["value"] for b in got["blocks"] if b.get("accessory")]
        assert AP3_BERT.key in values and BJ4_RESNET.key in values
        # Each workspace searched with its id, in each project.
        assert all(json.loads(r.body)["workspace_id"] == "0" for e in (emulator, second)
                   for r in e.requests if r.path.endswith("training-job-searches"))

    def test_one_endpoint_down_the_other_still_lists_and_the_failure_is_named(
            self, multi, slack_api, emulator, second):
        bot = multi()
        second.close()
        bot.command("list", user="U0ONCALL")
        got = listed(slack_api, "U0ONCALL", "team-a-resnet50")
        text = json.dumps(got["blocks"])
        assert "ap3 v2 not available" in text and "ap3 v1 not available" in text
        assert "bj4 \\u00b7 *team-a-resnet50*" in text

    def test_a_role_limited_to_one_project(self, multi, slack_api, emulator, second, tmp_path):
        roles = tmp_path / "roles.yml"
        roles.write_text('roles:\n  bj4-team:\n    jobs: ["bj4/*"]\n  any-a:\n'
                         '    jobs: ["*/team-a-*"]\nusers:\n  U0BJ: [bj4-team]\n'
                         '  U0ALL: [any-a]\n')
        bot = multi(ROLES_FILE=str(roles))
        bot.command("list", user="U0BJ")
        got = json.dumps(listed(slack_api, "U0BJ", "running job")["blocks"])
        assert "bj4 \\u00b7 *team-a-resnet50*" in got and "ap3 \\u00b7" not in got
        bot.command(f"stop {AP3_BERT.args}", user="U0BJ")
        wait_reply(slack_api, "U0BJ", "You may not stop")
        bot.command("list", user="U0ALL")
        got = json.dumps(listed(slack_api, "U0ALL", "running job")["blocks"])
        assert "ap3 \\u00b7 *team-a-bert-ap3*" in got and "team-b-yolov8" not in got
        assert not stops(second)


class TestStop:
    def test_by_name_in_the_second_one_terminate_there_signed_for_it(
            self, multi, slack_api, emulator, second):
        bot = multi()
        bot.command("stop team-a-bert-ap3", user="U0ONCALL")
        msg = slack_api.wait_for(lambda: next(iter(asks(slack_api)), None))
        assert "ap3 · *team-a-bert-ap3*" in msg.text
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: stops(second))
        assert [r.path for r in stops(second)] == [
            f"/v2/{SECOND_ID}/training-jobs/{AP3_BERT.training_job_id}/actions"]
        assert second.stop_count(local(AP3_BERT)) == 1 and not stops(emulator)
        sent = stops(second)[0].headers
        assert sent.get("X-Project-Id") == SECOND_ID and "Authorization" in sent

    def test_the_same_name_in_both_gives_a_choice_and_no_stop(self, multi, slack_api, emulator,
                                                             second):
        multi().command("stop team-b-yolov8", user="U0ONCALL")
        got = listed(slack_api, "U0ONCALL", "named")
        values = [b["accessory"]["value"] for b in got["blocks"] if b.get("accessory")]
        assert sorted(values) == sorted([BJ4_YOLO.key, AP3_YOLO.key])
        settle(0.3)
        assert not asks(slack_api) and not stops(emulator) and not stops(second)

    @pytest.mark.parametrize("args, ref", [
        ("ap3/team-b-yolov8", AP3_YOLO),
        (f"ap3/{AP3_YOLO.training_job_id}", AP3_YOLO),
        (f"bj4/{BJ4_RESNET.training_job_id}", BJ4_RESNET),
        (AP3_BERT.training_job_id, AP3_BERT),                # a bare id: found in the second
        ("bj4/182626 278813", V1Job(182626, 278813, "bj4")),
    ])
    def test_qualified_names_and_ids(self, multi, slack_api, emulator, second, args, ref):
        bot = multi()
        bot.command(f"stop {args}", user="U0ONCALL")
        msg = slack_api.wait_for(lambda: next(iter(asks(slack_api)), None))
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        target = second if ref.project == "ap3" else emulator
        slack_api.wait_for(lambda: target.stop_count(local(ref)) == 1)
        assert f"{ref.project} · " in msg.text

    def test_an_unknown_project_is_named(self, multi, slack_api, emulator, second):
        bot = multi()
        bot.command("stop nowhere/team-a-resnet50", user="U0ONCALL")
        said = wait_reply(slack_api, "U0ONCALL", "no project")[0]
        assert "`bj4`" in said and "`ap3`" in said
        assert not emulator.requests and not second.requests

    def test_an_alert_naming_its_project(self, make_alert_bot, slack_api, emulator, second):
        bot = make_alert_bot(MODELARTS_ENDPOINT=None, MODELARTS_PROJECT_ID=None,
                             MODELARTS_PROJECTS=projects(emulator, second))
        bot.alert(generic(job_id=None, version_id=None, job_name=None, status=None,
                          training_job_id=AP3_YOLO.training_job_id, project="ap3"))
        alert = wait_alerts(slack_api, 1)[0]
        assert "team-b-yolov8" in alert.text
        values = [e["value"] for b in alert.blocks if b.get("type") == "actions"
                  for e in b["elements"] if e["action_id"] == STOP_REQUEST]
        assert values == [AP3_YOLO.key]
        assert not [r for r in emulator.requests if AP3_YOLO.training_job_id in r.path]


class TestUpgrade:
    def test_a_confirmation_and_an_alert_button_from_the_single_project_bot_still_work(
            self, make_bot, make_alert_bot, slack_api, emulator, second, redis_client,
            key_prefix):
        """Made under MODELARTS_ENDPOINT/MODELARTS_PROJECT_ID, used after the switch to
        MODELARTS_PROJECTS with the same project named `default`."""
        old = make_alert_bot()
        old.command(f"stop {BJ4_RESNET.training_job_id}", user="U0ONCALL")
        ask = slack_api.wait_for(lambda: next(iter(asks(slack_api)), None))
        old.alert(generic())                          # v1 team-a-resnet, an alert button
        alert = wait_alerts(slack_api, 1, "C0ALERTS")[0]
        new = make_bot(MODELARTS_ENDPOINT=None, MODELARTS_PROJECT_ID=None,
                       MODELARTS_PROJECTS=projects(emulator, second, "default"))
        new.click_button(ask, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: emulator.stop_count(V2Job(BJ4_RESNET.training_job_id)) == 1)
        assert wait_event(redis_client, key_prefix, "stopped").get("project") == ""
        new.click_button(alert, STOP_REQUEST, "U0ONCALL")
        again = slack_api.wait_for(lambda: next(
            (m for m in asks(slack_api) if m.ts != ask.ts), None))
        assert "team-a-resnet" in again.text and not stops(second)


class TestIam:
    def test_one_token_per_project(self, multi, slack_api, emulator, second):
        bot = multi(MODELARTS_AK=None, MODELARTS_SK=None, MODELARTS_IAM_ENDPOINT=emulator.base_url,
                    MODELARTS_USERNAME=EMULATOR_USERNAME, MODELARTS_PASSWORD=EMULATOR_PASSWORD,
                    MODELARTS_DOMAIN=EMULATOR_DOMAIN)
        bot.command("stop team-a-bert-ap3", user="U0ONCALL")
        msg = slack_api.wait_for(lambda: next(iter(asks(slack_api)), None))
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: second.stop_count(local(AP3_BERT)) == 1)
        bot.command("list", user="U0ONCALL")
        listed(slack_api, "U0ONCALL", "running job")
        tokens = {e: {r.headers.get("X-Auth-Token") for r in e.requests
                      if r.headers.get("X-Auth-Token")} for e in (emulator, second)}
        assert all(len(t) == 1 for t in tokens.values()) and tokens[emulator] != tokens[second]
        assert emulator.gate.token_issues == 2
        assert not [t for t in responses(slack_api, "U0ONCALL") if "not available" in t]



class TestDoctor:
    def test_one_pair_of_lines_per_project_and_the_down_one_named(
            self, serve_env, emulator, second, tmp_path):
        from tests.test_doctor import line, run_doctor

        env = {k: v for k, v in serve_env.items()
               if k not in ("MODELARTS_ENDPOINT", "MODELARTS_PROJECT_ID")}
        env["MODELARTS_PROJECTS"] = projects(emulator, second)
        second.close()
        code, lines = run_doctor(env, tmp_path)
        assert code == 1
        assert line(lines, "modelarts bj4").startswith("OK ")
        assert line(lines, "modelarts-v1 bj4").startswith("OK ")
        down = line(lines, "modelarts ap3")
        assert down.startswith("FAIL ") and "refused" in down.lower(), down
        assert line(lines, "modelarts-v1 ap3").startswith("WARN ")

    def test_iam_one_token_per_project(self, serve_env, emulator, second, tmp_path):
        from tests.test_doctor import line, run_doctor

        env = {k: v for k, v in serve_env.items() if k not in (
            "MODELARTS_ENDPOINT", "MODELARTS_PROJECT_ID", "MODELARTS_AK", "MODELARTS_SK")}
        env.update(MODELARTS_PROJECTS=projects(emulator, second),
                   MODELARTS_IAM_ENDPOINT=emulator.base_url, MODELARTS_USERNAME=EMULATOR_USERNAME,
                   MODELARTS_PASSWORD=EMULATOR_PASSWORD, MODELARTS_DOMAIN=EMULATOR_DOMAIN)
        code, lines = run_doctor(env, tmp_path)
        for name in ("bj4", "ap3"):
            assert "its own IAM token" in line(lines, f"modelarts {name}"), lines
        assert emulator.gate.token_issues == 2
