"""Job alerts end to end: the intake over real HTTP, the queue in the real Redis, the dispatcher
posting to the Slack stand-in, and the Stop button leading into the stop flow."""

from __future__ import annotations

import json
import time

import pytest

from bot.alerts.parse import Alert, parse
from bot.flow.blocks import CONFIRM, STOP_REQUEST
from bot.modelarts.refs import V1Job
from tests.plugins.alerts import ALERTS_TOKEN, generic
from tests.plugins.slack import button_value, responses

JOB, VERSION = 182626, 278813          # team-a-resnet, RUNNING
B_JOB, B_VERSION = 182801, 279100      # team-b-yolo, RUNNING


def alert_messages(slack_api, channel: str = "C0ALERTS") -> list:
    """Top-level messages the bot posted in ``channel``, oldest first."""
    with slack_api._lock:
        msgs = [m for m in slack_api.messages.values()
                if m.channel == channel and m.thread_ts is None]
    return sorted(msgs, key=lambda m: m.ts)


def wait_alerts(slack_api, n: int, channel: str = "C0ALERTS") -> list:
    return slack_api.wait_for(lambda: (lambda m: m if len(m) >= n else None)(
        alert_messages(slack_api, channel)))


def has_button(message, action_id: str = STOP_REQUEST) -> bool:
    return action_id in json.dumps(message.blocks or [])


def settle(seconds: float = 0.6) -> None:
    """Give work that must NOT happen a moment to show itself."""
    time.sleep(seconds)


def alertmanager(status: str = "firing", **labels) -> dict:
    base = {"alertname": "TrainingLossNaN", "job_id": str(JOB), "version_id": str(VERSION),
            "job_name": "team-a-resnet", "slack_channel": "C0ALERTS", "severity": "critical"}
    base.update(labels)
    return {"version": "4", "groupKey": "{}:{alertname=\"TrainingLossNaN\"}", "status": status,
            "receiver": "modelarts-bot", "groupLabels": {}, "commonLabels": {},
            "commonAnnotations": {}, "externalURL": "http://alertmanager:9093",
            "alerts": [{"status": status, "labels": {k: v for k, v in base.items() if v},
                        "annotations": {"summary": "loss is NaN",
                                        "description": "loss has been NaN for 5 minutes"},
                        "startsAt": "2024-05-01T03:10:00Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "http://prometheus:9090/graph?g0.expr=loss",
                        "fingerprint": "c0ffee"}]}


class TestIntakeAuth:
    def test_no_token_is_401_and_posts_nothing(self, make_alert_bot, slack_api):
        resp = make_alert_bot().alert(generic(), token=None)
        assert resp.status_code == 401 and "bearer" in resp.json()["error"]
        settle()
        assert not slack_api.calls_to("chat.postMessage")

    def test_wrong_token_is_401_and_posts_nothing(self, make_alert_bot, slack_api):
        resp = make_alert_bot().alert(generic(), token=ALERTS_TOKEN + "x")
        assert resp.status_code == 401
        assert ALERTS_TOKEN not in resp.text
        settle()
        assert not slack_api.calls_to("chat.postMessage")

    def test_right_token_is_202_and_posts_once(self, make_alert_bot, slack_api):
        resp = make_alert_bot().alert(generic())
        assert resp.status_code == 202
        accepted = resp.json()["accepted"]
        assert [(a["status"], a["channel"]) for a in accepted] == [("queued", "C0ALERTS")]
        wait_alerts(slack_api, 1)
        settle()
        assert len(slack_api.calls_to("chat.postMessage", ok_only=True)) == 1

    def test_unset_token_turns_the_intake_off(self, make_alert_bot, slack_api):
        resp = make_alert_bot(ALERTS_TOKEN=None).alert(generic())
        assert resp.status_code == 503 and "ALERTS_TOKEN" in resp.json()["error"]
        settle()
        assert not slack_api.calls_to("chat.postMessage")

    def test_only_post(self, make_alert_bot):
        bot = make_alert_bot()
        assert bot.http.get(bot.url + "/alerts", timeout=5).status_code == 405


