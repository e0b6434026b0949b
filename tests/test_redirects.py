"""No ModelArts or IAM call follows a redirect, and only ModelArts's own answer accepts a stop.

Over real HTTP on loopback: a ``Server`` that answers 3xx (the configured endpoint) points at a
second ``Server`` (the foreign host) that records all it receives, which must stay nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from pydantic import SecretStr

from bot.app import doctor
from bot.core.settings import load_settings
from bot.modelarts import models
from bot.modelarts.auth import TOKEN_HEADER, AkSkAuth, IamTokenAuth
from bot.modelarts.client import ModelArtsClient, hint_for
from bot.modelarts.models import Failure
from bot.modelarts.refs import JobRef, V1Job, V2Job
from botdev.emulator import (
    EMULATOR_AK,
    EMULATOR_DOMAIN,
    EMULATOR_PASSWORD,
    EMULATOR_PROJECT_ID,
    EMULATOR_SK,
    EMULATOR_USERNAME,
)

V1_RUNNING = V1Job(182626, 278813)                          # team-a-resnet
V2_RUNNING = V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347")  # team-a-resnet50
V2_OTHER = V2Job("2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b")    # another job, Completed
PASSWORD = "redirect-test-Pa55word"  # noqa: S105 - a test value, looked for where it must not be
FOREIGN_OK = (200, {}, b'{"ok": true}')

Reply = tuple[int, dict[str, str], bytes]


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Server:
    """An HTTP server on a free loopback port: answers each request with ``reply(method, path)``
    and records what it received."""

    def __init__(self, reply: Callable[[str, str], Reply]) -> None:
        self.reply = reply
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.received.append(Received(self.command, self.path, dict(self.headers), body))
                status, headers, payload = server.reply(self.command, self.path)
                self.send_response(status)
                for name, value in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def servers() -> Iterator[Callable[[Callable[[str, str], Reply]], Server]]:
    """Start Servers for this test; all are closed afterwards."""
    started: list[Server] = []

    def start(reply: Callable[[str, str], Reply]) -> Server:
        started.append(Server(reply))
        return started[-1]

    yield start
    for server in started:
        server.close()


@pytest.fixture
def foreign(servers) -> Server:
    """The foreign host: answers 200 {"ok": true} to anything, and records it."""
    return servers(lambda method, path: FOREIGN_OK)


def redirecting_to(target: Server, status: int = 307) -> Callable[[str, str], Reply]:
    return lambda method, path: (status, {"Location": target.url + path}, b"")


def aksk_client(endpoint: str, session: requests.Session) -> ModelArtsClient:
    auth = AkSkAuth(EMULATOR_AK, SecretStr(EMULATOR_SK), EMULATOR_PROJECT_ID)
    return ModelArtsClient(endpoint, EMULATOR_PROJECT_ID, auth, session, 5.0)


def iam_client(endpoint: str, iam_endpoint: str, session, redis_client, key_prefix,
               password: str = EMULATOR_PASSWORD) -> ModelArtsClient:
    auth = IamTokenAuth(iam_endpoint, EMULATOR_USERNAME, SecretStr(password), EMULATOR_DOMAIN,
                        EMULATOR_PROJECT_ID, session, redis_client, key_prefix, 5.0)
    return ModelArtsClient(endpoint, EMULATOR_PROJECT_ID, auth, session, 5.0)


def modelarts_redirect(target: Server) -> str:
    return f"ModelArts answered a redirect to 127.0.0.1:{target.port}: check MODELARTS_ENDPOINT"


BOTH = pytest.mark.parametrize("ref", [V1_RUNNING, V2_RUNNING], ids=["v1", "v2"])


class TestModelArtsRedirect:
    @BOTH
    def test_lookup_is_a_redirect_failure_and_the_target_gets_nothing(
            self, servers, foreign, http_session, ref: JobRef):
        endpoint = servers(redirecting_to(foreign))
        found = aksk_client(endpoint.url, http_session).lookup(ref)
        assert foreign.received == []
        assert found == Failure(models.REDIRECT, modelarts_redirect(foreign), 307)
        assert [r.method for r in endpoint.received] == ["GET"]

    @BOTH
    @pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
    def test_stop_is_a_redirect_failure_sent_once(self, servers, foreign, http_session,
                                                  ref: JobRef, status: int):
        endpoint = servers(redirecting_to(foreign, status))
        outcome = aksk_client(endpoint.url, http_session).stop(ref)
        assert foreign.received == []
        assert (outcome.is_success, outcome.unknown, outcome.error_code, outcome.http_status) == (
            False, False, models.REDIRECT, status)
        assert outcome.error_msg == modelarts_redirect(foreign)
        assert hint_for(models.REDIRECT)
        assert [r.method for r in endpoint.received] == ["POST"]

    def test_the_iam_token_never_reaches_the_target(
            self, emulator, servers, foreign, http_session, redis_client, key_prefix):
        """IAM (the emulator) gives a token; the ModelArts endpoint redirects the GET and the
        terminate, which must not go to the foreign host with X-Auth-Token."""
        endpoint = servers(redirecting_to(foreign))
        client = iam_client(endpoint.url, emulator.base_url, http_session, redis_client,
                            key_prefix)
        found, outcome = client.lookup(V2_RUNNING), client.stop(V2_RUNNING)
        assert [r.headers.get(TOKEN_HEADER) for r in foreign.received] == []
        assert (found.error_code, outcome.error_code) == (models.REDIRECT, models.REDIRECT)
        assert len(endpoint.received) == 2
        assert all(TOKEN_HEADER in r.headers for r in endpoint.received)

    def test_the_message_names_only_the_host(self, servers, foreign, http_session):
        """Location's user info, path, query and fragment are left out of the message."""
        location = (f"http://user:loc-secret@127.0.0.1:{foreign.port}/v2/{EMULATOR_PROJECT_ID}"
                    "/x?token=abc123#frag")
        endpoint = servers(lambda method, path: (307, {"Location": location}, b""))
        outcome = aksk_client(endpoint.url, http_session).stop(V2_RUNNING)
        assert foreign.received == []
        assert outcome.error_msg == modelarts_redirect(foreign)

    def test_a_3xx_without_location_and_an_ok_body_is_no_success(self, servers, http_session):
        endpoint = servers(lambda method, path: (300, {}, b'{"ok": true}'))
        outcome = aksk_client(endpoint.url, http_session).stop(V2_RUNNING)
        assert (outcome.is_success, outcome.error_code, outcome.error_msg) == (
            False, models.REDIRECT, "ModelArts answered a redirect (HTTP 300) to no readable "
            "host: check MODELARTS_ENDPOINT")


