"""SDK-HMAC-SHA256 signing: the reference vector, and agreement with huaweicloudsdkcore's Signer."""

from __future__ import annotations

import copy
import warnings
from datetime import UTC, datetime

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer
from hypothesis import given
from hypothesis import strategies as st

from bot.modelarts import signer

AK = "EXAMPLEAK0000000000"
SK = "EXAMPLESKexampleSKexampleSK000000000000"
PROJECT = "0123456789abcdef0123456789abcdef"
HOST = "modelarts.cn-north-4.myhuaweicloud.com"
DATE = "20240101T000000Z"
STOP_PATH = f"/v1/{PROJECT}/training-jobs/10/versions/20/stop"
BASE_HEADERS = {"Content-Type": "application/json", "X-Project-Id": PROJECT}

REFERENCE_CANONICAL = (
    "POST\n"
    f"/v1/{PROJECT}/training-jobs/10/versions/20/stop/\n"
    "\n"
    "content-type:application/json\n"
    f"host:{HOST}\n"
    f"x-project-id:{PROJECT}\n"
    f"x-sdk-date:{DATE}\n"
    "\n"
    "content-type;host;x-project-id;x-sdk-date\n"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)
REFERENCE_STRING_TO_SIGN = (
    f"SDK-HMAC-SHA256\n{DATE}\n"
    "ef4cd50690186a53c26cf0a2b1dcdd5e003246216fe7f3add16f68b7c3c4bec0"
)
REFERENCE_AUTHORIZATION = (
    f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders=content-type;host;x-project-id;x-sdk-date, "
    "Signature=8acac28526cf3d7e18e216dafe2f358598bd2ab5eaf15ef0bce1bffc6e2b554d"
)


def sdk_sign(method: str, path: str, query: list, headers: dict, body: bytes | None) -> SdkRequest:
    """Sign with huaweicloudsdkcore's own Signer, as its HTTP client does."""
    request = SdkRequest(method=method, schema="https", host=HOST, resource_path=path,
                         query_params=copy.deepcopy(query), header_params=dict(headers),
                         body=body)
    with warnings.catch_warnings():  # the SDK calls the deprecated datetime.utcnow
        warnings.simplefilter("ignore", DeprecationWarning)
        return Signer(BasicCredentials(AK, SK, PROJECT)).sign(request)


def our_sign(method: str, path: str, query: list, headers: dict, body: bytes | None) -> dict:
    return signer.sign(method, f"https://{HOST}{path}", headers, body, AK, SK, query)


class TestReferenceVector:
    def test_canonical_request(self):
        headers = {**BASE_HEADERS, "X-Sdk-Date": DATE, "Host": HOST}
        assert signer.canonical_request("POST", STOP_PATH, [], headers, None) == REFERENCE_CANONICAL

    def test_string_to_sign(self):
        assert signer.string_to_sign(REFERENCE_CANONICAL, DATE) == REFERENCE_STRING_TO_SIGN

    def test_authorization_header(self):
        now = datetime(2024, 1, 1, tzinfo=UTC)
        signed = signer.sign("POST", f"https://{HOST}{STOP_PATH}", BASE_HEADERS, None, AK, SK,
                             now=now)
        assert signed["Authorization"] == REFERENCE_AUTHORIZATION
        assert signed["X-Sdk-Date"] == DATE
        assert signed["Host"] == HOST

    def test_query_is_sent_sorted(self):
        params = [("per_page", 10), ("page", 1), ("status", "8")]
        assert signer.canonical_query(params) == "page=1&per_page=10&status=8"


class TestSameAsSdk:
    """The same request signed by us and by huaweicloudsdkcore gives the same Authorization."""

    @pytest.mark.parametrize(
        ("method", "path", "query", "extra", "body"),
        [
            pytest.param("POST", STOP_PATH, [], {}, None, id="stop"),
            pytest.param(
                "GET", f"/v1/{PROJECT}/training-jobs",
                [("search_content", "team a/resnet 50"), ("status", ["8", "7"]), ("per_page", 10),
                 ("page", 1), ("verbose", True)],
                {}, None, id="query-with-spaces-slash-list-bool"),
            pytest.param(
                "POST", f"/v2/{PROJECT}/training-jobs/abc/actions", [], {},
                b'{"action_type": "terminate"}', id="json-body"),
            pytest.param(
                "GET", f"/v1/{PROJECT}/files/a b/%E4%B8%AD~x/(1)", [("path", "/x y")], {}, None,
                id="path-segments-need-encoding"),
            pytest.param(
                "PUT", f"/v1/{PROJECT}/upload", [], {"Content-Type": "application/octet-stream"},
                b"\x00\x01binary", id="unsigned-payload"),
            pytest.param(
                "GET", f"/v1/{PROJECT}/training-jobs", [], {"X-Custom_Header": "skipped",
                                                           "X-Trace": "  padded  "}, None,
                id="underscore-header-not-signed"),
        ],
    )
    def test_authorization_matches(self, method, path, query, extra, body):
        headers = {**BASE_HEADERS, "X-Sdk-Date": DATE, **extra}
        theirs = sdk_sign(method, path, query, headers, body)
        ours = our_sign(method, path, query, headers, body)
        assert ours["Authorization"] == theirs.header_params["Authorization"]
        sent_query = signer.canonical_query(query)
        assert (f"{path}?{sent_query}" if sent_query else path) == theirs.uri

    @given(
        st.dictionaries(
            st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCXYZ0123456789_-", min_size=1,
                    max_size=12),
            st.one_of(st.text(max_size=20), st.integers(), st.booleans()),
            max_size=6,
        ),
        st.binary(max_size=64),
    )
    def test_any_identifier_query_and_body_match(self, params, body):
        """Query keys are API identifiers; values and body can be anything."""
        query = list(params.items())
        headers = {**BASE_HEADERS, "X-Sdk-Date": DATE}
        theirs = sdk_sign("POST", STOP_PATH, query, headers, body)
        ours = our_sign("POST", STOP_PATH, query, headers, body)
        assert ours["Authorization"] == theirs.header_params["Authorization"]

    @pytest.mark.parametrize("values", [["a.", "a/"], [10, 9]], ids=["dot-slash", "ints"])
    def test_list_values_sorted_like_the_sdk(self, values):
        query = [("k", values)]
        headers = {**BASE_HEADERS, "X-Sdk-Date": DATE}
        theirs = sdk_sign("GET", STOP_PATH, query, headers, None)
        assert our_sign("GET", STOP_PATH, query, headers, None)["Authorization"] == \
            theirs.header_params["Authorization"]