class TestValidation:
    @pytest.mark.parametrize("body,field", [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (generic(job_id=None), "job_id"),
        (generic(job_id="abc"), "job_id"),
        (generic(job_id=0), "job_id"),
        (generic(version_id="-5"), "version_id"),
        (generic(version_id=True), "version_id"),
        (generic(job_name=None, job_id=None, version_id=None), "training_job_id"),
        (generic(job_name="x" * 201), "job_name"),
        (generic(summary=None), "summary"),
        (generic(summary="x" * 1001), "summary"),
        (generic(severity=7), "severity"),
        (generic(url="javascript:alert(1)"), "url"),
        (generic(channel=None), "channel"),
        (generic(channel="#alerts"), "channel"),
        (json.dumps(generic(pad="x" * 70_000)), "body"),
    ])
    def test_bad_body_is_400_naming_the_field(self, make_alert_bot, slack_api, body, field):
        resp = make_alert_bot().alert(body)
        assert resp.status_code == 400
        assert field in resp.json()["fields"]
        settle(0.3)
        assert not slack_api.calls_to("chat.postMessage")

    def test_every_bad_field_is_named(self, make_alert_bot):
        resp = make_alert_bot().alert(generic(job_id="x", version_id=None, summary=None))
        assert set(resp.json()["fields"]) == {"job_id", "version_id", "summary"}

    def test_default_channel_is_used_when_none_given(self, make_alert_bot, slack_api):
        bot = make_alert_bot(ALERTS_CHANNEL="C0DEFAULT")
        assert bot.alert(generic(channel=None)).status_code == 202
        wait_alerts(slack_api, 1, "C0DEFAULT")

    def test_alertmanager_errors_name_the_alert_and_label(self):
        body = alertmanager()
        body["alerts"].append({"status": "firing", "labels": {"job_id": "1"}, "annotations": {}})
        got = parse(json.dumps(body).encode())
        assert set(got) == {"alerts[1].labels.version_id", "alerts[1].labels.slack_channel",
                            "alerts[1].annotations.summary"}

    def test_alertmanager_version_must_be_4(self):
        assert "version" in parse(json.dumps({**alertmanager(), "version": "3"}).encode())

    def test_same_alert_same_identity(self):
        one, two = parse(json.dumps(generic()).encode()), parse(json.dumps(
            generic(channel="C0OTHER", status="KILLING")).encode())
        assert isinstance(one[0], Alert) and one[0].identity == two[0].identity


class TestMessage:
    def test_shows_the_alert_and_a_danger_stop_button(self, make_alert_bot, slack_api):
        make_alert_bot().alert(generic())
        msg = wait_alerts(slack_api, 1)[0]
        for needle in ("team-a-resnet", str(JOB), str(VERSION), "RUNNING", "loss is NaN",
                       "critical", "https://grafana.example.com/d/abc"):
            assert needle in json.dumps(msg.blocks), needle
        button = next(e for b in msg.blocks if b["type"] == "actions" for e in b["elements"])
        assert button["action_id"] == STOP_REQUEST and button["style"] == "danger"

    def test_alertmanager_firing_then_resolved(self, make_alert_bot, slack_api):
        bot = make_alert_bot()
        resp = bot.alert(alertmanager())
        assert resp.status_code == 202 and resp.json()["accepted"][0]["state"] == "firing"
        msg = wait_alerts(slack_api, 1)[0]
        assert has_button(msg) and "loss has been NaN for 5 minutes" in json.dumps(msg.blocks)
        resp = bot.alert(alertmanager("resolved"))
        assert resp.json()["accepted"][0]["state"] == "resolved"
        slack_api.wait_for(lambda: "Resolved at" in msg.text and not has_button(msg))
        settle()
        assert len(alert_messages(slack_api)) == 1


class TestDedupe:
    def test_same_alert_in_the_window_posts_once_and_counts(self, make_alert_bot, slack_api):
        bot = make_alert_bot()
        codes = [bot.alert(generic(status=s)).json()["accepted"][0]["status"]
                 for s in ("RUNNING", "RUNNING", "RUNNING")]
        assert codes == ["queued", "duplicate", "duplicate"]
        msg = wait_alerts(slack_api, 1)[0]
        slack_api.wait_for(lambda: "Seen 3 times" in msg.text)
        settle()
        assert len(alert_messages(slack_api)) == 1

    def test_a_different_summary_is_a_different_alert(self, make_alert_bot, slack_api):
        bot = make_alert_bot()
        bot.alert(generic())
        bot.alert(generic(1))
        wait_alerts(slack_api, 2)

    def test_after_the_window_it_posts_again(self, make_alert_bot, slack_api):
        bot = make_alert_bot(ALERT_DEDUPE_SECONDS=1)
        bot.alert(generic())
        wait_alerts(slack_api, 1)
        time.sleep(1.2)
        assert bot.alert(generic()).json()["accepted"][0]["status"] == "queued"
        wait_alerts(slack_api, 2)


