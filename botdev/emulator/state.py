"""The emulator's jobs (v1 versions and v2 training jobs), faults and stop counts.

Everything is keyed by the project's JobRef (V1Job | V2Job). Every Store method is thread-safe.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from bot.modelarts.refs import JobRef, V1Job, V2Job
from botdev.emulator.training import STOPPABLE, TrainingJob, from_seed

RUNNING, KILLING, KILLED = 8, 9, 12
DEFAULT_SEED = Path(__file__).with_name("default_jobs.yml")
FAULT_KINDS = ("html_500", "slow", "failure", "drop", "stuck")


@dataclass
class Version:
    version_id: int
    version_name: str
    status: int
    create_time: int  # ms since the epoch, as the API gives it
    start_time: int | None = None
    duration: int = 0  # ms
    killed_at: float | None = None  # clock time when a KILLING version becomes KILLED


@dataclass
class Job:
    job_id: int
    job_name: str
    job_desc: str
    versions: dict[int, Version] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """What goes wrong with one job's requests (a v1 fault: that version only).

    kind: ``html_500`` (HTTP 500, HTML body), ``slow`` (wait ``delay`` seconds ``when`` "before"
    or "after" doing the work), ``failure`` (``error_code`` and ``error_msg`` under the name
    ``field``, HTTP ``http_status``; v1 adds ``is_success: false``), ``drop`` (close the
    connection with no answer, ``when`` "before" or "after" doing the work), ``stuck`` (the stop
    is accepted, the job goes KILLING / Terminating and never reaches its final state; stops
    only).
    Two stops that time out: ``slow`` with when="after" and a ``delay`` past the client's timeout
    is a stop that took effect; ``drop`` with when="before" is one that did not.
    on: which requests: "stop", "get" (detail and v1 version list), "events" (a v2 job's event
    log) or "any".
    times: how many requests it applies to; None for all.
    """

    kind: str
    on: str = "stop"
    delay: float = 0.0
    when: str = "before"
    http_status: int = 400
    error_code: str = "ModelArts.0104"
    error_msg: str = "Parameter error"
    field: str = "error_msg"
    times: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(FAULT_KINDS)}")
        if self.on not in ("stop", "get", "events", "any") or self.when not in ("before",
                                                                                "after"):
            raise ValueError("fault 'on' must be stop/get/events/any and 'when' before/after")
        if self.field not in ("error_msg", "error_message"):
            raise ValueError("fault 'field' must be error_msg or error_message")
        if self.kind == "stuck" and self.on in ("get", "events"):
            raise ValueError("a stuck fault applies to stops: 'on' must be stop or any")


class StopRefused(Exception):
    """The job is not in a state that allows a stop."""


class Store:
    """v1 jobs and v2 training jobs, plus faults and stop counts, behind one lock.

    Time comes from ``clock``.
    """

    def __init__(self, jobs: list[Job], training: list[TrainingJob], stop_delay: float,
                 clock: Callable[[], float]) -> None:
        self._jobs = {job.job_id: job for job in jobs}
        self._training = {job.id: job for job in training}
        self.stop_delay = stop_delay
        self._clock = clock
        self._faults: dict[JobRef, Fault] = {}
        self._held: set[JobRef] = set()  # the next stop of these never finishes (stuck)
        self._stops: dict[JobRef, int] = {}
        self._bulk = itertools.count(1)
        self._lock = threading.Lock()
        # Called (outside the lock) with each ref whose stop was accepted: the emulator's SMN
        # events watch a terminated v2 job from there.
        self.on_stop: Callable[[JobRef], None] | None = None

    def job(self, job_id: int) -> dict[str, Any] | None:
        """A v1 job with all its versions, or None."""
        with self._lock:
            job = self._jobs.get(job_id)
            return self._job_dict(job) if job else None

    def jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._job_dict(job) for job in sorted(self._jobs.values(),
                                                          key=lambda j: j.job_id)]

    def training_jobs(self) -> list[dict[str, Any]]:
        """Every v2 training job as the API shows it."""
        with self._lock:
            now = self._clock()
            return [j.settle(now).to_api(now) for j in self._training.values()]

    def get(self, ref: JobRef) -> dict[str, Any] | None:
        """The current fields of a v1 version or a v2 job (the API's shape), or None."""
        with self._lock:
            return self._dict(ref)

    def events(self, ref: V2Job) -> list[dict[str, Any]] | None:
        """A v2 job's events, oldest first (``TrainingJob.events``), or None if unknown."""
        with self._lock:
            job = self._training.get(ref.training_job_id)
            return job.settle(self._clock()).events() if job else None

    def stop(self, ref: JobRef) -> dict[str, Any]:
        """Count the call and start the stop; the fields after it (as ``get``).

        KeyError if unknown; StopRefused (the status or phase) if it may not be stopped.
        """
        with self._lock:
            if self._dict(ref) is None:
                raise KeyError(ref)
            self._stops[ref] = self._stops.get(ref, 0) + 1
            delay = None if ref in self._held else self.stop_delay
            self._held.discard(ref)
            match ref:
                case V1Job():
                    self._stop_version(self._find(ref.job_id, ref.version_id)[1], delay)
                case V2Job():
                    job = self._training[ref.training_job_id]
                    if job.phase not in STOPPABLE:
                        raise StopRefused(job.phase)
                    job.terminate(self._clock(), delay)
            after = self._dict(ref)
        if self.on_stop is not None:
            self.on_stop(ref)
        return after  # type: ignore[return-value]

    def stop_count(self, ref: JobRef) -> int:
        with self._lock:
            return self._stops.get(ref, 0)

    def stop_counts(self) -> dict[str, int]:
        """Stop calls by ``job_id/version_id`` (v1) or training_job_id (v2)."""
        with self._lock:
            return {_count_key(ref): n for ref, n in self._stops.items()}

    def set_status(self, ref: JobRef, status: int | str) -> None:
        """A v1 status number, or a v2 phase name. KeyError if unknown, ValueError if invalid."""
        with self._lock:
            match ref:
                case V1Job():
                    found = self._find(ref.job_id, ref.version_id)
                    if not found or isinstance(status, bool) or not isinstance(status, int):
                        raise KeyError(ref) if not found else ValueError("a v1 status is a number")
                    found[1].status, found[1].killed_at = status, None
                case V2Job():
                    if not isinstance(status, str):
                        raise ValueError("a v2 status is a phase name, like Running")
                    self._training[ref.training_job_id].set_phase(status, self._clock())

    def add_training_jobs(self, n: int, name_prefix: str, phase: str,
                          **fields: Any) -> list[V2Job]:
        """``n`` new v2 jobs, each created 1 s after the one before, the newest about now."""
        if not 0 < n <= 10_000:
            raise ValueError("n must be 1-10000")
        with self._lock:
            now_ms = int(self._clock() * 1000)
            newest = max((j.create_time for j in self._training.values()), default=0)
            first = max(now_ms - n * 1000, newest + 1)
            jobs = [TrainingJob(id=str(uuid.uuid4()), name=f"{name_prefix}{next(self._bulk)}",
                                phase=phase, create_time=first + i * 1000, **fields)
                    for i in range(n)]
            for job in jobs:
                if phase == "Running":
                    job.start_time = job.start_time or job.create_time + 60_000
                self._training[job.id] = job
            return [V2Job(job.id) for job in jobs]

    def set_fault(self, ref: JobRef, fault: Fault) -> None:
        with self._lock:
            self._faults[ref] = fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self._held.clear()

    def take_fault(self, refs: list[JobRef], route: str) -> Fault | None:
        """The fault for this request (the first of ``refs`` that has one), counting it against
        ``times``. A stuck fault marks the ref so that its stop never finishes."""
        with self._lock:
            for ref in refs:
                fault = self._faults.get(ref)
                if not fault or fault.on not in (route, "any"):
                    continue
                if fault.kind == "stuck" and route != "stop":
                    continue
                if fault.times is not None:
                    left = fault.times - 1
                    if left > 0:
                        self._faults[ref] = replace(fault, times=left)
                    else:
                        del self._faults[ref]
                if fault.kind == "stuck":
                    self._held.add(ref)
                return fault
            return None

    def versions_of(self, job_id: int) -> list[JobRef]:
        with self._lock:
            job = self._jobs.get(job_id)
            return [V1Job(job_id, vid) for vid in sorted(job.versions)] if job else []

    def _dict(self, ref: JobRef) -> dict[str, Any] | None:
        match ref:
            case V1Job():
                found = self._find(ref.job_id, ref.version_id)
                return self._version_dict(*found) if found else None
            case V2Job():
                job = self._training.get(ref.training_job_id)
                now = self._clock()
                return job.settle(now).to_api(now) if job else None

    def _stop_version(self, version: Version, delay: float | None) -> None:
        if version.status != RUNNING:
            raise StopRefused(version.status)
        version.status = KILLING
        if version.start_time:
            version.duration = max(0, int(self._clock() * 1000) - version.start_time)
        version.killed_at = None if delay is None else self._clock() + delay

    def _find(self, job_id: int, version_id: int) -> tuple[Job, Version] | None:
        job = self._jobs.get(job_id)
        version = job.versions.get(version_id) if job else None
        if not job or not version:
            return None
        return job, self._settle(version)

    def _settle(self, version: Version) -> Version:
        """A KILLING version whose stop delay has passed is KILLED."""
        if version.killed_at is not None and self._clock() >= version.killed_at:
            version.status, version.killed_at = KILLED, None
        return version

    def _version_dict(self, job: Job, version: Version) -> dict[str, Any]:
        out = {"job_id": job.job_id, "job_name": job.job_name, "job_desc": job.job_desc}
        out.update(asdict(version))
        del out["killed_at"]
        if version.status == RUNNING and version.start_time:
            out["duration"] = max(0, int(self._clock() * 1000) - version.start_time)
        return out

    def _job_dict(self, job: Job) -> dict[str, Any]:
        versions = [self._version_dict(job, self._settle(job.versions[vid]))
                    for vid in sorted(job.versions)]
        latest = versions[-1] if versions else {}
        return {"job_id": job.job_id, "job_name": job.job_name, "job_desc": job.job_desc,
                "version_id": latest.get("version_id"), "status": latest.get("status"),
                "create_time": latest.get("create_time"), "duration": latest.get("duration", 0),
                "version_count": len(versions), "versions": versions}


def _count_key(ref: JobRef) -> str:
    match ref:
        case V1Job():
            return f"{ref.job_id}/{ref.version_id}"
        case V2Job():
            return ref.training_job_id


def load_seed(path: str | Path | None = None,
              project: str | None = None) -> tuple[list[Job], list[TrainingJob]]:
    """v1 ``jobs:`` and v2 ``training_jobs:`` from a YAML or JSON seed file (JSON is YAML too);
    the default set when no path. Either list may be absent. ``project``: the jobs of that
    entry of the file's ``projects:`` section instead (another project, its own emulator)."""
    data = yaml.safe_load(Path(path or DEFAULT_SEED).read_text(encoding="utf-8"))
    if project is not None:
        data = (data.get("projects") or {}).get(project)
        if not isinstance(data, dict):
            raise ValueError(f"the seed has no project {project!r} under projects:")
    now_ms = int(time.time() * 1000)
    training = [from_seed(raw, now_ms) for raw in data.get("training_jobs") or []]
    return _v1_jobs(data.get("jobs") or [], now_ms), training


def _v1_jobs(raws: list[dict[str, Any]], now_ms: int) -> list[Job]:
    jobs = []
    for raw in raws:
        job = Job(int(raw["job_id"]), str(raw["job_name"]), str(raw.get("job_desc", "")))
        for v in raw["versions"]:
            version = Version(
                version_id=int(v["version_id"]),
                version_name=str(v.get("version_name", "V0001")),
                status=int(v["status"]),
                create_time=int(v.get("create_time", now_ms - 3_600_000)),
                start_time=v.get("start_time", now_ms - 3_000_000),
                duration=int(v.get("duration", 0)),
            )
            job.versions[version.version_id] = version
        jobs.append(job)
    return jobs
