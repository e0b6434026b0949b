"""Validate an alert body: the generic JSON format or Alertmanager's webhook (version "4").

Pure: bytes in, a list of ``Alert`` or a dict ``{field: what is wrong}`` out. No I/O.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import urlsplit

from bot.core.errors import InvalidIdError
from bot.core.records import known
from bot.modelarts.refs import (
    DEFAULT,
    JobRef,
    V1Job,
    V2Job,
    parse_ref,
    validate_id,
    validate_project,
    validate_training_job_id,
)

MAX_BODY = 64 * 1024
MAX_ALERTS = 500
# Channel ids only: the queue is per channel, and "#alerts" and "C0123" would be two queues for
# one channel, so Slack's per-channel limit and the order could not be kept.
CHANNEL = re.compile(r"\A[CGD][A-Z0-9]{2,30}\Z")
LIMITS = {"job_name": 200, "status": 64, "summary": 1000, "severity": 32, "description": 2000,
          "url": 2000}
Errors = dict[str, str]


@dataclass(frozen=True)
class Alert:
    """One alert to post (or resolve). ``ref`` None: no job known, so no Stop button.

    ``lookup``: what the dispatcher looks up just before posting (bot.alerts.lookup): "job" (the
    ref's name and phase; Stop only while it can be stopped) or "name" (the one running job
    named ``job_name``). ``key`` replaces the job + summary identity (SMN: one per job or
    alarm). ``ended``: the line a resolve shows ("Ended: JobFailed at 03:12 UTC").
    ``notice``: a plain message (SMN subscription, an unrecognised message). ``link``: the
    job's console page ("" for none)."""

    channel: str
    ref: JobRef | None
    job_name: str
    status: str
    summary: str
    severity: str | None = None
    url: str | None = None
    description: str | None = None
    resolved: bool = False
    lookup: str | None = None
    key: str | None = None
    ended: str | None = None
    notice: bool = False
    stop: bool = True
    link: str = ""      # the job's console page, set by the look-up (bot.alerts.lookup)

    @property
    def identity(self) -> str:
        """What makes two alerts "the same": ``key``, else the job and the summary."""
        about = self.key or f"{self.ref.key if self.ref else self.job_name}\0{self.summary}"
        return hashlib.sha256(about.encode()).hexdigest()[:32]

    @property
    def stoppable(self) -> bool:
        return self.ref is not None and self.stop and not self.notice

    def to_dict(self) -> dict:
        return {**asdict(self), "ref": self.ref.key if self.ref else None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict) -> Alert:
        ref = data.get("ref")
        return cls(**{**known(cls, data), "ref": parse_ref(ref) if ref else None})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Alert:
        return cls.from_dict(json.loads(raw))


def parse(raw: bytes, default_channel: str | None = None) -> list[Alert] | Errors:
    if len(raw) > MAX_BODY:
        return {"body": f"larger than {MAX_BODY // 1024} KiB"}
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return {"body": "not valid JSON"}
    except RecursionError:  # "[" * 30000 fits in 64 KiB and is deeper than Python's stack
        return {"body": "nested too deeply"}
    if not isinstance(data, dict):
        return {"body": "must be a JSON object"}
    if "alerts" in data:
        return _alertmanager(data, default_channel)
    return _generic(data, default_channel)


def _generic(data: dict, default_channel: str | None) -> list[Alert] | Errors:
    errors: Errors = {}
    by_name = _by_name(data)
    out = {"channel": _channel(data.get("channel"), default_channel, "channel", errors),
           "ref": None if by_name else _ref(data, "", errors)}
    out["job_name"] = _text(data.get("job_name"), "job_name", errors, required=by_name) or ""
    out["status"] = _text(data.get("status"), "status", errors) or "unknown"
    out["summary"] = _text(data.get("summary"), "summary", errors, required=True)
    out["severity"] = _text(data.get("severity"), "severity", errors)
    out["url"] = _url(data.get("url"), "url", errors)
    # By id or by name, the dispatcher looks the job up before posting (bot.alerts.lookup).
    return errors or [Alert(**out, lookup="name" if by_name else "job")]


def _by_name(fields: dict) -> bool:
    """Named only by ``job_name``: no training_job_id, job_id or version_id."""
    return bool(fields.get("job_name")) and all(
        fields.get(k) is None for k in ("training_job_id", "job_id", "version_id"))


def _alertmanager(data: dict, default_channel: str | None) -> list[Alert] | Errors:
    errors: Errors = {}
    if data.get("version") != "4":
        errors["version"] = 'must be "4" (the Alertmanager webhook version)'
    alerts = data.get("alerts")
    if not isinstance(alerts, list) or not alerts:
        errors["alerts"] = "must be a non-empty list"
        return errors
    if len(alerts) > MAX_ALERTS:
        errors["alerts"] = f"at most {MAX_ALERTS} alerts in one body"
        return errors
    out = [_am_alert(a, f"alerts[{i}]", default_channel, errors) for i, a in enumerate(alerts)]
    return errors or [a for a in out if a is not None]


