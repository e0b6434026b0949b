"""The audit trail (issue 13) end to end: signed requests to the served app, real Redis, the
ModelArts emulator and the Slack stand-in over loopback HTTP, and ``python -m bot audit`` run as
a subprocess against the same Redis."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from bot.app.metrics_sample import Sampler
from bot.core import metrics
from bot.core.keys import Keys
from bot.flow.audit import CONTROLS, DAY_MS, FIELDS, Audit, Entry, JobFilter, select
from bot.flow.blocks import CANCEL, CONFIRM
from bot.flow.confirmations import Confirmation, ConfirmationStore
from bot.flow.history import EVENTS, OUTCOMES, WORDS, plain
from bot.modelarts.refs import V1Job, V2Job
from botdev.emulator import defaults
from botdev.standin.local import free_port
from botdev.standin.slack import BOT_TOKEN
from tests.plugins.slack import SIGNING_SECRET, responses
from tests.test_stop_flow import request_message

ROOT = Path(__file__).resolve().parent.parent
JOB, VERSION = 182626, 278813          # team-a-resnet, RUNNING
V2 = "3faf5c03-aaa1-4cbe-879d-24b05d997347"


def wait_reply(slack_api, user: str, needle: str) -> str:
    return slack_api.wait_for(lambda: [t for t in responses(slack_api, user) if needle in t])[0]


def entries(client: redis.Redis, prefix: str) -> list[Entry]:
    return list(Audit(client, prefix).read())


def wait_event(client: redis.Redis, prefix: str, event: str, timeout: float = 10.0) -> Entry:
    """The first entry of ``event``, polled with a deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [e for e in entries(client, prefix) if e.get("event") == event]
        if found:
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no {event!r} entry in {[e.fields for e in entries(client, prefix)]}")