class TestClick:
    def click_stop(self, bot, slack_api, user: str, value: str | None = None):
        msg = wait_alerts(slack_api, 1)[0]
        if value is None:
            bot.click_button(msg, STOP_REQUEST, user)
        else:
            bot.click(STOP_REQUEST, value, user, msg.channel, msg.ts, msg.blocks)
        return msg

    def confirmation(self, slack_api, alert):
        def found():
            replies = slack_api.thread_replies(alert.channel, alert.ts)
            return next((m for m in replies if has_button(m, CONFIRM)), None)
        return slack_api.wait_for(found)

    def test_allowed_user_stops_once_with_outcome_in_the_alert_thread(
            self, make_alert_bot, slack_api, emulator):
        bot = make_alert_bot()
        bot.alert(generic())
        alert = self.click_stop(bot, slack_api, "U0ALICE")
        ask = self.confirmation(slack_api, alert)
        assert "<@U0ALICE>" in ask.text and "team-a-resnet" in ask.text
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0
        value = button_value(ask, CONFIRM)
        bot.click(CONFIRM, value, "U0ALICE", ask.channel, ask.ts)
        slack_api.wait_for(lambda: any("Stop requested" in m.text for m in
                                       slack_api.thread_replies(alert.channel, alert.ts)))
        slack_api.wait_for(lambda: "Stopped by <@U0ALICE> at" in alert.text)
        assert "UTC" in alert.text and not has_button(alert)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1
        bot.click(CONFIRM, value, "U0ALICE", ask.channel, ask.ts)
        slack_api.wait_for(lambda: any("already handled" in t
                                       for t in responses(slack_api, "U0ALICE")))
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_denied_user_stops_nothing(self, make_alert_bot, slack_api, emulator):
        bot = make_alert_bot()
        bot.alert(generic())
        alert = self.click_stop(bot, slack_api, "U0BOB")
        slack_api.wait_for(lambda: any("may not stop" in t for t in responses(slack_api, "U0BOB")))
        settle()
        assert not slack_api.thread_replies(alert.channel, alert.ts)
        assert has_button(alert) and emulator.stop_count(V1Job(JOB, VERSION)) == 0

    def test_forged_button_value_cannot_pick_another_job(self, make_alert_bot, slack_api,
                                                         emulator):
        """The job is the one the bot posted on that message, not the button's value."""
        bot = make_alert_bot()
        bot.alert(generic())
        alert = self.click_stop(bot, slack_api, "U0ONCALL", value=f"{B_JOB}:{B_VERSION}")
        ask = self.confirmation(slack_api, alert)
        assert "team-a-resnet" in ask.text and "team-b" not in ask.text

    def test_forged_value_on_an_unknown_message_meets_the_role_check(
            self, make_alert_bot, slack_api, emulator):
        bot = make_alert_bot()
        bot.click(STOP_REQUEST, f"{B_JOB}:{B_VERSION}", "U0ALICE", "C0ALERTS", "1700000099.000001")
        slack_api.wait_for(lambda: any("may not stop" in t for t in responses(slack_api,
                                                                               "U0ALICE")))
        settle()
        assert not slack_api.calls_to("chat.postMessage")
        assert emulator.stop_count(V1Job(B_JOB, B_VERSION)) == 0

    def test_stop_failure_shows_the_error_code_on_the_alert(self, make_alert_bot, slack_api,
                                                            emulator):
        bot = make_alert_bot()
        bot.alert(generic())
        alert = self.click_stop(bot, slack_api, "U0ONCALL")
        ask = self.confirmation(slack_api, alert)
        emulator.set_fault(V1Job(JOB, VERSION), "failure", error_code="ModelArts.0105",
                           error_msg="Error string", http_status=400)
        bot.click_button(ask, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: "Stop failed: ModelArts.0105" in alert.text)
        assert not has_button(alert)

    def test_an_ended_job_gets_no_stop_button(self, make_alert_bot, slack_api):
        make_alert_bot().alert(generic(job_id="182900", version_id="279300",
                                       job_name="team-a-old", status=None))
        msg = wait_alerts(slack_api, 1)[0]
        assert STOP_REQUEST not in json.dumps(msg.blocks)
        assert "*Status:* COMPLETED" in json.dumps(msg.blocks), "the phase ModelArts gave"

    def test_a_job_that_ended_after_the_post_is_refused(self, make_alert_bot, slack_api,
                                                        emulator):
        bot = make_alert_bot()
        bot.alert(generic())
        msg = wait_alerts(slack_api, 1)[0]
        emulator.set_status(V1Job(182626, 278813), 10)      # COMPLETED, after the post
        bot.click(STOP_REQUEST, "v1:182626:278813", "U0ONCALL", msg.channel, msg.ts, msg.blocks)
        slack_api.wait_for(lambda: any("not running" in t for t in responses(slack_api,
                                                                              "U0ONCALL")))
        assert emulator.stop_count(V1Job(182626, 278813)) == 0


