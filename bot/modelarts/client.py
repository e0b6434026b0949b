"""The ModelArts training-job client, v1 and v2. Every failure comes back as a value, never raised.

``lookup(ref)`` and ``stop(ref)`` are the one interface the bot uses; they dispatch on the JobRef to
the v1 calls (``get_version``, ``stop_version``, ``list_jobs``) or the v2 ones (``get_job``,
``terminate_job``, ``search_jobs``). ``events(ref)``: a v2 job's newest events (v1 has none).
Every job it reads carries its project's name and its console link (bot.modelarts.console).

A stop is sent once. It is sent again only when the connection was refused (nothing reached the
server), or once after a 401 token rejection with IAM auth (the gate refused it, nothing ran).

No call follows a redirect: a 3xx is a BOT.REDIRECT failure naming the target host. A stop is
accepted only on a 2xx whose body says so: v1 ``is_success: true``; v2 the job object, or no body.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import redis
import requests
from pydantic import SecretStr
from urllib3.exceptions import NewConnectionError

from bot.core import metrics, net
from bot.core.errors import ConfigError
from bot.core.projects import Project
from bot.core.settings import Settings
from bot.modelarts import models, signer
from bot.modelarts.auth import TOKEN_HEADER, AkSkAuth, AuthError, IamTokenAuth
from bot.modelarts.console import OFF, Console, console_for
from bot.modelarts.fleet import Fleet
from bot.modelarts.hints import GATEWAY_AUTH_CODES, TOKEN_CODES, hint_for
from bot.modelarts.models import Failure, Job, JobEvent, JobVersion, StopOutcome, TrainingJob
from bot.modelarts.redirects import redirect_failure
from bot.modelarts.refs import DEFAULT, JobRef, V1Job, V2Job, validate_training_job_id

__all__ = ["ModelArtsClient", "build_client", "build_fleet", "hint_for"]

log = logging.getLogger(__name__)

J = TypeVar("J", JobVersion, TrainingJob)
REFUSED_RETRY_DELAYS = (0.2, 0.5)  # at most two more tries, only when the connect was refused
SEARCH_LIMIT = 50                  # the largest page training-job-searches gives
EVENTS_LIMIT = 50                  # events read per call (the API allows 1-100)
# The operations that change a job; every other call is a look-up (a search is a POST too).
CHANGES = frozenset({"stop_version", "terminate_job"})


class Auth(Protocol):
    def headers(
        self, method: str, url: str, params: signer.QueryItems, body: bytes | None
    ) -> dict[str, str]: ...

    def invalidate(self, token: str) -> bool: ...


@dataclass(frozen=True)
class JobPage:
    """One page of a search or list: the jobs on it, and how many match in all."""

    items: list[Job]
    count: int


@dataclass(frozen=True)
class _Answer:
    body: dict
    http_status: int
    request_id: str | None
    empty: bool = False  # a 2xx with no body at all (``body`` is then {})


class ModelArtsClient:
    """One project's ModelArts (bot.core.projects; bot.modelarts.fleet holds them all): the
    jobs it reads carry its ``name``."""

    def __init__(
        self, endpoint: str, project_id: str, auth: Auth, session: requests.Session, timeout: float,
        name: str = DEFAULT, console: Console = OFF,
    ) -> None:
        """``console``: the links its jobs carry (default: none)."""
        self.endpoint = endpoint.rstrip("/")
        self.project_id = project_id
        self.name = name
        self.console = console
        self._auth = auth
        self._session = session
        self._timeout = timeout

    # -- the one interface: any job --------------------------------------------------------
    def lookup(self, ref: JobRef) -> Job | Failure:
        match ref:
            case V1Job(job_id, version_id):
                return self.get_version(job_id, version_id)
            case V2Job(training_job_id):
                return self.get_job(training_job_id)

    def stop(self, ref: JobRef) -> StopOutcome:
        match ref:
            case V1Job(job_id, version_id):
                return self.stop_version(job_id, version_id)
            case V2Job(training_job_id):
                return self.terminate_job(training_job_id)

    def events(self, ref: JobRef) -> list[JobEvent] | Failure:
        """The job's newest events, newest first (a v1 version has no event log: none)."""
        match ref:
            case V1Job():
                return []
            case V2Job(training_job_id):
                return self.job_events(training_job_id)

    def link(self, ref: JobRef) -> str:
        """The job's console page, "" for none."""
        return self.console.url(ref)

    # -- v1: training job versions -----------------------------------------------------------
    def get_version(self, job_id: object, version_id: object) -> JobVersion | Failure:
        path = self._version_path(job_id, version_id)
        answer = self._call("get_version", "GET", path)
        if isinstance(answer, Failure):
            return answer
        return self._own(_job_version(answer.body)) or Failure(
            models.BAD_RESPONSE, "the version details lack job_id, version_id or status",
            answer.http_status, answer.request_id)

    def stop_version(self, job_id: object, version_id: object) -> StopOutcome:
        path = self._version_path(job_id, version_id) + "/stop"
        return _stop_outcome(_v1_stop_accepted(self._call("stop_version", "POST", path)))

    def list_jobs(self, per_page: int = 1, page: int = 1, status: int | None = None,
                  search: str | None = None) -> JobPage | Failure:
        """One page of ``GET /v1/{project}/training-jobs``: each job as its latest version
        (entries that cannot be read are left out), and how many jobs match in all."""
        params: list[tuple[str, object]] = [("per_page", per_page), ("page", page)]
        if status is not None:
            params.append(("status", status))
        if search:
            params.append(("search_content", search[:64]))
        answer = self._call("list_jobs", "GET", f"/v1/{self.project_id}/training-jobs", params)
        if isinstance(answer, Failure):
            return answer
        jobs = answer.body.get("jobs")
        if not isinstance(jobs, list):
            return Failure(models.BAD_RESPONSE, "the job list has no jobs field",
                           answer.http_status, answer.request_id)
        count = _optional_int(answer.body.get("job_total_count"))
        return JobPage([self._own(job) for job in map(_job_version, jobs) if job is not None],
                       len(jobs) if count is None else count)

    def _version_path(self, job_id: object, version_id: object) -> str:
        job = models.validate_id(job_id, "job id")
        version = models.validate_id(version_id, "version id")
        return f"/v1/{self.project_id}/training-jobs/{job}/versions/{version}"

    # -- v2: training jobs -------------------------------------------------------------------
    def get_job(self, training_job_id: object) -> TrainingJob | Failure:
        answer = self._call("get_job", "GET", self._job_path(training_job_id))
        if isinstance(answer, Failure):
            return answer
        return self._own(_training_job(answer.body)) or _unreadable(answer, "the job details")

    def terminate_job(self, training_job_id: object) -> StopOutcome:
        path = self._job_path(training_job_id) + "/actions"
        answer = self._call("terminate_job", "POST", path, body={"action_type": "terminate"})
        return _stop_outcome(_v2_stop_accepted(answer, str(training_job_id)))

    def search_jobs(self, phases: tuple[str, ...] = (), name: str | None = None,
                    page: int = 0, limit: int = SEARCH_LIMIT,
                    workspace: str | None = None) -> JobPage | Failure:
        """One page of ``training-job-searches``, newest first. ``page`` is the page index
        (``offset`` in the API counts pages, UNCONFIRMED: see the v2 reference §4);
        ``workspace``: that workspace's jobs only (None: no ``workspace_id`` sent)."""
        filters = []
        if phases:
            filters.append({"key": "phase", "operator": "in", "value": list(phases)})
        if name:
            filters.append({"key": "name", "operator": "like", "value": [name[:64]]})
        body: dict[str, object] = {"offset": page, "limit": limit, "sort_by": "create_time",
                                   "order": "desc", "filters": filters}
        if workspace is not None:
            body["workspace_id"] = workspace
        answer = self._call("search_jobs", "POST", f"/v2/{self.project_id}/training-job-searches",
                            body=body)
        if isinstance(answer, Failure):
            return answer
        raw = answer.body.get("items")
        if not isinstance(raw, list):
            return _unreadable(answer, "the job search")
        items = [self._own(job) for job in map(_training_job, raw) if job is not None]
        count = _optional_int(answer.body.get("count"))
        return JobPage(items, len(raw) if count is None else count)

    def job_events(self, training_job_id: object, limit: int = EVENTS_LIMIT
                   ) -> list[JobEvent] | Failure:
        """``GET .../training-jobs/{id}/events``, newest first. ``order=desc`` asks for the
        newest page (the value is UNCONFIRMED: the docs name the parameter only); the answer is
        sorted here all the same. Entries that cannot be read are left out."""
        params = [("offset", 0), ("limit", limit), ("order", "desc")]
        answer = self._call("job_events", "GET", self._job_path(training_job_id) + "/events",
                            params)
        if isinstance(answer, Failure):
            return answer
        raw = answer.body.get("events")
        if not isinstance(raw, list):
            return Failure(models.BAD_RESPONSE, "the job events have no events list",
                           answer.http_status, answer.request_id)
        found = [e for e in map(_job_event, raw) if e is not None]
        return sorted(found, key=lambda e: e.time_ms or 0, reverse=True)

    def _own(self, job: J | None) -> J | None:
        """The job as this project's (its refs name it), with its console link."""
        if job is None:
            return job
        if self.name != DEFAULT:
            job = replace(job, project=self.name)
        link = self.console.url(job.ref)
        return replace(job, link=link) if link else job

    def _job_path(self, training_job_id: object) -> str:
        return f"/v2/{self.project_id}/training-jobs/{validate_training_job_id(training_job_id)}"

    def _call(self, operation: str, method: str, path: str, params: signer.QueryItems = (),
              body: dict | None = None) -> _Answer | Failure:
        """One call, with its token retry; timed for /metrics under ``operation``."""
        data = json.dumps(body, separators=(",", ":")).encode() if body is not None else None
        started = time.monotonic()
        read_only = operation not in CHANGES
        result, sent = self._attempt(method, path, params, data, read_only)
        if _token_rejected(result) and self._auth.invalidate(sent.get(TOKEN_HEADER, "")):
            log.info("ModelArts refused the IAM token (%s); fetching a new one once",
                     result.error_code)
            result, _ = self._attempt(method, path, params, data, read_only)
        metrics.observe_modelarts(path[1:3], operation, time.monotonic() - started,
                                  result.error_code if isinstance(result, Failure) else None,
                                  self.name)
        return result

    def _attempt(
        self, method: str, path: str, params: signer.QueryItems, data: bytes | None,
        read_only: bool,
    ) -> tuple[_Answer | Failure, dict[str, str]]:
        url = self.endpoint + path
        query = signer.canonical_query(params)
        try:
            headers = self._auth.headers(method, url, params, data)
        except AuthError as exc:
            return exc.failure, {}
        full_url = f"{url}?{query}" if query else url
        return self._send(method, full_url, headers, data, read_only), headers

    def _send(self, method: str, url: str, headers: dict[str, str],
              data: bytes | None, read_only: bool) -> _Answer | Failure:
        for delay in (*REFUSED_RETRY_DELAYS, None):
            try:
                resp = self._session.request(method, url, headers=headers, data=data,
                                             timeout=self._timeout, allow_redirects=False)
            except requests.ConnectionError as exc:
                if _refused(exc) and delay is not None:
                    log.warning("ModelArts refused the connection; trying again in %ss", delay)
                    time.sleep(delay)
                    continue
                return _transport_failure(method, exc, read_only)
            except requests.RequestException as exc:
                return _transport_failure(method, exc, read_only)
            return _read(resp)
        raise AssertionError("unreachable")  # the last delay is None, which always returns


