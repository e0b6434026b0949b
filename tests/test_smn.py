"""POST /smn end to end: messages signed by the test (tests/plugins/smn.py), real Redis, the
dispatcher posting to the Slack stand-in, the emulator behind the job look-ups."""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time

import pytest

from bot.flow.blocks import CONFIRM, STOP_REQUEST
from bot.modelarts.refs import V2Job
from tests.plugins.slack import button_value
from tests.plugins.smn import PROJECT, TOPIC, deliver
from tests.test_alerts import alert_messages, has_button, wait_alerts

JOB = "3faf5c03-aaa1-4cbe-879d-24b05d997347"        # team-a-resnet50, Running


@pytest.fixture
def smn_bot(make_alert_bot, smn_cert_file):
    def make(**overrides):
        return make_alert_bot(SMN_TOPICS=json.dumps({TOPIC: "C0ALERTS"}),
                              SMN_SIGNING_CERT_FILE=smn_cert_file, **overrides)
    return make


def event(job: str = JOB, name: str = "JobHanged", **more) -> str:
    return json.dumps({"event": name, "training_job_id": job, **more})


class TestSignature:
    def test_a_signed_notification_is_posted(self, smn_bot, smn_signer, slack_api):
        resp = deliver(smn_bot().url, smn_signer.notification(event()))
        assert resp.status_code == 200, resp.text
        msg = wait_alerts(slack_api, 1)[0]
        assert "team-a-resnet50" in msg.text and "JobHanged" in msg.text
        assert has_button(msg)

    @pytest.mark.parametrize("subject", [None, "", "[ModelArts] hang"])
    def test_subject_absent_empty_or_set(self, smn_bot, smn_signer, subject):
        resp = deliver(smn_bot().url, smn_signer.notification(event(), subject))
        assert resp.status_code == 200, resp.text

    @pytest.mark.parametrize("change", [
        {"message": event(name="JobFailed")}, {"timestamp": "2000-01-01T00:00:00Z"},
        {"subject": "changed"}, {"signature": "bm90IGEgc2lnbmF0dXJl"}, {"signature": "%%%"},
        {"signature_version": "v2"}, {"type": "SubscriptionConfirmation"},
    ])
    def test_a_changed_field_is_403_and_posts_nothing(self, smn_bot, smn_signer, slack_api,
                                                      change):
        body = {**smn_signer.notification(event()), **change}
        assert deliver(smn_bot().url, body, kind="Notification").status_code == 403
        time.sleep(0.5)
        assert alert_messages(slack_api) == []

    def test_reordered_fields_still_verify(self, smn_bot, smn_signer):
        body = smn_signer.notification(event())
        reordered = dict(reversed(list(body.items())))
        assert deliver(smn_bot().url, reordered).status_code == 200

    def test_a_wrong_key_is_403(self, smn_bot, smn_signer):
        from tests.plugins.smn import make_cert
        other, _ = make_cert()
        body = smn_signer.sign(smn_signer.notification(event()), key=other)
        assert deliver(smn_bot().url, body).status_code == 403

    def test_header_and_body_type_must_agree(self, smn_bot, smn_signer):
        body = smn_signer.notification(event())
        assert deliver(smn_bot().url, body, kind="SubscriptionConfirmation").status_code == 403
        assert deliver(smn_bot().url, body, kind="NOTIFICATION").status_code == 200

    def test_an_unlisted_topic_is_403(self, smn_bot, smn_signer, slack_api):
        body = smn_signer.notification(event(), topic=f"urn:smn:cn-north-4:{PROJECT}:other")
        assert deliver(smn_bot().url, body).status_code == 403

    def test_a_stale_timestamp_is_403(self, smn_bot, smn_signer):
        body = smn_signer.notification(event(), age=2 * 86400)
        assert deliver(smn_bot().url, body).status_code == 403
        assert deliver(smn_bot(SMN_MAX_AGE_SECONDS=3 * 86400).url, body).status_code == 200

    def test_a_pinned_cert_never_fetches_signing_cert_url(self, smn_bot, smn_signer, https):
        url = https.url("/evil.pem")
        body = {**smn_signer.notification(event()), "signing_cert_url": url}
        assert deliver(smn_bot(SMN_CERT_HOSTS="localhost").url, body).status_code == 200
        assert https.hits == []