def audit_cli(redis_url: str, prefix: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """``python -m bot audit ARGS`` in a directory without a .env, against the test's keys."""
    env = {**os.environ, "REDIS_URL": redis_url, "REDIS_KEY_PREFIX": prefix,
           "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "bot", "audit", *args], env=env, cwd=cwd,  # noqa: S603
                          capture_output=True, text=True, timeout=60, check=False)


def as_json(done: subprocess.CompletedProcess) -> list[dict]:
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def full_stop(bot, slack_api, client, prefix) -> None:
    bot.command(f"stop {JOB} {VERSION}")
    msg = request_message(slack_api)
    bot.click_button(msg, CONFIRM, "U0ONCALL")
    slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
    wait_event(client, prefix, "stopped")


class TestStopIsAudited:
    def test_requested_confirmed_stopped_printed_by_audit_json(
            self, make_bot, slack_api, emulator, redis_client, redis_url, key_prefix, tmp_path):
        full_stop(make_bot(), slack_api, redis_client, key_prefix)
        got = as_json(audit_cli(redis_url, key_prefix, tmp_path, "--json", "--job",
                                f"v1:{JOB}:{VERSION}"))
        assert [e["event"] for e in got] == ["requested", "confirmed", "stopped"]
        job = {"api": "v1", "job_id": str(JOB), "version_id": str(VERSION),
               "job_name": "team-a-resnet", "channel": "C0INCIDENT", "requester": "U0ONCALL",
               "user": "U0ONCALL"}
        cid = got[0]["confirmation"]
        for e in got:
            assert {k: e.get(k) for k in job} == job
            assert e["confirmation"] == cid and e["time"].endswith("Z")
            assert e["id"].split("-")[0].isdigit() and "training_job_id" not in e
        stopped = got[2]
        assert stopped["outcome"] == "stop_requested" and stopped["http_status"] == "200"
        assert stopped["request_id"].endswith("-emulator")
        assert got[0]["time"] <= got[1]["time"] <= got[2]["time"]

    def test_job_forms_and_user_filter(self, make_bot, slack_api, emulator, redis_client,
                                       redis_url, key_prefix, tmp_path):
        full_stop(make_bot(), slack_api, redis_client, key_prefix)
        for form in (f"{JOB}:{VERSION}", str(JOB)):
            assert len(as_json(audit_cli(redis_url, key_prefix, tmp_path, "--json",
                                         "--job", form))) == 3
        assert as_json(audit_cli(redis_url, key_prefix, tmp_path, "--json", "--job",
                                 f"{JOB}:1")) == []
        assert as_json(audit_cli(redis_url, key_prefix, tmp_path, "--json", "--user",
                                 "U0BOB")) == []
        table = audit_cli(redis_url, key_prefix, tmp_path, "--since", "1h")
        assert table.returncode == 0
        lines = table.stdout.splitlines()
        assert lines[0].startswith("TIME (UTC)") and len(lines) == 4
        assert "stopped" in lines[3] and f"v1:{JOB}:{VERSION}" in lines[3]

    def test_v2_stop_is_audited_with_its_training_job_id(self, make_bot, slack_api, emulator,
                                                         redis_client, key_prefix):
        bot = make_bot()
        bot.command(f"stop {V2}")
        bot.click_button(request_message(slack_api), CONFIRM, "U0ONCALL")
        stopped = wait_event(redis_client, key_prefix, "stopped")
        assert stopped.get("api") == "v2" and stopped.get("training_job_id") == V2
        assert "job_id" not in stopped.fields

    def test_cancel_is_audited(self, make_bot, slack_api, redis_client, key_prefix):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        bot.click_button(request_message(slack_api), CANCEL, "U0ONCALL")
        e = wait_event(redis_client, key_prefix, "cancelled")
        assert e.get("user") == "U0ONCALL" and e.get("job_id") == str(JOB)

    def test_a_click_by_another_user_is_audited_as_refused(self, make_bot, slack_api,
                                                           redis_client, key_prefix):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        bot.click_button(request_message(slack_api), CONFIRM, "U0BOB")
        e = wait_event(redis_client, key_prefix, "refused")
        assert (e.get("outcome"), e.get("user"), e.get("requester")) == (
            "not_requester", "U0BOB", "U0ONCALL")

    def test_a_refused_post_is_audited_after_its_request(self, make_bot, slack_api,
                                                         redis_client, key_prefix):
        slack_api.refused_channels["C0PRIVATE"] = "not_in_channel"
        make_bot().command(f"stop {JOB} {VERSION}", channel="C0PRIVATE")
        failed = wait_event(redis_client, key_prefix, "failed")
        assert (failed.get("outcome"), failed.get("error_code")) == ("post_failed",
                                                                     "not_in_channel")
        assert [e.get("event") for e in entries(redis_client, key_prefix)] == ["requested",
                                                                              "failed"]


class TestDenialsAndExpiry:
    def test_a_denied_stop_is_audited(self, make_bot, slack_api, emulator, redis_client,
                                      redis_url, key_prefix, tmp_path):
        make_bot().command(f"stop {JOB} {VERSION}", user="U0BOB")
        wait_reply(slack_api, "U0BOB", "may not stop")
        wait_event(redis_client, key_prefix, "denied")
        got = as_json(audit_cli(redis_url, key_prefix, tmp_path, "--json", "--user", "U0BOB"))
        assert len(got) == 1
        assert {k: got[0].get(k) for k in ("event", "outcome", "user", "job_name", "job_id")} == {
            "event": "denied", "outcome": "no_role", "user": "U0BOB",
            "job_name": "team-a-resnet", "job_id": str(JOB)}
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

    def test_a_job_that_is_not_running_is_audited_as_refused(self, make_bot, slack_api,
                                                              redis_client, key_prefix):
        make_bot().command("stop 182900 279300")
        e = wait_event(redis_client, key_prefix, "refused")
        assert (e.get("outcome"), e.get("state")) == ("not_running", "COMPLETED")

    def test_a_click_on_an_expired_confirmation_is_audited(
            self, make_bot, slack_api, emulator, redis_client, redis_url, key_prefix, tmp_path):
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        cid = wait_event(redis_client, key_prefix, "requested").get("confirmation")
        redis_client.delete(Keys(key_prefix).pending(cid))     # what its TTL does
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        wait_reply(slack_api, "U0ONCALL", "expired")
        got = as_json(audit_cli(redis_url, key_prefix, tmp_path, "--json", "--job",
                                f"{JOB}:{VERSION}"))
        assert [e["event"] for e in got] == ["requested", "expired"]
        assert {k: got[1].get(k) for k in ("outcome", "user", "channel", "confirmation")} == {
            "outcome": "expired", "user": "U0ONCALL", "channel": "C0INCIDENT",
            "confirmation": cid}
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0


class TestRetention:
    def test_a_flow_trims_entries_older_than_the_retention(self, make_bot, slack_api, emulator,
                                                           redis_client, key_prefix):
        key, now = Keys(key_prefix).audit(), int(time.time() * 1000)
        for days, event in ((30, "old"), (2, "old"), (0.5, "kept")):
            redis_client.xadd(key, {"event": event}, id=f"{int(now - days * DAY_MS)}-0")
        full_stop(make_bot(AUDIT_RETENTION_DAYS=1), slack_api, redis_client, key_prefix)
        assert [e.get("event") for e in entries(redis_client, key_prefix)] == [
            "kept", "requested", "confirmed", "stopped"]

    def test_an_own_round_trip_write_trims_too(self, redis_client, key_prefix):
        audit = Audit(redis_client, key_prefix, retention_days=90)
        now = int(time.time() * 1000)
        for days, event in ((365, "old"), (91, "old"), (89, "kept")):
            redis_client.xadd(audit.key, {"event": event}, id=f"{now - days * DAY_MS}-0")
        assert audit.write("denied", ref=V2Job(V2), user="U0BOB", outcome="no_role")
        assert [e.get("event") for e in audit.read()] == ["kept", "denied"]
        assert [e.get("event") for e in audit.read(now - DAY_MS)] == ["denied"]


class TestHistory:
    def test_history_lists_the_last_entries_to_a_mapped_user(self, make_bot, slack_api,
                                                             emulator, redis_client, key_prefix):
        bot = make_bot()
        full_stop(bot, slack_api, redis_client, key_prefix)
        bot.command(f"history {JOB} {VERSION}", user="U0BOB")
        text = wait_reply(slack_api, "U0BOB", "History of")
        lines = text.splitlines()
        assert "team-a-resnet" in lines[0] and len(lines) == 4
        assert "*asked to stop* (<@U0ONCALL>)" in lines[1] and "*confirmed*" in lines[2]
        assert "*stop requested: ModelArts accepted it* (<@U0ONCALL>)" in lines[3]
        assert "_" not in "".join(line.split("` ", 1)[1] for line in lines[1:])
        call = next(c for c in slack_api.calls if c.method == "response/cmd-U0BOB")
        assert call.params.get("response_type") == "ephemeral"

    def test_only_the_last_ten_of_that_job(self, make_bot, slack_api, redis_client, key_prefix):
        audit = Audit(redis_client, key_prefix)
        for n in range(14):
            audit.write("denied", ref=V2Job(V2), user="U0BOB", outcome=f"o{n}")
            audit.write("denied", ref=V1Job(JOB, VERSION), user="U0BOB", outcome="other")
        make_bot().command(f"history {V2}", user="U0ALICE")
        lines = wait_reply(slack_api, "U0ALICE", "History of").splitlines()
        assert len(lines) == 11 and "the last 10" in lines[0]
        assert [re.search(r"\*denied: (o\d+)\* \(<@U0BOB>\)$", line).group(1)
                for line in lines[1:]] == [f"o{n}" for n in range(4, 14)]

    def test_history_is_refused_to_an_unmapped_user(self, make_bot, slack_api, emulator,
                                                    redis_client, key_prefix):
        bot = make_bot()
        full_stop(bot, slack_api, redis_client, key_prefix)
        bot.command(f"history {JOB} {VERSION}", user="U0STRANGER")
        text = wait_reply(slack_api, "U0STRANGER", "no role")
        assert "requested" not in text and "<@U0ONCALL>" not in text

    def test_no_history_says_so(self, make_bot, slack_api):
        make_bot().command(f"history {V2}", user="U0ALICE")
        wait_reply(slack_api, "U0ALICE", f"No history for training_job_id {V2}")



GONE = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"      # a v2 id the emulator has never had
OTHER = "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e"


class TestHistoryByName:
    """``/modelarts history <name>`` (issue 22): looked up in the audit trail itself."""

    def test_a_stopped_job_by_its_name(self, make_bot, slack_api, emulator, redis_client,
                                       key_prefix):
        bot = make_bot()
        full_stop(bot, slack_api, redis_client, key_prefix)
        bot.command("history team-a-resnet", user="U0BOB")
        lines = wait_reply(slack_api, "U0BOB", "History of").splitlines()
        assert lines[0].startswith(f"*History of job_id {JOB}, version {VERSION}* (team-a-resnet)")
        assert len(lines) == 4 and "*stop requested: ModelArts accepted it*" in lines[3]

    def test_a_job_modelarts_no_longer_knows_is_found_by_name(self, make_bot, slack_api,
                                                              redis_client, key_prefix):
        """No ModelArts call: the entries carry the name (here, of a job the emulator lacks)."""
        audit = Audit(redis_client, key_prefix)
        audit.write("stopped", ref=V2Job(GONE), user="U0ALICE", job_name="team-a-gone",
                    outcome="stop_requested")
        audit.write("verified", ref=V2Job(GONE), job_name="team-a-gone", outcome="stopped",
                    state="Terminated")
        make_bot().command("history team-a-gone", user="U0ALICE")
        lines = wait_reply(slack_api, "U0ALICE", "History of").splitlines()
        assert lines[0].startswith(f"*History of training_job_id {GONE}* (team-a-gone)")
        assert lines[1].endswith("*stop requested: ModelArts accepted it* (<@U0ALICE>)")
        assert lines[2].endswith("*followed up: the job stopped*, status Terminated (the bot)")

    def test_a_name_of_several_jobs_names_each_with_its_command(self, make_bot, slack_api,
                                                                redis_client, key_prefix):
        audit = Audit(redis_client, key_prefix)
        audit.write("requested", ref=V2Job(OTHER, "ap3"), user="U0BOB", job_name="team-b-x")
        audit.write("denied", ref=V2Job(GONE), user="U0BOB", job_name="team-b-x",
                    outcome="no_role")
        audit.write("denied", ref=V2Job(OTHER), user="U0BOB", job_name="team-b-y",
                    outcome="no_role")
        bot = make_bot()
        bot.command("history team-b-x", user="U0BOB")
        lines = wait_reply(slack_api, "U0BOB", "jobs named").splitlines()
        assert lines[0] == "*2 jobs named `team-b-x`* have a history, newest first: name one."
        assert lines[1].startswith(f"• training_job_id {GONE}: last `")
        assert lines[1].endswith(f"denied: no role of theirs allows this job: "
                                 f"`/modelarts history {GONE}`")
        assert lines[2].startswith(f"• ap3 · training_job_id {OTHER}: last `")
        assert lines[2].endswith(f"asked to stop: `/modelarts history ap3/{OTHER}`")
        bot.command("history ap3/team-b-x", user="U0ALICE")
        lines = wait_reply(slack_api, "U0ALICE", "History of").splitlines()
        assert lines[0].startswith(f"*History of ap3 · training_job_id {OTHER}* (team-b-x)")
        assert len(lines) == 2 and "*asked to stop* (<@U0BOB>)" in lines[1]

    def test_a_qualified_id_keeps_to_its_project(self, make_bot, slack_api, redis_client,
                                                 key_prefix):
        audit = Audit(redis_client, key_prefix)
        audit.write("requested", ref=V2Job(OTHER, "ap3"), user="U0BOB", job_name="team-b-x")
        audit.write("requested", ref=V2Job(OTHER), user="U0ALICE", job_name="team-b-x")
        bot = make_bot()
        bot.command(f"history ap3/{OTHER}", user="U0BOB")
        lines = wait_reply(slack_api, "U0BOB", "History of").splitlines()
        assert len(lines) == 2 and "<@U0BOB>" in lines[1]
        bot.command(f"history {OTHER}", user="U0ALICE")       # bare: wherever it is
        assert len(wait_reply(slack_api, "U0ALICE", "History of").splitlines()) == 3

    def test_an_unknown_name_says_so(self, make_bot, slack_api):
        make_bot().command("history team-a-never", user="U0ALICE")
        wait_reply(slack_api, "U0ALICE", "No history for a job named `team-a-never` in the "
                                         "audit trail.")

    def test_refused_to_an_unmapped_user(self, make_bot, slack_api, redis_client, key_prefix):
        Audit(redis_client, key_prefix).write("requested", ref=V2Job(GONE), user="U0BOB",
                                              job_name="team-a-gone")
        make_bot().command("history team-a-gone", user="U0STRANGER")
        text = wait_reply(slack_api, "U0STRANGER", "no role")
        assert "team-a-gone" not in text and GONE not in text


class TestPlainWords:
    """History (and the Home tab) show entries in plain words, never the codes."""

    @pytest.mark.parametrize("event,outcome,words", [
        ("stopped", "stop_requested", "stop requested: ModelArts accepted it"),
        ("requested", "", "asked to stop"),
        ("confirmed", "awaiting_approval", "confirmed: waiting for a second person to approve"),
        ("refused", "wrong_channel", "refused: the button was pressed in another channel"),
        ("failed", "redis_unavailable", "failed: the state store (Redis) was unreachable"),
        ("denied", "redis_unavailable", "denied: the state store (Redis) was unreachable"),
        ("expired", "expired", "expired: nobody confirmed in time"),
        ("verified", "ended_on_its_own", "followed up: the job ended on its own"),
        ("brand_new", "some_code", "brand new: some code"),      # a code with no words yet
    ])
    def test_codes_become_words(self, event, outcome, words):
        assert plain(event, outcome) == words

    def test_no_words_carry_an_underscore(self):
        assert not [w for w in (*EVENTS.values(), *WORDS.values(), *OUTCOMES.values())
                    if "_" in w]


class TestNoSecrets:
    def test_no_entry_holds_a_secret(self, make_bot, slack_api, emulator, redis_client,
                                     key_prefix):
        bot = make_bot()
        full_stop(bot, slack_api, redis_client, key_prefix)
        bot.command("stop 182801 279100", user="U0ALICE")     # team-b-yolo
        wait_event(redis_client, key_prefix, "denied")
        raw = redis_client.xrange(Keys(key_prefix).audit())
        assert len(raw) == 4
        text = json.dumps([{k.decode(): v.decode() for k, v in f.items()} for _, f in raw])
        for secret in (SIGNING_SECRET, BOT_TOKEN, defaults.EMULATOR_SK, defaults.EMULATOR_AK,
                       defaults.EMULATOR_PASSWORD):
            assert secret not in text
        assert {k.decode() for _, f in raw for k in f} <= set(FIELDS)


class TestAuditFailure:
    def test_a_refused_audit_write_does_not_fail_a_stop(self, make_bot, slack_api, emulator,
                                                        redis_client, key_prefix):
        """The stream key holds a string: every XADD fails (WRONGTYPE), in scripts and out."""
        redis_client.set(Keys(key_prefix).audit(), "not a stream")
        errors = metrics.AUDIT_WRITE_ERRORS._value.get()
        bot = make_bot()
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        replies = slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert "Stop requested" in replies[0].text
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1
        bot.command("stop 182801 279100", user="U0ALICE")     # team-b-yolo
        wait_reply(slack_api, "U0ALICE", "may not stop")
        deadline = time.monotonic() + 10     # requested, confirmed, stopped, denied
        while metrics.AUDIT_WRITE_ERRORS._value.get() < errors + 4:
            assert time.monotonic() < deadline, metrics.AUDIT_WRITE_ERRORS._value.get() - errors
            time.sleep(0.05)

    def test_redis_down_is_logged_and_counted(self, key_prefix, caplog):
        dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
        errors = metrics.AUDIT_WRITE_ERRORS._value.get()
        assert not Audit(dead, key_prefix).write("denied", ref=V2Job(V2), user="U0BOB")
        assert metrics.AUDIT_WRITE_ERRORS._value.get() == errors + 1
        assert "audit entry not written (ConnectionError)" in caplog.text


class TestPendingConfirmations:
    def test_counted_from_request_to_click(self, make_bot, slack_api, emulator):
        bot = make_bot()
        store = bot.bot.flow.store
        assert store.pending() == 0
        bot.command(f"stop {JOB} {VERSION}")
        msg = request_message(slack_api)
        assert store.pending() == 1
        Sampler(bot.bot.redis, bot.bot.settings.REDIS_KEY_PREFIX,
                confirmations=store.pending).sample()
        assert metrics.CONFIRMATIONS_PENDING._value.get() == 1
        bot.click_button(msg, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        assert store.pending() == 0

    def test_an_expired_confirmation_leaves_the_count(self, redis_client, key_prefix):
        store = ConfirmationStore(redis_client, key_prefix, ttl_seconds=1,
                                  audit=Audit(redis_client, key_prefix, 90))
        c = Confirmation("cid-1", "U0ONCALL", "C0INCIDENT", "", "", V2Job(V2), "job",
                         time.time())
        assert store.create(c).stored and not store.create(c).stored
        assert store.pending() == 1
        deadline = time.monotonic() + 5
        while store.pending():
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert redis_client.zcard(Keys(key_prefix).confirm_index()) == 0


class TestCli:
    @pytest.mark.parametrize("args,needle", [
        (("--job", "nope"), "--job 'nope': expected a training_job_id"),
        (("--job", "0"), "job_id must be a positive integer"),
        (("--since", "yesterday"), "--since 'yesterday'"),
    ])
    def test_bad_arguments_are_named(self, redis_url, key_prefix, tmp_path, args, needle):
        done = audit_cli(redis_url, key_prefix, tmp_path, *args)
        assert done.returncode == 2 and needle in done.stderr and not done.stdout


class TestCliRendering:
    def test_control_characters_in_a_job_name_are_shown_not_sent(
            self, make_bot, slack_api, emulator, redis_client, redis_url, key_prefix, tmp_path):
        """A job name is someone else's text: ESC (an OSC retitling the terminal), BEL, CR, C1
        (NEL, CSI) and a bidi override reach the table as escapes, and the JSON lines as
        \\u escapes of the same string."""
        bot = make_bot()
        names = []
        for evil in ("\x1b]0;x\x07\r", "\u202e\x85\x9b"):
            (ref,) = emulator.add_training_jobs(1, name_prefix=evil)
            bot.command(f"stop {ref.training_job_id}")
            names.append(slack_api.wait_for(lambda ref=ref: [
                e.get("job_name") for e in entries(redis_client, key_prefix)
                if e.get("training_job_id") == ref.training_job_id])[0])
        assert names[0].startswith("\x1b]0;x\x07\r") and names[1].startswith("\u202e\x85")

        table = audit_cli(redis_url, key_prefix, tmp_path, "--since", "1h")
        assert table.returncode == 0, table.stderr
        assert not [c for c in table.stdout if CONTROLS.match(c) and c != "\n"]
        lines = table.stdout.split("\n")
        assert len(lines) == 4 and lines[-1] == ""   # the header, two rows, the last newline
        assert "\\x1b]0;x\\x07\\x0d" in lines[1] and "\\u202e\\x85\\x9b" in lines[2]

        done = audit_cli(redis_url, key_prefix, tmp_path, "--json")
        assert not [c for c in done.stdout if CONTROLS.match(c) and c != "\n"]
        assert "\\u202e\\u0085\\u009b" in done.stdout
        assert [e["job_name"] for e in as_json(done)] == names


class TestSelect:
    def test_a_bare_v1_job_id_matches_every_version(self):
        e1 = Entry("1-0", {"api": "v1", "job_id": "5", "version_id": "7", "confirmation": "a"})
        e2 = Entry("2-0", {"api": "v1", "job_id": "5", "version_id": "8"})
        expired = Entry("3-0", {"event": "expired", "confirmation": "a"})
        other = Entry("4-0", {"event": "expired", "confirmation": "b"})
        every = [e1, e2, expired, other]
        assert list(select(every, JobFilter.parse("5"))) == [e1, e2, expired]
        assert list(select(every, JobFilter.parse("v1:5:8"))) == [e2]
        assert list(select(every, JobFilter.parse(V2))) == []
