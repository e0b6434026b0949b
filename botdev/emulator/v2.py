"""The v2 training-job routes: what each answers, as (HTTP status, JSON body).

Errors use the v2 body ``{"error_code", "error_msg"}``. Choices where the docs are silent:
- a path id that is not 32-36 of ``[0-9a-zA-Z-]``: 400 ModelArts.2788 (invalid parameter), the
  same as any other bad parameter, rather than the gateway's 404;
- a terminate of a job not in Creating/Pending/Running (also an already Terminated one): 409
  ModelArts.2796; an unknown id: 400 ModelArts.2775, as the docs and Terraform have it.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bot.modelarts.refs import V2_ID, V2Job
from botdev.emulator.state import StopRefused, Store
from botdev.emulator.training import BadSearch, event_page, search

_V2 = r"^/v2/(?P<project>[^/]+)"
JOB = re.compile(_V2 + r"/training-jobs/(?P<id>[^/]+)$")
ACTIONS = re.compile(_V2 + r"/training-jobs/(?P<id>[^/]+)/actions$")
EVENTS = re.compile(_V2 + r"/training-jobs/(?P<id>[^/]+)/events$")
SEARCHES = re.compile(_V2 + r"/training-job-searches$")

Reply = tuple[int, dict[str, Any]]


def error(status: int, code: str, msg: str) -> Reply:
    return status, {"error_code": code, "error_msg": msg}


def ref_of(raw_id: str) -> V2Job | None:
    """The V2Job named in the path, or None when the id is malformed."""
    return V2Job(raw_id) if V2_ID.match(raw_id) else None


def bad_id(raw_id: str) -> Reply:
    return error(400, "ModelArts.2788", f"Invalid parameter: training_job_id {raw_id[:64]!r} "
                 "must be 32-36 letters, digits or '-'")


def not_found(ref: V2Job) -> Reply:
    return error(400, "ModelArts.2775",
                 f"TrainingJobNotFound: Training job (ID: {ref.training_job_id}) not found")


def detail(store: Store, ref: V2Job) -> Reply:
    job = store.get(ref)
    return (200, job) if job else not_found(ref)


def events(store: Store, ref: V2Job, query: dict[str, str]) -> Reply:
    """GET .../training-jobs/{id}/events (botdev.emulator.training.event_page)."""
    found = store.events(ref)
    if found is None:
        return not_found(ref)
    try:
        return 200, event_page(found, query)
    except BadSearch as exc:
        return error(400, "ModelArts.2788", f"Invalid parameter: {exc}")


def action(store: Store, ref: V2Job, body: bytes) -> Reply:
    try:
        data = json.loads(body)
    except ValueError:
        return error(400, "ModelArts.2787", "Invalid JSON body")
    kind = data.get("action_type") if isinstance(data, dict) else None
    if kind != "terminate":
        return error(400, "ModelArts.2812", f"UnsupportedActionType: {str(kind)[:32]!r} is not "
                     "supported; use terminate")
    try:
        return 202, store.stop(ref)
    except KeyError:
        return not_found(ref)
    except StopRefused as exc:
        return error(409, "ModelArts.2796", f"NotAllowedToTerminate: The job is {exc.args[0]}; "
                     "only Creating, Pending or Running jobs can be terminated.")


def searches(store: Store, body: bytes) -> Reply:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return error(400, "ModelArts.2787", "Invalid JSON body")
    try:
        return 200, search(store.training_jobs(), data)
    except BadSearch as exc:
        return error(400, "ModelArts.2788", f"Invalid parameter: {exc}")
