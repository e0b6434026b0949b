"""The emulator's v2 wire contract, proved with Huawei's own SDK (huaweicloudsdkmodelarts).

The SDK signs with AK/SK, sends X-Project-Id, parses the job objects into its models and raises
its exceptions for error bodies: if the emulator drifts from what the SDK expects, these fail.
"""

from __future__ import annotations

import pytest

sdk = pytest.importorskip("huaweicloudsdkmodelarts.v1", reason="the dev extra is not installed")
from huaweicloudsdkcore.auth.credentials import BasicCredentials  # noqa: E402
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException  # noqa: E402
from huaweicloudsdkcore.http.http_config import HttpConfig  # noqa: E402

from bot.modelarts.refs import V2Job  # noqa: E402
from botdev.emulator import EMULATOR_AK, EMULATOR_PROJECT_ID, EMULATOR_SK  # noqa: E402

RESNET = V2Job("3faf5c03-aaa1-4cbe-879d-24b05d997347")  # team-a-resnet50, Running
COMPLETED = V2Job("2e3f4a5b-6c7d-4e8f-9a0b-1c2d3e4f5a6b")  # team-b-gan
UNKNOWN = V2Job("ffffffff-ffff-4fff-8fff-ffffffffffff")


@pytest.fixture
def sdk_client(emulator):
    """The official ModelArts client, AK/SK credentials, pointed at the emulator over http."""
    config = HttpConfig.get_default_config()
    config.timeout = (2, 5)
    credentials = BasicCredentials(EMULATOR_AK, EMULATOR_SK, EMULATOR_PROJECT_ID)
    return (sdk.ModelArtsClient.new_builder().with_credentials(credentials)
            .with_http_config(config).with_endpoint(emulator.base_url).build())


def terminate(client, ref: V2Job):
    return client.stop_training_job(sdk.StopTrainingJobRequest(
        training_job_id=ref.training_job_id, body=sdk.JobActionType(action_type="terminate")))


def details(client, ref: V2Job):
    return client.show_training_job_details(sdk.ShowTrainingJobDetailsRequest(
        training_job_id=ref.training_job_id))


class TestSdkSucceeds:
    def test_show_training_job_details(self, sdk_client, emulator):
        job = details(sdk_client, RESNET)
        assert job.status_code == 200
        assert (job.metadata.id, job.metadata.name) == (RESNET.training_job_id, "team-a-resnet50")
        assert job.metadata.user_name == "alice" and job.metadata.create_time > 0
        assert job.status.phase == "Running" and job.status.duration > 0
        assert job.spec.resource.node_count == 8
        assert job.spec.resource.flavor_detail.flavor_type == "GPU"
        assert job.algorithm.engine.engine_name == "PyTorch"
        sent = emulator.requests[-1]
        assert sent.headers["X-Project-Id"] == EMULATOR_PROJECT_ID
        assert sent.headers["Authorization"].startswith("SDK-HMAC-SHA256 Access=EMULATORAK")

    def test_stop_training_job(self, sdk_client, emulator):
        emulator.stop_delay = 30
        answer = terminate(sdk_client, RESNET)
        assert answer.status_code == 202
        assert answer.metadata.id == RESNET.training_job_id
        assert answer.status.phase == "Terminating"
        assert emulator.stop_count(RESNET) == 1
        emulator.advance(30)
        assert details(sdk_client, RESNET).status.phase == "Terminated"

    def test_list_training_jobs(self, sdk_client, emulator):
        emulator.add_training_jobs(12, name_prefix="sdk-")
        body = sdk.JobSearches(offset=1, limit=5, filters=[
            sdk.Filter(key="phase", operator="in", value=["Running"]),
            sdk.Filter(key="name", operator="like", value=["sdk-"])])
        page = sdk_client.list_training_jobs(sdk.ListTrainingJobsRequest(body=body))
        assert page.status_code == 200
        assert (page.count, page.limit, page.offset) == (12, 5, 1)
        assert len(page.items) == 5
        assert all(item.status.phase == "Running" for item in page.items)
        assert all(item.metadata.name.startswith("sdk-") for item in page.items)


class TestSdkErrors:
    def test_unknown_id_raises_2775_with_400(self, sdk_client):
        with pytest.raises(ClientRequestException) as raised:
            details(sdk_client, UNKNOWN)
        assert (raised.value.status_code, raised.value.error_code) == (400, "ModelArts.2775")
        assert "not found" in raised.value.error_msg and raised.value.request_id

    def test_not_stoppable_raises_2796_with_409(self, sdk_client, emulator):
        with pytest.raises(ClientRequestException) as raised:
            terminate(sdk_client, COMPLETED)
        assert (raised.value.status_code, raised.value.error_code) == (409, "ModelArts.2796")
        assert emulator.job(COMPLETED)["status"]["phase"] == "Completed"

    def test_unknown_id_on_stop_raises_2775(self, sdk_client, emulator):
        with pytest.raises(ClientRequestException) as raised:
            terminate(sdk_client, UNKNOWN)
        assert (raised.value.status_code, raised.value.error_code) == (400, "ModelArts.2775")
        assert emulator.state()["stop_counts"] == {}

    def test_wrong_sk_raises_the_gateways_401(self, emulator):
        credentials = BasicCredentials(EMULATOR_AK, "not-the-sk", EMULATOR_PROJECT_ID)
        client = (sdk.ModelArtsClient.new_builder().with_credentials(credentials)
                  .with_endpoint(emulator.base_url).build())
        with pytest.raises(ClientRequestException) as raised:
            terminate(client, RESNET)
        assert (raised.value.status_code, raised.value.error_code) == (401, "APIGW.0301")
        assert emulator.stop_count(RESNET) == 0
