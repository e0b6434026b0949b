"""``modelarts-bot shell`` driven through piped stdin, and its renderer on its own."""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time

import pytest

from botdev.shell.render import Transcript, mrkdwn

PROMPT = b"U0YOU> "
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
    # The edit keeps Cancel's number ([9], as on the request) and numbers Approve anew.
    assert "[10] Approve stop   [9] Cancel" in after(out, "U0YOU> 8")
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


def test_a_duplicate_alert_says_so_and_its_stop_keeps_its_number(redis_url, tmp_path):
    """The second /alert is deduplicated by the bot: said at once (not "not posted within
    10 s"); the first alert's edit ("Seen 2 times") shows its Stop as [1] still, and 1 presses
    it."""
    script = ("/alert 182700 279001 loss is NaN\n/alert 182700 279001 loss is NaN\n1\n")
    done = shell(script, redis_url, tmp_path)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    first, dup = out.split("U0YOU> /alert 182700 279001 loss is NaN\n")[1:]
    assert "#1 in C0SHELL:" in first and "   [1] Stop" in first
    dup = dup.split("U0YOU> ")[0]
    assert "not posted" not in dup and "\n!" not in dup
    assert dup.startswith("(a duplicate: the bot has had this alert 2 times within "
                          "ALERT_DEDUPE_SECONDS and posts no new message")
    assert re.search(r"^#1 \(edited\):\n(?:   .*\n)*   \[1\] Stop\n   Seen 2 times", dup,
                     re.MULTILINE)
    asked = after(out, "U0YOU> 1")
    assert "└ #2 in the thread of #1:" in asked and "asks to stop *team-a-bert-finetune*" in asked
    assert "[2] Confirm stop   [3] Cancel" in asked


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


