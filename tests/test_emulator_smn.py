"""botdev.smn (the SMN signer) and the emulator's SMN events (admin routes, terminate)."""

from __future__ import annotations

import base64
import calendar
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from bot.modelarts.refs import V2Job
from botdev.emulator import EMULATOR_PROJECT_ID
from botdev.smn import SmnSigner, headers, string_to_sign

TOPIC = f"urn:smn:cn-north-4:{EMULATOR_PROJECT_ID}:modelarts-events"
BASE = {"type": "Notification", "message": "hello\nworld", "message_id": "m1",
        "timestamp": "2024-07-10T09:45:00Z", "topic_urn": TOPIC}


@pytest.fixture(scope="module")
def signer() -> SmnSigner:
    return SmnSigner()


def verifies(signer_or_pem: SmnSigner | bytes, body: dict) -> bool:
    pem = signer_or_pem.cert_pem if isinstance(signer_or_pem, SmnSigner) else signer_or_pem
    key = x509.load_pem_x509_certificate(pem).public_key()
    try:
        key.verify(base64.b64decode(body["signature"]), string_to_sign(body), padding.PKCS1v15(),
                   hashes.SHA256())
    except Exception:  # noqa: BLE001 - InvalidSignature, or a malformed one
        return False
    return True


class TestStringToSign:
    def test_notification_without_subject(self):
        assert string_to_sign(BASE) == (
            f"message\nhello\nworld\nmessage_id\nm1\ntimestamp\n2024-07-10T09:45:00Z\n"
            f"topic_urn\n{TOPIC}\ntype\nNotification\n").encode()

    def test_an_empty_subject_is_left_out_and_a_set_one_signed_in_order(self):
        assert string_to_sign({**BASE, "subject": ""}) == string_to_sign(BASE)
        assert string_to_sign({**BASE, "subject": "Jöb"}) == (
            f"message\nhello\nworld\nmessage_id\nm1\nsubject\nJöb\n"
            f"timestamp\n2024-07-10T09:45:00Z\ntopic_urn\n{TOPIC}\ntype\nNotification\n"
        ).encode()

    def test_type_is_compared_without_case(self):
        low = {**BASE, "type": "notification", "subject": "s"}
        assert b"subject\ns\n" in string_to_sign(low)

    def test_subscription_confirmation(self):
        body = {**BASE, "type": "SubscriptionConfirmation", "subscribe_url": "https://x/s?t=1",
                "subject": "ignored"}
        assert string_to_sign(body) == (
            f"message\nhello\nworld\nmessage_id\nm1\nsubscribe_url\nhttps://x/s?t=1\n"
            f"timestamp\n2024-07-10T09:45:00Z\ntopic_urn\n{TOPIC}\n"
            f"type\nSubscriptionConfirmation\n").encode()


