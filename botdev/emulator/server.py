"""A real HTTP server that answers like ModelArts training jobs (v1 and v2), IAM and the gateway.

v2 routes and their errors: see botdev.emulator.v2 (a job's event log: botdev.emulator.training).
Error codes it chooses for v1 (the real ones are unconfirmed, see the API reference):
- a stop of a version that is not running: HTTP 400, ModelArts.2796 (NotAllowedToTerminate, the
  closest documented code; the docs list it with 409 for the v2 service).
- an unknown job or version: HTTP 404, ModelArts.2775 (TrainingJobNotFound; listed with 400).
- a project id in the path that is not the emulator's: HTTP 403, ModelArts.0210.
- a bad signature or token: HTTP 401, APIGW.0301, as the gateway answers.
- an unknown route: HTTP 404, APIGW.0101.
- every v1 route once ``retire_v1(True)``: HTTP 404, APIGW.0101, as a region where the
  old-version training API is withdrawn would answer (the gateway no longer publishes it).
v1 errors use ``error_message`` (the current docs) unless a fault asks for ``error_msg``.

Admin routes for tests in another process: see botdev.emulator.admin.

SMN: ``smn_subscribe(url)`` names the bot's ``/smn``; ``publish_event(job, "JobHanged")`` then
POSTs a signed Notification there (botdev.emulator.events), and a v2 job that a terminate takes
to Terminated publishes ``JobTerminated`` on its own. The signing certificate: ``smn_cert_file``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests

from bot.modelarts.refs import V2_ID, JobRef, V1Job, V2Job
from botdev.emulator import defaults, v2
from botdev.emulator.admin import admin
from botdev.emulator.events import Publisher
from botdev.emulator.gate import Gate, IamRefused, Rejected, User
from botdev.emulator.state import Fault, StopRefused, Store, load_seed
from botdev.emulator.training import PHASES
from botdev.smn import SmnSigner

log = logging.getLogger(__name__)

_V1 = r"^/v1/(?P<project>[^/]+)/training-jobs"
_JOBS = re.compile(_V1 + r"$")
_VERSIONS = re.compile(_V1 + r"/(?P<job>\d{1,19})/versions$")
_VERSION = re.compile(_V1 + r"/(?P<job>\d{1,19})/versions/(?P<version>\d{1,19})(?P<stop>/stop)?$")
_STATUS_NUMBERS = re.compile(r"^\d{1,3}(,\d{1,3})*$")

Reply = tuple[int, dict[str, Any]]


@dataclass(frozen=True)
class Received:
    """One request as it arrived (admin routes are not recorded)."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes


class Emulator:
    """ModelArts, IAM and the gateway in one server; ``start()`` serves it on a daemon thread."""

    def __init__(
        self,
        seed_path: str | Path | None = None,
        *,
        ak: str = defaults.EMULATOR_AK,
        sk: str = defaults.EMULATOR_SK,
        project_id: str = defaults.EMULATOR_PROJECT_ID,
        project_name: str = defaults.EMULATOR_PROJECT_NAME,
        users: list[User] | None = None,
        stop_delay: float = 1.0,
        token_ttl: float = 86400.0,
        seed_project: str | None = None,
        gate: Gate | None = None,
    ) -> None:
        """``seed_project``: seed the jobs of that entry of the seed's ``projects:`` (one
        emulator per project, each its own project id and endpoint, as regions are); ``gate``:
        another emulator's, so that one IAM issues the tokens of every project."""
        self.project_id = project_id
        self._offset = 0.0
        self.v1_retired = False
        users = users if users is not None else [User(
            defaults.EMULATOR_USERNAME, defaults.EMULATOR_PASSWORD, defaults.EMULATOR_DOMAIN)]
        self.store = Store(*load_seed(seed_path, seed_project), stop_delay, self.clock)
        if gate is not None:
            gate.add_project(project_id, project_name)
        self.gate = gate or Gate(ak, sk, project_id, project_name, users, token_ttl, self.clock)
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._lists_open = threading.Event()
        self._lists_open.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.events = Publisher(project_id)
        self.store.on_stop = self._stopped

    def clock(self) -> float:
        """Unix time, moved on by ``advance``."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the emulator's clock forward (stop delays, token expiry)."""
        self._offset += seconds

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = _Server((host, port), _Handler)
        self._server.emulator = self
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="emulator", daemon=True)
        self._thread.start()
        return self.base_url

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def close(self) -> None:
        self._closing.set()  # wakes handlers sleeping in a slow fault
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.events.close()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait(self, seconds: float) -> None:
        self._closing.wait(seconds)

    # State and faults, for tests: one API over both kinds, keyed by JobRef.
    def job(self, ref: JobRef) -> dict[str, Any] | None:
        """The current fields, or None: a v1 version's (status, names, times) or a v2 job
        object as GET /v2/.../training-jobs/{id} returns it."""
        return self.store.get(ref)

    def set_status(self, ref: JobRef, status: int | str) -> None:
        """A v1 status number (8 RUNNING ...) or a v2 phase ("Running" ...)."""
        self.store.set_status(ref, status)

    def stop_count(self, ref: JobRef) -> int:
        """Stop (v1) or terminate (v2) calls that reached this job, refused ones included."""
        return self.store.stop_count(ref)

    def add_training_jobs(self, n: int, name_prefix: str = "bulk-", phase: str = "Running",
                          **fields: Any) -> list[V2Job]:
        """``n`` new v2 jobs named ``{name_prefix}{k}``, with distinct create times (1 s apart,
        the newest about now); ``fields`` sets other TrainingJob fields (node_count ...)."""
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}")
        return self.store.add_training_jobs(n, name_prefix, phase, **fields)

    def retire_v1(self, retired: bool = True) -> None:
        """Answer every v1 route with 404 APIGW.0101, as a region where old-version training
        management is withdrawn (its API no longer published); v2 and IAM work as before."""
        self.v1_retired = retired

    @property
    def stop_delay(self) -> float:
        return self.store.stop_delay

    @stop_delay.setter
    def stop_delay(self, seconds: float) -> None:
        self.store.stop_delay = seconds

    def hold_lists(self) -> None:
        """Job lists (v2 searches, the v1 job list) wait, unanswered, until ``release_lists``
        (or ``close``): look-ups that stay in flight for as long as a test needs."""
        self._lists_open.clear()

    def release_lists(self) -> None:
        self._lists_open.set()

    def wait_lists(self) -> None:
        while not self._lists_open.wait(0.05) and not self._closing.is_set():
            pass

    def set_fault(self, ref: JobRef, kind: str, **options: Any) -> None:
        """Make this job's requests go wrong (a v1 fault: the version named); see ``Fault``."""
        self.store.set_fault(ref, Fault(kind, **options))

    def clear_faults(self) -> None:
        self.store.clear_faults()

    def expire_tokens(self) -> None:
        self.gate.expire_tokens()

    def revoke_tokens(self) -> None:
        self.gate.revoke_tokens()

    @property
    def token_issues(self) -> int:
        return self.gate.token_issues

    @property
    def requests(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    def record(self, received: Received) -> None:
        with self._lock:
            self._received.append(received)

    # SMN: ModelArts training-job events, signed and POSTed to one subscriber.
    @property
    def smn(self) -> SmnSigner:
        """The signer of every SMN message the emulator sends."""
        return self.events.signer

    @property
    def smn_cert_file(self) -> Path:
        """The signer's certificate (PEM), for the bot's SMN_SIGNING_CERT_FILE."""
        return self.events.cert_file

    @property
    def smn_topic_urn(self) -> str:
        """The topic URN events carry (``urn:smn:cn-north-4:{project_id}:modelarts-events``
        unless ``smn_subscribe`` named another)."""
        return self.events.topic_urn

    def smn_subscribe(self, url: str, topic_urn: str | None = None) -> str:
        """Publish events to ``url`` (e.g. ``http://127.0.0.1:PORT/smn``); the topic URN."""
        return self.events.subscribe(url, topic_urn)

    def smn_unsubscribe(self) -> None:
        self.events.unsubscribe()

    def smn_info(self) -> dict[str, Any]:
        """The subscriber url, topic_urn, cert_file and cert_pem."""
        return self.events.info()

    def smn_notification(self, job: str | V2Job, event: str, fmt: str = "json"
                         ) -> dict[str, Any]:
        """The signed Notification ``publish_event`` would send (not sent)."""
        return self.events.notification(self._v2_job(job), event, fmt, self.clock())

    def publish_event(self, job: str | V2Job, event: str, fmt: str = "json"
                      ) -> requests.Response:
        """POST one signed Notification of ``event`` for a v2 job (its name, training_job_id or
        V2Job) to the subscriber; its answer. KeyError: no such job; ValueError: a bad event or
        format, or no subscriber; requests.RequestException: the POST failed."""
        return self.smn_send(self.smn_notification(job, event, fmt))

    def smn_send(self, body: dict[str, Any]) -> requests.Response:
        """POST a signed SMN body (any type) to the subscriber, as SMN would; its answer."""
        return self.events.publish(body)

    def _v2_job(self, job: str | V2Job) -> dict[str, Any]:
        """A v2 job by ref, id or name (the newest of that name)."""
        key = job.training_job_id if isinstance(job, V2Job) else str(job)
        found = self.store.get(V2Job(key)) if V2_ID.match(key) else None
        if found is None:
            named = [j for j in self.store.training_jobs() if j["metadata"]["name"] == key]
            found = max(named, key=lambda j: j["metadata"]["create_time"], default=None)
        if found is None:
            raise KeyError(f"no v2 training job named or with the id {key[:64]!r}")
        return found

    def _stopped(self, ref: JobRef) -> None:
        if isinstance(ref, V2Job) and self.events.subscribed:
            threading.Thread(target=self._publish_terminated, args=(ref,), daemon=True,
                             name=f"emulator-smn-{ref.training_job_id[:8]}").start()

    def _publish_terminated(self, ref: V2Job) -> None:
        """Wait for the terminate to reach Terminated, then publish JobTerminated (best effort);
        give up when the job leaves Terminating otherwise (set_status) or the emulator closes."""
        while not self._closing.is_set():
            job = self.store.get(ref)
            phase = job["status"]["phase"] if job else None
            if phase == "Terminated":
                try:
                    resp = self.publish_event(ref, "JobTerminated")
                    log.debug("emulator: JobTerminated for %s answered HTTP %s",
                              ref.training_job_id, resp.status_code)
                except (requests.RequestException, ValueError, KeyError) as exc:
                    log.warning("emulator: JobTerminated for %s not delivered: %s",
                                ref.training_job_id, exc)
                return
            if phase != "Terminating":
                return
            self._closing.wait(0.05)

    def state(self) -> dict[str, Any]:
        return {"jobs": self.store.jobs(), "training_jobs": self.store.training_jobs(),
                "stop_counts": self.store.stop_counts(), "token_issues": self.token_issues,
                "stop_delay": self.stop_delay, "v1_retired": self.v1_retired}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    emulator: Emulator

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up (timeout test) leaves a broken pipe: not worth a traceback.
        log.debug("emulator: a connection from %s failed", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle on, the body waits for the client's
    # delayed ACK on a kept-alive connection: 40 ms per call that real ModelArts does not add.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        log.debug("emulator: " + format, *args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if parts.path.startswith(("/_emulator/", "/_admin/")):
            self._send_json(*admin(self.emulator, method, parts.path, body))
            return
        query = parse_qsl(parts.query, keep_blank_values=True)
        self.emulator.record(Received(method, parts.path, query, dict(self.headers.items()),
                                      body))
        if method == "POST" and parts.path == "/v3/auth/tokens":
            self._issue_token(body)
            return
        if self.emulator.v1_retired and parts.path.startswith("/v1/"):
            self._no_api()
            return
        try:
            self.emulator.gate.check(method, parts.path, query, self.headers, body)
        except Rejected as exc:
            self._send_json(exc.status, {"error_code": exc.code, "error_msg": exc.msg,
                                         "request_id": uuid.uuid4().hex})
            return
        token = self.headers.get("X-Auth-Token")
        if token and self.emulator.gate.project_of(token) != self.emulator.project_id:
            self._send_json(403, {"error_code": "ModelArts.0210", "error_msg": "The token is "
                                  "scoped to another project", "request_id": uuid.uuid4().hex})
            return
        if parts.path.startswith("/v2/"):
            self._route_v2(method, parts.path, body, dict(query))
        else:
            self._route(method, parts.path, dict(query))

    def _issue_token(self, body: bytes) -> None:
        gate = self.emulator.gate
        try:
            token, expires_at = gate.issue(json.loads(body or b"null"))
        except ValueError:
            self._send_json(400, {"error_code": "IAM.0007", "error_msg": "The body is not JSON."})
            return
        except IamRefused as exc:
            self._send_json(exc.status, exc.body)
            return
        project = {"name": gate.project_name, "id": gate.project_id,
                   "domain": {"name": defaults.EMULATOR_DOMAIN}}
        self._send_json(201, {"token": {"expires_at": expires_at, "methods": ["password"],
                                        "project": project}}, {"X-Subject-Token": token})

    def _route(self, method: str, path: str, query: dict[str, str]) -> None:
        emulator = self.emulator
        match = _VERSION.match(path) or _VERSIONS.match(path) or _JOBS.match(path)
        wanted = "POST" if match and match.groupdict().get("stop") else "GET"
        if match is None or method != wanted:
            self._no_api()
            return
        if match["project"] != emulator.project_id:
            self._send_json(*_error(403, "ModelArts.0210",
                                    "The project id in the request URL does not match the token"))
            return
        if match.re is _JOBS:
            emulator.wait_lists()
            self._send_json(*_job_list(emulator, query))
            return
        job_id = int(match["job"])
        if match.re is _VERSIONS:
            refs = emulator.store.versions_of(job_id)
            self._with_fault(refs, "get", lambda: _version_list(emulator, job_id, query))
            return
        ref = V1Job(job_id, int(match["version"]))
        if match["stop"]:
            self._with_fault([ref], "stop", lambda: _stop(emulator, ref))
        else:
            self._with_fault([ref], "get", lambda: _version(emulator, ref))

    def _route_v2(self, method: str, path: str, body: bytes, query: dict[str, str]) -> None:
        emulator = self.emulator
        match = (v2.JOB.match(path) or v2.ACTIONS.match(path) or v2.EVENTS.match(path)
                 or v2.SEARCHES.match(path))
        if match is None or method != ("GET" if match.re in (v2.JOB, v2.EVENTS) else "POST"):
            self._no_api()
            return
        if match["project"] != emulator.project_id:
            self._send_json(*v2.error(403, "ModelArts.0210",
                                      "The project id in the request URL does not match the "
                                      "token"))
            return
        if match.re is v2.SEARCHES:
            emulator.wait_lists()
            self._send_json(*v2.searches(emulator.store, body))
            return
        ref = v2.ref_of(match["id"])
        if ref is None:
            self._send_json(*v2.bad_id(match["id"]))
        elif match.re is v2.JOB:
            self._with_fault([ref], "get", lambda: v2.detail(emulator.store, ref))
        elif match.re is v2.EVENTS:
            self._with_fault([ref], "events", lambda: v2.events(emulator.store, ref, query))
        else:
            self._with_fault([ref], "stop", lambda: v2.action(emulator.store, ref, body))

    def _no_api(self) -> None:
        self._send_json(404, {"error_code": "APIGW.0101", "request_id": uuid.uuid4().hex,
                              "error_msg": "The API does not exist or has not been published "
                              "in the environment"})

    def _with_fault(self, refs: list[JobRef], route: str, work: Callable[[], Reply]) -> None:
        fault = self.emulator.store.take_fault(refs, route)
        if fault is None or fault.kind == "stuck":  # stuck: the store holds the stop
            self._send_json(*work())
        elif fault.kind == "html_500":
            self._send(500, b"<html><body><h1>500 Internal Server Error</h1></body></html>",
                       "text/html")
        elif fault.kind == "failure":
            v1 = {"is_success": False} if isinstance(refs[0], V1Job) else {}
            self._send_json(fault.http_status, {**v1, "error_code": fault.error_code,
                                                fault.field: fault.error_msg})
        elif fault.when == "before":
            if self._disrupt(fault):
                self._send_json(*work())
        else:
            reply = work()
            if self._disrupt(fault):
                self._send_json(*reply)

    def _disrupt(self, fault: Fault) -> bool:
        """Wait (slow) or drop the connection; True when an answer should still be sent."""
        if fault.kind == "slow":
            self.emulator.wait(fault.delay)
            return True
        self.close_connection = True
        return False

    def _send_json(self, status: int, body: dict[str, Any],
                   headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(body).encode(), "application/json", headers)

    def _send(self, status: int, data: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", f"{uuid.uuid4().hex}-{int(time.time())}-emulator")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


def _error(status: int, code: str, message: str) -> Reply:
    return status, {"is_success": False, "error_code": code, "error_message": message}


def _not_found(job_id: int) -> Reply:
    return _error(404, "ModelArts.2775", f"TrainingJobNotFound: Training job (ID: {job_id}) "
                  "not found")


def _version(emulator: Emulator, ref: V1Job) -> Reply:
    found = emulator.store.get(ref)
    return (200, {"is_success": True, **found}) if found else _not_found(ref.job_id)


def _stop(emulator: Emulator, ref: V1Job) -> Reply:
    try:
        emulator.store.stop(ref)
    except KeyError:
        return _not_found(ref.job_id)
    except StopRefused:
        return _error(400, "ModelArts.2796", "NotAllowedToTerminate: The job cannot be "
                      "terminated. Check whether the job status is valid.")
    return 200, {"is_success": True}


def _page(query: dict[str, str], default: int) -> tuple[int, int] | None:
    """(per_page, page) from the query, or None when they are not numbers in range."""
    try:
        per_page, page = int(query.get("per_page", 10)), int(query.get("page", default))
    except ValueError:
        return None
    return (per_page, page) if 1 <= per_page <= 1000 and 0 <= page <= 65535 else None


def _paged(items: list[Any], per_page: int, page: int) -> list[Any]:
    return items if page == 0 else items[(page - 1) * per_page : page * per_page]


_SORT_KEYS = ("job_name", "job_desc", "status", "duration", "version_count", "create_time")


def _job_list(emulator: Emulator, query: dict[str, str]) -> Reply:
    """Jobs (their latest version's status), filtered by ``status`` (one number, or several
    comma-separated) and ``search_content`` (in the name, any case), sorted by ``sortBy``
    (job_name) and ``order`` (asc) as the v1 docs describe."""
    paging = _page(query, 1)
    status, search = query.get("status", ""), query.get("search_content", "")
    sort_by, order = query.get("sortBy", "job_name"), query.get("order", "asc")
    if paging is None or paging[1] == 0:
        return _error(400, "ModelArts.0101", "Invalid Argument: per_page or page")
    if (status and not _STATUS_NUMBERS.match(status)) or len(search) > 64:
        return _error(400, "ModelArts.0101", "Invalid Argument: status or search_content")
    if sort_by not in _SORT_KEYS or order not in ("asc", "desc"):
        return _error(400, "ModelArts.0101", "Invalid Argument: sortBy or order")
    jobs = [{k: v for k, v in job.items() if k != "versions"} for job in emulator.store.jobs()]
    wanted = {int(s) for s in status.split(",")} if status else None
    jobs = [j for j in jobs if (wanted is None or j["status"] in wanted)
            and search.lower() in j["job_name"].lower()]
    jobs.sort(key=lambda j: (j[sort_by] is None, j[sort_by] or 0), reverse=order == "desc")
    return 200, {"is_success": True, "job_total_count": len(jobs), "job_count_limit": 100,
                 "jobs": _paged(jobs, *paging), "quotas": 100}


def _version_list(emulator: Emulator, job_id: int, query: dict[str, str]) -> Reply:
    job, paging = emulator.store.job(job_id), _page(query, 1)
    if job is None:
        return _not_found(job_id)
    if paging is None:
        return _error(400, "ModelArts.0101", "Invalid Argument: per_page or page")
    versions = job.pop("versions")
    for key in ("version_id", "status", "create_time", "duration"):
        job.pop(key)
    return 200, {"is_success": True, **job, "versions": _paged(versions, *paging)}


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8090,
    seed_path: str | Path | None = None,
    ak: str = defaults.EMULATOR_AK,
    sk: str = defaults.EMULATOR_SK,
    project_id: str = defaults.EMULATOR_PROJECT_ID,
    users: list[User] | None = None,
    stop_delay: float = 1.0,
) -> None:
    """Serve the emulator until interrupted (the ``modelarts-bot emulator`` command)."""
    emulator = Emulator(seed_path, ak=ak, sk=sk, project_id=project_id, users=users,
                        stop_delay=stop_delay)
    url = emulator.start(host, port)
    print(f"ModelArts emulator at {url} (project id {project_id}, AK {ak}); Ctrl-C stops it",
          flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.close()


__all__ = ["Emulator", "Received", "serve_forever"]
