"""The ModelArts client against the emulator over real HTTP, with a real Redis for IAM tokens."""

from __future__ import annotations

import json
import logging
import threading

import pytest
import redis
import requests
from pydantic import SecretStr
from redis.backoff import NoBackoff
from redis.retry import Retry

from bot.core.errors import InvalidIdError
from bot.core.settings import load_settings
from bot.modelarts import models
from bot.modelarts.auth import IAM_AUTH_FAILED, AkSkAuth
from bot.modelarts.client import ModelArtsClient, build_client, hint_for
from bot.modelarts.models import Failure, JobVersion, StopOutcome
from bot.modelarts.refs import V1Job
from botdev.emulator import (
    EMULATOR_AK,
    EMULATOR_PASSWORD,
    EMULATOR_PROJECT_ID,
    EMULATOR_PROJECT_NAME,
    EMULATOR_SK,
    EMULATOR_USERNAME,
    KILLING,
    RUNNING,
)
from botdev.standin.local import free_port

JOB, VERSION = 182626, 278813  # team-a-resnet, running in the default jobs
OTHER_JOB, OTHER_VERSION = 182700, 279001


def stops_received(emulator, job: int, version: int) -> int:
    suffix = f"/training-jobs/{job}/versions/{version}/stop"
    return sum(1 for r in emulator.requests if r.method == "POST" and r.path.endswith(suffix))


def aksk_client(emulator, session, sk: str = EMULATOR_SK, timeout: float = 5.0,
                project_id: str = EMULATOR_PROJECT_ID) -> ModelArtsClient:
    auth = AkSkAuth(EMULATOR_AK, SecretStr(sk), project_id)
    return ModelArtsClient(emulator.base_url, project_id, auth, session, timeout)