class TestIamRedirect:
    def test_the_password_is_not_posted_to_the_target(
            self, emulator, servers, foreign, http_session, redis_client, key_prefix, caplog):
        iam = servers(redirecting_to(foreign))
        client = iam_client(emulator.base_url, iam.url, http_session, redis_client, key_prefix,
                            password=PASSWORD)
        found = client.lookup(V2_RUNNING)
        outcome = client.stop(V2_RUNNING)
        assert [r.body for r in foreign.received] == []
        expected = (f"IAM answered a redirect to 127.0.0.1:{foreign.port}: "
                    "check MODELARTS_IAM_ENDPOINT")
        assert found == Failure(models.REDIRECT, expected, 307)
        assert (outcome.is_success, outcome.error_code, outcome.error_msg) == (
            False, models.REDIRECT, expected)
        assert PASSWORD.encode() in iam.received[0].body  # the configured endpoint got it, only
        assert emulator.requests == [] and emulator.stop_count(V2_RUNNING) == 0
        assert PASSWORD not in caplog.text

    def test_doctor_names_the_iam_redirect(self, emulator, servers, foreign, redis_url,
                                           key_prefix):
        iam = servers(redirecting_to(foreign))
        settings = load_settings(
            MODELARTS_ENDPOINT=emulator.base_url, MODELARTS_PROJECT_ID=EMULATOR_PROJECT_ID,
            MODELARTS_AK=None, MODELARTS_SK=None, MODELARTS_IAM_ENDPOINT=iam.url,
            MODELARTS_USERNAME=EMULATOR_USERNAME, MODELARTS_PASSWORD=PASSWORD,
            MODELARTS_DOMAIN=EMULATOR_DOMAIN, MODELARTS_PROJECT_NAME=None,
            REDIS_URL=redis_url, REDIS_KEY_PREFIX=key_prefix)
        with pytest.raises(doctor.Problem) as raised:
            doctor.check_modelarts(settings)
        assert foreign.received == []
        assert f"IAM answered a redirect to 127.0.0.1:{foreign.port}" in str(raised.value)
        assert PASSWORD not in str(raised.value)

    def test_doctor_names_the_modelarts_redirect(self, servers, foreign, redis_url, key_prefix):
        endpoint = servers(redirecting_to(foreign))
        settings = load_settings(
            MODELARTS_ENDPOINT=endpoint.url, MODELARTS_PROJECT_ID=EMULATOR_PROJECT_ID,
            MODELARTS_AK=EMULATOR_AK, MODELARTS_SK=EMULATOR_SK,
            REDIS_URL=redis_url, REDIS_KEY_PREFIX=key_prefix)
        with pytest.raises(doctor.Problem) as raised:
            doctor.check_modelarts(settings)
        assert foreign.received == []
        assert modelarts_redirect(foreign) in str(raised.value)


