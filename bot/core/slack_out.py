"""The one way out to Slack: every Web API call the bot makes after an ack goes through here.

    caller ── SlackOut.post / update / ephemeral / permalink / call ──▶ WebClient (PooledWebClient)
       ▲                                                                  │ counted per method
       └──────────── Answer(data, error, retry_after): never an exception ┘ (bot.app.wiring)

A call never raises: a refusal from Slack (``not_in_channel``, ``ratelimited``...) or a failed
connection comes back as an ``Answer`` whose ``error`` says which, logged once here with the
method and the caller's ``extra``. ``Retry-After`` of a 429 is parsed here, once, into
``retry_after`` seconds. Tokens never reach a log line: only the method, error and extras do.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

log = logging.getLogger(__name__)

NETWORK = "network"   # the error of an answer that never came (connection failed, timeout)


@dataclass(frozen=True)
class Answer:
    """Slack's answer: ``data`` when ``ok``; else ``error`` (Slack's code, ``http_<status>`` or
    ``network``) and, for a 429, ``retry_after`` seconds."""

    data: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    status: int | None = None
    retry_after: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def retry_after_seconds(headers: Mapping[str, Any] | None) -> float:
    """Retry-After in seconds (1 when missing or unreadable)."""
    value = next((v for k, v in (headers or {}).items() if k.lower() == "retry-after"), None)
    try:
        seconds = float(value[0] if isinstance(value, list) else value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 1.0
    return max(seconds, 0.0) if math.isfinite(seconds) else 1.0


class SlackOut:
    """Post, update, ephemeral, permalink, or any Web API method: an ``Answer``, never a raise."""

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def call(self, method: str, *, extra: Mapping[str, Any] | None = None,
             **kwargs: Any) -> Answer:
        """``method`` as slack_sdk names it (``chat.postMessage`` runs ``chat_postMessage``)."""
        try:
            resp = getattr(self.client, method.replace(".", "_"))(**kwargs)
        except SlackApiError as exc:
            status = exc.response.status_code
            error = str(exc.response.get("error") or f"http_{status}")
            wait = retry_after_seconds(exc.response.headers) if status == 429 else None
            log.warning("Slack refused %s: %s", method, error,
                        extra={**(extra or {}), "slack_method": method, "error_code": error})
            return Answer(error=error, status=status, retry_after=wait)
        except (SlackClientError, OSError) as exc:
            log.warning("Slack unreachable for %s: %s", method, type(exc).__name__,
                        extra={**(extra or {}), "slack_method": method})
            return Answer(error=NETWORK)
        return Answer(data=dict(resp.data) if isinstance(resp.data, dict) else {},
                      status=resp.status_code)

    def post(self, channel: str, text: str, blocks: list | None = None, *,
             thread_ts: str | None = None, **kwargs: Any) -> Answer:
        args = _given(channel=channel, text=text, blocks=blocks, thread_ts=thread_ts, **kwargs)
        return self.call("chat.postMessage", extra={"channel": channel}, **args)

    def update(self, channel: str, ts: str, text: str, blocks: list | None = None,
               **kwargs: Any) -> Answer:
        args = _given(channel=channel, ts=ts, text=text, blocks=blocks, **kwargs)
        return self.call("chat.update", extra={"channel": channel, "ts": ts}, **args)

    def ephemeral(self, channel: str, user: str, text: str, blocks: list | None = None,
                  **kwargs: Any) -> Answer:
        args = _given(channel=channel, user=user, text=text, blocks=blocks, **kwargs)
        return self.call("chat.postEphemeral", extra={"channel": channel, "user": user}, **args)

    def permalink(self, channel: str, ts: str) -> Answer:
        return self.call("chat.getPermalink", extra={"channel": channel, "ts": ts},
                         channel=channel, message_ts=ts)


def _given(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}
