"""Typed values the ModelArts client returns: a job (a v1 version or a v2 training job), and the
outcome of a call. Both job types answer the same questions (``ref``, ``name``, ``state``,
``stoppable``, ``stopping``, ``final``), so the flow never asks which API a job came from."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.modelarts.refs import DEFAULT, V1Job, V2Job, validate_id  # noqa: F401 - re-exported

STATUS_NAMES = {
    0: "UNKNOWN", 1: "INIT", 2: "IMAGE_CREATING", 3: "IMAGE_FAILED", 4: "SUBMIT_TRYING",
    5: "SUBMIT_FAILED", 6: "DELETE_FAILED", 7: "WAITING", 8: "RUNNING", 9: "KILLING",
    10: "COMPLETED", 11: "FAILED", 12: "KILLED", 13: "CANCELED", 14: "LOST", 15: "SCALING",
    16: "SUBMIT_MODEL_FAILED", 17: "DEPLOY_SERVICE_FAILED", 18: "CHECK_INIT", 19: "CHECK_RUNNING",
    20: "CHECK_RUNNING_COMPLETED", 21: "CHECK_FAILED", 22: "MOUNT_FAILED",
}
RUNNING, KILLING = 8, 9
# v1 statuses after which nothing more happens to the version (the API labels none "terminal":
# these are the ended, failed and cancelled ones of the status table).
V1_FINAL = frozenset({3, 5, 6, 10, 11, 12, 13, 14, 16, 17, 21, 22})

STOPPABLE_PHASES = ("Creating", "Pending", "Running")   # terminate is allowed [v2 ref §2]
FINAL_PHASES = ("Terminated", "Completed", "Failed", "Abnormal")  # Abnormal: UNCONFIRMED, final
TERMINATING = "Terminating"

# Codes the client makes itself, for failures that never got a ModelArts answer.
REFUSED = "BOT.CONNECTION_REFUSED"   # nothing reached the server
TIMEOUT = "BOT.TIMEOUT"              # the request may have reached it: outcome unknown
TRANSPORT = "BOT.TRANSPORT_ERROR"    # other network failure
BAD_RESPONSE = "BOT.BAD_RESPONSE"    # an answer we could not read (HTML, empty, not JSON)
REDIRECT = "BOT.REDIRECT"            # a 3xx: never followed, the credentials stay home


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"STATUS_{status}")


@dataclass(frozen=True)
class JobVersion:
    """A v1 training job version."""

    job_id: int
    version_id: int
    job_name: str
    version_name: str
    status: int
    duration_ms: int | None = None
    create_time_ms: int | None = None
    start_time_ms: int | None = None
    project: str = DEFAULT
    link: str = field(default="", compare=False)   # its console page (bot.modelarts.console)

    @property
    def ref(self) -> V1Job:
        return V1Job(self.job_id, self.version_id, self.project)

    @property
    def name(self) -> str:
        return self.job_name

    @property
    def status_name(self) -> str:
        return status_name(self.status)

    @property
    def state(self) -> str:
        return self.status_name

    @property
    def stoppable(self) -> bool:
        return self.status == RUNNING

    @property
    def stopping(self) -> bool:
        return self.status == KILLING

    @property
    def final(self) -> bool:
        return self.status in V1_FINAL


@dataclass(frozen=True)
class TrainingJob:
    """A v2 training job: phases instead of status numbers, no versions."""

    id: str
    name: str
    phase: str
    secondary_phase: str = ""
    duration_ms: int | None = None
    start_time_ms: int | None = None
    create_time_ms: int | None = None
    user_name: str = ""
    flavor_id: str = ""
    flavor_name: str = ""
    flavor_type: str = ""
    node_count: int | None = None
    pool_id: str = ""
    pool_name: str = ""
    project: str = DEFAULT
    workspace: str = "0"
    link: str = field(default="", compare=False)   # its console page (bot.modelarts.console)

    @property
    def ref(self) -> V2Job:
        return V2Job(self.id, self.project, self.workspace)

    @property
    def state(self) -> str:
        return self.phase

    @property
    def stoppable(self) -> bool:
        return self.phase in STOPPABLE_PHASES

    @property
    def stopping(self) -> bool:
        return self.phase == TERMINATING

    @property
    def final(self) -> bool:
        return self.phase in FINAL_PHASES


Job = JobVersion | TrainingJob


@dataclass(frozen=True)
class JobEvent:
    """One entry of a v2 job's event log (``GET .../training-jobs/{id}/events``)."""

    time_ms: int | None        # when (epoch ms); None when the answer's time could not be read
    level: str                 # Info | Warning | Error
    message: str
    source: str = ""           # Job | Task | K8S


@dataclass(frozen=True)
class Failure:
    """A call that did not give what was asked, with what a person needs to act on it."""

    error_code: str
    error_msg: str
    http_status: int | None = None
    request_id: str | None = None

    @property
    def unknown(self) -> bool:
        """True when the request may have been carried out (a timeout after sending)."""
        return self.error_code == TIMEOUT


def v1_retired(failure: Failure) -> bool:
    """The answer of a region where old-version (v1) training is retired: every v1 route is
    gone, 404 ``APIGW.0101``. Any other failure of a v1 call has a cause worth showing."""
    return failure.http_status == 404 and failure.error_code == "APIGW.0101"


@dataclass(frozen=True)
class StopOutcome:
    is_success: bool
    error_code: str | None = None
    error_msg: str | None = None
    http_status: int | None = None
    request_id: str | None = None

    @property
    def unknown(self) -> bool:
        """The stop may have been carried out: the answer was lost after sending."""
        return self.error_code in (TIMEOUT, TRANSPORT)

    @classmethod
    def from_failure(cls, failure: Failure) -> StopOutcome:
        return cls(False, failure.error_code, failure.error_msg, failure.http_status,
                   failure.request_id)
