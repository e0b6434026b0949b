"""The /_emulator/ routes: drive the emulator from another process (no auth: bind to loopback).

A job is named by its JobRef key: ``v1:JOB:VERSION`` (or ``JOB:VERSION``) or ``v2:ID``.

  GET    /_emulator/state                     jobs, training jobs, stop counts, token issues
  POST   /_emulator/faults/{ref}              body: Fault fields, e.g. {"kind": "html_500"}
  DELETE /_emulator/faults                    clear every fault
  POST   /_emulator/jobs/{ref}/status         body: {"status": 8} (v1) or {"status": "Running"}
  POST   /_emulator/training-jobs             body: {"n": 60, "name_prefix": ..., "phase": ...}
                                              answers {"training_job_ids": [...]}
  POST   /_emulator/retire-v1                 body: {"retired": true}
  POST   /_emulator/stop-delay                body: {"seconds": 0.5}
  POST   /_emulator/expire-tokens
  GET    /_emulator/smn                       {url, topic_urn, cert_file, cert_pem}
  POST   /_emulator/smn/subscribe             body: {"url": "http://127.0.0.1:PORT/smn",
                                              "topic_urn": ...} (default: urn:smn:cn-north-4:
                                              {project_id}:modelarts-events); answers
                                              {topic_urn, cert_file}; {"url": null} unsubscribes
  POST   /_emulator/smn/event                 body: {"job": name or training_job_id,
                                              "event": "JobHanged", "format": "json"|"text"}:
                                              one signed Notification POSTed to the subscriber;
                                              answers {status, message_id, body} (502 when the
                                              POST failed)
Every route is also served under /_admin/ (``/_admin/smn/event`` ...).
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

import requests

from bot.modelarts.refs import JobRef, parse_ref


class Controls(Protocol):
    """What the admin routes drive: the Emulator (botdev.emulator.server), which imports this."""

    stop_delay: float

    def state(self) -> dict[str, Any]: ...
    def add_training_jobs(self, **kwargs: Any) -> list: ...
    def clear_faults(self) -> None: ...
    def set_fault(self, ref: JobRef, **kwargs: Any) -> None: ...
    def set_status(self, ref: JobRef, status: Any) -> None: ...
    def retire_v1(self, retired: bool) -> None: ...
    def expire_tokens(self) -> None: ...
    def smn_subscribe(self, url: str, topic_urn: str | None = None) -> str: ...
    def smn_unsubscribe(self) -> None: ...
    def smn_info(self) -> dict[str, Any]: ...
    def smn_notification(self, job: str, event: str, fmt: str = "json") -> dict[str, Any]: ...
    def smn_send(self, body: dict[str, Any]) -> requests.Response: ...

_FAULT = re.compile(r"^/_emulator/faults/(?P<ref>[^/]+)$")
_STATUS = re.compile(r"^/_emulator/jobs/(?P<ref>[^/]+)/status$")


def admin(emulator: Controls, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """Answer one admin request: 200 with a body, 400 for bad input, 404 for no such route."""
    if path.startswith("/_admin/"):
        path = "/_emulator/" + path.removeprefix("/_admin/")
    try:
        data = json.loads(body) if body else {}
        if path.startswith("/_emulator/smn"):
            return _smn(emulator, method, path, data)
        if method == "GET" and path == "/_emulator/state":
            return 200, emulator.state()
        if method == "POST" and path == "/_emulator/training-jobs":
            refs = emulator.add_training_jobs(**data)
            return 200, {"training_job_ids": [r.training_job_id for r in refs]}
        if method == "DELETE" and path == "/_emulator/faults":
            emulator.clear_faults()
        elif method == "POST" and (m := _FAULT.match(path)):
            emulator.set_fault(parse_ref(m["ref"]), **data)
        elif method == "POST" and (m := _STATUS.match(path)):
            emulator.set_status(parse_ref(m["ref"]), data["status"])
        elif method == "POST" and path == "/_emulator/retire-v1":
            emulator.retire_v1(bool(data.get("retired", True)))
        elif method == "POST" and path == "/_emulator/stop-delay":
            emulator.stop_delay = float(data["seconds"])
        elif method == "POST" and path == "/_emulator/expire-tokens":
            emulator.expire_tokens()
        else:
            return 404, {"error": f"no admin route {method} {path}"}
    except (ValueError, TypeError, KeyError) as exc:  # InvalidIdError is a ValueError
        return 400, {"error": f"{type(exc).__name__}: {exc}"}
    return 200, {"ok": True}


def _smn(emulator: Controls, method: str, path: str, data: Any) -> tuple[int, dict[str, Any]]:
    if method == "GET" and path == "/_emulator/smn":
        return 200, emulator.smn_info()
    if method == "POST" and path == "/_emulator/smn/subscribe":
        if data.get("url") is None:
            emulator.smn_unsubscribe()
            return 200, {"ok": True, "url": None}
        topic = emulator.smn_subscribe(data["url"], data.get("topic_urn"))
        return 200, {"ok": True, "topic_urn": topic, "cert_file": emulator.smn_info()["cert_file"]}
    if method == "POST" and path == "/_emulator/smn/event":
        if not isinstance(data.get("job"), str):
            raise ValueError("job must be a v2 job name or training_job_id")
        notice = emulator.smn_notification(data["job"], data.get("event", ""),
                                           data.get("format", "json"))
        try:
            resp = emulator.smn_send(notice)
        except requests.RequestException as exc:
            return 502, {"error": f"{type(exc).__name__}: {exc}",
                         "message_id": notice["message_id"]}
        return 200, {"status": resp.status_code, "message_id": notice["message_id"],
                     "body": resp.text[:2000]}
    return 404, {"error": f"no admin route {method} {path}"}
