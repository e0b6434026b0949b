"""The contract between ``bot/slack/client.py`` and slack_sdk, run against the installed
slack_sdk: by ``make test`` on the locked version, and by ``make contract-slack-sdk`` (CI) on
the newest release, so that pyproject.toml can let slack-sdk move up (``<4``) instead of pinning
it to the one version the override was written against.

Why a contract and not a public extension point: the sync ``WebClient`` has none for its
transport. It takes ``ssl``, ``proxy``, ``timeout``, ``headers`` and ``retry_handlers``, and
sends every call through ``urllib.request.urlopen`` (a new connection each time);
``AsyncWebClient(session=...)`` takes a pooled session, but the bot is sync (Bolt's ``App``
and its thread pools). ``PooledWebClient`` therefore overrides one private method,
``BaseClient._perform_urllib_http_request_internal(url, req)``, and keeps the rest (the retry
loop, the response checks, the errors) slack_sdk's own. What it relies on:

1. that method keeps its source as last read (a digest below): any change fails here, with
   what to do, until someone has read the new one and adapted the override;
2. slack_sdk calls it from one place, the retry loop ``_perform_urllib_http_request``, as
   ``(url, req)``, and reads ``self.ssl``, ``self.proxy``, ``self.timeout``;
3. that loop takes what the override gives: a dict of status, headers and body; an
   ``HTTPError`` for a status >= 400 (its 429 path); ``URLError`` / ``RemoteDisconnected``
   for its connection retry handler. Checked by behaviour, against the Slack stand-in.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import textwrap
from pathlib import Path
from urllib.error import URLError

import pytest
import slack_sdk
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler
from slack_sdk.web.base_client import BaseClient

from bot.slack.client import PooledWebClient
from botdev.standin.local import DeadEnd
from botdev.standin.slack import BOT_SCOPES, BOT_TOKEN, BOT_USER_ID

METHOD = "_perform_urllib_http_request_internal"
CALLER = "_perform_urllib_http_request"
# sha256 of the dedented source of BaseClient._perform_urllib_http_request_internal, as read
# and matched by PooledWebClient; the same from slack_sdk 3.40.0 to 3.48.0 (3.33.0 differs).
REVIEWED = {"807359bf950958aa480082948fd9e7f445a0a041af825ca6fc594d056f88456d": "3.40.0-3.48.0"}


def client(url: str, **kwargs) -> PooledWebClient:
    kwargs.setdefault("retry_handlers", [])
    return PooledWebClient(token=BOT_TOKEN, base_url=url, timeout=5, **kwargs)


class TestTheReplacedMethod:
    def test_it_is_the_source_last_read(self):
        source = textwrap.dedent(inspect.getsource(getattr(BaseClient, METHOD)))
        digest = hashlib.sha256(source.encode()).hexdigest()
        assert digest in REVIEWED, (
            f"slack_sdk {slack_sdk.version.__version__} changed BaseClient.{METHOD}, which "
            f"bot/slack/client.py replaces (digest {digest}). Read the new method in "
            "slack_sdk/web/base_client.py, adapt PooledWebClient to do what it does, run "
            "tests/test_slack_client.py and this file, then add the digest to REVIEWED.")

    def test_the_override_takes_the_same_arguments(self):
        theirs = list(inspect.signature(getattr(BaseClient, METHOD)).parameters)
        ours = list(inspect.signature(getattr(PooledWebClient, METHOD)).parameters)
        assert theirs == ours == ["self", "url", "req"]

    def test_only_the_retry_loop_calls_it_with_url_and_req(self):
        calls = []
        for path in Path(slack_sdk.__file__).parent.rglob("*.py"):
            tree = ast.parse(path.read_text())
            for func in ast.walk(tree):
                if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for node in ast.walk(func):
                    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                            and node.func.attr == METHOD):
                        args = [a.id for a in node.args if isinstance(a, ast.Name)]
                        calls.append((path.name, func.name, args, len(node.keywords)))
        assert calls == [("base_client.py", CALLER, ["url", "req"], 0)]

    def test_the_attributes_the_override_reads_are_set(self):
        made = client("http://127.0.0.1:1/api/")
        assert made.timeout == 5 and made.ssl is None
        assert hasattr(made, "proxy")


class TestTheRetryLoopTakesWhatTheOverrideGives:
    def test_calls_reach_slack_through_the_pool_on_one_connection(self, slack_api):
        slack = client(slack_api.api_url)
        answers = [slack.auth_test() for _ in range(3)]
        pool = slack.pool.connection_from_url(slack_api.api_url)
        assert (pool.num_requests, pool.num_connections) == (3, 1)
        assert len(slack_api.calls_to("auth.test", ok_only=True)) == 3
        assert all(a["user_id"] == BOT_USER_ID for a in answers)

    def test_status_headers_and_body_reach_the_response(self, slack_api):
        answer = client(slack_api.api_url).auth_test()
        assert answer.status_code == 200 and answer.data["ok"] is True
        assert answer.headers["x-oauth-scopes"] == ",".join(BOT_SCOPES)

    def test_a_429_takes_slack_sdks_http_error_path(self, slack_api):
        slack_api.fail_next("chat.postMessage", 429, {"retry_after": 7})
        with pytest.raises(SlackApiError) as err:
            client(slack_api.api_url).chat_postMessage(channel="C1", text="x")
        assert err.value.response.status_code == 429
        assert err.value.response.headers["Retry-After"] == "7"
        assert err.value.response["error"] == "ratelimited"

    def test_a_dropped_connection_is_retried_by_slack_sdks_handler(self):
        dead = DeadEnd("drop")
        try:
            slack = client(dead.url + "/api/",
                           retry_handlers=[ConnectionErrorRetryHandler(max_retry_count=2)])
            with pytest.raises((URLError, ConnectionError)):
                slack.auth_test()
            assert dead.accepted == 3   # the first try and two retries, each on a new connection
        finally:
            dead.close()
