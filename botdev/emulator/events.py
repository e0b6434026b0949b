"""ModelArts training-job events published through a stand-in SMN topic to one HTTP subscriber.

What real ModelArts puts in a Notification's ``message`` is unconfirmed (huawei-smn.md §5), so
two forms are offered: ``json``, ``{"event", "training_job_id", "job_name", "phase", "time"}``
serialised, and ``text``, ``ModelArts training job NAME (ID) reported event EVENT.``; both with
the subject ``[ModelArts] Training job NAME: EVENT``. Every message is signed by one
``SmnSigner`` whose certificate sits in a temporary file (``cert_file``) for the bot to trust.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import requests

from botdev.smn import SmnSigner, deliver

REGION = "cn-north-4"
FORMATS = ("json", "text")
EVENTS = ("JobStarted", "JobCompleted", "JobFailed", "JobTerminated", "JobRestarted",
          "JobHanged", "JobPreempted")
_EVENT_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]{0,63}$")


class NotSubscribed(ValueError):
    """No subscriber: ``subscribe`` first."""


class Publisher:
    """The topic, its one subscriber (``url``), the signer and its certificate file."""

    def __init__(self, project_id: str) -> None:
        self.signer = SmnSigner()
        self._dir = tempfile.mkdtemp(prefix="emulator-smn-")
        self.cert_file = self.signer.write_cert(Path(self._dir) / "smn-signing-cert.pem")
        self.default_topic = f"urn:smn:{REGION}:{project_id}:modelarts-events"
        self.topic_urn = self.default_topic
        self.url: str | None = None
        self._lock = threading.Lock()

    def subscribe(self, url: str, topic_urn: str | None = None) -> str:
        """Send published events to ``url`` from now on; the topic URN they carry."""
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError("url must be an http(s) URL")
        if topic_urn is not None and not (isinstance(topic_urn, str)
                                          and topic_urn.startswith("urn:smn:")):
            raise ValueError("topic_urn must look like urn:smn:{region}:{project_id}:{name}")
        with self._lock:
            self.url, self.topic_urn = url, topic_urn or self.default_topic
            return self.topic_urn

    def unsubscribe(self) -> None:
        with self._lock:
            self.url = None

    @property
    def subscribed(self) -> bool:
        return self.url is not None

    def notification(self, job: dict[str, Any], event: str, fmt: str, now: float
                     ) -> dict[str, Any]:
        """The signed Notification for ``event`` of ``job`` (a v2 job object as the API shows
        it) at emulator time ``now``."""
        if not isinstance(event, str) or not _EVENT_NAME.match(event):
            raise ValueError("event must be a name such as JobHanged")
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {', '.join(FORMATS)}")
        job_id, name = job["metadata"]["id"], job["metadata"]["name"]
        if fmt == "json":
            when = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            message = json.dumps({"event": event, "training_job_id": job_id, "job_name": name,
                                  "phase": job["status"]["phase"], "time": when})
        else:
            message = f"ModelArts training job {name} ({job_id}) reported event {event}."
        return self.signer.notification(self.topic_urn, message,
                                        f"[ModelArts] Training job {name}: {event}")

    def publish(self, body: dict[str, Any], timeout: float = 5) -> requests.Response:
        """POST a signed body to the subscriber. NotSubscribed when there is none;
        requests.RequestException when the POST fails."""
        url = self.url
        if url is None:
            raise NotSubscribed("no SMN subscriber: POST /_emulator/smn/subscribe first")
        return deliver(url, body, timeout)

    def info(self) -> dict[str, Any]:
        return {"url": self.url, "topic_urn": self.topic_urn, "cert_file": str(self.cert_file),
                "cert_pem": self.signer.cert_pem.decode("ascii")}

    def close(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


__all__ = ["EVENTS", "FORMATS", "NotSubscribed", "Publisher"]