class TestSigner:
    def test_certificate_names_smn(self, signer, tmp_path):
        cert = x509.load_pem_x509_certificate(signer.cert_pem)
        assert cert.subject.rfc4514_string() == "C=CN,O=Huawei,CN=Huawei-Cloud-SMN-Meter"
        assert cert.signature_hash_algorithm.name == "sha256"
        assert cert.public_key().key_size == 2048
        path = signer.write_cert(tmp_path / "c.pem")
        assert path.read_bytes() == signer.cert_pem

    def test_notification_is_signed_and_verifies(self, signer):
        body = signer.notification(TOPIC, "msg", "subj", message_id="abc",
                                   timestamp="2024-07-10T09:45:00Z")
        assert body["type"] == "Notification" and body["message_id"] == "abc"
        assert body["subject"] == "subj" and body["unsubscribe_url"].startswith("https://")
        assert body["signature_version"] == "v1"
        assert body["signing_cert_url"].endswith(".pem")
        assert verifies(signer, body)
        assert not verifies(signer, {**body, "message": "msg!"})
        assert not verifies(SmnSigner(), body)

    def test_notification_defaults(self, signer):
        body = signer.notification(TOPIC, "msg")
        assert "subject" not in body and len(body["message_id"]) == 32
        sent = calendar.timegm(time.strptime(body["timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
        assert abs(time.time() - sent) < 60
        assert verifies(signer, body)
        assert verifies(signer, signer.notification(TOPIC, "msg", ""))

    @pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
    def test_subscription_messages_verify(self, signer, kind):
        body = signer.subscription(TOPIC, "https://smn.example/confirm?token=t", kind=kind)
        assert body["type"] == kind and body["subscribe_url"].endswith("token=t")
        assert verifies(signer, body)
        assert not verifies(signer, {**body, "subscribe_url": "https://evil.example/"})

    def test_headers(self, signer):
        body = signer.notification(TOPIC, "m", message_id="id1")
        assert headers(body) == {"Content-Type": "application/json",
                                 "X-SMN-MESSAGE-TYPE": "Notification",
                                 "X-SMN-MESSAGE-ID": "id1", "X-SMN-TOPIC-URN": TOPIC}


@dataclass
class Endpoint:
    """A tiny HTTP server standing in for the bot's /smn: records what it got."""

    url: str = ""
    status: int = 200
    got: list[tuple[str, dict, dict]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)

    def wait(self, n: int = 1, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            self.arrived.wait(0.05)
            self.arrived.clear()
        assert len(self.got) >= n, f"{len(self.got)} deliveries, wanted {n}"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    ep = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            ep.got.append((self.path, dict(self.headers.items()), json.loads(raw)))
            self.send_response(ep.status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
            ep.arrived.set()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    ep.url = f"http://127.0.0.1:{server.server_address[1]}/smn"
    yield ep
    server.shutdown()
    server.server_close()


def running_v2(emulator) -> dict:
    return next(j for j in emulator.state()["training_jobs"] if j["status"]["phase"] == "Running")


class TestEmulatorEvents:
    def test_the_certificate_file_holds_the_signers_certificate(self, emulator):
        assert emulator.smn_cert_file.read_bytes() == emulator.smn.cert_pem
        assert emulator.smn_topic_urn == TOPIC

    def test_admin_event_delivers_a_signed_json_notification(self, emulator, endpoint):
        admin = emulator.base_url + "/_admin/smn"
        answer = requests.post(admin + "/subscribe", json={"url": endpoint.url}, timeout=5)
        assert answer.status_code == 200
        assert answer.json()["topic_urn"] == TOPIC
        assert answer.json()["cert_file"] == str(emulator.smn_cert_file)
        job = running_v2(emulator)
        name, job_id = job["metadata"]["name"], job["metadata"]["id"]
        endpoint.status = 202
        answer = requests.post(admin + "/event", json={"job": name, "event": "JobHanged"},
                               timeout=10)
        assert answer.status_code == 200, answer.text
        path, got_headers, body = endpoint.got[0]
        assert answer.json()["status"] == 202
        assert answer.json()["message_id"] == body["message_id"]
        assert path == "/smn"
        assert got_headers["Content-Type"] == "application/json"
        assert got_headers["X-SMN-MESSAGE-TYPE"] == "Notification"
        assert got_headers["X-SMN-MESSAGE-ID"] == body["message_id"]
        assert got_headers["X-SMN-TOPIC-URN"] == TOPIC == body["topic_urn"]
        assert body["type"] == "Notification"
        assert body["subject"] == f"[ModelArts] Training job {name}: JobHanged"
        message = json.loads(body["message"])
        assert message["event"] == "JobHanged" and message["training_job_id"] == job_id
        assert message["job_name"] == name and message["phase"] == "Running"
        assert message["time"].endswith("Z")
        assert verifies(emulator.smn_cert_file.read_bytes(), body)

    def test_text_format_by_id_and_a_topic_of_its_own(self, emulator, endpoint):
        topic = "urn:smn:cn-north-4:abc:other-topic"
        assert emulator.smn_subscribe(endpoint.url, topic) == topic
        job = running_v2(emulator)
        name, job_id = job["metadata"]["name"], job["metadata"]["id"]
        resp = requests.post(emulator.base_url + "/_emulator/smn/event", timeout=10,
                             json={"job": job_id, "event": "JobFailed", "format": "text"})
        assert resp.status_code == 200 and resp.json()["status"] == 200
        body = endpoint.got[0][2]
        assert body["topic_urn"] == topic
        assert body["message"] == f"ModelArts training job {name} ({job_id}) reported event " \
                                  "JobFailed."
        assert verifies(emulator.smn, body)

    def test_bad_input_and_no_subscriber(self, emulator, endpoint):
        event = emulator.base_url + "/_admin/smn/event"
        job = running_v2(emulator)["metadata"]["name"]
        resp = requests.post(event, json={"job": job, "event": "JobHanged"}, timeout=5)
        assert resp.status_code == 400 and "subscribe" in resp.json()["error"]
        emulator.smn_subscribe(endpoint.url)
        for bad in ({"job": "no-such-job", "event": "JobHanged"},
                    {"job": job, "event": "JobHanged", "format": "xml"},
                    {"job": job, "event": "not an event"}, {"event": "JobHanged"}):
            assert requests.post(event, json=bad, timeout=5).status_code == 400, bad
        assert endpoint.got == []

    def test_a_failed_post_answers_502(self, emulator):
        from botdev.standin.local import free_port

        emulator.smn_subscribe(f"http://127.0.0.1:{free_port()}/smn")
        resp = requests.post(emulator.base_url + "/_admin/smn/event", timeout=10,
                             json={"job": running_v2(emulator)["metadata"]["id"],
                                   "event": "JobHanged"})
        assert resp.status_code == 502 and resp.json()["message_id"]

    def test_publish_event_method(self, emulator, endpoint):
        emulator.smn_subscribe(endpoint.url)
        job_id = running_v2(emulator)["metadata"]["id"]
        resp = emulator.publish_event(V2Job(job_id), "JobPreempted")
        assert resp.status_code == 200
        assert json.loads(endpoint.got[0][2]["message"])["event"] == "JobPreempted"

    def test_terminate_publishes_job_terminated_once_terminated(self, emulator, endpoint,
                                                                modelarts_client):
        emulator.stop_delay = 0.3
        emulator.smn_subscribe(endpoint.url)
        job_id = running_v2(emulator)["metadata"]["id"]
        modelarts_client.stop(V2Job(job_id))
        endpoint.wait(1)
        body = endpoint.got[0][2]
        message = json.loads(body["message"])
        assert message == {**message, "event": "JobTerminated", "training_job_id": job_id,
                           "phase": "Terminated"}
        assert body["subject"].endswith(": JobTerminated")
        assert verifies(emulator.smn, body)
        time.sleep(0.3)
        assert len(endpoint.got) == 1

    def test_no_event_when_not_subscribed_or_stuck(self, emulator, endpoint):
        emulator.stop_delay = 0.1
        job_id = running_v2(emulator)["metadata"]["id"]
        emulator.store.stop(V2Job(job_id))   # not subscribed yet
        emulator.smn_subscribe(endpoint.url)
        time.sleep(0.4)
        assert endpoint.got == []
        emulator.set_fault(V2Job(job_id := running_v2(emulator)["metadata"]["id"]), "stuck")
        emulator.store.take_fault([V2Job(job_id)], "stop")
        emulator.store.stop(V2Job(job_id))
        time.sleep(0.4)
        assert endpoint.got == []
        assert emulator.job(V2Job(job_id))["status"]["phase"] == "Terminating"
