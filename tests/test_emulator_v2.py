"""The emulator's v2 training-job routes over raw HTTP: detail, terminate, searches, faults."""

from __future__ import annotations

import json

import pytest
import requests

from bot.modelarts import signer
from bot.modelarts.refs import V1Job, V2Job
from botdev.emulator import EMULATOR_AK, EMULATOR_PROJECT_ID, EMULATOR_SK, Emulator

RESNET = V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347")  # team-a-resnet50, Running, 8 nodes
PENDING = V2Job("0a1b2c3d-4e5f-4a6b-9c8d-7e6f5a4b3c2d")  # team-b-llm-eval
FINAL = {"Terminated": V2Job("1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"),
         "Completed": V2Job("2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b"),
         "Failed": V2Job("4a5b6c7d-8e9f-4a0b-8c1d-2e3f4a5b6c7d"),
         "Abnormal": V2Job("5c6d7e8f-9a0b-4c1d-9e2f-3a4b5c6d7e8f")}
UNKNOWN = V2Job("ffffffff-ffff-4fff-8fff-ffffffffffff")
V2 = f"/v2/{EMULATOR_PROJECT_ID}"
SEARCHES = f"{V2}/training-job-searches"
TERMINATE = {"action_type": "terminate"}


def path_of(ref: V2Job) -> str:
    return f"{V2}/training-jobs/{ref.training_job_id}"


