"""The emulator's v2 training jobs: one string id, phases, and the search the v2 API offers.

Phases: Creating, Pending and Running may be terminated; a terminate makes the job Terminating,
and Terminated once the stop delay has passed. Pure data and functions; the Store locks.

Each job keeps an event log, as ``GET .../training-jobs/{id}/events`` shows it: "created" and
"started" from its times, then one entry per change the emulator makes (a terminate, its end, a
phase set by a test: Completed, Failed, Abnormal). The texts are the emulator's, in the style of
the console's (huawei-smn.md §5); the real ones are UNCONFIRMED.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PHASES = ("Creating", "Pending", "Running", "Terminating", "Terminated", "Completed", "Failed",
          "Abnormal")
STOPPABLE = ("Creating", "Pending", "Running")
# secondary_phase shown with each phase (the docs call it internal: text only).
_SECONDARY = {"Pending": "Queuing", "Abnormal": "CreateFailed"}
MAX_LIMIT = 50
MAX_EVENTS_LIMIT = 100
LEVELS = ("Info", "Warning", "Error")
# What a phase set by a test logs: (level, source, message), each in that order.
_PHASE_EVENTS = {
    "Completed": [("Info", "Job", "Training job completed.")],
    "Failed": [("Error", "Task", "[worker-0] Training finished. Exit code 1."),
               ("Error", "Job", "Training job failed.")],
    "Abnormal": [("Error", "Job", "Training job is abnormal.")],
    "Terminated": [("Info", "Job", "Training job terminated by user.")],
}
_FILTER_OPS = {"phase": ("in", "not"), "name": ("like", "in"), "id": ("in",), "kind": ("in",),
               "user_name": ("in",)}


class BadSearch(ValueError):
    """A JobSearches body the API would refuse with ModelArts.2788; the message says why."""


@dataclass
class TrainingJob:
    id: str
    name: str
    phase: str
    create_time: int  # ms since the epoch
    description: str = ""
    user_name: str = ""
    workspace_id: str = "0"
    kind: str = "job"
    start_time: int = 0  # ms since the epoch, 0 before start
    duration: int = 0  # ms, frozen once the job leaves Running
    flavor_id: str = "modelarts.vm.gpu.v100"
    flavor_name: str = "GPU: 1*NVIDIA-V100(32GB) | CPU: 8 vCPUs 64GB"
    flavor_type: str = "GPU"
    node_count: int = 1
    pool_id: str = ""
    pool_name: str = ""
    engine_name: str = "PyTorch"
    engine_version: str = "pytorch_2.1.0-cuda_12.1-py_3.10"
    terminated_at: float | None = None  # clock time when Terminating becomes Terminated
    log: list[dict[str, Any]] = field(default_factory=list)  # events after creation and start

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}")

    def settle(self, now: float) -> TrainingJob:
        """A Terminating job whose stop delay has passed is Terminated."""
        if self.terminated_at is not None and now >= self.terminated_at:
            self._record(self.terminated_at, _PHASE_EVENTS["Terminated"])
            self.phase, self.terminated_at = "Terminated", None
        return self

    def set_phase(self, phase: str, now: float) -> None:
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}")
        self.duration = self.running_ms(now)
        self.phase, self.terminated_at = phase, None
        if phase == "Running" and not self.start_time:
            self.start_time = int(now * 1000)
        self._record(now, _PHASE_EVENTS.get(phase, []))

    def terminate(self, now: float, delay: float | None) -> None:
        """Running (or about to) becomes Terminating; Terminated after ``delay`` (None: never)."""
        self.duration = self.running_ms(now)
        self.phase = "Terminating"
        self.terminated_at = None if delay is None else now + delay
        self._record(now, [("Info", "Job", "Training job is being terminated by user.")])

    def _record(self, at: float, events: list[tuple[str, str, str]]) -> None:
        """Log ``events`` at clock time ``at`` (s)."""
        for level, source, message in events:
            self.log.append({"time": int(at * 1000), "level": level, "message": message,
                             "source": source})

    def events(self) -> list[dict[str, Any]]:
        """Every event, oldest first."""
        out = [{"time": self.create_time, "level": "Info", "source": "Job",
                "message": "Training job created."}]
        if self.start_time:
            out.append({"time": self.start_time, "level": "Info", "source": "Job",
                        "message": "Training job started."})
        return sorted(out + self.log, key=lambda e: e["time"])

    def running_ms(self, now: float) -> int:
        if self.phase == "Running" and self.start_time:
            return max(0, int(now * 1000) - self.start_time)
        return self.duration

    def to_api(self, now: float) -> dict[str, Any]:
        """The job object as GET /v2/{project_id}/training-jobs/{id} returns it."""
        resource: dict[str, Any] = {
            "policy": "regular", "flavor_id": self.flavor_id, "flavor_name": self.flavor_name,
            "node_count": self.node_count, "flavor_detail": {"flavor_type": self.flavor_type}}
        if self.pool_id:
            resource |= {"pool_id": self.pool_id, "pool_name": self.pool_name}
        secondary = _SECONDARY.get(self.phase, self.phase)
        return {
            "kind": self.kind,
            "metadata": {"id": self.id, "name": self.name, "description": self.description,
                         "create_time": self.create_time, "user_name": self.user_name,
                         "workspace_id": self.workspace_id},
            "status": {"phase": self.phase, "secondary_phase": secondary,
                       "duration": self.running_ms(now), "start_time": self.start_time,
                       "tasks": [f"worker-{n}" for n in range(self.node_count)]},
            "algorithm": {"engine": {"engine_name": self.engine_name,
                                     "engine_version": self.engine_version}},
            "spec": {"resource": resource},
        }


def from_seed(raw: dict[str, Any], now_ms: int) -> TrainingJob:
    """One ``training_jobs:`` entry of the seed file; missing times are about an hour ago."""
    fields = {k: v for k, v in raw.items() if k in TrainingJob.__dataclass_fields__}
    fields.pop("terminated_at", None)
    fields.pop("log", None)
    fields.setdefault("create_time", now_ms - 3_600_000)
    if fields.get("phase") == "Running" and "start_time" not in fields:
        fields["start_time"] = now_ms - 3_000_000
    job = TrainingJob(**fields)
    ended = (job.start_time or job.create_time) + job.duration   # a seeded end: its events too
    job._record(ended / 1000, _PHASE_EVENTS.get(job.phase, []))
    return job


def event_page(events: list[dict[str, Any]], query: dict[str, str]) -> dict[str, Any]:
    """A page of GET .../training-jobs/{id}/events: ``offset`` (entries skipped), ``limit``
    1-100 (default 50), ``order`` asc (default) or desc by time, ``level`` Info|Warning|Error.
    Raises BadSearch for anything else."""
    try:
        offset, limit = int(query.get("offset", 0)), int(query.get("limit", 50))
    except ValueError:
        raise BadSearch("offset and limit must be integers") from None
    order, level = query.get("order", "asc"), query.get("level")
    if not (0 <= offset <= 100_000 and 1 <= limit <= MAX_EVENTS_LIMIT):
        raise BadSearch(f"offset must be 0 or more and limit 1-{MAX_EVENTS_LIMIT}")
    if order not in ("asc", "desc") or (level is not None and level not in LEVELS):
        raise BadSearch("order must be asc or desc, level Info, Warning or Error")
    chosen = sorted((e for e in events if level is None or e["level"] == level),
                    key=lambda e: e["time"])
    if order == "desc":       # newest first; of two at the same time, the one logged last
        chosen.reverse()
    return {"total": len(chosen), "limit": limit, "offset": offset, "order": order,
            "events": chosen[offset : offset + limit]}


def search(jobs: list[dict[str, Any]], body: object) -> dict[str, Any]:
    """A page of POST /v2/{project_id}/training-job-searches over API job objects.

    ``offset`` is the page index from 0 (the docs' reading), ``limit`` 1-50 (default 10), sorted
    by ``create_time``, ``desc`` unless ``order`` is ``asc``. Filters: phase in/not, name
    like/in, id/kind/user_name in. Raises BadSearch for anything else.
    """
    if not isinstance(body, dict):
        raise BadSearch("the body must be a JSON object")
    offset, limit = body.get("offset", 0), body.get("limit", 10)
    if not _int_in(offset, 0, 100_000) or not _int_in(limit, 1, MAX_LIMIT):
        raise BadSearch(f"offset must be 0 or more and limit 1-{MAX_LIMIT}")
    sort_by, order = body.get("sort_by", "create_time"), body.get("order", "desc")
    if sort_by != "create_time" or order not in ("asc", "desc"):
        raise BadSearch("sort_by must be create_time and order asc or desc")
    workspace = body.get("workspace_id", "0")
    mine = [j for j in jobs if j["metadata"]["workspace_id"] == workspace]
    matched = [j for j in mine if all(_matches(j, f) for f in _filters(body.get("filters")))]
    matched.sort(key=lambda j: j["metadata"]["create_time"], reverse=order == "desc")
    return {"total": len(mine), "count": len(matched), "limit": limit, "offset": offset,
            "sort_by": sort_by, "order": order, "group_by": "", "workspace_id": workspace,
            "ai_project": "default-ai-project", "train_type": "job",
            "items": matched[offset * limit : (offset + 1) * limit]}


def _int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _filters(raw: object) -> list[tuple[str, str, list[str]]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadSearch("filters must be a list")
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise BadSearch("each filter must be an object")
        key, op, value = item.get("key"), item.get("operator"), item.get("value")
        if op not in _FILTER_OPS.get(key, ()):  # type: ignore[arg-type]
            raise BadSearch(f"unsupported filter {key!r} {op!r}")
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BadSearch(f"filter {key!r}: value must be a list of strings")
        out.append((key, op, value))
    return out


def _matches(job: dict[str, Any], rule: tuple[str, str, list[str]]) -> bool:
    key, op, values = rule
    field = {"phase": job["status"]["phase"], "kind": job["kind"]}.get(key)
    if field is None:
        field = job["metadata"][key]
    if op == "like":
        return any(v.lower() in field.lower() for v in values)
    return (field in values) != (op == "not")
