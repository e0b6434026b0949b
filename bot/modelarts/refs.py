"""Which job: a v1 training-job version or a v2 training job. One type, ``JobRef``, for both.

Code that moves a job around (confirmations, outcomes, alerts, watches, audit) carries a JobRef;
code that must differ (the ModelArts client, the emulator, the status words) dispatches on it with
``match``. Each variant prints itself, goes into a button value or a Redis key part (``key``) and
parses back (``parse_ref``), always validated: a button value is user input.

A ref names its project (bot.core.projects). ``DEFAULT`` is the one project of a
single-project configuration, and, with several projects, "wherever it is": a bare id typed by a
user, an alert naming no project, or a button made before the upgrade, looked up in every
project. Its key is the old one (``v2:ID``, ``v1:JOB:VERSION``), so keys and buttons made before
projects existed keep working; any other project prefixes it (``bj4/v2:ID``). The workspace of a
v2 job is shown, not part of its identity (a job id is unique in its project), so one job never
has two keys.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bot.core.errors import InvalidIdError
from bot.core.projects import DEFAULT, NAME

MAX_ID = 2**63 - 1  # v1 ids are Long in the API
# v2 ids: a UUID in every sample, 32 letters and digits on one page: accept both, loosely.
V2_ID = re.compile(r"\A[0-9a-zA-Z-]{32,36}\Z")  # \Z: no trailing newline
# What a typed argument must look like to be taken as a v2 id (anything else may be a name).
V2_SHAPE = re.compile(r"\A(?:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                      r"[0-9a-fA-F]{12}|[0-9a-fA-F]{32})\Z")


PROJECT = NAME


def validate_project(value: object) -> str:
    """A project name (1-32 of ``[a-z0-9-]``) or InvalidIdError saying why not."""
    if not isinstance(value, str) or not PROJECT.match(value):
        raise InvalidIdError("a project name is 1-32 of a-z, 0-9 and '-', like bj4")
    return value


def _prefix(project: str) -> str:
    return "" if project == DEFAULT else f"{project}/"


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


def validate_training_job_id(value: object) -> str:
    """A v2 training job id (32-36 of ``[0-9a-zA-Z-]``) or InvalidIdError saying why not."""
    if not isinstance(value, str) or not value.isascii() or not V2_ID.match(value):
        raise InvalidIdError("training_job_id must be 32-36 letters, digits or '-', like "
                             "3faf5c03-aaa1-4cbe-879d-24b05d997347")
    return value


@dataclass(frozen=True)
class V1Job:
    """An old-version training job version: numeric job and version ids."""

    job_id: int
    version_id: int
    project: str = DEFAULT

    def __post_init__(self) -> None:
        validate_id(self.job_id, "job_id")
        validate_id(self.version_id, "version_id")
        validate_project(self.project)

    api = "v1"
    workspace = "0"

    @property
    def key(self) -> str:
        return f"{_prefix(self.project)}v1:{self.job_id}:{self.version_id}"

    @property
    def args(self) -> str:
        """How to name it after ``/modelarts status``."""
        return f"{_prefix(self.project)}{self.job_id} {self.version_id}"

    def __str__(self) -> str:
        return f"job_id {self.job_id}, version {self.version_id}"


@dataclass(frozen=True)
class V2Job:
    """A (new-version) training job: one string id, no versions."""

    training_job_id: str
    project: str = DEFAULT
    workspace: str = field(default="0", compare=False)   # shown; not part of the identity

    def __post_init__(self) -> None:
        validate_training_job_id(self.training_job_id)
        validate_project(self.project)

    api = "v2"

    @property
    def key(self) -> str:
        return f"{_prefix(self.project)}v2:{self.training_job_id}"

    @property
    def args(self) -> str:
        return f"{_prefix(self.project)}{self.training_job_id}"

    def __str__(self) -> str:
        return f"training_job_id {self.training_job_id}"


JobRef = V1Job | V2Job


def parse_ref(value: object) -> JobRef:
    """A JobRef from its ``key`` (``[PROJECT/]v1:JOB:VERSION``, ``[PROJECT/]v2:ID``), or from
    the bare forms alert buttons carried before v2 (``JOB:VERSION``). InvalidIdError when it is
    none of these."""
    if not isinstance(value, str) or len(value) > 120:
        raise InvalidIdError("not a job reference")
    project, slash, rest = value.rpartition("/")
    project = validate_project(project) if slash else DEFAULT
    api, _, rest = rest.partition(":")
    if api == "v2":
        return V2Job(validate_training_job_id(rest), project)
    if api == "v1":
        job, _, version = rest.partition(":")
    else:
        job, version = api, rest
    return V1Job(validate_id(job, "job_id"), validate_id(version, "version_id"), project)


def split_project(word: str) -> tuple[str, str]:
    """``bj4/team-a-x`` -> ("bj4", "team-a-x"); a word without ``/`` -> (DEFAULT, word)."""
    project, slash, rest = word.partition("/")
    return (validate_project(project), rest) if slash else (DEFAULT, word)


def ref_from_words(words: list[str]) -> JobRef:
    """A JobRef from typed arguments: two integers (v1) or one v2 id, the first optionally
    ``PROJECT/``-qualified. InvalidIdError otherwise."""
    if not words or len(words) > 2:
        raise InvalidIdError("expected a training_job_id, or a job_id and a version_id")
    project, first = split_project(words[0])
    if len(words) == 2:
        return V1Job(validate_id(first, "job_id"), validate_id(words[1], "version_id"), project)
    return V2Job(validate_training_job_id(first), project)


def ref_fields(ref: JobRef) -> dict[str, object]:
    """The job's fields for a log line or an audit entry: api, its ids, and its project and
    workspace unless they are the defaults."""
    out: dict[str, object] = {"api": ref.api}
    for name, value in vars(ref).items():
        if (name, value) not in (("project", DEFAULT), ("workspace", "0")):
            out[name] = value
    return out
