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
"""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

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

_FAULT = re.compile(r"^/_emulator/faults/(?P<ref>[^/]+)$")
_STATUS = re.compile(r"^/_emulator/jobs/(?P<ref>[^/]+)/status$")


def admin(emulator: Controls, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """Answer one admin request: 200 with a body, 400 for bad input, 404 for no such route."""
    try:
        data = json.loads(body) if body else {}
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