def signed(emulator, session, method, path, body=None, *, raw: bytes | None = None,
           timeout: float = 5.0) -> requests.Response:
    """Send as the SDK does: AK/SK-signed, X-Project-Id, a JSON body for POST."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    url = emulator.base_url + path
    headers = signer.sign(method, url, {"Content-Type": "application/json;charset=utf-8",
                                        "X-Project-Id": EMULATOR_PROJECT_ID},
                          data, EMULATOR_AK, EMULATOR_SK)
    return session.request(method, url, headers=headers, data=data, timeout=timeout)


def get(emulator, session, ref) -> requests.Response:
    return signed(emulator, session, "GET", path_of(ref))


def terminate(emulator, session, ref, body=TERMINATE, **kw) -> requests.Response:
    return signed(emulator, session, "POST", path_of(ref) + "/actions", body, **kw)


def search(emulator, session, body) -> requests.Response:
    return signed(emulator, session, "POST", SEARCHES, body)


def admin(emulator, session, method, route, body=None) -> requests.Response:
    return session.request(method, f"{emulator.base_url}/_emulator/{route}", json=body, timeout=5)


def phase(emulator, ref) -> str:
    return emulator.job(ref)["status"]["phase"]


class TestDetail:
    def test_running_job_has_the_fields_the_bot_shows(self, emulator, http_session):
        resp = get(emulator, http_session, RESNET)
        assert resp.status_code == 200
        job = resp.json()
        assert job["kind"] == "job"
        assert job["metadata"]["id"] == RESNET.training_job_id
        assert job["metadata"]["name"] == "team-a-resnet50"
        assert job["metadata"]["user_name"] == "alice" and job["metadata"]["workspace_id"] == "0"
        assert job["status"]["phase"] == "Running" and job["status"]["duration"] > 0
        assert job["status"]["start_time"] > job["metadata"]["create_time"] > 0
        resource = job["spec"]["resource"]
        assert resource["node_count"] == 8 and resource["flavor_detail"]["flavor_type"] == "GPU"
        assert resource["pool_name"] == "team-a-v100-pool" and resource["flavor_id"]
        assert job["algorithm"]["engine"]["engine_name"] == "PyTorch"

    def test_seed_has_every_kind_of_phase(self, emulator):
        phases = [j["status"]["phase"] for j in emulator.state()["training_jobs"]]
        assert phases.count("Running") >= 3
        for name in ("Pending", "Terminated", "Completed", "Failed", "Abnormal"):
            assert name in phases

    def test_unknown_id_is_400_2775(self, emulator, http_session):
        resp = get(emulator, http_session, UNKNOWN)
        assert resp.status_code == 400
        assert resp.json()["error_code"] == "ModelArts.2775" and resp.json()["error_msg"]

    @pytest.mark.parametrize("bad", ["short", "x" * 37, "3faf5c03_aaa1_4cbe_879d_24b05d997347"])
    def test_malformed_id_is_400_2788(self, emulator, http_session, bad):
        resp = signed(emulator, http_session, "GET", f"{V2}/training-jobs/{bad}")
        assert resp.status_code == 400 and resp.json()["error_code"] == "ModelArts.2788"

    def test_wrong_project_is_403_0210(self, emulator, http_session):
        path = "/v2/" + "f" * 32 + f"/training-jobs/{RESNET.training_job_id}"
        resp = signed(emulator, http_session, "GET", path)
        assert resp.status_code == 403 and resp.json()["error_code"] == "ModelArts.0210"

    def test_wrong_method_is_the_gateways_404(self, emulator, http_session):
        resp = signed(emulator, http_session, "POST", path_of(RESNET), TERMINATE)
        assert resp.status_code == 404 and resp.json()["error_code"] == "APIGW.0101"

    def test_unsigned_request_is_refused(self, emulator, http_session):
        resp = http_session.get(emulator.base_url + path_of(RESNET), timeout=5)
        assert resp.status_code == 401 and resp.json()["error_code"] == "APIGW.0301"


class TestTerminate:
    def test_running_becomes_terminating_then_terminated(self, emulator, http_session):
        emulator.stop_delay = 30.0
        resp = terminate(emulator, http_session, RESNET)
        assert resp.status_code == 202
        body = resp.json()
        assert body["metadata"]["id"] == RESNET.training_job_id
        assert (body["status"]["phase"], body["status"]["secondary_phase"]) == (
            "Terminating", "Terminating")
        assert phase(emulator, RESNET) == "Terminating"
        emulator.advance(29.0)
        assert get(emulator, http_session, RESNET).json()["status"]["phase"] == "Terminating"
        emulator.advance(1.0)
        assert get(emulator, http_session, RESNET).json()["status"]["phase"] == "Terminated"
        assert emulator.stop_count(RESNET) == 1

    def test_duration_stops_growing_once_terminated(self, emulator, http_session):
        emulator.stop_delay = 0
        took = terminate(emulator, http_session, RESNET).json()["status"]["duration"]
        emulator.advance(600)
        assert emulator.job(RESNET)["status"]["duration"] == took

    def test_pending_job_can_be_terminated(self, emulator, http_session):
        assert terminate(emulator, http_session, PENDING).status_code == 202

    @pytest.mark.parametrize("final", sorted(FINAL))
    def test_final_phase_is_409_2796(self, emulator, http_session, final):
        resp = terminate(emulator, http_session, FINAL[final])
        assert resp.status_code == 409 and resp.json()["error_code"] == "ModelArts.2796"
        assert final in resp.json()["error_msg"]
        assert phase(emulator, FINAL[final]) == final

    def test_second_terminate_is_refused(self, emulator, http_session):
        assert terminate(emulator, http_session, RESNET).status_code == 202
        assert terminate(emulator, http_session, RESNET).status_code == 409
        assert emulator.stop_count(RESNET) == 2

    def test_unknown_id_is_400_2775_and_counts_nothing(self, emulator, http_session):
        resp = terminate(emulator, http_session, UNKNOWN)
        assert resp.status_code == 400 and resp.json()["error_code"] == "ModelArts.2775"
        assert emulator.stop_count(UNKNOWN) == 0

    @pytest.mark.parametrize("body", [{"action_type": "pause"}, {}, {"action_type": None}, [1]])
    def test_other_action_is_400_2812(self, emulator, http_session, body):
        resp = terminate(emulator, http_session, RESNET, body)
        assert resp.status_code == 400 and resp.json()["error_code"] == "ModelArts.2812"
        assert phase(emulator, RESNET) == "Running" and emulator.stop_count(RESNET) == 0

    def test_unreadable_json_is_400_2787(self, emulator, http_session):
        resp = terminate(emulator, http_session, RESNET, raw=b"{not json")
        assert resp.status_code == 400 and resp.json()["error_code"] == "ModelArts.2787"
        assert phase(emulator, RESNET) == "Running"

    def test_set_status_takes_a_phase(self, emulator, http_session):
        emulator.set_status(RESNET, "Completed")
        assert terminate(emulator, http_session, RESNET).status_code == 409
        with pytest.raises(ValueError, match="phase"):
            emulator.set_status(RESNET, "Stopped")
        with pytest.raises(ValueError):
            emulator.set_status(RESNET, 8)


class TestFaults:
    def test_html_500_on_terminate(self, emulator, http_session):
        emulator.set_fault(RESNET, "html_500")
        resp = terminate(emulator, http_session, RESNET)
        assert resp.status_code == 500 and resp.headers["Content-Type"] == "text/html"
        assert phase(emulator, RESNET) == "Running" and emulator.stop_count(RESNET) == 0

    def test_failure_uses_the_v2_error_body(self, emulator, http_session):
        emulator.set_fault(RESNET, "failure", http_status=409, error_code="ModelArts.2878",
                           error_msg="Job status changed", times=1)
        resp = terminate(emulator, http_session, RESNET)
        assert resp.status_code == 409
        assert resp.json() == {"error_code": "ModelArts.2878", "error_msg": "Job status changed"}
        assert terminate(emulator, http_session, RESNET).status_code == 202

    def test_fault_on_get_leaves_terminate_alone(self, emulator, http_session):
        emulator.set_fault(RESNET, "html_500", on="get")
        assert get(emulator, http_session, RESNET).status_code == 500
        assert terminate(emulator, http_session, RESNET).status_code == 202

    def test_slow_after_is_a_timeout_that_took_effect(self, emulator, http_session):
        emulator.set_fault(RESNET, "slow", delay=5.0, when="after")
        with pytest.raises(requests.ReadTimeout):
            terminate(emulator, http_session, RESNET, timeout=0.3)
        assert emulator.stop_count(RESNET) == 1 and phase(emulator, RESNET) == "Terminating"

    def test_drop_before_is_a_lost_stop_that_did_nothing(self, emulator, http_session):
        emulator.set_fault(RESNET, "drop", when="before")
        with pytest.raises(requests.ConnectionError):
            terminate(emulator, http_session, RESNET)
        assert emulator.stop_count(RESNET) == 0 and phase(emulator, RESNET) == "Running"

    def test_fault_on_one_job_spares_the_others(self, emulator, http_session):
        emulator.set_fault(RESNET, "html_500", on="any")
        assert get(emulator, http_session, PENDING).status_code == 200
        assert terminate(emulator, http_session, PENDING).status_code == 202


class TestStuck:
    def test_v2_stop_accepted_but_never_terminated(self, emulator, http_session):
        emulator.stop_delay = 0.5
        emulator.set_fault(RESNET, "stuck")
        assert terminate(emulator, http_session, RESNET).status_code == 202
        emulator.advance(86400)  # the gate's clock too: read the state directly
        assert phase(emulator, RESNET) == "Terminating"
        assert emulator.stop_count(RESNET) == 1

    def test_v1_stop_stays_killing(self, emulator, http_session):
        ref = V1Job(182626, 278813)
        emulator.stop_delay = 0.5
        emulator.set_fault(ref, "stuck")
        path = f"/v1/{EMULATOR_PROJECT_ID}/training-jobs/182626/versions/278813/stop"
        assert signed(emulator, http_session, "POST", path).json() == {"is_success": True}
        emulator.advance(86400)
        assert emulator.job(ref)["status"] == 9

    def test_stuck_does_not_touch_gets_and_other_jobs(self, emulator, http_session):
        emulator.stop_delay = 0
        emulator.set_fault(RESNET, "stuck", on="any")
        assert get(emulator, http_session, RESNET).status_code == 200
        assert terminate(emulator, http_session, PENDING).status_code == 202
        assert phase(emulator, PENDING) == "Terminated"

    def test_stuck_on_get_is_refused(self, emulator):
        with pytest.raises(ValueError, match="stuck"):
            emulator.set_fault(RESNET, "stuck", on="get")


class TestSearches:
    def test_default_page_is_newest_first(self, emulator, http_session):
        body = search(emulator, http_session, {}).json()
        times = [j["metadata"]["create_time"] for j in body["items"]]
        assert times == sorted(times, reverse=True)
        assert body["total"] == body["count"] == 8 and (body["offset"], body["limit"]) == (0, 10)
        assert body["order"] == "desc" and body["sort_by"] == "create_time"

    def test_phase_in_and_name_like(self, emulator, http_session):
        filters = [{"key": "phase", "operator": "in", "value": ["Running", "Pending"]},
                   {"key": "name", "operator": "like", "value": ["TEAM-A"]}]
        body = search(emulator, http_session, {"limit": 50, "filters": filters}).json()
        names = sorted(j["metadata"]["name"] for j in body["items"])
        assert names == ["team-a-llama-sft", "team-a-resnet50"] and body["count"] == 2

    def test_offset_is_a_page_index(self, emulator, http_session):
        refs = emulator.add_training_jobs(60, name_prefix="page-")
        running = [{"key": "phase", "operator": "in", "value": ["Running"]},
                   {"key": "name", "operator": "like", "value": ["page-"]}]
        pages = [search(emulator, http_session, {"offset": n, "limit": 25, "filters": running,
                                                  "order": "asc"}).json() for n in range(3)]
        assert [len(p["items"]) for p in pages] == [25, 25, 10]
        assert all(p["count"] == 60 for p in pages)
        ids = [j["metadata"]["id"] for p in pages for j in p["items"]]
        assert ids == [r.training_job_id for r in refs]

    @pytest.mark.parametrize("body", [
        {"limit": 0}, {"limit": 51}, {"offset": -1}, {"limit": "10"}, {"order": "up"},
        {"sort_by": "name"}, {"filters": [{"key": "phase", "operator": "like", "value": ["R"]}]},
        {"filters": [{"key": "colour", "operator": "in", "value": ["red"]}]},
        {"filters": [{"key": "phase", "operator": "in", "value": "Running"}]},
        {"filters": "phase"}, [],
    ])
    def test_bad_search_is_400_2788(self, emulator, http_session, body):
        resp = search(emulator, http_session, body)
        assert resp.status_code == 400 and resp.json()["error_code"] == "ModelArts.2788"

    def test_unreadable_search_is_400_2787(self, emulator, http_session):
        resp = signed(emulator, http_session, "POST", SEARCHES, raw=b"[")
        assert resp.status_code == 400 and resp.json()["error_code"] == "ModelArts.2787"

    def test_terminated_jobs_leave_the_running_search(self, emulator, http_session):
        emulator.stop_delay = 0
        running = {"limit": 50, "filters": [{"key": "phase", "operator": "in",
                                             "value": ["Running"]}]}
        before = search(emulator, http_session, running).json()["count"]
        terminate(emulator, http_session, RESNET)
        assert search(emulator, http_session, running).json()["count"] == before - 1


class TestBulkAndAdmin:
    def test_bulk_jobs_have_distinct_create_times(self, emulator):
        refs = emulator.add_training_jobs(500, name_prefix="load-", node_count=2)
        jobs = [emulator.job(r) for r in refs]
        times = [j["metadata"]["create_time"] for j in jobs]
        assert len(set(times)) == 500 and times == sorted(times)
        assert len({j["metadata"]["name"] for j in jobs}) == 500
        assert all(j["status"]["phase"] == "Running" for j in jobs)
        assert jobs[0]["spec"]["resource"]["node_count"] == 2

    def test_admin_routes_cover_v2(self, emulator, http_session):
        made = admin(emulator, http_session, "POST", "training-jobs",
                     {"n": 3, "name_prefix": "proc-", "phase": "Pending"}).json()
        ref = V2Job(made["training_job_ids"][0])
        assert phase(emulator, ref) == "Pending"
        assert admin(emulator, http_session, "POST", f"jobs/{ref.key}/status",
                     {"status": "Running"}).status_code == 200
        assert phase(emulator, ref) == "Running"
        assert admin(emulator, http_session, "POST", f"faults/{ref.key}",
                     {"kind": "html_500", "on": "stop"}).status_code == 200
        assert terminate(emulator, http_session, ref).status_code == 500
        assert admin(emulator, http_session, "DELETE", "faults").ok
        assert terminate(emulator, http_session, ref).status_code == 202
        state = admin(emulator, http_session, "GET", "state").json()
        assert state["stop_counts"] == {ref.training_job_id: 1}
        assert len(state["training_jobs"]) == 11

    def test_admin_refuses_bad_input(self, emulator, http_session):
        assert admin(emulator, http_session, "POST", "faults/v2:nope", {"kind": "html_500"}
                     ).status_code == 400
        assert admin(emulator, http_session, "POST", f"jobs/{RESNET.key}/status",
                     {"status": "Sleeping"}).status_code == 400
        assert admin(emulator, http_session, "POST", "training-jobs",
                     {"n": 1, "phase": "Sleeping"}).status_code == 400


class TestRetiredV1:
    def test_v1_routes_answer_404_and_v2_still_works(self, emulator, http_session):
        admin(emulator, http_session, "POST", "retire-v1", {"retired": True})
        v1 = f"/v1/{EMULATOR_PROJECT_ID}/training-jobs"
        resp = signed(emulator, http_session, "GET", v1)
        assert resp.status_code == 404 and resp.json()["error_code"] == "APIGW.0101"
        stop = signed(emulator, http_session, "POST", f"{v1}/182626/versions/278813/stop")
        assert stop.status_code == 404 and emulator.stop_count(V1Job(182626, 278813)) == 0
        assert get(emulator, http_session, RESNET).status_code == 200
        emulator.retire_v1(False)
        assert signed(emulator, http_session, "GET", v1).status_code == 200


class TestV1JobList:
    def list_v1(self, emulator, session, **query) -> requests.Response:
        url = emulator.base_url + f"/v1/{EMULATOR_PROJECT_ID}/training-jobs"
        params = sorted({"per_page": 50, "page": 1, **query}.items())
        headers = signer.sign("GET", url, {"Content-Type": "application/json"}, None,
                              EMULATOR_AK, EMULATOR_SK, params)
        return session.get(f"{url}?{signer.canonical_query(params)}", headers=headers, timeout=5)

    def test_status_filter_lists_running_jobs(self, emulator, http_session):
        jobs = self.list_v1(emulator, http_session, status="8").json()["jobs"]
        assert sorted(j["job_name"] for j in jobs) == [
            "team-a-bert-finetune", "team-a-resnet", "team-b-yolo"]

    def test_search_content_matches_the_name(self, emulator, http_session):
        jobs = self.list_v1(emulator, http_session, search_content="TEAM-B").json()["jobs"]
        assert sorted(j["job_name"] for j in jobs) == ["team-b-gan", "team-b-llm-eval",
                                                       "team-b-yolo"]

    def test_sorted_by_name_unless_asked(self, emulator, http_session):
        names = [j["job_name"] for j in self.list_v1(emulator, http_session).json()["jobs"]]
        assert names == sorted(names)
        desc = self.list_v1(emulator, http_session, sortBy="create_time", order="desc").json()
        times = [j["create_time"] for j in desc["jobs"]]
        assert times == sorted(times, reverse=True)

    @pytest.mark.parametrize("query", [{"status": "running"}, {"search_content": "x" * 65},
                                       {"sortBy": "colour"}])
    def test_bad_filter_is_400(self, emulator, http_session, query):
        resp = self.list_v1(emulator, http_session, **query)
        assert resp.status_code == 400 and resp.json()["error_code"] == "ModelArts.0101"


def test_seed_file_may_hold_only_training_jobs(tmp_path, http_session):
    seed = tmp_path / "jobs.json"
    seed.write_text(json.dumps({"training_jobs": [
        {"id": RESNET.training_job_id, "name": "tiny", "phase": "Creating"}]}))
    with Emulator(seed) as emulator:
        emulator.start()
        assert terminate(emulator, http_session, RESNET).status_code == 202
        assert emulator.state()["jobs"] == []
