"""``modelarts-bot shell`` driven through piped stdin, and its renderer on its own."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from botdev.shell.render import Transcript, mrkdwn

SCRIPT = """\
# a full stop, the way Slack would carry it
/modelarts stop 182626 278813
1
/modelarts status 182626 278813
# someone with no role
/as U0NOBODY
/modelarts stop 182700 279001
/as U0YOU
# an alert through the intake, stopped from its button
/alert 182700 279001 loss is NaN
3
4
/modelarts stop 182626
quit
"""


def shell(script: str, redis_url: str, cwd, **env: str) -> subprocess.CompletedProcess:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return subprocess.run([sys.executable, "-m", "bot", "shell"], input=script, text=True,
                          capture_output=True, timeout=90, cwd=cwd,
                          env={**keep, "REDIS_URL": redis_url, **env})


@pytest.fixture(scope="module")
def transcript(redis_url, tmp_path_factory) -> str:
    """The transcript of SCRIPT against the built-in emulator (one shell run for the class)."""
    done = shell(SCRIPT, redis_url, tmp_path_factory.mktemp("shell"))
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def after(text: str, prompt: str) -> str:
    """What the shell printed for the line ``prompt`` (up to the next prompt)."""
    start = text.index(prompt + "\n") + len(prompt) + 1
    following = re.search(r"^U0[A-Z0-9]+> ", text[start:], re.MULTILINE)
    return text[start:start + following.start()] if following else text[start:]


class TestShellTranscript:
    def test_banner_says_the_emulator_and_the_sample_roles_are_used(self, transcript):
        head = transcript.split("U0YOU> ")[0]
        assert "BUILT-IN EMULATOR (MODELARTS_ENDPOINT is unset)" in head
        assert "182626 278813 team-a-resnet" in head
        assert "Roles: a sample (no ROLES_FILE): U0YOU and U0ONCALL on-call" in head

    def test_stop_posts_the_request_with_numbered_buttons(self, transcript):
        out = after(transcript, "U0YOU> /modelarts stop 182626 278813")
        assert "#1 in C0SHELL:" in out
        assert "@U0YOU asks to stop *team-a-resnet* (job_id 182626" in out
        assert "[1] Confirm stop   [2] Cancel" in out

    def test_confirm_click_edits_and_replies_in_the_thread(self, transcript):
        out = after(transcript, "U0YOU> 1")
        lines = out.splitlines()
        assert lines[0] == "#1 (edited):"
        assert "   Stopping... confirmed by @U0YOU" in lines
        reply = lines.index("   └ #2 in the thread of #1:")
        assert lines[reply + 1].startswith("        :white_check_mark: Stop requested for")
        assert "   Stop requested: ModelArts accepted it. Confirmed by @U0YOU." in lines

    def test_status_is_ephemeral_and_shows_the_stop(self, transcript):
        out = after(transcript, "U0YOU> /modelarts status 182626 278813")
        assert out.startswith("(only visible to you) *team-a-resnet*")
        assert "*KILLING* (9)" in out or "*KILLED* (12)" in out

    def test_as_switches_user_and_an_unmapped_user_is_denied(self, transcript):
        assert "You are now U0NOBODY." in after(transcript, "U0YOU> /as U0NOBODY")
        out = after(transcript, "U0NOBODY> /modelarts stop 182700 279001")
        assert out.startswith("(only visible to you) You have no role in this bot's roles file")
        assert "team-a-bert-finetune" not in out and "in C0SHELL:" not in out

    def test_alert_is_posted_through_the_intake_and_its_button_leads_to_a_stop(self, transcript):
        out = after(transcript, "U0YOU> /alert 182700 279001 loss is NaN")
        assert "#3 in C0SHELL:" in out
        assert ":red_circle: Alert: *team-a-bert-finetune* (job_id 182700, version 279001): " \
               "loss is NaN" in out
        assert "[3] Stop" in out
        asked = after(transcript, "U0YOU> 3")
        assert "   └ #4 in the thread of #3:" in asked
        assert "[4] Confirm stop   [5] Cancel" in asked
        done = after(transcript, "U0YOU> 4")
        assert "   └ #5 in the thread of #3:" in done
        assert re.search(r"^#3 \(edited\):\n(?:   .*\n)*   Stopped by @U0YOU at \d\d:\d\d UTC\.$",
                         done, re.MULTILINE)

    def test_a_malformed_command_is_answered_in_the_ack(self, transcript):
        out = after(transcript, "U0YOU> /modelarts stop 182626")
        assert out.startswith("(only visible to you) `182626` looks like an old-version job id")
        assert "add its version id" in out


RESPONDERS = """/modelarts list team-a-*
/modelarts stop team-a-resnet50 -- loss is NaN since step 4k
/as U0ONCALL
/modelarts stop team-a-resnet50
/as U0YOU
6
/modelarts stop team-a-llama-sft -- month-long run diverged
8
10
/as U0ONCALL
10
/as U0LEAD
10
"""


def test_two_responders_and_a_protected_job(redis_url, tmp_path):
    """The docs/shell.md transcript: the second request is told who asked and where, and the
    protected job stops on the approver's Approve only."""
    done = shell(RESPONDERS, redis_url, tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert ":lock: *team-a-llama-sft*" in out and ":lock: *team-a-resnet50*" not in out
    held = after(out, "U0ONCALL> /modelarts stop team-a-resnet50")
    assert "Already being stopped: @U0YOU asked at" in held and "/archives/C0SHELL/p" in held
    assert "Reason: loss is NaN since step 4k" in after(out, "U0YOU> 6")
    assert "[10] Approve stop" in after(out, "U0YOU> 8")
    assert "can't approve it too" in after(out, "U0YOU> 10")
    assert "needs a role among `oncall-lead`" in after(out, "U0ONCALL> 10")
    assert "Confirmed by @U0YOU, approved by @U0LEAD." in after(out, "U0LEAD> 10")
    # The second project's job, labelled, and linked to its region's console (issue 22).
    assert ("ap3 · *team-a-bert-ap3 (https://console.huaweicloud.com/modelarts/?region="
            "ap-southeast-3#/training/detail/") in out
    assert out.count(":white_check_mark: Stop requested for *team-a-llama-sft*") == 1


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")
def test_shell_starts_a_throwaway_redis_when_none_answers(tmp_path):
    done = shell("/modelarts help\n", "redis://127.0.0.1:1/0", tmp_path)
    assert done.returncode == 0, done.stderr
    assert "none answered at redis://127.0.0.1:1/0, so a throwaway redis-server runs" \
        in done.stdout
    assert "(only visible to you) Usage:" in done.stdout


def test_two_projects_and_a_name_in_both(redis_url, tmp_path):
    done = shell("/modelarts stop team-b-yolov8\n/modelarts stop ap3/team-b-yolov8\n",
                 redis_url, tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "two projects (default and ap3; team-b-yolov8 runs in both)" in out
    choice = after(out, "U0YOU> /modelarts stop team-b-yolov8")
    assert "*2 running jobs named `team-b-yolov8`*" in choice
    asked = after(out, "U0YOU> /modelarts stop ap3/team-b-yolov8")
    assert ("asks to stop ap3 · *team-b-yolov8 (https://console.huaweicloud.com/modelarts/"
            "?region=ap-southeast-3#/training/detail/5e6f7a8b") in asked
    assert "* (training_job_id 5e6f7a8b" in asked


@pytest.mark.skipif(not shutil.which("redis-server"), reason="redis-server is not installed")
def test_shell_uses_the_roles_file_it_is_given(redis_url, tmp_path):
    (tmp_path / "roles.yml").write_text("roles:\n  a:\n    jobs: ['team-a-*']\n"
                                        "users:\n  U0ALICE: [a]\n")
    done = shell("/modelarts stop 182801 279100\n", redis_url, tmp_path, ROLES_FILE="roles.yml")
    assert "Roles: roles.yml. U0YOU holds no role there: use `/as <user id>`." in done.stdout
    # Unmapped: refused before any look-up, so the job's name is not shown (issue 18, item 3).
    assert "(only visible to you) You have no role in this bot's roles file" in done.stdout
    answer = [line for line in done.stdout.splitlines() if "only visible to you" in line]
    assert answer and not any("team-b-yolo" in line or "182801" in line for line in answer)


def test_event_is_published_through_smn_and_its_alert_has_a_stop_button(redis_url, tmp_path):
    script = ("/event JobHanged team-b-yolov8\n1\n/event JobCompleted team-a-llama-sft\n"
              "/event Nope team-b-yolov8\n/event JobHanged no-such-job\n")
    done = shell(script, redis_url, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "SMN: the emulator publishes job events (topic urn:smn:cn-north-4:" in out
    hanged = after(out, "U0YOU> /event JobHanged team-b-yolov8")
    assert "#1 in C0SHELL:" in hanged
    assert "*team-b-yolov8* (training_job_id 9d8c7b6a-5e4f-4a3b-8c2d-1e0f9a8b7c6d)" in hanged
    assert "JobHanged" in hanged and "[1] Stop" in hanged
    asked = after(out, "U0YOU> 1")
    assert "└ #2 in the thread of #1:" in asked and "asks to stop *team-b-yolov8*" in asked
    assert "[2] Confirm stop   [3] Cancel" in asked
    # Not among the default SMN_EVENTS: taken, nothing posted.
    assert after(out, "U0YOU> /event JobCompleted team-a-llama-sft").startswith(
        "(the bot took the JobCompleted event, HTTP 200, and posted nothing")
    assert after(out, "U0YOU> /event Nope team-b-yolov8").startswith("Usage: /event <EventName>")
    assert "no v2 training job named or with the id `no-such-job`" in after(
        out, "U0YOU> /event JobHanged no-such-job")


class TestRender:
    def test_mrkdwn_mentions_links_and_escapes(self):
        assert mrkdwn("<@U1> see <https://x.test/a|the graph> &lt;b&gt; &amp;") == \
            "@U1 see the graph (https://x.test/a) <b> &"

    def test_buttons_are_numbered_across_messages_and_dropped_on_edit(self):
        t = Transcript()
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi* <@U1>"}},
                  {"type": "actions", "block_id": "b", "elements": [
                      {"type": "button", "action_id": "yes", "value": "v1",
                       "text": {"type": "plain_text", "text": "Yes"}},
                      {"type": "button", "action_id": "no", "value": "v1",
                       "text": {"type": "plain_text", "text": "No"}}]}]
        first = t.render("chat.postMessage", {"channel": "C1", "blocks": blocks},
                         {"ok": True, "channel": "C1", "ts": "1.1"}, "U1")
        assert first == ["#1 in C1:", "   *hi* @U1", "   [1] Yes   [2] No"]
        second = t.render("chat.postMessage", {"channel": "C1", "blocks": blocks},
                          {"ok": True, "channel": "C1", "ts": "1.2"}, "U1")
        assert second[-1] == "   [3] Yes   [4] No"
        assert t.button(2).action_id == "no" and t.button(2).ts == "1.1"
        edited = t.render("chat.update", {"channel": "C1", "ts": "1.1", "text": "done"},
                          {"ok": True, "channel": "C1", "ts": "1.1"}, "U1")
        assert edited == ["#1 (edited):", "   done"]
        assert t.button(1) is None and t.button(3) is not None

    def test_thread_reply_is_indented_under_its_parent(self):
        t = Transcript()
        t.render("chat.postMessage", {"channel": "C1", "text": "parent"},
                 {"ok": True, "channel": "C1", "ts": "1.1"}, "U1")
        reply = t.render("chat.postMessage",
                         {"channel": "C1", "text": "one\ntwo", "thread_ts": "1.1"},
                         {"ok": True, "channel": "C1", "ts": "1.2"}, "U1")
        assert reply == ["   └ #2 in the thread of #1:", "        one", "        two"]

    def test_ephemeral_names_who_sees_it(self):
        t = Transcript()
        mine = t.render("chat.postEphemeral", {"user": "U1", "text": "a\nb"}, {"ok": True}, "U1")
        assert mine == ["(only visible to you) a", "   b"]
        theirs = t.render("response/act-U2", {"text": "x"}, {"ok": True}, "U1")
        assert theirs == ["(only visible to @U2) x"]

    def test_failures_and_other_methods_are_one_line(self):
        t = Transcript()
        assert t.render("chat.postMessage", {"channel": "C1"},
                        {"ok": False, "error": "not_in_channel"}, "U1") == [
            "! chat.postMessage failed: not_in_channel"]
        assert t.render("usergroups.users.list", {"usergroup": "S1", "token": "x"},
                        {"ok": True}, "U1") == ["· usergroups.users.list usergroup=S1"]
