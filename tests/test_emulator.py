"""The emulator over raw HTTP: its gateway checks, job states, errors and fault injection."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from bot.modelarts import signer
from bot.modelarts.models import JobVersion
from bot.modelarts.refs import V1Job
from botdev.emulator import (
    EMULATOR_AK,
    EMULATOR_DOMAIN,
    EMULATOR_PASSWORD,
    EMULATOR_PROJECT_ID,
    EMULATOR_PROJECT_NAME,
    EMULATOR_SK,
    EMULATOR_USERNAME,
    KILLED,
    KILLING,
    RUNNING,
    Emulator,
)

JOB, VERSION = 182626, 278813
BASE = f"/v1/{EMULATOR_PROJECT_ID}/training-jobs"
STOP = f"{BASE}/{JOB}/versions/{VERSION}/stop"
REF = V1Job(JOB, VERSION)
FAULTS = f"faults/{REF.key}"


def send_signed(emulator, session, method, path, params=(), *, sk=EMULATOR_SK, now=None,
                sign_path=None, sign_params=None):
    """Sign like the SDK (optionally over another path or query) and send."""
    url = emulator.base_url + path
    headers = signer.sign(method, emulator.base_url + (sign_path or path),
                          {"Content-Type": "application/json", "X-Project-Id": EMULATOR_PROJECT_ID},
                          None, EMULATOR_AK, sk,
                          params if sign_params is None else sign_params, now=now)
    query = signer.canonical_query(params)
    return session.request(method, f"{url}?{query}" if query else url, headers=headers, timeout=5)


def fetch_token(emulator, session, password=EMULATOR_PASSWORD,
                scope=(("name", EMULATOR_PROJECT_NAME),)) -> requests.Response:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": EMULATOR_USERNAME, "password": password, "domain": {"name": EMULATOR_DOMAIN}}}},
        "scope": {"project": dict(scope)}}}
    return session.post(emulator.base_url + "/v3/auth/tokens", json=body, timeout=5)


def with_token(emulator, session, method, path, token):
    return session.request(method, emulator.base_url + path, headers={"X-Auth-Token": token},
                           timeout=5)


def admin(emulator, session, method, route, body=None) -> requests.Response:
    return session.request(method, f"{emulator.base_url}/_emulator/{route}", json=body, timeout=5)


def wait_for(predicate, timeout=10.0):
    """Poll until ``predicate()`` is truthy; its last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


class TestSignatureGate:
    def test_correct_signature_is_accepted(self, emulator, http_session):
        resp = send_signed(emulator, http_session, "GET", BASE, [("per_page", 2), ("page", 1)])
        assert resp.status_code == 200 and resp.json()["is_success"] is True
        assert resp.headers["X-Request-Id"]

    def test_wrong_sk_is_rejected(self, emulator, http_session):
        resp = send_signed(emulator, http_session, "POST", STOP, sk="not-the-sk")
        assert resp.status_code == 401
        body = resp.json()
        assert body["error_code"] == "APIGW.0301"
        assert body["error_msg"] == ("Incorrect IAM authentication information: "
                                     "verify aksk signature fail")
        assert body["request_id"] and resp.headers["X-Request-Id"]
        assert emulator.stop_count(REF) == 0

    def test_signature_covers_the_path(self, emulator, http_session):
        other = f"{BASE}/{JOB}/versions/278812/stop"
        resp = send_signed(emulator, http_session, "POST", STOP, sign_path=other)
        assert resp.status_code == 401
        assert emulator.stop_count(REF) == 0

    def test_signature_covers_the_query(self, emulator, http_session):
        resp = send_signed(emulator, http_session, "GET", BASE, [("per_page", 5)],
                           sign_params=[("per_page", 1)])
        assert resp.status_code == 401

    def test_stale_date_is_rejected(self, emulator, http_session):
        stale = datetime.now(UTC) - timedelta(minutes=20)
        resp = send_signed(emulator, http_session, "GET", BASE, now=stale)
        assert resp.status_code == 401
        assert resp.json()["error_code"] == "APIGW.0301"
        assert "15 minutes" in resp.json()["error_msg"]

    def test_date_within_fifteen_minutes_is_accepted(self, emulator, http_session):
        recent = datetime.now(UTC) - timedelta(minutes=10)
        assert send_signed(emulator, http_session, "GET", BASE, now=recent).status_code == 200

    def test_no_credentials_is_rejected(self, emulator, http_session):
        resp = http_session.get(emulator.base_url + BASE, timeout=5)
        assert resp.status_code == 401
        assert resp.json()["error_msg"].endswith("x-auth-token not found")