class TestStopAccepted:
    """Accepted means a 2xx from ModelArts that says so: v1 is_success true, v2 the job object
    (or no body). The emulator's real answers still are."""

    @pytest.mark.parametrize(("ref", "body"), [
        (V1_RUNNING, {"ok": True}), (V1_RUNNING, {}), (V1_RUNNING, {"is_success": "true"}),
        (V2_RUNNING, {"ok": True}), (V2_RUNNING, {}), (V2_RUNNING, {"is_success": True}),
    ], ids=["v1-ok", "v1-empty-object", "v1-string-true", "v2-ok", "v2-empty-object",
            "v2-is-success"])
    def test_a_foreign_2xx_body_is_not_accepted(self, emulator, servers, http_session,
                                                ref: JobRef, body: dict):
        other = servers(lambda method, path: (200, {}, json.dumps(body).encode()))
        outcome = aksk_client(other.url, http_session).stop(ref)
        assert (outcome.is_success, outcome.error_code, outcome.http_status) == (
            False, models.BAD_RESPONSE, 200)
        assert "not taken as accepted" in (outcome.error_msg or "")
        assert [r.method for r in other.received] == ["POST"]
        real = aksk_client(emulator.base_url, http_session).stop(ref)
        assert real.is_success and real.http_status == (200 if isinstance(ref, V1Job) else 202)

    def test_a_v2_job_object_of_another_job_is_not_accepted(self, emulator, servers,
                                                             http_session):
        another = json.dumps(emulator.job(V2_OTHER)).encode()
        other = servers(lambda method, path: (202, {}, another))
        outcome = aksk_client(other.url, http_session).stop(V2_RUNNING)
        assert (outcome.is_success, outcome.error_code) == (False, models.BAD_RESPONSE)
        assert "names another job" in (outcome.error_msg or "")

    def test_a_v2_terminate_answered_202_with_no_body_is_accepted(self, servers, http_session):
        endpoint = servers(lambda method, path: (202, {}, b""))
        outcome = aksk_client(endpoint.url, http_session).stop(V2_RUNNING)
        assert (outcome.is_success, outcome.http_status) == (True, 202)
