"""A link to the job (issue 22): every message naming a job links its name to the job's page in
the ModelArts console (MODELARTS_CONSOLE_URL, MODELARTS_CONSOLE_URL_V1). The builders and the
settings directly, then each message kind end to end: signed requests to the served app, real
Redis, the emulator and the Slack stand-in over loopback."""

from __future__ import annotations

import json

import pytest

from bot.core import console
from bot.core.errors import ConfigError
from bot.core.projects import Project, region_of
from bot.core.settings import load_settings
from bot.flow import blocks as b
from bot.flow.blocks import CONFIRM, STOP_REQUEST
from bot.modelarts.console import Console
from bot.modelarts.refs import V1Job, V2Job
from botdev.emulator import EMULATOR_PROJECT_ID
from tests.plugins.alerts import generic
from tests.plugins.slack import responses
from tests.test_alerts import wait_alerts
from tests.test_finder import answers
from tests.test_stop_flow import JOB, VERSION, request_message, wait_reply

RESNET50 = V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347")     # team-a-resnet50, Running
V1 = V1Job(JOB, VERSION)                                       # team-a-resnet, RUNNING
# No {region}: the emulator's loopback endpoint names none. An & to see it escaped.
V2_TEMPLATE = "https://console.example.com/ma/{project_id}/jobs/{training_job_id}?tab=1&x=2"
V1_TEMPLATE = "https://console.example.com/old/{job_id}/{version_id}"
V2_URL = (f"https://console.example.com/ma/{EMULATOR_PROJECT_ID}/jobs/"
          f"{RESNET50.training_job_id}?tab=1&amp;x=2")
V1_URL = f"https://console.example.com/old/{JOB}/{VERSION}"
V2_LINK = f"*<{V2_URL}|team-a-resnet50>*"
V1_LINK = f"*<{V1_URL}|team-a-resnet>*"
LINKS = {"MODELARTS_CONSOLE_URL": V2_TEMPLATE, "MODELARTS_CONSOLE_URL_V1": V1_TEMPLATE}


def base(**more):
    """Settings with no .env file and the given values (what serve would read)."""
    return load_settings(_env_file=None, MODELARTS_ENDPOINT="https://modelarts.cn-north-4."
                         "myhuaweicloud.com", MODELARTS_PROJECT_ID="p0", **more)


class TestTheLink:
    def test_mrkdwn_link_with_the_url_escaped(self):
        got = b.link("https://h/a|b<c>d e?x=1&y=2", "name")
        assert got == "<https://h/a%7Cb%3Cc%3Ed%20e?x=1&amp;y=2|name>"

    def test_job_ref_links_the_name_and_keeps_escaping_it(self):
        got = b.job_ref("team*<!here>", RESNET50, "https://h/j")
        assert got.startswith("*<https://h/j|team\u2217&lt;!here&gt;>* (training_job_id ")
        assert b.job_ref("team-a", RESNET50) == f"*team-a* ({RESNET50})", "no url: no link"

    def test_a_value_never_adds_a_path_or_a_fragment(self):
        c = Console({"v2": "https://h/{project_id}/{training_job_id}"}, "", "a/b#c|d")
        assert c.url(RESNET50) == f"https://h/a%2Fb%23c%7Cd/{RESNET50.training_job_id}"

    def test_each_api_fills_its_own_template(self):
        c = Console({"v2": console.V2_DEFAULT, "v1": console.V1_DEFAULT}, "cn-north-4", "p0")
        assert c.url(RESNET50) == ("https://console.huaweicloud.com/modelarts/?region=cn-north-4"
                                   f"#/training/detail/{RESNET50.training_job_id}")
        assert c.url(V1).endswith(f"#/trainingJobs/details/{JOB}?versionId={VERSION}")

    def test_no_region_no_link_unless_the_template_needs_none(self):
        c = Console({"v2": console.V2_DEFAULT, "v1": V1_TEMPLATE}, "", "p0")
        assert c.url(RESNET50) == "" and c.url(V1) == V1_URL

    def test_the_region_comes_from_the_project_or_its_standard_endpoint(self):
        assert region_of(Project("a", "p", "https://x", "ap-southeast-3")) == "ap-southeast-3"
        assert region_of(Project("a", "p", "https://modelarts.cn-north-4.myhuaweicloud.com")) \
            == "cn-north-4"
        assert region_of(Project("a", "p", "https://modelarts.ap-southeast-1.myhuaweicloud.cn")) \
            == "ap-southeast-1"
        assert region_of(Project("a", "p", "http://127.0.0.1:8090")) == ""
        assert region_of(Project("a", "p", "https://modelarts.example.com")) == ""


