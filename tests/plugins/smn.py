"""SMN messages signed the way SMN signs them (huawei-smn.md §4), by the test, with
``cryptography``: never with the bot's code. A key and a self-signed certificate per session."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

PROJECT = "0a41b2c3d4e5f60718293a4b5c6d7e8f"
TOPIC = f"urn:smn:cn-north-4:{PROJECT}:modelarts-events"
CERT_URL = "https://smn.cn-north-4.myhuaweicloud.com/smn/SMN_cn-north-4_test.pem"
SIGNED = {"Notification": ("message", "message_id", "subject", "timestamp", "topic_urn", "type")}
CONFIRMATION = ("message", "message_id", "subscribe_url", "timestamp", "topic_urn", "type")


def make_cert(days: int = 365) -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Huawei-Cloud-SMN-Meter"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Huawei"),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


class Signer:
    def __init__(self) -> None:
        self.key, self.cert_pem = make_cert()

    def sign(self, body: dict, key: rsa.RSAPrivateKey | None = None) -> dict:
        names = SIGNED.get(body["type"], CONFIRMATION)
        text = "".join(f"{n}\n{body[n]}\n" for n in names if body.get(n) not in (None, ""))
        signature = (key or self.key).sign(text.encode(), padding.PKCS1v15(), hashes.SHA256())
        return {**body, "signature": base64.b64encode(signature).decode(),
                "signature_version": "v1", "signing_cert_url": CERT_URL}

    def notification(self, message: str, subject: str | None = "[ModelArts] job event", *,
                     topic: str = TOPIC, age: float = 0, **more) -> dict:
        stamp = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=age)
        body = {"type": "Notification", "message_id": uuid.uuid4().hex, "topic_urn": topic,
                "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"), "message": message,
                "unsubscribe_url": "https://smn.cn-north-4.myhuaweicloud.com/unsubscribe"}
        if subject is not None:
            body["subject"] = subject
        return self.sign({**body, **more})

    def subscription(self, url: str, kind: str = "SubscriptionConfirmation") -> dict:
        return self.sign({"type": kind, "message_id": uuid.uuid4().hex, "topic_urn": TOPIC,
                          "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "message": "You are invited to subscribe to topic modelarts-events",
                          "subscribe_url": url})


def deliver(url: str, body: dict | bytes, kind: str | None = None,
            headers: dict | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    given = {"Content-Type": "application/json",
             "X-SMN-MESSAGE-TYPE": kind or (body.get("type", "") if isinstance(body, dict)
                                            else "Notification")}
    return requests.post(url + "/smn", data=data, headers={**given, **(headers or {})},
                         timeout=10, allow_redirects=False)


@pytest.fixture(scope="session")
def smn_signer() -> Signer:
    return Signer()


@pytest.fixture
def smn_cert_file(smn_signer, tmp_path):
    path = tmp_path / "smn.pem"
    path.write_bytes(smn_signer.cert_pem)
    return str(path)