class TestStop:
    def test_running_version_is_stopped_once(self, emulator, modelarts_client):
        outcome = modelarts_client.stop_version(JOB, VERSION)
        assert outcome.is_success and outcome.error_code is None
        assert outcome.http_status == 200 and outcome.request_id
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1
        assert emulator.job(V1Job(JOB, VERSION))["status"] == KILLING

    def test_ids_given_as_strings_are_accepted(self, emulator, modelarts_client):
        assert modelarts_client.stop_version(str(JOB), str(VERSION)).is_success
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_not_running_version_is_a_failure(self, emulator, modelarts_client):
        emulator.set_status(V1Job(JOB, VERSION), 10)
        outcome = modelarts_client.stop_version(JOB, VERSION)
        assert not outcome.is_success and not outcome.unknown
        assert (outcome.error_code, outcome.http_status) == ("ModelArts.2796", 400)
        assert "cannot be terminated" in outcome.error_msg

    def test_failure_with_error_msg(self, emulator, modelarts_client):
        emulator.set_fault(V1Job(JOB, VERSION), "failure", error_code="ModelArts.0108",
                           field="error_msg",
                           error_msg="You are not authorized to perform the (stop) operation",
                           http_status=403)
        outcome = modelarts_client.stop_version(JOB, VERSION)
        assert (outcome.is_success, outcome.error_code, outcome.http_status) == (
            False, "ModelArts.0108", 403)
        assert outcome.error_msg == "You are not authorized to perform the (stop) operation"
        assert outcome.request_id

    def test_failure_with_error_message_and_http_200(self, emulator, modelarts_client):
        emulator.set_fault(V1Job(JOB, VERSION), "failure", error_code="ModelArts.0105",
                           field="error_message", error_msg="Error string", http_status=200)
        outcome = modelarts_client.stop_version(JOB, VERSION)
        assert (outcome.is_success, outcome.error_code, outcome.error_msg) == (
            False, "ModelArts.0105", "Error string")
        assert outcome.http_status == 200

    def test_html_500_is_a_bad_response(self, emulator, modelarts_client):
        emulator.set_fault(V1Job(JOB, VERSION), "html_500")
        outcome = modelarts_client.stop_version(JOB, VERSION)
        assert (outcome.error_code, outcome.http_status) == (models.BAD_RESPONSE, 500)
        assert outcome.error_msg == "HTTP 500 with a non-JSON body"
        assert "<html>" not in outcome.error_msg
        assert hint_for(outcome.error_code, outcome.http_status) == \
            "ModelArts is failing, try again"

    def test_timeout_after_the_stop_is_unknown_and_not_resent(self, emulator, http_session):
        emulator.set_fault(V1Job(JOB, VERSION), "slow", delay=5.0, when="after")
        outcome = aksk_client(emulator, http_session, timeout=0.5).stop_version(JOB, VERSION)
        assert outcome.unknown and outcome.error_code == models.TIMEOUT
        assert "outcome unknown" in outcome.error_msg
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1
        assert stops_received(emulator, JOB, VERSION) == 1

    def test_dropped_connection_after_the_stop_is_not_resent(self, emulator, modelarts_client):
        emulator.set_fault(V1Job(JOB, VERSION), "drop", when="after")
        outcome = modelarts_client.stop_version(JOB, VERSION)
        assert outcome.error_code == models.TRANSPORT and "outcome unknown" in outcome.error_msg
        assert stops_received(emulator, JOB, VERSION) == 1

    def test_refused_connection(self, http_session):
        auth = AkSkAuth(EMULATOR_AK, SecretStr(EMULATOR_SK), EMULATOR_PROJECT_ID)
        client = ModelArtsClient(f"http://127.0.0.1:{free_port()}", EMULATOR_PROJECT_ID, auth,
                                 http_session, 2.0)
        outcome = client.stop_version(JOB, VERSION)
        assert (outcome.is_success, outcome.error_code, outcome.unknown) == (
            False, models.REFUSED, False)
        assert outcome.http_status is None

    def test_wrong_sk_is_refused_by_the_gateway(self, emulator, http_session):
        outcome = aksk_client(emulator, http_session, sk="not-the-sk").stop_version(JOB, VERSION)
        assert (outcome.error_code, outcome.http_status) == ("APIGW.0301", 401)
        assert "verify aksk signature fail" in outcome.error_msg
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0
        assert "MODELARTS_AK" in hint_for(outcome.error_code)

    @pytest.mark.parametrize("job_id, version_id", [
        ("abc", VERSION), (JOB, -1), (0, VERSION), ("182626; DROP", VERSION), (True, VERSION),
        (JOB, 2**63), ("../1", VERSION), (JOB, "1 2"), (JOB, None),
    ])
    def test_bad_ids_send_nothing(self, emulator, modelarts_client, job_id, version_id):
        with pytest.raises(InvalidIdError):
            modelarts_client.stop_version(job_id, version_id)
        with pytest.raises(InvalidIdError):
            modelarts_client.get_version(job_id, version_id)
        assert emulator.requests == []


class TestRead:
    def test_get_version_gives_typed_fields(self, modelarts_client):
        version = modelarts_client.get_version(JOB, VERSION)
        assert isinstance(version, JobVersion)
        assert (version.job_id, version.version_id) == (JOB, VERSION)
        assert (version.job_name, version.version_name) == ("team-a-resnet", "V0002")
        assert version.status == RUNNING and version.stoppable and version.status_name == "RUNNING"
        assert isinstance(version.duration_ms, int) and version.duration_ms > 0
        assert isinstance(version.create_time_ms, int)
        assert isinstance(version.start_time_ms, int)

    def test_unknown_version_is_a_failure(self, modelarts_client):
        result = modelarts_client.get_version(JOB, 1)
        assert isinstance(result, Failure)
        assert (result.error_code, result.http_status) == ("ModelArts.2775", 404)

    def test_list_jobs_pages(self, modelarts_client):
        first = modelarts_client.list_jobs(per_page=2, page=1)
        second = modelarts_client.list_jobs(per_page=2, page=2)
        assert len(first.items) == len(second.items) == 2 and first.count == 6
        assert {j.ref for j in first.items}.isdisjoint(j.ref for j in second.items)
        assert all(isinstance(j, JobVersion) and j.name and j.state for j in first.items)

    def test_wrong_project_is_a_failure(self, emulator, http_session):
        client = aksk_client(emulator, http_session, project_id="f" * 32)
        result = client.list_jobs()
        assert isinstance(result, Failure)
        assert (result.error_code, result.http_status) == ("ModelArts.0210", 403)

    def test_get_fault_applies_to_reads(self, emulator, modelarts_client):
        emulator.set_fault(V1Job(JOB, VERSION), "failure", on="get", error_code="ModelArts.0010",
                           error_msg="Internal error", http_status=500, times=1)
        failed = modelarts_client.get_version(JOB, VERSION)
        assert isinstance(failed, Failure) and failed.error_code == "ModelArts.0010"
        assert isinstance(modelarts_client.get_version(JOB, VERSION), JobVersion)


