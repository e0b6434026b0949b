"""``PooledWebClient`` against the Slack stand-in: over HTTPS with a test CA through the
benchmark's TLS front (which counts the connections it accepts), and over plain HTTP."""

from __future__ import annotations

import threading
import time
from urllib.error import URLError

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bench.harness import fronts as wan
from bot.slack.client import PooledWebClient
from botdev.standin.local import free_port
from botdev.standin.slack import BOT_TOKEN


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return wan.make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def trusted(certs, monkeypatch):
    """The test CA trusted the usual way, through the environment."""
    for name, value in wan.trust_env(certs).items():
        monkeypatch.setenv(name, value)
    return certs


def front_for(slack_api, certs, idle_close=None):
    return wan.front(slack_api.api_url, 0, certs, idle_close)


def client(url: str, **kwargs) -> PooledWebClient:
    kwargs.setdefault("retry_handlers", [ConnectionErrorRetryHandler()])
    return PooledWebClient(token=BOT_TOKEN, base_url=url, timeout=5, **kwargs)


class TestKeptAlive:
    def test_calls_one_after_another_share_one_connection(self, slack_api, trusted):
        front = front_for(slack_api, trusted)
        try:
            slack = client(front.url + "/api/")
            for n in range(5):
                assert slack.chat_postMessage(channel="C1", text=f"m{n}")["ok"]
            assert len(front.ask("connections", 0)) == 1
            assert len(slack_api.calls_to("chat.postMessage", ok_only=True)) == 5
        finally:
            front.close()

    def test_threads_share_the_pool_without_opening_more_than_one_each(self, slack_api,
                                                                         trusted):
        front = front_for(slack_api, trusted)
        errors: list[BaseException] = []
        slack = client(front.url + "/api/", pool_size=8)

        def post(n: int) -> None:
            try:
                for k in range(5):
                    slack.chat_postMessage(channel="C1", text=f"t{n}-{k}")
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        try:
            threads = [threading.Thread(target=post, args=(n,)) for n in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert not errors
            assert len(slack_api.calls_to("chat.postMessage", ok_only=True)) == 40
            assert 1 <= len(front.ask("connections", 0)) <= 8
        finally:
            front.close()

    def test_a_connection_the_server_closed_while_idle_is_replaced(self, slack_api, trusted):
        front = front_for(slack_api, trusted, idle_close=0.2)
        try:
            slack = client(front.url + "/api/", retry_handlers=[])   # no retry hides a failure
            assert slack.chat_postMessage(channel="C1", text="before")["ok"]
            time.sleep(0.6)
            assert slack.chat_postMessage(channel="C1", text="after")["ok"]
            assert len(front.ask("connections", 0)) == 2
        finally:
            front.close()

    def test_an_untrusted_certificate_is_refused(self, slack_api, certs, monkeypatch):
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        front = front_for(slack_api, certs)
        try:
            with pytest.raises(URLError):
                client(front.url + "/api/", retry_handlers=[]).chat_postMessage(channel="C1",
                                                                               text="x")
            assert slack_api.calls_to("chat.postMessage") == []
        finally:
            front.close()


class TestAnswersAsUrllibDoes:
    def test_a_429_is_retried_after_retry_after_by_slack_sdks_handler(self, slack_api):
        slack_api.fail_next("chat.postMessage", 429, {"retry_after": 1})
        slack = client(slack_api.api_url, retry_handlers=[RateLimitErrorRetryHandler(1)])
        started = time.monotonic()
        assert slack.chat_postMessage(channel="C1", text="x")["ok"]
        assert time.monotonic() - started >= 1.0
        assert [c.status for c in slack_api.calls_to("chat.postMessage")] == [429, 200]

    def test_a_429_without_the_handler_is_a_slack_api_error_with_retry_after(self, slack_api):
        slack_api.fail_next("chat.postMessage", 429, {"retry_after": 3})
        with pytest.raises(SlackApiError) as err:
            client(slack_api.api_url, retry_handlers=[]).chat_postMessage(channel="C1", text="x")
        assert err.value.response.status_code == 429
        assert err.value.response.headers["Retry-After"] == "3"
        assert err.value.response["error"] == "ratelimited"

    def test_an_api_error_is_raised_as_slack_sdk_raises_it(self, slack_api):
        slack_api.refused_channels["C0GONE"] = "not_in_channel"
        with pytest.raises(SlackApiError) as err:
            client(slack_api.api_url).chat_postMessage(channel="C0GONE", text="x")
        assert err.value.response["error"] == "not_in_channel"

    def test_a_refused_connection_is_a_url_error_after_one_retry(self):
        slack = client(f"http://127.0.0.1:{free_port()}/api/")
        with pytest.raises(URLError):
            slack.chat_postMessage(channel="C1", text="x")

    def test_the_token_goes_in_the_authorization_header(self, slack_api):
        client(slack_api.api_url).chat_postMessage(channel="C1", text="x")
        call = slack_api.calls_to("chat.postMessage")[0]
        assert call.headers["authorization"] == f"Bearer {BOT_TOKEN}"
        assert call.params["text"] == "x"


class TestMetrics:
    def test_each_call_is_timed_and_an_error_counted_by_its_code(self, slack_api):
        from prometheus_client import REGISTRY

        def sample(name: str, **labels: str) -> float:
            return REGISTRY.get_sample_value(name, labels) or 0.0

        posts = ("modelarts_bot_slack_request_seconds_count", {"method": "chat.postMessage"})
        refused = ("modelarts_bot_slack_errors_total",
                   {"method": "chat.postMessage", "error": "not_in_channel"})
        before = sample(posts[0], **posts[1]), sample(refused[0], **refused[1])
        slack = client(slack_api.api_url)
        slack.chat_postMessage(channel="C1", text="x")
        slack_api.refused_channels["C0GONE"] = "not_in_channel"
        with pytest.raises(SlackApiError):
            slack.chat_postMessage(channel="C0GONE", text="x")
        assert sample(posts[0], **posts[1]) - before[0] == 2
        assert sample(refused[0], **refused[1]) - before[1] == 1
