"""A real HTTP server that answers like ModelArts v1 training jobs, IAM, and the API gateway.

Error codes it chooses (the real ones for v1 are unconfirmed, see the API reference):
- a stop of a version that is not running: HTTP 400, ModelArts.2796 (NotAllowedToTerminate, the
  closest documented code; the docs list it with 409 for the v2 service).
- an unknown job or version: HTTP 404, ModelArts.2775 (TrainingJobNotFound; listed with 400).
- a project id in the path that is not the emulator's: HTTP 403, ModelArts.0210.
- a bad signature or token: HTTP 401, APIGW.0301, as the gateway answers.
- an unknown route: HTTP 404, APIGW.0101.
ModelArts errors use ``error_message`` (the current docs) unless a fault asks for ``error_msg``.

Admin routes for tests in another process (no auth; bind the emulator to loopback):
  GET    /_emulator/state                                   jobs, stop counts, token issues
  POST   /_emulator/faults/{job_id}                         body: Fault fields, e.g. {"kind": ...}
  DELETE /_emulator/faults                                  clear every fault
  POST   /_emulator/jobs/{job_id}/versions/{version_id}/status   body: {"status": 8}
  POST   /_emulator/stop-delay                              body: {"seconds": 0.5}
  POST   /_emulator/expire-tokens
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

from bot.emulator import defaults
from bot.emulator.gate import Gate, Rejected, User
from bot.emulator.state import Fault, StopRefused, Store, load_jobs

log = logging.getLogger(__name__)

_V1 = r"^/v1/(?P<project>[^/]+)/training-jobs"
_JOBS = re.compile(_V1 + r"$")
_VERSIONS = re.compile(_V1 + r"/(?P<job>\d{1,19})/versions$")
_VERSION = re.compile(_V1 + r"/(?P<job>\d{1,19})/versions/(?P<version>\d{1,19})(?P<stop>/stop)?$")
_ADMIN_FAULT = re.compile(r"^/_emulator/faults/(?P<job>\d+)$")
_ADMIN_STATUS = re.compile(r"^/_emulator/jobs/(?P<job>\d+)/versions/(?P<version>\d+)/status$")

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
    ) -> None:
        self.project_id = project_id
        self._offset = 0.0
        users = users if users is not None else [User(
            defaults.EMULATOR_USERNAME, defaults.EMULATOR_PASSWORD, defaults.EMULATOR_DOMAIN)]
        self.store = Store(load_jobs(seed_path), stop_delay, self.clock)
        self.gate = Gate(ak, sk, project_name, users, token_ttl, self.clock)
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

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

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wait(self, seconds: float) -> None:
        self._closing.wait(seconds)

    # State and faults, for tests.
    def job(self, job_id: int, version_id: int) -> dict[str, Any] | None:
        """The version's current fields (status, names, times), or None."""
        return self.store.version(job_id, version_id)

    def set_status(self, job_id: int, version_id: int, status: int) -> None:
        self.store.set_status(job_id, version_id, status)

    def stop_count(self, job_id: int, version_id: int) -> int:
        return self.store.stop_count(job_id, version_id)

    @property
    def stop_delay(self) -> float:
        return self.store.stop_delay

    @stop_delay.setter
    def stop_delay(self, seconds: float) -> None:
        self.store.stop_delay = seconds

    def set_fault(self, job_id: int, kind: str, **options: Any) -> None:
        """Make this job's requests go wrong; see ``Fault`` for ``kind`` and the options."""
        self.store.set_fault(job_id, Fault(kind, **options))

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

    def state(self) -> dict[str, Any]:
        return {"jobs": self.store.jobs(), "stop_counts": self.store.stop_counts(),
                "token_issues": self.token_issues, "stop_delay": self.stop_delay}


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
        if parts.path.startswith("/_emulator/"):
            self._send_json(*_admin(self.emulator, method, parts.path, body))
            return
        query = parse_qsl(parts.query, keep_blank_values=True)
        self.emulator.record(Received(method, parts.path, query, dict(self.headers.items()),
                                      body))
        if method == "POST" and parts.path == "/v3/auth/tokens":
            self._issue_token(body)
            return
        try:
            self.emulator.gate.check(method, parts.path, query, self.headers, body)
        except Rejected as exc:
            self._send_json(exc.status, {"error_code": exc.code, "error_msg": exc.msg,
                                         "request_id": uuid.uuid4().hex})
            return
        self._route(method, parts.path, dict(query))

    def _issue_token(self, body: bytes) -> None:
        try:
            issued = self.emulator.gate.issue(json.loads(body or b"null"))
        except ValueError:
            issued = None
        if issued is None:
            # Keystone's error shape, which IAM keeps for a wrong user or password.
            self._send_json(401, {"error": {"code": 401, "title": "Unauthorized",
                                            "message": "The username or password is wrong."}})
            return
        token, expires_at = issued
        self._send_json(201, {"token": {"expires_at": expires_at, "methods": ["password"],
                                        "project": {"name": self.emulator.gate.project_name,
                                                    "id": self.emulator.project_id}}},
                        {"X-Subject-Token": token})

    def _route(self, method: str, path: str, query: dict[str, str]) -> None:
        emulator = self.emulator
        match = _VERSION.match(path) or _VERSIONS.match(path) or _JOBS.match(path)
        wanted = "POST" if match and match.groupdict().get("stop") else "GET"
        if match is None or method != wanted:
            self._send_json(404, {"error_code": "APIGW.0101", "request_id": uuid.uuid4().hex,
                                  "error_msg": "The API does not exist or has not been published "
                                  "in the environment"})
            return
        if match["project"] != emulator.project_id:
            self._send_json(*_error(403, "ModelArts.0210",
                                    "The project id in the request URL does not match the token"))
            return
        if match.re is _JOBS:
            self._send_json(*_job_list(emulator, query))
            return
        job_id = int(match["job"])
        if match.re is _VERSIONS:
            self._with_fault(job_id, "get", lambda: _version_list(emulator, job_id, query))
        elif match["stop"]:
            version_id = int(match["version"])
            self._with_fault(job_id, "stop", lambda: _stop(emulator, job_id, version_id))
        else:
            version_id = int(match["version"])
            self._with_fault(job_id, "get", lambda: _version(emulator, job_id, version_id))

    def _with_fault(self, job_id: int, route: str, work: Callable[[], Reply]) -> None:
        fault = self.emulator.store.take_fault(job_id, route)
        if fault is None:
            self._send_json(*work())
        elif fault.kind == "html_500":
            self._send(500, b"<html><body><h1>500 Internal Server Error</h1></body></html>",
                       "text/html")
        elif fault.kind == "failure":
            self._send_json(fault.http_status, {"is_success": False,
                                                "error_code": fault.error_code,
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


def _version(emulator: Emulator, job_id: int, version_id: int) -> Reply:
    found = emulator.store.version(job_id, version_id)
    return (200, {"is_success": True, **found}) if found else _not_found(job_id)


def _stop(emulator: Emulator, job_id: int, version_id: int) -> Reply:
    try:
        emulator.store.stop(job_id, version_id)
    except KeyError:
        return _not_found(job_id)
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


def _job_list(emulator: Emulator, query: dict[str, str]) -> Reply:
    paging = _page(query, 1)
    if paging is None or paging[1] == 0:
        return _error(400, "ModelArts.0101", "Invalid Argument: per_page or page")
    jobs = [{k: v for k, v in job.items() if k != "versions"} for job in emulator.store.jobs()]
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


def _admin(emulator: Emulator, method: str, path: str, body: bytes) -> Reply:
    """The /_emulator/ routes: drive the emulator from another process."""
    try:
        data = json.loads(body) if body else {}
        if method == "GET" and path == "/_emulator/state":
            return 200, emulator.state()
        if method == "DELETE" and path == "/_emulator/faults":
            emulator.clear_faults()
        elif method == "POST" and (m := _ADMIN_FAULT.match(path)):
            emulator.set_fault(int(m["job"]), **data)
        elif method == "POST" and (m := _ADMIN_STATUS.match(path)):
            emulator.set_status(int(m["job"]), int(m["version"]), int(data["status"]))
        elif method == "POST" and path == "/_emulator/stop-delay":
            emulator.stop_delay = float(data["seconds"])
        elif method == "POST" and path == "/_emulator/expire-tokens":
            emulator.expire_tokens()
        else:
            return 404, {"error": f"no admin route {method} {path}"}
    except (ValueError, TypeError, KeyError) as exc:
        return 400, {"error": f"{type(exc).__name__}: {exc}"}
    return 200, {"ok": True}


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