class TestLookupWording:
    """A look-up changes nothing: a failed one says "could not reach ModelArts: ..." and its
    cause, never "outcome unknown, check the status" (a stop's words), in message and hint."""

    @pytest.mark.parametrize(("fault", "options", "code", "why"), [
        ("drop", {}, models.TRANSPORT, "closed the connection without an answer"),
        ("slow", {"delay": 2.0}, models.TIMEOUT, "no answer in time"),
    ])
    def test_a_failed_look_up_says_why(self, emulator, http_session, fault, options, code, why):
        from bot.flow.stop import lookup_failed

        emulator.set_fault(V1Job(JOB, VERSION), fault, on="get", **options)
        failed = aksk_client(emulator, http_session, timeout=0.5).get_version(JOB, VERSION)
        assert isinstance(failed, Failure) and failed.error_code == code
        assert failed.error_msg == f"could not reach ModelArts: {why}"
        text = lookup_failed(V1Job(JOB, VERSION), failed)
        assert "outcome unknown" not in text and "check the status" not in text
        assert "MODELARTS_ENDPOINT" in text   # the hint: where to look

    def test_a_refused_look_up_says_so(self, http_session):
        auth = AkSkAuth(EMULATOR_AK, SecretStr(EMULATOR_SK), EMULATOR_PROJECT_ID)
        client = ModelArtsClient(f"http://127.0.0.1:{free_port()}", EMULATOR_PROJECT_ID, auth,
                                 http_session, 2.0)
        failed = client.search_jobs(limit=1)   # a POST, and still a look-up
        assert (failed.error_code, failed.error_msg) == (
            models.REFUSED, "could not reach ModelArts: connection refused")

    def test_a_stop_keeps_its_words(self, emulator, http_session):
        emulator.set_fault(V1Job(JOB, VERSION), "drop", when="after")
        outcome = aksk_client(emulator, http_session).stop_version(JOB, VERSION)
        assert outcome.unknown and "outcome unknown" in outcome.error_msg