def test_home_shows_the_tab_and_its_stop_leads_to_a_stop_in_the_dm(redis_url, tmp_path):
    """``/home`` opens the Home tab (a signed app_home_opened); its first Stop asks in the DM,
    the confirm stops, and the tab is published again with the decision in plain words."""
    done = shell("/home\n1\n10\n/as U0NOBODY\n/home\n", redis_url, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    home = after(out, "U0YOU> /home")
    assert "Home tab of @U0YOU:" in home
    assert "*You are @U0YOU to ModelArts Bot*, holding:" in home
    assert "• `oncall` (directly): `*`" in home
    assert "*9 running jobs you may stop:*" in home and "[1] Stop" in home
    assert ":lock: *team-a-llama-sft*" in home and "*Your open requests:* none." in home
    asked = after(out, "U0YOU> 1")
    assert "#1 in D0YOU:" in asked and "asks to stop ap3 · *team-b-yolov8 (https://" in asked
    assert "[10] Confirm stop   [11] Cancel" in asked
    assert "waiting for your confirmation in the bot's Messages tab" in asked
    stopped = after(out, "U0YOU> 10")
    assert "Stop requested for" in stopped and "Home tab of @U0YOU:" in stopped
    assert "*stop requested: ModelArts accepted it* · team-b-yolov8" in stopped
    assert "stop_requested" not in stopped
    nobody = after(out, "U0NOBODY> /home")
    assert "You are in no role: ask the platform team." in nobody
    assert "team-" not in nobody and "Stop" not in nobody


class Terminal:
    """``modelarts-bot shell`` on a real pseudo-terminal (stdin, stdout and stderr), as typed."""

    def __init__(self, redis_url: str, home) -> None:
        self.master, slave = pty.openpty()
        env = {"PATH": os.environ["PATH"], "HOME": str(home), "TERM": "xterm",
               "LANG": "C.UTF-8", "REDIS_URL": redis_url}
        self.proc = subprocess.Popen([sys.executable, "-m", "bot", "shell"], stdin=slave,
                                     stdout=slave, stderr=slave, env=env, cwd=home)
        os.close(slave)
        self.out = b""

    def wait_for(self, needle: bytes, after: int = 0, timeout: float = 60.0) -> int:
        """Read until ``needle`` shows after offset ``after``; where it ends."""
        deadline = time.monotonic() + timeout
        while needle not in self.out[after:]:
            assert time.monotonic() < deadline, f"no {needle!r} in {self.out[after:]!r}"
            if select.select([self.master], [], [], 0.2)[0]:
                self.out += os.read(self.master, 65536)
        return self.out.index(needle, after) + len(needle)

    def send(self, keys: bytes) -> int:
        """Type ``keys``; the offset from which their effect shows."""
        start = len(self.out)
        os.write(self.master, keys)
        return start

    def close(self) -> int:
        try:
            return self.proc.wait(30)
        finally:
            os.close(self.master)


class TestTerminal:
    """On a terminal, readline edits the line, keeps a history file and clears on Ctrl-L; a
    script (piped stdin) sets none of it up."""

    def test_history_kept_across_sessions_and_ctrl_l_clears(self, redis_url, tmp_path):
        history = tmp_path / ".modelarts-bot-shell-history"
        term = Terminal(redis_url, tmp_path)
        prompt = term.wait_for(PROMPT)
        usage = term.wait_for(b"Usage:", term.send(b"/modelarts help\r"))
        term.wait_for(PROMPT, usage)                       # readline reads the next key itself
        term.wait_for(b"\x1b[2J", term.send(b"\x0c"))     # clear-screen (xterm's "clear")
        term.send(b"quit\r")
        assert term.close() == 0 and prompt
        assert history.read_text().splitlines() == ["/modelarts help", "quit"]
        assert history.stat().st_mode & 0o777 == 0o600
        again = Terminal(redis_url, tmp_path)
        start = again.wait_for(PROMPT)
        again.send(b"\x1b[A\x1b[A\r")                      # up twice: the line typed before
        again.wait_for(b"Usage:", start)
        again.send(b"quit\r")
        assert again.close() == 0

    def test_a_script_leaves_no_history(self, redis_url, tmp_path):
        done = shell("/modelarts help\n", redis_url, tmp_path, HOME=str(tmp_path))
        assert done.returncode == 0 and "(only visible to you) Usage:" in done.stdout
        assert not (tmp_path / ".modelarts-bot-shell-history").exists()


class TestRender:
    def test_a_published_home_tab_numbers_its_buttons_and_a_new_one_replaces_them(self):
        t = Transcript()
        view = {"type": "home", "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "*x* (id)"},
             "accessory": {"type": "button", "action_id": "modelarts_stop_request:0",
                           "value": "v2:abc", "text": {"type": "plain_text", "text": "Stop"}}}]}
        first = t.render("views.publish", {"user_id": "U1", "view": view},
                         {"ok": True, "view": {"id": "V1"}}, "U1")
        assert first == ["Home tab of @U1:", "   *x* (id)   [1] Stop"]
        assert t.button(1).home and t.button(1).ts == "V1" and t.button(1).value == "v2:abc"
        again = t.render("views.publish", {"user_id": "U1", "view": view},
                         {"ok": True, "view": {"id": "V1"}}, "U1")
        # Published again (a refresh): the same button keeps its number, as an edit's do.
        assert again[-1].endswith("[1] Stop") and t.button(1).value == "v2:abc"
        assert t.button(2) is None

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

    def test_a_button_an_edit_shows_again_keeps_its_number(self):
        """Keyed by (message, action_id, value): a number typed after an edit presses what the
        user saw; a button the edit adds gets a new number, one it leaves out presses nothing."""
        t = Transcript()

        def buttons(*pairs: tuple[str, str]) -> list[dict]:
            return [{"type": "actions", "block_id": "b", "elements": [
                {"type": "button", "action_id": a, "value": v,
                 "text": {"type": "plain_text", "text": a.title()}} for a, v in pairs]}]

        def edit(ts: str, *pairs: tuple[str, str]) -> list[str]:
            return t.render("chat.update", {"channel": "C1", "ts": ts, "blocks": buttons(*pairs)},
                            {"ok": True, "channel": "C1", "ts": ts}, "U1")

        t.render("chat.postMessage", {"channel": "C1", "blocks": buttons(("stop", "j1"))},
                 {"ok": True, "channel": "C1", "ts": "1.1"}, "U1")
        t.render("chat.postMessage", {"channel": "C1", "blocks": buttons(("stop", "j1"))},
                 {"ok": True, "channel": "C1", "ts": "1.2"}, "U1")       # [2], its own message
        assert edit("1.1", ("stop", "j1")) == ["#1 (edited):", "   [1] Stop"]
        assert edit("1.1", ("approve", "c1"), ("stop", "j1")) == [
            "#1 (edited):", "   [3] Approve   [1] Stop"]
        assert t.button(1).ts == "1.1" and t.button(1).action_id == "stop"
        assert edit("1.1", ("approve", "c1")) == ["#1 (edited):", "   [3] Approve"]
        assert t.button(1) is None and t.button(2).ts == "1.2"
        assert edit("1.1", ("stop", "j2"), ("stop", "j1")) == [      # another value: another button
            "#1 (edited):", "   [4] Stop   [1] Stop"]

    def test_ephemeral_buttons_get_numbers_of_their_own(self):
        t = Transcript()
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "job"},
                   "accessory": {"type": "button", "action_id": "stop", "value": "j1",
                                 "text": {"type": "plain_text", "text": "Stop"}}}]
        assert t.render("response/cmd-U1", {"blocks": blocks}, {"ok": True}, "U1") == [
            "(only visible to you) job   [1] Stop"]
        assert t.render("response/cmd-U1", {"blocks": blocks}, {"ok": True}, "U1") == [
            "(only visible to you) job   [2] Stop"]
        assert t.button(1) is not None and t.button(2) is not None

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