EVIL_NAME = "<!here> *bold* _it_ ~gone~ `code` <https://evil.example|click>\nfake line\u202e"


def mrkdwn_texts(blocks: list[dict]) -> list[str]:
    """Every mrkdwn text of the blocks: sections and context elements."""
    out = []
    for block in blocks:
        if block.get("type") == "section":
            out.append(block["text"]["text"])
        out += [e["text"] for e in block.get("elements", []) if e.get("type") == "mrkdwn"]
    return out


class TestEscaping:
    def test_no_field_injects_a_mention_a_link_markup_or_a_line(self, make_alert_bot, slack_api):
        """Name, status and summary are the sender's: in the fallback text too."""
        resp = make_alert_bot().alert(generic(
            job_name=EVIL_NAME, status="<!channel> <https://evil.example|x>",
            summary="loss\n*Status:* RESOLVED <!here>", url=None))
        assert resp.status_code == 202
        msg = wait_alerts(slack_api, 1)[0]
        head = msg.blocks[0]["text"]["text"]
        for text in (msg.text, *mrkdwn_texts(msg.blocks)):
            assert "<!" not in text and "<https://evil" not in text and "\u202e" not in text
            assert "*bold*" not in text and "_it_" not in text and "`code`" not in text
            assert "~gone~" not in text and "*Status:* RESOLVED" not in text
        assert "\n" not in msg.text and "\n" not in head
        assert "&lt;!here&gt;" in head and "&lt;!channel&gt;" in msg.text

    def test_the_description_keeps_its_lines_but_no_mention(self, make_alert_bot, slack_api):
        body = alertmanager()
        body["alerts"][0]["annotations"]["description"] = "line one\n<!here> line *two*"
        make_alert_bot().alert(body)
        msg = wait_alerts(slack_api, 1)[0]
        description = msg.blocks[2]["text"]["text"]
        assert description.startswith("line one\n") and "<!here>" not in description
        assert "*two*" not in description

    def test_a_url_with_spaces_is_refused(self):
        got = parse(json.dumps(generic(url="https://x.example/a b|c")).encode())
        assert "url" in got


class TestDeepBody:
    def test_thirty_thousand_brackets_are_a_400_and_the_replica_keeps_serving(
            self, make_alert_bot, slack_api):
        """``[`` x 30,000 is under 64 KiB and deeper than Python's recursion limit."""
        bot = make_alert_bot()
        resp = bot.alert(b"[" * 30_000)
        assert resp.status_code == 400 and "body" in resp.json()["fields"]
        assert bot.alert(generic()).status_code == 202


def queued_counter(bot) -> int:
    return int(bot.bot.redis.get(bot.bot.alerts.key("queued")) or 0)