def _refused(exc: requests.ConnectionError) -> bool:
    """True when the TCP connect failed, so the request certainly never reached the server."""
    if isinstance(exc, requests.ConnectTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _transport_failure(method: str, exc: requests.RequestException, read_only: bool) -> Failure:
    """A call that got no answer. A look-up changes nothing, so it only says why; a stop says
    whether it may have been carried out."""
    kind = type(exc).__name__
    refused = isinstance(exc, requests.ConnectTimeout) or (
        isinstance(exc, requests.ConnectionError) and _refused(exc))
    code = (models.REFUSED if refused else
            models.TIMEOUT if isinstance(exc, requests.Timeout) else models.TRANSPORT)
    if read_only:
        why = "no answer in time" if code == models.TIMEOUT else net.reason(exc)
        return Failure(code, f"could not reach ModelArts: {why}")
    if isinstance(exc, requests.ConnectTimeout):
        return Failure(code, f"could not connect to ModelArts in time ({kind}); "
                       "the request was not sent")
    if refused:
        return Failure(code, "ModelArts refused the connection; the request was not sent")
    if code == models.TIMEOUT:
        return Failure(code, "ModelArts did not answer in time: outcome unknown, check the status")
    unknown = ": outcome unknown, check the status" if method != "GET" else ""
    return Failure(code, f"the connection to ModelArts failed ({kind}){unknown}")


def _read(resp: requests.Response) -> _Answer | Failure:
    """Turn any HTTP answer into an _Answer (a 2xx with a JSON object or no body) or a Failure."""
    redirected = redirect_failure(resp, "ModelArts", "MODELARTS_ENDPOINT")
    if redirected:
        return redirected
    status = resp.status_code
    request_id = resp.headers.get("X-Request-Id")
    ok = 200 <= status < 300
    if ok and not resp.content:
        return _Answer({}, status, request_id, empty=True)
    try:
        body = resp.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        what = "an empty body" if not resp.content else "a non-JSON body"
        return Failure(models.BAD_RESPONSE, f"HTTP {status} with {what}", status, request_id)
    request_id = request_id or _text(body.get("request_id"))
    failed = not ok or body.get("is_success") is False or bool(body.get("error_code"))
    if not failed:
        return _Answer(body, status, request_id)
    code = _text(body.get("error_code")) or f"HTTP.{status}"
    msg = _text(body.get("error_msg")) or _text(body.get("error_message")) or f"HTTP {status}"
    return Failure(code, msg[:500], status, request_id)


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _token_rejected(result: _Answer | Failure) -> bool:
    """A 401 saying the token is missing, expired or unreadable (not a wrong signature)."""
    if not isinstance(result, Failure) or result.http_status != 401:
        return False
    if result.error_code in TOKEN_CODES:
        return True
    return result.error_code in GATEWAY_AUTH_CODES and "token" in result.error_msg.lower()


def _job_version(body: object) -> JobVersion | None:
    """A version's details, or a job-list entry (the job's latest version); None if unreadable."""
    if not isinstance(body, dict):
        return None
    try:
        return JobVersion(
            job_id=int(body["job_id"]),
            version_id=int(body["version_id"]),
            job_name=str(body.get("job_name") or ""),
            version_name=str(body.get("version_name") or ""),
            status=int(body["status"]),
            duration_ms=_optional_int(body.get("duration")),
            create_time_ms=_optional_int(body.get("create_time")),
            start_time_ms=_optional_int(body.get("start_time")),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _training_job(body: object) -> TrainingJob | None:
    """A v2 job object (detail, terminate answer or search item), or None without id/phase."""
    if not isinstance(body, dict):
        return None
    meta, status, spec = (_obj(body, k) for k in ("metadata", "status", "spec"))
    resource = _obj(spec, "resource")
    job_id, phase = meta.get("id"), status.get("phase")
    if not isinstance(job_id, str) or not isinstance(phase, str) or not job_id:
        return None
    return TrainingJob(
        id=job_id, name=_str(meta.get("name")), phase=phase,
        secondary_phase=_str(status.get("secondary_phase")),
        duration_ms=_optional_int(status.get("duration")),
        start_time_ms=_optional_int(status.get("start_time")) or None,
        create_time_ms=_optional_int(meta.get("create_time")),
        user_name=_str(meta.get("user_name")),
        flavor_id=_str(resource.get("flavor_id")), flavor_name=_str(resource.get("flavor_name")),
        flavor_type=_str(_obj(resource, "flavor_detail").get("flavor_type")),
        node_count=_optional_int(resource.get("node_count")),
        pool_id=_str(resource.get("pool_id")), pool_name=_str(resource.get("pool_name")),
        workspace=_str(meta.get("workspace_id")) or "0",
    )


def _job_event(body: object) -> JobEvent | None:
    """One event entry, or None without a message."""
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return None
    return JobEvent(_event_time(body.get("time")), _str(body.get("level")),
                    body["message"][:2000], _str(body.get("source")))


def _event_time(value: object) -> int | None:
    """An event's time as epoch ms: a number (ms, or s when small) or an ISO 8601 text (its
    form is UNCONFIRMED); None when it is neither."""
    if isinstance(value, str) and not value.strip().isdigit():
        try:
            when = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
        return int((when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp() * 1000)
    number = _optional_int(value) if not isinstance(value, bool) else None
    if number is None or number < 0:
        return None
    return number * 1000 if number < 100_000_000_000 else number


def _obj(body: dict, key: str) -> dict:
    value = body.get(key)
    return value if isinstance(value, dict) else {}


def _str(value: object) -> str:
    return value[:200] if isinstance(value, str) else ""


def _unreadable(answer: _Answer, what: str) -> Failure:
    return Failure(models.BAD_RESPONSE, f"{what} could not be read (no id or phase)",
                   answer.http_status, answer.request_id)


def _v1_stop_accepted(answer: _Answer | Failure) -> _Answer | Failure:
    """A v1 stop is accepted only with ``is_success: true`` in the answer."""
    if isinstance(answer, _Answer) and answer.body.get("is_success") is not True:
        return _not_accepted(answer, "has no is_success: true")
    return answer


def _v2_stop_accepted(answer: _Answer | Failure, training_job_id: str) -> _Answer | Failure:
    """A v2 terminate is accepted only with the job object (this job's) or no body at all."""
    if not isinstance(answer, _Answer) or answer.empty:
        return answer
    job = _training_job(answer.body)
    if job is None:
        return _not_accepted(answer, "is not the job (no id or phase)")
    if job.id.lower() != training_job_id.lower():
        return _not_accepted(answer, "names another job")
    return answer


def _not_accepted(answer: _Answer, why: str) -> Failure:
    return Failure(models.BAD_RESPONSE, f"the stop answer (HTTP {answer.http_status}) {why}, so "
                   "it is not taken as accepted: check the status", answer.http_status,
                   answer.request_id)


def _stop_outcome(answer: _Answer | Failure) -> StopOutcome:
    if isinstance(answer, Failure):
        return StopOutcome.from_failure(answer)
    return StopOutcome(True, http_status=answer.http_status, request_id=answer.request_id)


def _optional_int(value: object) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def build_client(
    settings: Settings, redis: redis.Redis | None, key_prefix: str,
    session: requests.Session | None = None,
    project: Project | None = None,
) -> ModelArtsClient:
    """One project's client (default: the first): AK/SK when MODELARTS_AK is set, else an IAM
    token scoped by that project's id (MODELARTS_PROJECT_NAME overrides it for the one project
    of the old settings), cached in ``redis`` (which only the IAM token needs: None will do with
    AK/SK)."""
    problems = [text for name, text in settings.named_problems(need_slack=False)
                if name.startswith("MODELARTS_")]
    if problems:
        raise ConfigError("; ".join(problems))
    project = project or settings.projects[0]
    session = session or requests.Session()
    timeout = settings.MODELARTS_TIMEOUT_SECONDS
    auth: Auth
    if settings.uses_aksk and settings.MODELARTS_AK and settings.MODELARTS_SK:
        auth = AkSkAuth(settings.MODELARTS_AK.get_secret_value(), settings.MODELARTS_SK,
                        project.project_id)
    elif redis is None:
        raise ConfigError("the IAM token needs Redis (its cache) and none was given")
    else:
        auth = IamTokenAuth(
            settings.MODELARTS_IAM_ENDPOINT or "", settings.MODELARTS_USERNAME or "",
            settings.MODELARTS_PASSWORD or SecretStr(""), settings.MODELARTS_DOMAIN or "",
            project.project_id, session, redis, key_prefix, timeout,
            project_name=settings.MODELARTS_PROJECT_NAME,
        )
    return ModelArtsClient(project.endpoint, project.project_id, auth, session, timeout,
                           project.name, console_for(settings.console_templates, project))


def build_fleet(
    settings: Settings, redis: redis.Redis, key_prefix: str, session: requests.Session | None = None
) -> Fleet:
    """A client per configured project (one session: kept-alive connections per host)."""
    session = session or requests.Session()
    projects = settings.projects
    return Fleet({p.name: build_client(settings, redis, key_prefix, session, p)
                  for p in projects}, projects)