class TestCertificateUrl:
    @pytest.mark.parametrize("url", [
        "http://smn.cn-north-4.myhuaweicloud.com/a.pem",
        "https://evil.example/a.pem", "https://myhuaweicloud.com.evil.example/a.pem",
        "https://smn.myhuaweicloud.com/a.txt", "https://user@smn.myhuaweicloud.com/a.pem",
    ])
    def test_outside_the_host_rule_is_403_and_not_requested(self, make_alert_bot, smn_signer,
                                                            url):
        bot = make_alert_bot(SMN_TOPICS=json.dumps({TOPIC: "C0ALERTS"}))
        body = {**smn_signer.notification(event()), "signing_cert_url": url}
        assert deliver(bot.url, body).status_code == 403

    def test_an_allowed_host_is_fetched_once_and_cached(self, make_alert_bot, smn_signer,
                                                        https):
        https.files["/SMN_test.pem"] = smn_signer.cert_pem
        bot = make_alert_bot(SMN_TOPICS=json.dumps({TOPIC: "C0ALERTS"}),
                             SMN_CERT_HOSTS="localhost")
        for _ in range(2):
            body = {**smn_signer.notification(event()),
                    "signing_cert_url": https.url("/SMN_test.pem")}
            assert deliver(bot.url, body).status_code == 200
        assert https.hits == ["/SMN_test.pem"]


