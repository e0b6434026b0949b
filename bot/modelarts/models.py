"""Typed values the ModelArts client returns: a job version, and the outcome of a call."""

from __future__ import annotations

from dataclasses import dataclass

from bot.errors import InvalidIdError

MAX_ID = 2**63 - 1  # ids are Long in the API

STATUS_NAMES = {
    0: "UNKNOWN", 1: "INIT", 2: "IMAGE_CREATING", 3: "IMAGE_FAILED", 4: "SUBMIT_TRYING",
    5: "SUBMIT_FAILED", 6: "DELETE_FAILED", 7: "WAITING", 8: "RUNNING", 9: "KILLING",
    10: "COMPLETED", 11: "FAILED", 12: "KILLED", 13: "CANCELED", 14: "LOST", 15: "SCALING",
    16: "SUBMIT_MODEL_FAILED", 17: "DEPLOY_SERVICE_FAILED", 18: "CHECK_INIT", 19: "CHECK_RUNNING",
    20: "CHECK_RUNNING_COMPLETED", 21: "CHECK_FAILED", 22: "MOUNT_FAILED",
}
RUNNING = 8

# Codes the client makes itself, for failures that never got a ModelArts answer.
REFUSED = "BOT.CONNECTION_REFUSED"   # nothing reached the server
TIMEOUT = "BOT.TIMEOUT"              # the request may have reached it: outcome unknown
TRANSPORT = "BOT.TRANSPORT_ERROR"    # other network failure
BAD_RESPONSE = "BOT.BAD_RESPONSE"    # an answer we could not read (HTML, empty, not JSON)


def status_name(status: int) -> str:
    return STATUS_NAMES.get(status, f"STATUS_{status}")


def validate_id(value: object, what: str = "id") -> int:
    """A positive integer (Long) or InvalidIdError saying why not."""
    if isinstance(value, bool):
        raise InvalidIdError(f"{what} must be a positive integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        number = int(value)
    else:
        raise InvalidIdError(f"{what} must be a positive integer, like 182626")
    if not 0 < number <= MAX_ID:
        raise InvalidIdError(f"{what} must be a positive integer, like 182626")
    return number


@dataclass(frozen=True)
class JobVersion:
    job_id: int
    version_id: int
    job_name: str
    version_name: str
    status: int
    duration_ms: int | None = None
    create_time_ms: int | None = None
    start_time_ms: int | None = None

    @property
    def status_name(self) -> str:
        return status_name(self.status)

    @property
    def is_running(self) -> bool:
        return self.status == RUNNING


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
