"""Is this SMN message from SMN? The signature check, before anything else is done with a body.

    body ──▶ type agrees with X-SMN-MESSAGE-TYPE, signature_version v1, topic listed, timestamp
         fresh ──▶ the certificate: the pinned one (SMN_SIGNING_CERT_FILE, and signing_cert_url is
         never fetched), else signing_cert_url if https, host allowed (SMN_CERT_HOSTS), a .pem
         path, no redirect, at most 16 KiB, cached ──▶ the certificate within its dates ──▶ RSA
         PKCS#1 v1.5 with SHA-256 over the signed fields (huawei-smn.md §4) ──▶ Verified
    Any step failing: ``Refused(reason)``, answered 403. The reason never holds the body.

``signing_cert_url`` is not signed: without the pin, an attacker may name a certificate of their
own, so only allow-listed hosts are fetched, and the pin is what the docs recommend.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

log = logging.getLogger(__name__)

MAX_CERT = 16 * 1024
TYPES = {"notification": "Notification", "subscriptionconfirmation": "SubscriptionConfirmation",
         "unsubscribeconfirmation": "UnsubscribeConfirmation",
         "httpsubscriptionuserconfirm": "HttpSubscriptionUserConfirm",
         "httpsubscriptionuserunsubscribe": "HttpSubscriptionUserUnsubscribe"}
NOTIFICATION_FIELDS = ("message", "message_id", "subject", "timestamp", "topic_urn", "type")
CONFIRMATION_FIELDS = ("message", "message_id", "subscribe_url", "timestamp", "topic_urn", "type")


@dataclass(frozen=True)
class Refused:
    reason: str          # a metric label: signature, topic, stale, cert_host, cert, type, version
    detail: str          # for the log line


def string_to_sign(body: dict) -> bytes:
    """huawei-smn.md §4: ``name\\nvalue\\n`` for each signed field, ``subject`` left out when
    absent or empty, values exactly as received."""
    kind = TYPES.get(str(body.get("type", "")).lower(), "")
    names = NOTIFICATION_FIELDS if kind == "Notification" else CONFIRMATION_FIELDS
    out = []
    for name in names:
        value = body.get(name)
        if name == "subject" and value in (None, ""):
            continue
        out.append(f"{name}\n{'' if value is None else value}\n")
    return "".join(out).encode()


def allowed_host(url: str, suffixes: list[str]) -> bool:
    """https, no user info, a host equal to a suffix or under it."""
    try:
        parts = urlsplit(url)
        parts.port      # noqa: B018 - a bad port raises
    except ValueError:
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    return (parts.scheme == "https" and not parts.username
            and any(host == s or host.endswith("." + s) for s in suffixes))


def certificate_in_date(cert: x509.Certificate, now: dt.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def verify_signature(cert: x509.Certificate, body: dict) -> bool:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        signature = base64.b64decode(str(body.get("signature", "")), validate=True)
        key.verify(signature, string_to_sign(body), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


class CertSource:
    """The certificate a message names: the pinned one, or a fetched one from an allowed host."""

    def __init__(self, pinned: bytes | None, hosts: list[str],
                 session: requests.Session | None = None,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.pinned = x509.load_pem_x509_certificate(pinned) if pinned else None
        self.hosts = hosts
        self.session = session or requests.Session()
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._cache: dict[str, x509.Certificate] = {}
        self._lock = threading.Lock()

    def get(self, url: str) -> x509.Certificate | Refused:
        cert = self.pinned or self._cached(url)
        if isinstance(cert, Refused):
            return cert
        if not certificate_in_date(cert, self.clock()):
            return Refused("cert", "the signing certificate is outside its validity dates")
        return cert

    def _cached(self, url: str) -> x509.Certificate | Refused:
        if not allowed_host(url, self.hosts) or not urlsplit(url).path.endswith(".pem"):
            return Refused("cert_host", "signing_cert_url is not an https .pem URL on an "
                                        "SMN_CERT_HOSTS host")
        with self._lock:
            if url in self._cache:
                return self._cache[url]
        got = self._fetch(url)
        if not isinstance(got, Refused):
            with self._lock:
                if len(self._cache) > 64:
                    self._cache.clear()
                self._cache[url] = got
        return got

    def _fetch(self, url: str) -> x509.Certificate | Refused:
        host = urlsplit(url).hostname
        try:
            with self.session.get(url, timeout=(2, 3), allow_redirects=False,
                                  stream=True) as resp:
                if resp.status_code != 200:
                    return Refused("cert", f"{host} answered {resp.status_code} for the cert")
                raw = resp.raw.read(MAX_CERT + 1, decode_content=True)
        except requests.RequestException as exc:
            return Refused("cert", f"could not fetch the certificate from {host}: "
                                   f"{type(exc).__name__}")
        if len(raw) > MAX_CERT:
            return Refused("cert", f"the certificate from {host} is larger than 16 KiB")
        try:
            return x509.load_pem_x509_certificate(raw)
        except ValueError:
            return Refused("cert", f"{host} sent no PEM certificate")


class Verifier:
    def __init__(self, topics: dict[str, str], certs: CertSource, max_age_seconds: int,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.topics = topics
        self.certs = certs
        self.max_age = dt.timedelta(seconds=max_age_seconds)
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    def check(self, body: dict, header_type: str | None) -> str | Refused:
        """The message's type (canonical spelling), or why it is refused."""
        kind = TYPES.get(str(body.get("type", "")).lower())
        if kind is None or (header_type or "").lower() != kind.lower():
            return Refused("type", "type and X-SMN-MESSAGE-TYPE are missing or disagree")
        if str(body.get("signature_version", "")).lower() != "v1":
            return Refused("version", "signature_version is not v1")
        if body.get("topic_urn") not in self.topics:
            return Refused("topic", "the topic is not in SMN_TOPICS")
        when = parse_time(body.get("timestamp"))
        now = self.clock()
        if when is None or now - when > self.max_age or when - now > dt.timedelta(minutes=15):
            return Refused("stale", "timestamp missing, older than SMN_MAX_AGE_SECONDS, or ahead")
        cert = self.certs.get(str(body.get("signing_cert_url", "")))
        if isinstance(cert, Refused):
            return cert
        if not verify_signature(cert, body):
            return Refused("signature", "the signature does not verify")
        return kind


def parse_time(value: object) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