class TestMessages:
    def test_subscription_is_confirmed_and_announced(self, smn_bot, smn_signer, slack_api,
                                                     https):
        bot = smn_bot(SMN_CONFIRM_HOSTS="localhost")
        resp = deliver(bot.url, smn_signer.subscription(https.url("/confirm?token=t")))
        assert resp.status_code == 200
        msg = wait_alerts(slack_api, 1)[0]
        assert "Subscribed to SMN topic" in msg.text and "modelarts-events" in msg.text
        slack_api.wait_for(lambda: https.hits == ["/confirm?token=t"])

    def test_a_subscribe_url_outside_the_hosts_is_403(self, smn_bot, smn_signer, https):
        resp = deliver(smn_bot().url, smn_signer.subscription(https.url("/confirm")))
        assert resp.status_code == 403
        time.sleep(0.3)
        assert https.hits == []

    def test_a_redelivered_message_posts_once(self, smn_bot, smn_signer, slack_api):
        bot = smn_bot()
        body = smn_signer.notification(event())
        assert deliver(bot.url, body).status_code == 200
        assert deliver(bot.url, body).json() == {"duplicate": True}
        wait_alerts(slack_api, 1)
        time.sleep(0.5)
        assert len(alert_messages(slack_api)) == 1

    def test_redis_down_is_503_then_the_same_message_posts_once(
            self, make_alert_bot, smn_cert_file, smn_signer, slack_api, redis_url, key_prefix):
        topics = json.dumps({TOPIC: "C0ALERTS"})
        down = make_alert_bot(dispatch=False, SMN_TOPICS=topics,
                              SMN_SIGNING_CERT_FILE=smn_cert_file,
                              REDIS_URL="redis://127.0.0.1:1/0")
        body = smn_signer.notification(event())
        assert deliver(down.url, body).status_code == 503
        up = make_alert_bot(SMN_TOPICS=topics, SMN_SIGNING_CERT_FILE=smn_cert_file)
        assert deliver(up.url, body).status_code == 200
        assert deliver(up.url, body).status_code == 200
        wait_alerts(slack_api, 1)
        time.sleep(0.5)
        assert len(alert_messages(slack_api)) == 1

    @pytest.mark.parametrize("message", [
        event(), json.dumps({"data": {"jobId": JOB, "event_type": "JobHanged"}}),
        f"ModelArts training job team-a-resnet50 ({JOB}) reported event JobHanged.",
    ])
    def test_job_hanged_leads_to_one_terminate(self, smn_bot, smn_signer, slack_api, emulator,
                                               message):
        bot = smn_bot()
        assert deliver(bot.url, smn_signer.notification(message)).status_code == 200
        msg = wait_alerts(slack_api, 1)[0]
        bot.click_button(msg, STOP_REQUEST, "U0ONCALL")
        confirm = slack_api.wait_for(lambda: next(
            (m for m in slack_api.messages.values() if CONFIRM in json.dumps(m.blocks or [])),
            None))
        value, blocks = button_value(confirm, CONFIRM), confirm.blocks
        for _ in range(2):      # a double click: one terminate
            bot.click(CONFIRM, value, "U0ONCALL", confirm.channel, confirm.ts, blocks)
        slack_api.wait_for(lambda: emulator.stop_count(V2Job(JOB)) >= 1)
        time.sleep(0.5)
        assert emulator.stop_count(V2Job(JOB)) == 1

    def test_an_event_on_an_ended_job_has_no_stop_button(self, smn_bot, smn_signer, slack_api,
                                                         emulator):
        emulator.set_status(V2Job(JOB), "Failed")
        deliver(smn_bot().url, smn_signer.notification(event(name="JobFailed")))
        msg = wait_alerts(slack_api, 1)[0]
        assert not has_button(msg) and "Failed" in json.dumps(msg.blocks)

    def test_an_end_event_resolves_the_open_alert(self, smn_bot, smn_signer, slack_api):
        bot = smn_bot()
        deliver(bot.url, smn_signer.notification(event()))
        msg = wait_alerts(slack_api, 1)[0]
        deliver(bot.url, smn_signer.notification(event(name="JobTerminated")))
        slack_api.wait_for(lambda: "Ended: JobTerminated" in msg.text)
        assert not has_button(msg) and len(alert_messages(slack_api)) == 1

    def test_an_event_outside_smn_events_posts_nothing(self, smn_bot, smn_signer, slack_api):
        assert deliver(smn_bot().url, smn_signer.notification(
            event(name="JobStarted"))).status_code == 200
        time.sleep(0.8)
        assert alert_messages(slack_api) == []

    def test_job_terminated_settles_a_watch_long_before_its_poll(
            self, smn_bot, smn_signer, slack_api, emulator):
        bot = smn_bot(STOP_VERIFY_INTERVAL_SECONDS=120)
        bot.command(f"stop {JOB}")
        request = slack_api.wait_for(lambda: next(
            (m for m in slack_api.messages.values() if CONFIRM in json.dumps(m.blocks or [])),
            None))
        bot.click_button(request, CONFIRM, "U0ONCALL")
        slack_api.wait_for(lambda: emulator.stop_count(V2Job(JOB)) == 1)
        slack_api.wait_for(lambda: emulator.job(V2Job(JOB))["status"]["phase"] == "Terminated"
                           or None, timeout=20)
        started = time.monotonic()
        deliver(bot.url, smn_signer.notification(event(name="JobTerminated")))
        slack_api.wait_for(lambda: "Terminated" in request.text and "is Terminated" in " ".join(
            m.text for m in slack_api.thread_replies(request.channel, request.ts)), timeout=15)
        assert time.monotonic() - started < 60, "settled by the event, not the 120 s poll"

    def test_an_alarm_fires_then_resolves(self, smn_bot, smn_signer, slack_api):
        bot = smn_bot()
        alarm = {"message_type": "alarm", "alarm_id": "al123", "alarm_name": "gpu-util-low",
                 "alarm_status": "alarm", "alarm_level": 2,
                 "template_variable": {"ResourceId": JOB}}
        deliver(bot.url, smn_signer.notification(json.dumps(alarm)))
        msg = wait_alerts(slack_api, 1)[0]
        assert "gpu-util-low" in msg.text and has_button(msg)
        deliver(bot.url, smn_signer.notification(json.dumps({**alarm, "alarm_status": "ok"})))
        slack_api.wait_for(lambda: "Alarm back to OK" in msg.text)
        assert not has_button(msg)

    def test_a_message_naming_no_job_is_a_notice(self, smn_bot, smn_signer, slack_api):
        deliver(smn_bot().url, smn_signer.notification("<!here> disk *full*", "Quota"))
        msg = wait_alerts(slack_api, 1)[0]
        assert "Quota" in msg.text and not has_button(msg)
        assert "<!here>" not in json.dumps(msg.blocks)

    def test_audited_and_counted(self, smn_bot, smn_signer, redis_client, key_prefix):
        from bot.core.keys import Keys
        body = smn_signer.notification(event())
        deliver(smn_bot().url, body)

        def entry():
            got = redis_client.xrange(Keys(key_prefix).audit())
            return [f for _, f in got if f.get(b"event") == b"smn"]
        deadline = time.monotonic() + 5
        while not entry() and time.monotonic() < deadline:
            time.sleep(0.05)
        fields = entry()[0]
        assert fields[b"message_id"] == body["message_id"].encode()
        assert fields[b"smn_event"] == b"JobHanged" and fields[b"topic"] == TOPIC.encode()