class TestTokens:
    def test_password_gives_a_token(self, emulator, http_session):
        resp = fetch_token(emulator, http_session)
        assert resp.status_code == 201
        expires = datetime.fromisoformat(resp.json()["token"]["expires_at"])
        assert expires > datetime.now(UTC) + timedelta(hours=23)
        token = resp.headers["X-Subject-Token"]
        assert with_token(emulator, http_session, "GET", BASE, token).status_code == 200
        assert emulator.token_issues == 1

    def test_project_scope_by_id_gives_a_token_carrying_the_project(self, emulator, http_session):
        resp = fetch_token(emulator, http_session, scope=[("id", EMULATOR_PROJECT_ID)])
        assert resp.status_code == 201
        project = resp.json()["token"]["project"]
        assert (project["id"], project["name"]) == (EMULATOR_PROJECT_ID, EMULATOR_PROJECT_NAME)
        token = resp.headers["X-Subject-Token"]
        assert emulator.gate.project_of(token) == EMULATOR_PROJECT_ID
        assert with_token(emulator, http_session, "GET", BASE, token).status_code == 200

    @pytest.mark.parametrize("scope", [[("id", "f" * 32)], [("name", "eu-west-0")],
                                       [("id", "f" * 32), ("name", EMULATOR_PROJECT_NAME)]])
    def test_wrong_project_gives_no_token(self, emulator, http_session, scope):
        """A wrong id is refused even beside a right name: the id wins, as in IAM."""
        resp = fetch_token(emulator, http_session, scope=scope)
        assert resp.status_code == 401 and "X-Subject-Token" not in resp.headers
        assert resp.json()["error"]["code"] == 401 and emulator.token_issues == 0

    def test_scope_naming_no_project_is_400(self, emulator, http_session):
        resp = fetch_token(emulator, http_session, scope=[])
        assert resp.status_code == 400 and resp.json()["error_code"] == "IAM.0007"
        assert emulator.token_issues == 0

    def test_wrong_password_gives_no_token(self, emulator, http_session):
        resp = fetch_token(emulator, http_session, password="nope")
        assert resp.status_code == 401 and "X-Subject-Token" not in resp.headers
        assert emulator.token_issues == 0

    def test_wrong_token_is_rejected(self, emulator, http_session):
        resp = with_token(emulator, http_session, "POST", STOP, "MIIforged")
        assert resp.status_code == 401
        assert resp.json() | {"request_id": None} == {
            "error_code": "APIGW.0301", "request_id": None,
            "error_msg": "Incorrect IAM authentication information: decrypt token fail"}
        assert emulator.stop_count(REF) == 0

    def test_expired_token_is_rejected(self, emulator, http_session):
        token = fetch_token(emulator, http_session).headers["X-Subject-Token"]
        emulator.expire_tokens()
        resp = with_token(emulator, http_session, "GET", BASE, token)
        assert resp.status_code == 401 and "token expires" in resp.json()["error_msg"]

    def test_token_expires_with_time(self, emulator, http_session):
        token = fetch_token(emulator, http_session).headers["X-Subject-Token"]
        emulator.advance(86400 + 1)
        assert with_token(emulator, http_session, "GET", BASE, token).status_code == 401


class TestJobs:
    def test_stop_goes_running_killing_killed(self, emulator, modelarts_client):
        emulator.stop_delay = 30.0
        assert modelarts_client.get_version(JOB, VERSION).status == RUNNING
        assert modelarts_client.stop_version(JOB, VERSION).is_success
        assert modelarts_client.get_version(JOB, VERSION).status == KILLING
        emulator.advance(30.0)
        assert modelarts_client.get_version(JOB, VERSION).status == KILLED

    def test_stop_finishes_after_the_delay(self, emulator, modelarts_client):
        emulator.stop_delay = 0.2
        assert modelarts_client.stop_version(JOB, VERSION).is_success
        version = wait_for(lambda: (v := modelarts_client.get_version(JOB, VERSION))
                           .status == KILLED and v)
        assert isinstance(version, JobVersion) and version.status_name == "KILLED"

    def test_not_running_stop_answers_400(self, emulator, http_session):
        emulator.set_status(REF, 10)
        resp = send_signed(emulator, http_session, "POST", STOP)
        assert resp.status_code == 400
        body = resp.json()
        assert body["is_success"] is False and body["error_code"] == "ModelArts.2796"
        assert "error_message" in body
        assert emulator.stop_count(REF) == 1
        assert emulator.job(REF)["status"] == 10

    def test_second_stop_is_refused(self, emulator, http_session):
        assert send_signed(emulator, http_session, "POST", STOP).status_code == 200
        assert send_signed(emulator, http_session, "POST", STOP).status_code == 400
        assert emulator.stop_count(REF) == 2

    def test_unknown_version_answers_404(self, emulator, http_session):
        resp = send_signed(emulator, http_session, "GET", f"{BASE}/999/versions/1")
        assert resp.status_code == 404 and resp.json()["error_code"] == "ModelArts.2775"

    def test_wrong_project_answers_403(self, emulator, http_session):
        resp = send_signed(emulator, http_session, "GET", "/v1/" + "f" * 32 + "/training-jobs")
        assert resp.status_code == 403 and resp.json()["error_code"] == "ModelArts.0210"

    def test_version_list(self, emulator, http_session):
        resp = send_signed(emulator, http_session, "GET", f"{BASE}/{JOB}/versions",
                           [("per_page", 10), ("page", 1)])
        body = resp.json()
        assert body["job_name"] == "team-a-resnet" and body["version_count"] == 2
        assert [v["version_id"] for v in body["versions"]] == [278812, VERSION]

    def test_job_list_pages(self, emulator, http_session):
        pages = [send_signed(emulator, http_session, "GET", BASE, [("per_page", 4), ("page", p)])
                 .json() for p in (1, 2)]
        assert pages[0]["job_total_count"] == 6
        assert [len(p["jobs"]) for p in pages] == [4, 2]

    def test_seed_from_json(self, tmp_path, http_session):
        seed = tmp_path / "jobs.json"
        seed.write_text(json.dumps({"jobs": [{"job_id": 7, "job_name": "tiny", "versions": [
            {"version_id": 70, "status": 8}]}]}))
        with Emulator(seed) as emulator:
            emulator.start()
            assert emulator.job(V1Job(7, 70))["job_name"] == "tiny"
            assert send_signed(emulator, http_session, "POST",
                               f"{BASE}/7/versions/70/stop").status_code == 200
            assert emulator.stop_count(V1Job(7, 70)) == 1


