"""What a verified SMN message asks for: pure, a body in, a ``Reading`` out. No I/O.

    SubscriptionConfirmation  ──▶ confirm (GET subscribe_url) + a notice in the topic's channel
    UnsubscribeConfirmation   ──▶ a notice
    Notification, a job named ──▶ event in SMN_EVENTS: an alert, looked up before its post
                                  (bot.alerts.lookup: Stop only while the job can be stopped);
                                  an end event (or one not in SMN_EVENTS): the open alert of the
                                  job resolved with how it ended, and its stop's watch checked now
    Notification, an alarm    ──▶ firing: an alert (Stop when it names a job); ok: resolved
    anything else             ──▶ the subject and message as a notice

The payload ModelArts puts in ``message`` is UNCONFIRMED (huawei-smn.md §5): JSON and plain text
are both read. One alert identity per job (``smn-job:<id>``) and per alarm, so an event resolves
what an earlier one posted, and a redelivered message_id is refused by the queue (``Once``).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from bot.alerts.parse import LIMITS, Alert
from bot.core.settings import SMN_JOB_EVENTS
from bot.modelarts.refs import DEFAULT, V2Job

UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
                  re.IGNORECASE)
ENDED = ("JobFailed", "JobCompleted", "JobTerminated")
ID_FIELDS = ("training_job_id", "job_id", "jobId", "id")
EVENT_FIELDS = ("event", "event_type", "eventType")
NESTS = ("data", "job", "metadata")
LEVELS = {"1": "critical", "2": "major", "3": "minor", "4": "info"}
REQUIRED = ("type", "message_id", "topic_urn", "timestamp", "signature", "message")


@dataclass(frozen=True)
class Reading:
    kind: str                                   # job_event | alarm | notice | subscription...
    alerts: list[Alert] = field(default_factory=list)
    confirm_url: str | None = None              # GET it to confirm the subscription
    event: str | None = None
    job: V2Job | None = None                    # a watch following its stop is checked now


def shape_problem(body: object) -> str | None:
    """Why this is not an SMN message at all (400), or None."""
    if not isinstance(body, dict):
        return "not a JSON object"
    missing = [k for k in REQUIRED if not isinstance(body.get(k), str)]
    if missing:
        return f"not an SMN message: {', '.join(missing)} missing or not a string"
    if not isinstance(body.get("subject", ""), str | None):
        return "not an SMN message: subject is not a string"
    return None


def read(kind: str, body: dict, channel: str, events: tuple[str, ...],
         projects: dict[str, str] | None = None) -> Reading:
    """``projects``: project id -> project name (MODELARTS_PROJECTS): the topic URN's project
    id says whose job it is; an id not among them is looked up in every project."""
    if kind == "SubscriptionConfirmation":
        return Reading("subscription", [_notice(body, channel, "Subscribed to SMN topic "
                       f"`{topic_name(body)}`: its messages will appear here")],
                       confirm_url=str(body.get("subscribe_url") or ""))
    if kind == "UnsubscribeConfirmation":
        return Reading("unsubscribe", [_notice(body, channel, "Unsubscribed from SMN topic "
                                                              f"`{topic_name(body)}`")])
    if kind != "Notification":
        return Reading("ignored")
    message, subject = body["message"], body.get("subject") or ""
    data = _json(message)
    project = (projects or {}).get(topic_project_id(body), DEFAULT)
    alarm = _alarm(data, body, channel, project)
    if alarm:
        return alarm
    job_id = _job_id(data, message, subject)
    if job_id:
        return _job_event(V2Job(job_id, project), _event(data, message, subject), body, channel,
                          events, data)
    return Reading("notice", [_notice(body, channel, subject or "SMN message",
                                      _cut(message, "description"))])


def topic_name(body: dict) -> str:
    return str(body.get("topic_urn", "")).rsplit(":", 1)[-1]


def topic_project_id(body: dict) -> str:
    """``urn:smn:{region}:{project_id}:{topic}`` -> the project id ("" if it is not one)."""
    parts = str(body.get("topic_urn", "")).split(":")
    return parts[3] if len(parts) == 5 else ""


def _job_event(ref: V2Job, event: str | None, body: dict, channel: str,
               events: tuple[str, ...], data: dict) -> Reading:
    name = _first(data, ("job_name", "jobName", "name")) or ""
    key, what = f"smn-job:{ref.training_job_id}", event or "an event"
    subject = body.get("subject") or f"ModelArts job {what}"
    at = time.strftime("%H:%M UTC", time.gmtime())
    alerts = []
    if event in ENDED or event not in events:
        alerts.append(Alert(channel, ref, name[:200], "unknown", "", key=key, resolved=True,
                            ended=f"Ended: {what} at {at}." if event in ENDED else
                            f"{what} at {at}."))
    if event in events:
        alerts.append(Alert(channel, ref, name[:200], "unknown", _cut(f"{what}: {subject}",
                            "summary"), severity="warning" if event != "JobFailed" else "error",
                            lookup="job", key=key))
    return Reading("job_event", alerts, event=event, job=ref if event in ENDED else None)


def _alarm(data: dict, body: dict, channel: str, project: str) -> Reading | None:
    inner = data.get("data") if isinstance(data.get("data"), dict) else {}
    template = data.get("template_variable") if isinstance(
        data.get("template_variable"), dict) else {}
    merged = {**template, **inner, **data}
    name = _first(merged, ("alarm_name", "AlarmRuleName"))
    status = merged.get("alarm_status", merged.get("IsAlarm"))
    if not name or status is None:
        return None
    firing = str(status).lower() in ("alarm", "true", "1", "firing")
    text = " ".join(str(merged.get(k, "")) for k in ("dimension", "ResourceId", "ResourceName",
                                                     "sms_content", "AlarmDesc"))
    job = _job_id(merged, text, body.get("subject") or "")
    ident = _first(merged, ("alarm_id", "AlarmId")) or name
    level = LEVELS.get(str(merged.get("alarm_level", merged.get("AlarmLevel", ""))))
    ref = V2Job(job, project) if job else None
    summary = _cut(f"Alarm {name}", "summary")
    if not firing:
        return Reading("alarm", [Alert(channel, ref, "", "ok", summary, key=f"smn-alarm:{ident}",
                                       resolved=True, ended="Alarm back to OK.")])
    desc = _cut(str(merged.get("sms_content") or merged.get("AlarmDesc") or ""), "description")
    return Reading("alarm", [Alert(channel, ref, "", "alarm", summary, severity=level or
                                   "warning", description=desc or None,
                                   lookup="job" if ref else None, key=f"smn-alarm:{ident}")],
                   job=None)


def _notice(body: dict, channel: str, summary: str, description: str | None = None) -> Alert:
    return Alert(channel, None, "", "", _cut(summary, "summary"), description=description,
                 notice=True, key=f"smn-msg:{body.get('message_id')}")


def _json(message: str) -> dict:
    try:
        data = json.loads(message)
    except (ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _first(data: dict, names: tuple[str, ...]) -> str | None:
    for where in (data, *(data.get(n) for n in NESTS)):
        if isinstance(where, dict):
            for name in names:
                if isinstance(where.get(name), str | int) and str(where[name]).strip():
                    return str(where[name]).strip()
    return None


def _job_id(data: dict, message: str, subject: str) -> str | None:
    given = _first(data, ID_FIELDS)
    if given and UUID.fullmatch(given):
        return given.lower()
    found = UUID.search(message) or UUID.search(subject)
    return found.group(0).lower() if found else None


def _event(data: dict, message: str, subject: str) -> str | None:
    given = _first(data, EVENT_FIELDS)
    if given in SMN_JOB_EVENTS:
        return given
    for text in (message, subject):
        hits = [(m.start(), e) for e in SMN_JOB_EVENTS for m in
                [re.search(rf"\b{e}\b", text)] if m]
        if hits:
            return min(hits)[1]
    return None


def _cut(text: str, limit: str) -> str:
    most = LIMITS[limit]
    clean = "".join(ch if ch.isprintable() or ch in "\n\t" else " " for ch in text).strip()
    return clean if len(clean) <= most else clean[:most - 1] + "…"