class TestAnswers:
    def test_off_without_topics(self, make_alert_bot, smn_signer):
        assert deliver(make_alert_bot().url, smn_signer.notification(event())).status_code == 404

    @pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"type": "Notification"}',
                                      b"\xff\xfe", json.dumps({"message": 5}).encode()])
    def test_not_an_smn_message_is_400(self, smn_bot, body):
        assert deliver(smn_bot().url, body).status_code == 400

    def test_over_64_kib_is_413(self, smn_bot, smn_signer):
        body = smn_signer.notification("x" * 70_000)
        assert deliver(smn_bot().url, body).status_code == 413


# -- a loopback HTTPS server counting what is asked of it --------------------------------------
class _Files(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the base's name
        self.server.hits.append(self.path)
        data = self.server.files.get(self.path.split("?")[0], b"ok")
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def https(tmp_path, monkeypatch):
    import trustme
    ca = trustme.CA()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.hits, server.files = [], {}
    server.url = lambda path: f"https://localhost:{server.server_address[1]}{path}"
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca_file))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


class TestAnyBody:
    """Whatever the body, headers or size: 2xx or 4xx (the only 5xx is Redis down's 503)."""

    def test_no_input_gives_a_5xx(self, smn_bot, smn_signer):
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        bot = smn_bot()
        valid = smn_signer.notification(event())
        fields = st.dictionaries(st.sampled_from(sorted(valid)), st.one_of(
            st.none(), st.integers(), st.text(max_size=40), st.lists(st.integers(), max_size=3),
            st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=2)), max_size=6)
        bodies = st.one_of(st.binary(max_size=300),
                           fields.map(lambda f: json.dumps({**valid, **f}).encode()),
                           st.integers(60_000, 70_000).map(lambda n: b"{" + b" " * n + b"}"))
        kinds = st.one_of(st.none(), st.sampled_from(["Notification", "notification", "", "x"]),
                          st.text(alphabet="abcXYZ-", max_size=12))

        @settings(max_examples=80, deadline=None,
                  suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(bodies, kinds)
        def check(body, kind):
            headers = {"X-SMN-MESSAGE-TYPE": kind} if kind is not None else {}
            resp = deliver(bot.url, body, headers=headers)
            assert 200 <= resp.status_code < 500, (resp.status_code, resp.text)

        check()


class TestDoctor:
    def test_names_the_topics_and_the_pinned_certificate(self, bot_settings, smn_cert_file,
                                                         tmp_path):
        from bot.app import doctor
        settings = bot_settings(SMN_TOPICS=json.dumps({TOPIC: "C0ALERTS"}),
                                SMN_SIGNING_CERT_FILE=smn_cert_file)
        assert "1 topics (modelarts-events); pinned certificate valid until" in \
            doctor.check_smn(settings)
        bad = tmp_path / "bad.pem"
        bad.write_text("not a certificate")
        with pytest.raises(doctor.Problem, match="not a PEM certificate"):
            doctor.check_smn(bot_settings(SMN_TOPICS=json.dumps({TOPIC: "C0ALERTS"}),
                                          SMN_SIGNING_CERT_FILE=str(bad)))

    @pytest.mark.parametrize("value", ["{", "[]", '{"urn:smn:x": "C0A"}',
                                       json.dumps({TOPIC: "#alerts"})])
    def test_a_bad_smn_topics_is_a_config_error(self, value):
        from bot.core.errors import ConfigError
        from bot.core.settings import load_settings
        with pytest.raises(ConfigError, match="SMN_TOPICS"):
            load_settings(SMN_TOPICS=value, SLACK_BOT_TOKEN="xoxb-1")