class TestCaps:
    def test_a_full_channel_is_429_with_retry_after_and_the_others_still_flow(
            self, make_alert_bot):
        bot = make_alert_bot(dispatch=False, ALERT_QUEUE_PER_CHANNEL=3)
        assert [bot.alert(generic(n)).status_code for n in range(3)] == [202] * 3
        resp = bot.alert(generic(3))
        assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
        body = resp.json()
        assert (body["cap"], body["channel"], body["limit"], body["queued"]) == (
            "channel", "C0ALERTS", 3, 3)
        assert body["setting"] == "ALERT_QUEUE_PER_CHANNEL" and "full" in body["error"]
        assert bot.bot.alerts.backlog() == 3
        assert bot.alert(generic(4, channel="C0OTHER")).status_code == 202

    def test_a_body_that_does_not_fit_is_refused_whole(self, make_alert_bot):
        """All or nothing: two alerts and one free place queue neither."""
        bot = make_alert_bot(dispatch=False, ALERT_QUEUE_PER_CHANNEL=3)
        bot.alert(generic(1))
        bot.alert(generic(2))
        body = alertmanager()
        body["alerts"].append({**body["alerts"][0], "annotations": {"summary": "loss is 1e9"}})
        resp = bot.alert(body)
        assert resp.status_code == 429 and resp.json()["adding"] == 2
        assert bot.bot.alerts.backlog() == 2 and queued_counter(bot) == 2

    def test_more_than_the_cap_in_one_body_is_413(self, make_alert_bot):
        bot = make_alert_bot(dispatch=False, ALERT_QUEUE_PER_CHANNEL=1)
        body = alertmanager()
        body["alerts"].append({**body["alerts"][0], "annotations": {"summary": "loss is 1e9"}})
        resp = bot.alert(body)
        assert resp.status_code == 413 and "split it" in resp.json()["error"]
        assert bot.bot.alerts.backlog() == 0

    def test_the_total_cap_spans_channels(self, make_alert_bot):
        bot = make_alert_bot(dispatch=False, ALERT_QUEUE_TOTAL=4)
        codes = [bot.alert(generic(n, channel=f"C0CAP{n % 2}")).status_code for n in range(4)]
        assert codes == [202] * 4
        resp = bot.alert(generic(9, channel="C0CAPNEW"))
        assert resp.status_code == 429 and resp.json()["cap"] == "total"
        assert resp.json()["setting"] == "ALERT_QUEUE_TOTAL" and "Retry-After" in resp.headers

    def test_a_duplicate_is_still_counted_when_full(self, make_alert_bot):
        bot = make_alert_bot(dispatch=False, ALERT_QUEUE_PER_CHANNEL=1)
        assert bot.alert(generic()).status_code == 202
        resp = bot.alert(generic())
        assert resp.status_code == 202 and resp.json()["accepted"][0]["count"] == 2
        assert bot.bot.alerts.backlog() == 1

    def test_room_comes_back_as_the_queue_drains(self, make_alert_bot, slack_api):
        bot = make_alert_bot(ALERT_QUEUE_PER_CHANNEL=2, ALERT_QUEUE_TOTAL=2)
        for n in range(2):
            assert bot.alert(generic(n)).status_code == 202
        wait_alerts(slack_api, 2)
        slack_api.wait_for(lambda: bot.bot.alerts.backlog() == 0 and queued_counter(bot) == 0)
        assert [bot.alert(generic(n + 2)).status_code for n in range(2)] == [202, 202]


class TestMessageRecords:
    def test_marking_a_gone_record_writes_nothing(self, make_alert_bot):
        """An outcome shown after the record expired must not leave a key without a TTL."""
        queue = make_alert_bot(dispatch=False).bot.alerts
        assert not queue.mark("C0ALERTS", "1700000000.000001", outcome="Stopped")
        assert queue.redis.ttl(queue.key("msg", "C0ALERTS", "1700000000.000001")) == -2

    def test_marking_a_record_keeps_it_a_week_from_then(self, make_alert_bot, slack_api):
        from bot.alerts.queue import RECORD_TTL

        bot = make_alert_bot()
        bot.alert(generic())
        msg = wait_alerts(slack_api, 1)[0]
        queue = bot.bot.alerts
        key = queue.key("msg", msg.channel, msg.ts)
        slack_api.wait_for(lambda: queue.redis.exists(key))
        queue.redis.expire(key, 30)
        assert queue.mark(msg.channel, msg.ts, outcome="Stopped by <@U0ALICE> at 03:12 UTC.")
        assert RECORD_TTL - 60 < queue.redis.ttl(key) <= RECORD_TTL
