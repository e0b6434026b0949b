"""A slack_sdk ``WebClient`` that keeps its connections alive: one urllib3 pool per client.

The sync ``WebClient`` sends every call through ``urllib.request.urlopen``: a new TCP (and TLS)
connection per call, which against slack.com across an ocean costs a round trip or two each.
``PooledWebClient`` overrides the one method that does the sending and keeps everything else
(the retry handlers, the response checks, the errors) slack_sdk's own. It answers exactly as
``urlopen`` does: a status >= 400 raises ``urllib.error.HTTPError`` (slack_sdk's 429 handling
reads it there), a failed connection ``URLError``, a dropped one ``RemoteDisconnected`` or
``ConnectionResetError``, a slow answer ``TimeoutError``: so ``ConnectionErrorRetryHandler`` and
``RateLimitErrorRetryHandler`` work unchanged. Written against slack_sdk 3.x's
``BaseClient._perform_urllib_http_request_internal``; the sync client has no public way to
change its transport, so tests/test_slack_sdk_contract.py holds that method to the source last
read, and CI runs it on the newest slack-sdk release (``make contract-slack-sdk``).
Each method call (retries included) is timed in ``bot.core.metrics`` (``observe_slack``).
"""

from __future__ import annotations

import io
import time
from email.message import Message
from http.client import HTTPMessage, RemoteDisconnected
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request

import urllib3
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackRequestError
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError

from bot.core import metrics

POOL_SIZE = 16   # kept connections per host: >= the threads that call Slack in one process


class PooledWebClient(WebClient):
    """``WebClient(**kwargs)`` with kept-alive connections; thread-safe like the pool is."""

    def __init__(self, *args: Any, pool_size: int = POOL_SIZE, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # No retries in urllib3: slack_sdk's retry handlers decide, as they do over urllib.
        options: dict[str, Any] = {"maxsize": pool_size, "retries": False,
                                   "ssl_context": self.ssl}
        self.pool = (urllib3.ProxyManager(self.proxy, **options) if self.proxy
                     else urllib3.PoolManager(**options))

    def api_call(self, api_method: str, **kwargs: Any) -> Any:
        """slack_sdk's, timed: each method call, retries included, goes to the metrics."""
        started, error = time.monotonic(), "network"
        try:
            answer = super().api_call(api_method, **kwargs)
            error = None
            return answer
        except SlackApiError as exc:
            error = str(exc.response.get("error") or f"http_{exc.response.status_code}")
            raise
        finally:
            metrics.observe_slack(api_method, time.monotonic() - started, error)

    def _perform_urllib_http_request_internal(self, url: str, req: Request) -> dict[str, Any]:
        if not url.lower().startswith(("http://", "https://")):
            raise SlackRequestError(f"Invalid URL detected: {url}")
        try:
            resp = self.pool.request(
                "POST", url, body=req.data, headers={k: str(v) for k, v in req.header_items()},
                timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout),
                preload_content=True, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _as_urllib_error(exc) from exc
        headers = _message(resp.headers)
        if resp.status >= 400:
            raise HTTPError(url, resp.status, resp.reason or "", headers, io.BytesIO(resp.data))
        if headers.get_content_type() == "application/gzip":
            return {"status": resp.status, "headers": headers, "body": resp.data}
        body = resp.data.decode(headers.get_content_charset() or "utf-8")
        return {"status": resp.status, "headers": headers, "body": body}

    def close(self) -> None:
        self.pool.clear()


def _message(fields: urllib3.HTTPHeaderDict) -> HTTPMessage:
    """The answer's headers as ``urlopen`` gives them (an ``email`` message)."""
    msg: Message = HTTPMessage()
    for name, value in fields.iteritems():
        msg[name] = value
    return msg  # type: ignore[return-value]


def _as_urllib_error(exc: BaseException) -> BaseException:
    """The error ``urlopen`` raises for the same failure."""
    if isinstance(exc, MaxRetryError) and exc.reason is not None:
        exc = exc.reason
    if isinstance(exc, ReadTimeoutError):
        return TimeoutError("The read operation timed out")
    if isinstance(exc, ProtocolError):   # dropped mid-call: keep the cause urllib would raise
        cause = exc.args[1] if len(exc.args) > 1 else None
        if isinstance(cause, ConnectionResetError | RemoteDisconnected):
            return cause
        return RemoteDisconnected("Remote end closed connection without response")
    if isinstance(exc, NewConnectionError | ConnectTimeoutError | Urllib3SSLError):
        return URLError(exc)
    return exc if isinstance(exc, OSError) else URLError(exc)