class TestIamToken:
    def test_one_token_serves_many_calls(self, emulator, make_iam_client):
        client = make_iam_client()
        for _ in range(4):
            assert isinstance(client.get_version(JOB, VERSION), JobVersion)
        assert client.stop_version(JOB, VERSION).is_success
        assert emulator.token_issues == 1

    def test_token_is_shared_through_redis(self, emulator, make_iam_client, redis_client):
        first, second = make_iam_client(), make_iam_client()
        assert isinstance(first.get_version(JOB, VERSION), JobVersion)
        assert isinstance(second.get_version(JOB, VERSION), JobVersion)
        assert emulator.token_issues == 1
        key = first._auth.key
        assert redis_client.get(key) is not None
        assert 0 < redis_client.ttl(key) <= 86400 - 300

    def test_concurrent_replicas_fetch_one_token(self, emulator, make_iam_client):
        clients = [make_iam_client() for _ in range(6)]
        results: list[object] = []
        threads = [threading.Thread(target=lambda c=c: results.append(c.get_version(JOB, VERSION)))
                   for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(results) == 6 and all(isinstance(r, JobVersion) for r in results)
        assert emulator.token_issues == 1

    def test_expired_token_is_refetched_once(self, emulator, make_iam_client):
        client = make_iam_client()
        assert isinstance(client.get_version(JOB, VERSION), JobVersion)
        emulator.expire_tokens()
        before = len(emulator.requests)
        assert client.stop_version(JOB, VERSION).is_success
        assert emulator.token_issues == 2
        after = emulator.requests[before:]
        assert [r.path.rsplit("/", 1)[-1] for r in after] == ["stop", "tokens", "stop"]
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 1

    def test_unknown_token_in_redis_is_replaced(self, emulator, make_iam_client, redis_client):
        client = make_iam_client()
        redis_client.set(client._auth.key, "MIIforged-token")
        assert client.stop_version(JOB, VERSION).is_success
        assert emulator.token_issues == 1
        assert redis_client.get(client._auth.key) not in (None, b"MIIforged-token")

    def test_modelarts_token_error_triggers_a_refetch(self, emulator, make_iam_client):
        client = make_iam_client()
        emulator.set_fault(V1Job(JOB, VERSION), "failure", on="get", http_status=401,
                           error_code="ModelArts.0202",
                           error_msg="Invalid Token header. Token expired", times=1)
        assert isinstance(client.get_version(JOB, VERSION), JobVersion)
        assert emulator.token_issues == 2

    def test_gives_up_after_one_refetch(self, emulator, make_iam_client):
        emulator.gate.token_ttl = 0  # every token is already expired when issued
        outcome = make_iam_client().stop_version(JOB, VERSION)
        assert (outcome.is_success, outcome.error_code, outcome.http_status) == (
            False, "APIGW.0301", 401)
        assert "token expires" in outcome.error_msg
        assert emulator.token_issues == 2
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

    def test_wrong_password_is_a_failure(self, emulator, make_iam_client):
        outcome = make_iam_client(password="wrong-password-123").stop_version(JOB, VERSION)
        assert (outcome.error_code, outcome.http_status) == (IAM_AUTH_FAILED, 401)
        assert "username or password is wrong" in outcome.error_msg
        assert "wrong-password-123" not in repr(outcome)
        assert [r.path for r in emulator.requests] == ["/v3/auth/tokens"]

    def test_works_without_redis(self, emulator, make_iam_client):
        """With Redis down the token is kept in the process: the bot still works."""
        dead = redis.Redis(port=free_port(), socket_connect_timeout=0.5, socket_timeout=0.5,
                           retry=Retry(NoBackoff(), 0))
        client = make_iam_client(store=dead)
        for _ in range(3):
            assert isinstance(client.get_version(JOB, VERSION), JobVersion)
        assert emulator.token_issues == 1


class TestNoSecretLeaks:
    def test_no_sk_password_or_token_in_failures_or_logs(self, emulator, http_session,
                                                         make_iam_client, caplog):
        caplog.set_level(logging.DEBUG)
        results = [
            aksk_client(emulator, http_session, sk="wrong-sk-value").stop_version(JOB, VERSION),
            make_iam_client(password="wrong-password-value").get_version(JOB, VERSION),
        ]
        client = make_iam_client()
        results.append(client.get_version(JOB, VERSION))
        emulator.expire_tokens()
        emulator.set_fault(V1Job(JOB, VERSION), "html_500")
        results.append(client.stop_version(JOB, VERSION))
        emulator.gate.token_ttl = 0
        emulator.expire_tokens()
        results.append(client.stop_version(OTHER_JOB, OTHER_VERSION))
        failures = [r for r in results
                    if isinstance(r, Failure) or (isinstance(r, StopOutcome) and not r.is_success)]
        assert len(failures) == 4
        tokens = {r.headers["X-Auth-Token"] for r in emulator.requests
                  if "X-Auth-Token" in r.headers}
        assert len(tokens) >= 3
        secrets = {EMULATOR_SK, "wrong-sk-value", EMULATOR_PASSWORD, "wrong-password-value",
                   *tokens}
        text = caplog.text + "\n".join(repr(f) for f in failures)
        assert caplog.records, "expected the client to log something"
        for secret in secrets:
            assert secret not in text


class TestHints:
    @pytest.mark.parametrize(("code", "words"), [
        ("ModelArts.2796", "no longer running"),
        (models.TIMEOUT, "outcome unknown"),
        ("APIGW.0301", "MODELARTS_AK"),
        ("APIG.0301", "MODELARTS_AK"),
        ("ModelArts.0202", "new token"),
        (models.REFUSED, "MODELARTS_ENDPOINT"),
    ])
    def test_known_codes_have_hints(self, code, words):
        assert words in hint_for(code)

    def test_placeholder_code_has_no_meaning(self):
        assert hint_for("ModelArts.0105") is None
        assert hint_for("ModelArts.0105", 400) is None


class TestBuildClient:
    def test_aksk_settings(self, emulator, emulator_env, redis_client, key_prefix):
        settings = load_settings(**emulator_env)
        with requests.Session() as session:
            client = build_client(settings, redis_client, key_prefix, session)
            assert isinstance(client._auth, AkSkAuth)
            assert client.stop_version(JOB, VERSION).is_success

    def iam_settings(self, emulator, **more):
        return load_settings(
            MODELARTS_ENDPOINT=emulator.base_url, MODELARTS_PROJECT_ID=EMULATOR_PROJECT_ID,
            MODELARTS_AK=None, MODELARTS_SK=None, MODELARTS_IAM_ENDPOINT=emulator.base_url,
            MODELARTS_USERNAME=EMULATOR_USERNAME, MODELARTS_PASSWORD=EMULATOR_PASSWORD,
            MODELARTS_DOMAIN="emulator-account", **{"MODELARTS_PROJECT_NAME": None, **more})

    def test_iam_settings_with_only_the_project_id(self, emulator, redis_client, key_prefix):
        with requests.Session() as session:
            client = build_client(self.iam_settings(emulator), redis_client, key_prefix, session)
            assert client.stop_version(JOB, VERSION).is_success
        assert emulator.token_issues == 1
        token_request = json.loads(emulator.requests[0].body)
        assert token_request["auth"]["scope"] == {"project": {"id": EMULATOR_PROJECT_ID}}
        assert redis_client.exists(client._auth.key)
        assert client._auth.key.startswith(key_prefix + "{iam}:")

    def test_project_name_overrides_the_scope(self, emulator, redis_client, key_prefix):
        settings = self.iam_settings(emulator, MODELARTS_PROJECT_NAME=EMULATOR_PROJECT_NAME)
        with requests.Session() as session:
            client = build_client(settings, redis_client, key_prefix, session)
            assert client.stop_version(JOB, VERSION).is_success
        token_request = json.loads(emulator.requests[0].body)
        assert token_request["auth"]["scope"] == {"project": {"name": EMULATOR_PROJECT_NAME}}

    def test_wrong_project_name_is_refused_by_iam(self, emulator, redis_client, key_prefix):
        settings = self.iam_settings(emulator, MODELARTS_PROJECT_NAME="eu-west-0")
        with requests.Session() as session:
            client = build_client(settings, redis_client, key_prefix, session)
            outcome = client.stop_version(JOB, VERSION)
        assert (outcome.is_success, outcome.error_code, outcome.http_status) == (
            False, IAM_AUTH_FAILED, 401)
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0 and emulator.token_issues == 0

    def test_id_and_name_scopes_keep_separate_tokens(self, emulator, make_iam_client):
        by_id, by_name = make_iam_client(), make_iam_client(project_name=EMULATOR_PROJECT_NAME)
        assert by_id._auth.key != by_name._auth.key
        assert isinstance(by_id.get_version(JOB, VERSION), JobVersion)
        assert isinstance(by_name.get_version(JOB, VERSION), JobVersion)
        assert emulator.token_issues == 2


class TestV2:
    """The v2 calls and the one interface over both APIs, against the emulator."""

    RESNET = "3faf5c03-aaa1-4cbe-879d-24b05d997347"

    def test_get_job_gives_typed_fields(self, modelarts_client):
        from bot.modelarts.models import TrainingJob

        job = modelarts_client.get_job(self.RESNET)
        assert isinstance(job, TrainingJob)
        assert (job.name, job.phase, job.user_name, job.node_count) == (
            "team-a-resnet50", "Running", "alice", 8)
        assert job.stoppable and not job.final and job.flavor_name and job.pool_name
        assert job.duration_ms is not None and job.duration_ms > 0

    def test_lookup_and_stop_dispatch_on_the_ref(self, modelarts_client, emulator):
        from bot.modelarts.refs import V1Job, V2Job

        assert modelarts_client.lookup(V2Job(self.RESNET)).name == "team-a-resnet50"
        assert modelarts_client.lookup(V1Job(182626, 278813)).name == "team-a-resnet"
        outcome = modelarts_client.stop(V2Job(self.RESNET))
        assert outcome.is_success and outcome.http_status == 202
        assert emulator.stop_count(V2Job(self.RESNET)) == 1
        assert emulator.stop_count(V1Job(182626, 278813)) == 0
        assert modelarts_client.lookup(V2Job(self.RESNET)).stopping

    def test_terminate_refused_is_a_typed_outcome(self, modelarts_client, emulator):
        from bot.modelarts.refs import V2Job

        done = "2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b"   # Completed
        outcome = modelarts_client.terminate_job(done)
        assert not outcome.is_success and not outcome.unknown
        assert (outcome.error_code, outcome.http_status) == ("ModelArts.2796", 409)
        assert outcome.request_id
        assert emulator.stop_count(V2Job(done)) == 1

    def test_unknown_id_is_2775_with_400(self, modelarts_client):
        from bot.modelarts.models import Failure

        found = modelarts_client.get_job("00000000-0000-4000-8000-000000000000")
        assert isinstance(found, Failure)
        assert (found.error_code, found.http_status) == ("ModelArts.2775", 400)

    @pytest.mark.parametrize("bad", ["", "abc", "3faf5c03/../../x", "a" * 37, 42, None,
                                     "3faf5c03-aaa1-4cbe-879d-24b05d99734\n"])
    def test_malformed_ids_never_reach_the_wire(self, modelarts_client, emulator, bad):
        with pytest.raises(InvalidIdError):
            modelarts_client.get_job(bad)
        with pytest.raises(InvalidIdError):
            modelarts_client.terminate_job(bad)
        assert not emulator.requests

    def test_search_pages_and_filters(self, modelarts_client, emulator):
        emulator.add_training_jobs(60, name_prefix="bulk-")
        first = modelarts_client.search_jobs(("Running",), name="bulk-", page=0)
        second = modelarts_client.search_jobs(("Running",), name="bulk-", page=1)
        assert first.count == 60 and len(first.items) == 50 and len(second.items) == 10
        ids = [j.id for j in first.items + second.items]
        assert len(set(ids)) == 60
        times = [j.create_time_ms for j in first.items]
        assert times == sorted(times, reverse=True)

    def test_timeout_of_a_terminate_is_unknown_and_sent_once(self, emulator, http_session):
        from bot.modelarts.auth import AkSkAuth
        from bot.modelarts.client import ModelArtsClient
        from bot.modelarts.refs import V2Job
        from botdev.emulator import EMULATOR_AK, EMULATOR_PROJECT_ID, EMULATOR_SK

        client = ModelArtsClient(emulator.base_url, EMULATOR_PROJECT_ID,
                                 AkSkAuth(EMULATOR_AK, SecretStr(EMULATOR_SK),
                                          EMULATOR_PROJECT_ID), http_session, 0.3)
        emulator.set_fault(V2Job(self.RESNET), "slow", delay=1.0, when="after")
        outcome = client.terminate_job(self.RESNET)
        assert outcome.unknown and outcome.error_code == "BOT.TIMEOUT"
        assert emulator.stop_count(V2Job(self.RESNET)) == 1