class TestSettings:
    def test_the_default_links_the_public_console(self):
        templates = base().console_templates
        assert templates == {"v2": console.V2_DEFAULT, "v1": console.V1_DEFAULT}

    @pytest.mark.parametrize("value", ["", "  ", "off", "OFF"])
    def test_empty_or_off_turns_every_link_off(self, value):
        assert base(MODELARTS_CONSOLE_URL=value).console_templates == {"v2": "", "v1": ""}

    def test_empty_in_the_environment_or_the_env_file_turns_links_off(self, monkeypatch,
                                                                      tmp_path):
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("MODELARTS_CONSOLE_URL", raising=False)
        monkeypatch.setenv("MODELARTS_CONSOLE_URL_V1", "")
        got = load_settings().console_templates
        assert got == {"v2": console.V2_DEFAULT, "v1": ""}
        (tmp_path / ".env").write_text("MODELARTS_CONSOLE_URL=\nMETRICS_TOKEN=\n")
        s = load_settings()
        assert s.console_templates == {"v2": "", "v1": ""}
        assert s.METRICS_TOKEN is None, "every other empty value is still unset"

    def test_the_environment_wins_over_an_empty_line_in_the_env_file(self, monkeypatch,
                                                                    tmp_path):
        monkeypatch.chdir(tmp_path)
        (tmp_path / ".env").write_text("MODELARTS_CONSOLE_URL=\n")
        monkeypatch.setenv("MODELARTS_CONSOLE_URL", V2_TEMPLATE)
        assert load_settings().console_templates["v2"] == V2_TEMPLATE

    def test_unset_is_the_default_not_off(self, monkeypatch, tmp_path):
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("MODELARTS_CONSOLE_URL", raising=False)
        monkeypatch.delenv("MODELARTS_CONSOLE_URL_V1", raising=False)
        assert load_settings().console_templates["v2"] == console.V2_DEFAULT

    @pytest.mark.parametrize(("name", "value", "needle"), [
        ("MODELARTS_CONSOLE_URL", "https://h/{job_id}", "{job_id}: a v2 job's link may use"),
        ("MODELARTS_CONSOLE_URL", "https://h/{region}", "must name {training_job_id}"),
        ("MODELARTS_CONSOLE_URL", "https://h/{training_job_id", "without its pair"),
        ("MODELARTS_CONSOLE_URL", "ftp://h/{training_job_id}", "http:// or https://"),
        ("MODELARTS_CONSOLE_URL_V1", "https://h/{training_job_id}", "a v1 job's link may use"),
        ("MODELARTS_CONSOLE_URL_V1", "https://h/{version_id}", "must name {job_id}"),
    ])
    def test_a_bad_template_is_named(self, name, value, needle):
        with pytest.raises(ConfigError) as info:
            base(**{name: value})
        assert str(info.value).startswith(name) and needle in str(info.value)


class TestEveryMessageKind:
    def test_confirmation_outcome_and_settled_request(self, make_bot, slack_api):
        bot = make_bot(**LINKS)
        bot.command(f"stop {RESNET50.training_job_id}")
        msg = request_message(slack_api)
        assert V2_LINK in msg.text and V2_LINK in json.dumps(msg.blocks)
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        reply = slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))[0]
        assert reply.text.startswith(f":white_check_mark: Stop requested for {V2_LINK}")
        slack_api.wait_for(lambda: "Stop requested: ModelArts accepted it" in msg.text)
        assert V2_LINK in msg.text, "the settled request keeps the link"

    def test_a_v1_job_uses_the_v1_template(self, make_bot, slack_api):
        make_bot(**LINKS).command(f"stop {JOB} {VERSION}")
        assert V1_LINK in request_message(slack_api).text

    def test_the_final_message(self, running, slack_api):
        bot = running(**LINKS)
        bot.command(f"stop {RESNET50.training_job_id}")
        msg = request_message(slack_api)
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        final = slack_api.wait_for(lambda: [m.text for m in slack_api.thread_replies(
            msg.channel, msg.ts) if "is Terminated" in m.text], timeout=15)
        assert final[0].startswith(f":white_check_mark: {V2_LINK} is Terminated")

    def test_list_entries(self, make_bot, slack_api):
        make_bot(**LINKS).command("list team-a-resnet", user="U0ONCALL")
        answer = slack_api.wait_for(lambda: next(iter(answers(slack_api, "U0ONCALL")), None))
        texts = [blk["text"]["text"] for blk in answer["blocks"] if blk.get("accessory")]
        assert any(t.startswith(V2_LINK) for t in texts)
        assert any(t.startswith(V1_LINK) for t in texts)

    def test_status(self, make_bot, slack_api):
        make_bot(**LINKS).command(f"status {RESNET50.training_job_id}")
        assert V2_LINK in wait_reply(slack_api, "U0ONCALL", "Running")[0]

    def test_the_alert(self, make_alert_bot, slack_api):
        bot = make_alert_bot(**LINKS)
        assert bot.alert(generic()).status_code == 202
        alert = wait_alerts(slack_api, 1)[0]
        assert V1_LINK in alert.text and V1_LINK in json.dumps(alert.blocks)
        bot.click_button(alert, STOP_REQUEST, "U0ONCALL")
        assert V1_LINK in request_message(slack_api).text, "the request from the alert too"

    def test_links_off_and_no_region_give_plain_names(self, make_bot, slack_api):
        make_bot(MODELARTS_CONSOLE_URL="off").command(f"stop {RESNET50.training_job_id}")
        msg = request_message(slack_api)
        assert "*team-a-resnet50* (training_job_id" in msg.text and "<http" not in msg.text
        # The default template needs a region; the emulator's endpoint names none.
        make_bot().command(f"status {RESNET50.training_job_id}", user="U0ALICE")
        text = wait_reply(slack_api, "U0ALICE", "Running")[0]
        assert "*team-a-resnet50*" in text and "<http" not in text

    def test_the_region_of_each_project(self, make_bot, slack_api, emulator):
        projects = json.dumps([{"name": "bj4", "project_id": EMULATOR_PROJECT_ID,
                                "region": "cn-north-4", "endpoint": emulator.base_url}])
        make_bot(MODELARTS_ENDPOINT=None, MODELARTS_PROJECT_ID=None,
                 MODELARTS_PROJECTS=projects).command(f"status bj4/{RESNET50.training_job_id}")
        text = wait_reply(slack_api, "U0ONCALL", "Running")[0]
        assert (f"*<https://console.huaweicloud.com/modelarts/?region=cn-north-4#/training/"
                f"detail/{RESNET50.training_job_id}|team-a-resnet50>*") in text
        assert not [t for t in responses(slack_api, "U0ONCALL") if "went wrong" in t]