def _am_alert(entry: Any, at: str, default_channel: str | None, errors: Errors) -> Alert | None:
    if not isinstance(entry, dict):
        errors[at] = "must be an object"
        return None
    before = len(errors)
    state = entry.get("status")
    if state not in ("firing", "resolved"):
        errors[f"{at}.status"] = 'must be "firing" or "resolved"'
    labels, notes = entry.get("labels"), entry.get("annotations") or {}
    if not isinstance(labels, dict):
        errors[f"{at}.labels"] = "must be an object"
        return None
    if not isinstance(notes, dict):
        errors[f"{at}.annotations"] = "must be an object"
        notes = {}
    lab = f"{at}.labels"
    channel = _channel(labels.get("slack_channel"), default_channel, f"{lab}.slack_channel", errors)
    ref = _ref(labels, f"{lab}.", errors)
    job_name = _text(labels.get("job_name"), f"{lab}.job_name", errors, limit="job_name") or ""
    status = _text(labels.get("job_status"), f"{lab}.job_status", errors, limit="status")
    summary_raw = notes.get("summary") or notes.get("description") or labels.get("alertname")
    summary = _text(summary_raw, f"{at}.annotations.summary", errors, required=True,
                    limit="summary")
    description = _text(notes.get("description"), f"{at}.annotations.description", errors)
    severity = _text(labels.get("severity"), f"{lab}.severity", errors)
    url = _url(notes.get("url") or entry.get("generatorURL"), f"{at}.annotations.url", errors)
    if len(errors) > before:
        return None
    return Alert(channel, ref, job_name, status or "unknown", summary, severity,
                 url, description if description != summary else None, state == "resolved")


# -- field checks: each returns the clean value, or records an error and returns None ---------
def _channel(value: Any, default: str | None, name: str, errors: Errors) -> str:
    if value in (None, ""):
        if default:
            return default
        errors[name] = "missing, and no default alert channel (ALERTS_CHANNEL) is set"
        return ""
    if not isinstance(value, str) or not CHANNEL.match(value):
        errors[name] = "must be a Slack channel id, like C0123ABCD"
        return ""
    return value


def _ref(fields: dict, at: str, errors: Errors) -> JobRef | None:
    """``training_job_id`` (v2), else ``job_id`` + ``version_id`` (v1 jobs); ``project``
    optional (none: the job is looked up in every project)."""
    project = DEFAULT
    if fields.get("project") not in (None, ""):
        try:
            project = validate_project(fields["project"])
        except InvalidIdError as exc:
            errors[f"{at}project"] = str(exc)
            return None
    if fields.get("training_job_id") is not None:
        try:
            return V2Job(validate_training_job_id(fields["training_job_id"]), project)
        except InvalidIdError as exc:
            errors[f"{at}training_job_id"] = str(exc)
            return None
    if fields.get("job_id") is None and fields.get("version_id") is None:
        errors[f"{at}training_job_id"] = "missing (or job_id and version_id, for v1 jobs)"
        return None
    job = _id(fields.get("job_id"), f"{at}job_id", errors)
    version = _id(fields.get("version_id"), f"{at}version_id", errors)
    return V1Job(job, version, project) if job and version else None


def _id(value: Any, name: str, errors: Errors) -> int:
    if value is None:
        errors[name] = "missing"
        return 0
    try:
        return validate_id(value, name.rsplit(".", 1)[-1])
    except InvalidIdError as exc:
        errors[name] = str(exc)
        return 0


def _text(value: Any, name: str, errors: Errors, *, required: bool = False,
          limit: str | None = None) -> str | None:
    if value is None or value == "":
        if required:
            errors[name] = "missing"
        return None
    most = LIMITS.get(limit or name.rsplit(".", 1)[-1], 200)
    if not isinstance(value, str):
        errors[name] = "must be a string"
    elif len(value) > most:
        errors[name] = f"longer than {most} characters"
    elif any(ord(ch) < 32 and ch not in "\n\t" for ch in value):
        errors[name] = "contains control characters"
    elif value.strip():
        return value.strip()
    elif required:
        errors[name] = "missing"
    return None


def _url(value: Any, name: str, errors: Errors) -> str | None:
    text = _text(value, name, errors, limit="url")
    if text is None:
        return None
    parts = urlsplit(text)
    if (parts.scheme not in ("http", "https") or not parts.netloc
            or any(c in "<>|" or c.isspace() or not c.isprintable() for c in text)):
        errors[name] = "must be an http(s) URL"
        return None
    return text
