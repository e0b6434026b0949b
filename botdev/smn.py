"""A stand-in for Huawei Cloud SMN's publishing side: signed messages, POSTed as SMN posts them.

``SmnSigner`` holds an RSA-2048 key and a self-signed certificate named like SMN's own (subject
``CN=Huawei-Cloud-SMN-Meter, O=Huawei, C=CN``); give the bot ``write_cert``'s file as the one
certificate it trusts. The string to sign and the headers follow
/work/shared/reference/huawei-smn.md §1-§4.

    signer = SmnSigner()
    body = signer.notification(topic_urn, "training job x failed", "[ModelArts] x: JobFailed")
    deliver("http://127.0.0.1:8080/smn", body)
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import pathlib
import uuid
from typing import Any
from urllib.parse import quote, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

DEFAULT_CERT_URL = "https://smn.cn-north-4.myhuaweicloud.com/smn/SMN_cn-north-4_emulator.pem"
_NOTIFICATION_FIELDS = ("message", "message_id", "subject", "timestamp", "topic_urn", "type")
_CONFIRMATION_FIELDS = ("message", "message_id", "subscribe_url", "timestamp", "topic_urn",
                        "type")


def string_to_sign(body: dict[str, Any]) -> bytes:
    """The signed fields of ``body``, each ``name\\nvalue\\n``, UTF-8 (§4). A Notification leaves
    ``subject`` out when it is absent or empty; the type is compared without case."""
    kind = str(body.get("type", "")).lower()
    names = _NOTIFICATION_FIELDS if kind == "notification" else _CONFIRMATION_FIELDS
    parts = []
    for name in names:
        if name == "subject" and not body.get("subject"):
            continue
        parts.append(f"{name}\n{body.get(name, '')}\n")
    return "".join(parts).encode("utf-8")


def headers(body: dict[str, Any]) -> dict[str, str]:
    """The headers SMN sends with ``body``."""
    return {"Content-Type": "application/json",
            "X-SMN-MESSAGE-TYPE": str(body.get("type", "")),
            "X-SMN-MESSAGE-ID": str(body.get("message_id", "")),
            "X-SMN-TOPIC-URN": str(body.get("topic_urn", ""))}


def deliver(url: str, body: dict[str, Any], timeout: float = 5) -> requests.Response:
    """POST ``body`` to an HTTP(S) subscription as SMN does (no redirect followed)."""
    return requests.post(url, data=json.dumps(body).encode("utf-8"), headers=headers(body),
                         timeout=timeout, allow_redirects=False)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SmnSigner:
    """An RSA key, its self-signed certificate, and the messages it signs."""

    def __init__(self, cert_url: str = DEFAULT_CERT_URL) -> None:
        self.cert_url = cert_url
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Huawei-Cloud-SMN-Meter"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Huawei"),
                          x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")])
        now = dt.datetime.now(dt.UTC)
        self.cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                     .public_key(self._key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(days=1))
                     .not_valid_after(now + dt.timedelta(days=365))
                     .sign(self._key, hashes.SHA256()))
        self.cert_pem: bytes = self.cert.public_bytes(serialization.Encoding.PEM)

    def write_cert(self, path: str | pathlib.Path) -> pathlib.Path:
        path = pathlib.Path(path)
        path.write_bytes(self.cert_pem)
        return path

    def sign(self, body: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``body`` with ``signature``, ``signature_version`` and ``signing_cert_url``."""
        raw = self._key.sign(string_to_sign(body), padding.PKCS1v15(), hashes.SHA256())
        return {**body, "signature": base64.b64encode(raw).decode("ascii"),
                "signature_version": "v1", "signing_cert_url": self.cert_url}

    def notification(self, topic_urn: str, message: str, subject: str | None = None, *,
                     message_id: str | None = None, timestamp: str | None = None
                     ) -> dict[str, Any]:
        """A signed Notification (no ``subject`` key when ``subject`` is None)."""
        message_id = message_id or uuid.uuid4().hex
        body: dict[str, Any] = {"type": "Notification", "topic_urn": topic_urn,
                                "message_id": message_id, "message": message,
                                "timestamp": timestamp or _now(),
                                "unsubscribe_url": self._link("unsubscribe", topic_urn)}
        if subject is not None:
            body["subject"] = subject
        return self.sign(body)

    def subscription(self, topic_urn: str, subscribe_url: str, *,
                     kind: str = "SubscriptionConfirmation") -> dict[str, Any]:
        """A signed SubscriptionConfirmation (or ``kind="UnsubscribeConfirmation"``)."""
        verb = "unsubscribed from" if kind.lower() == "unsubscribeconfirmation" else \
            "invited to subscribe to"
        return self.sign({"type": kind, "topic_urn": topic_urn, "message_id": uuid.uuid4().hex,
                          "message": f"You are {verb} topic {topic_urn}. To confirm, visit "
                                     "the subscribe_url included in this message.",
                          "subscribe_url": subscribe_url, "timestamp": _now()})

    def _link(self, action: str, topic_urn: str) -> str:
        host = urlsplit(self.cert_url).netloc or "smn.example"
        return (f"https://{host}/smn/subscription/{action}?"
                f"topic_urn={quote(topic_urn, safe='')}&token={uuid.uuid4().hex}")


__all__ = ["DEFAULT_CERT_URL", "SmnSigner", "deliver", "headers", "string_to_sign"]
