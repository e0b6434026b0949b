"""The emulator's jobs, versions, faults and stop counts. Every method is thread-safe."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

RUNNING, KILLING, KILLED = 8, 9, 12
DEFAULT_SEED = Path(__file__).with_name("default_jobs.yml")
FAULT_KINDS = ("html_500", "slow", "failure", "drop")


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
    """What goes wrong with one job's requests.

    kind: ``html_500`` (HTTP 500, HTML body), ``slow`` (wait ``delay`` seconds ``when`` "before"
    or "after" doing the work), ``failure`` (``is_success: false`` with ``error_code`` and
    ``error_msg`` under the name ``field``, HTTP ``http_status``), ``drop`` (close the connection
    with no answer, ``when`` "before" or "after" doing the work).
    on: which requests: "stop", "get" (version detail and list) or "any".
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
        if self.on not in ("stop", "get", "any") or self.when not in ("before", "after"):
            raise ValueError("fault 'on' must be stop/get/any and 'when' before/after")
        if self.field not in ("error_msg", "error_message"):
            raise ValueError("fault 'field' must be error_msg or error_message")


class StopRefused(Exception):
    """The version is not running, so it cannot be stopped."""


class Store:
    """Jobs by id, plus faults and stop counts, behind one lock. Time comes from ``clock``."""

    def __init__(self, jobs: list[Job], stop_delay: float, clock: Callable[[], float]) -> None:
        self._jobs = {job.job_id: job for job in jobs}
        self.stop_delay = stop_delay
        self._clock = clock
        self._faults: dict[int, Fault] = {}
        self._stops: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()

    def job(self, job_id: int) -> dict[str, Any] | None:
        with self._lock:
            job = self._jobs.get(job_id)
            return self._job_dict(job) if job else None

    def jobs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self._job_dict(job) for job in sorted(self._jobs.values(),
                                                          key=lambda j: j.job_id)]

    def version(self, job_id: int, version_id: int) -> dict[str, Any] | None:
        with self._lock:
            found = self._find(job_id, version_id)
            return self._version_dict(*found) if found else None

    def stop(self, job_id: int, version_id: int) -> None:
        """Count the call; RUNNING becomes KILLING. KeyError if unknown, else StopRefused."""
        with self._lock:
            found = self._find(job_id, version_id)
            if not found:
                raise KeyError(job_id)
            self._stops[(job_id, version_id)] = self._stops.get((job_id, version_id), 0) + 1
            version = found[1]
            if version.status != RUNNING:
                raise StopRefused(version.status)
            version.status = KILLING
            if version.start_time:
                version.duration = max(0, int(self._clock() * 1000) - version.start_time)
            version.killed_at = self._clock() + self.stop_delay

    def stop_count(self, job_id: int, version_id: int) -> int:
        with self._lock:
            return self._stops.get((job_id, version_id), 0)

    def stop_counts(self) -> dict[str, int]:
        with self._lock:
            return {f"{job}/{version}": n for (job, version), n in self._stops.items()}

    def set_status(self, job_id: int, version_id: int, status: int) -> None:
        with self._lock:
            found = self._find(job_id, version_id)
            if not found:
                raise KeyError(job_id)
            found[1].status = status
            found[1].killed_at = None

    def set_fault(self, job_id: int, fault: Fault) -> None:
        with self._lock:
            self._faults[job_id] = fault

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def take_fault(self, job_id: int, route: str) -> Fault | None:
        """The fault for this request, counting it against ``times``."""
        with self._lock:
            fault = self._faults.get(job_id)
            if not fault or fault.on not in (route, "any"):
                return None
            if fault.times is not None:
                left = fault.times - 1
                if left > 0:
                    self._faults[job_id] = replace(fault, times=left)
                else:
                    del self._faults[job_id]
            return fault

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


def load_jobs(path: str | Path | None = None) -> list[Job]:
    """Jobs from a YAML or JSON seed file (JSON is YAML too); the default set when no path."""
    data = yaml.safe_load(Path(path or DEFAULT_SEED).read_text(encoding="utf-8"))
    now_ms = int(time.time() * 1000)
    jobs = []
    for raw in data["jobs"]:
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