class TestFaultsOverHttp:
    def test_failure_fault_through_the_admin_route(self, emulator, http_session):
        fault = {"kind": "failure", "http_status": 409, "error_code": "ModelArts.2878",
                 "error_msg": "Job status changed", "field": "error_message"}
        assert admin(emulator, http_session, "POST", FAULTS, fault).status_code == 200
        resp = send_signed(emulator, http_session, "POST", STOP)
        assert resp.status_code == 409
        assert resp.json() == {"is_success": False, "error_code": "ModelArts.2878",
                               "error_message": "Job status changed"}
        assert admin(emulator, http_session, "DELETE", "faults").status_code == 200
        assert send_signed(emulator, http_session, "POST", STOP).status_code == 200

    def test_html_500_fault(self, emulator, http_session):
        admin(emulator, http_session, "POST", FAULTS, {"kind": "html_500"})
        resp = send_signed(emulator, http_session, "POST", STOP)
        assert resp.status_code == 500 and resp.headers["Content-Type"] == "text/html"
        assert resp.text.startswith("<html>")
        assert emulator.job(REF)["status"] == RUNNING

    def test_fault_for_a_number_of_times(self, emulator, http_session):
        admin(emulator, http_session, "POST", FAULTS, {"kind": "html_500", "times": 1})
        assert send_signed(emulator, http_session, "POST", STOP).status_code == 500
        assert send_signed(emulator, http_session, "POST", STOP).status_code == 200

    def test_drop_fault_closes_without_an_answer(self, emulator, http_session):
        admin(emulator, http_session, "POST", FAULTS, {"kind": "drop", "when": "after"})
        with pytest.raises(requests.ConnectionError):
            send_signed(emulator, http_session, "POST", STOP)
        assert emulator.stop_count(REF) == 1

    def test_slow_fault_before_the_stop(self, emulator, http_session):
        emulator.set_fault(REF, "slow", delay=5.0, when="before")
        with pytest.raises(requests.ReadTimeout):
            url = emulator.base_url + STOP
            headers = signer.sign("POST", url, {"X-Project-Id": EMULATOR_PROJECT_ID}, None,
                                  EMULATOR_AK, EMULATOR_SK)
            http_session.post(url, headers=headers, timeout=0.3)
        assert emulator.stop_count(REF) == 0

    def test_state_status_and_token_routes(self, emulator, http_session):
        assert admin(emulator, http_session, "POST", f"jobs/v1:{JOB}:{VERSION}/status",
                     {"status": 11}).status_code == 200
        assert emulator.job(REF)["status"] == 11
        token = fetch_token(emulator, http_session).headers["X-Subject-Token"]
        assert admin(emulator, http_session, "POST", "expire-tokens").status_code == 200
        assert with_token(emulator, http_session, "GET", BASE, token).status_code == 401
        assert admin(emulator, http_session, "POST", "stop-delay", {"seconds": 0}).ok
        state = admin(emulator, http_session, "GET", "state").json()
        assert state["token_issues"] == 1 and state["stop_delay"] == 0
        assert any(j["job_id"] == JOB for j in state["jobs"])

    def test_stop_counts_in_state(self, emulator, http_session):
        send_signed(emulator, http_session, "POST", STOP)
        state = admin(emulator, http_session, "GET", "state").json()
        assert state["stop_counts"] == {f"{JOB}/{VERSION}": 1}

    def test_bad_fault_is_refused(self, emulator, http_session):
        resp = admin(emulator, http_session, "POST", FAULTS, {"kind": "explode"})
        assert resp.status_code == 400
        assert send_signed(emulator, http_session, "POST", STOP).status_code == 200
