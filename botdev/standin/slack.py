"""A Slack Web API stand-in: a real HTTP server that records every call and answers like Slack.

Used by the tests, the benchmark and the local shell. It keeps messages so that chat.update edits
them, can answer 429 with Retry-After per channel, and can refuse channels (not_in_channel). It
keeps each user's Home view (views.publish), refused like Slack refuses one: ``invalid_blocks``
past 100 blocks, ``invalid_arguments`` without a home view. Like
Slack, it sends the token's scopes in ``x-oauth-scopes`` with every answer to a valid token
(``scopes``: the bot's three by default; None sends no header).
"""

from __future__ import annotations

import itertools
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

BOT_USER_ID = "UBOT0000"
BOT_TOKEN = "xoxb-standin-token"  # noqa: S105 - the stand-in's own fake token
APP_TOKEN = "xapp-standin-token"  # noqa: S105 - for apps.connections.open (Socket Mode)
BOT_SCOPES = ("commands", "chat:write", "usergroups:read")   # manifest.yml


@dataclass
class Call:
    """One request the stand-in received."""

    method: str
    params: dict[str, Any]
    at: float
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    answer_headers: dict[str, str] = field(default_factory=dict)  # e.g. Retry-After on a 429
    answer: dict[str, Any] = field(default_factory=dict)  # the JSON body it answered


MAX_VIEW_BLOCKS = 100   # Slack's limit for a Home view (and a modal)


@dataclass
class View:
    """A user's published Home view."""

    id: str
    user: str
    blocks: list[dict]
    private_metadata: str = ""
    callback_id: str = ""
    publishes: int = 1


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict] | None
    thread_ts: str | None
    edits: int = 0


class SlackStandIn:
    """Start with ``start()``; point ``WebClient(base_url=stand_in.api_url)`` at it."""

    def __init__(self, tokens: tuple[str, ...] = (BOT_TOKEN,)) -> None:
        self.tokens = set(tokens)
        self.app_tokens = {APP_TOKEN}
        # What x-oauth-scopes says (set per test); None: no header, as some proxies strip it.
        self.scopes: tuple[str, ...] | None = BOT_SCOPES
        # What apps.connections.open answers: the ws:// URL of a Socket Mode stand-in.
        self.socket_url: str | None = None
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.usergroups: dict[str, list[str]] = {}
        self.views: dict[str, View] = {}             # user -> their Home view
        self.refused_channels: dict[str, str] = {}   # channel -> error (not_in_channel...)
        self.channel_interval: float | None = None   # seconds between posts per channel
        # Retry-After granularity. Slack sends whole seconds (the default); tests may set e.g.
        # 0.05 to get fractional Retry-After values and keep rate-limit tests short.
        self.retry_after_unit: float = 1.0
        self.failures: dict[str, list[tuple[int, dict]]] = {}  # method -> queued answers
        self.on_call: Callable[[Call], None] | None = None
        self._last_post: dict[str, float] = {}
        self._retry_until: dict[str, float] = {}
        self._lock = threading.Condition()
        self._ts = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None

    # -- life cycle ------------------------------------------------------------------------
    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.api_url

    def close(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        assert self._server, "start() first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return self.base_url + "/api/"

    def response_url(self, name: str = "r") -> str:
        return f"{self.base_url}/response/{name}"

    # -- what tests look at ----------------------------------------------------------------
    def calls_to(self, method: str, ok_only: bool = False) -> list[Call]:
        with self._lock:
            return [c for c in self.calls
                    if c.method == method and (not ok_only or c.status == 200)]

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every call); return its value."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                value = predicate()
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the stand-in did not see the expected calls in time")
                self._lock.wait(min(left, 0.2))

    def thread_replies(self, channel: str, thread_ts: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages.values()
                    if m.channel == channel and m.thread_ts == thread_ts]

    def fail_next(self, method: str, status: int = 200, body: dict | None = None) -> None:
        """Queue one answer for the next call of ``method`` (e.g. 429, or ok=false)."""
        with self._lock:
            self.failures.setdefault(method, []).append((status, body or {}))

    # -- the API ---------------------------------------------------------------------------
    def handle(self, method: str, params: dict[str, Any], headers: dict[str, str]
               ) -> tuple[int, dict, dict[str, str]]:
        now = time.monotonic()
        call = Call(method, params, now, headers=headers)
        with self._lock:
            status, body, extra = self._answer(method, params, headers, now)
            call.status = status
            call.answer_headers = dict(extra)
            call.answer = body
            self.calls.append(call)
            self._lock.notify_all()
        if self.on_call:
            self.on_call(call)
        return status, body, extra

    def _answer(self, method: str, params: dict, headers: dict, now: float):
        if method.startswith("response/"):
            return 200, {"ok": True}, {}
        token = headers.get("authorization", "").removeprefix("Bearer ").strip()
        token = token or str(params.get("token", ""))
        if token not in (self.app_tokens if method == "apps.connections.open" else self.tokens):
            return 200, {"ok": False, "error": "invalid_auth"}, {}
        status, body, extra = self._answer_valid(method, params, now)
        if self.scopes is not None:
            extra = {**extra, "x-oauth-scopes": ",".join(self.scopes)}
        return status, body, extra

    def _answer_valid(self, method: str, params: dict, now: float):
        queued = self.failures.get(method)
        if queued:
            status, body = queued.pop(0)
            extra = {"Retry-After": str(body.pop("retry_after", 1))} if status == 429 else {}
            return status, {"ok": False, "error": "ratelimited", **body}, extra
        answer = getattr(self, "_m_" + method.replace(".", "_"), None)
        if answer is None:
            return 200, {"ok": False, "error": "unknown_method"}, {}
        return answer(params, now)

    def _rate_limited(self, channel: str, now: float):
        if self.channel_interval is None:
            return None
        until = self._retry_until.get(channel, 0.0)
        if now < until or now - self._last_post.get(channel, -1e9) < self.channel_interval:
            wait = max(until - now, self.channel_interval - (now - self._last_post.get(channel, 0)))
            unit = self.retry_after_unit
            if unit >= 1:
                retry_after: float = max(1, int(wait + 0.999))
                header = str(retry_after)
            else:
                retry_after = max(1, math.ceil(wait / unit - 1e-9)) * unit
                header = f"{retry_after:.3f}"
            self._retry_until[channel] = now + retry_after
            return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": header}
        self._last_post[channel] = now
        return None

    def _m_apps_connections_open(self, params, now):
        if not self.socket_url:
            return 200, {"ok": False, "error": "socket_mode_not_enabled"}, {}
        return 200, {"ok": True, "url": self.socket_url}, {}

    def _m_auth_test(self, params, now):
        return 200, {"ok": True, "user_id": BOT_USER_ID, "team": "Stand-in", "team_id": "T0STANDIN",
                     "bot_id": "B0STANDIN", "url": "https://standin.slack.test/"}, {}

    def _m_chat_postMessage(self, params, now):
        channel = str(params.get("channel", ""))
        if channel in self.refused_channels:
            return 200, {"ok": False, "error": self.refused_channels[channel]}, {}
        if not channel:
            return 200, {"ok": False, "error": "channel_not_found"}, {}
        limited = self._rate_limited(channel, now)
        if limited:
            return limited
        ts = f"1700000000.{next(self._ts):06d}"
        blocks = _blocks(params.get("blocks"))
        msg = Message(channel, ts, str(params.get("text", "")), blocks, params.get("thread_ts"))
        self.messages[(channel, ts)] = msg
        return 200, {"ok": True, "channel": channel, "ts": ts,
                     "message": {"text": msg.text, "ts": ts, "blocks": blocks}}, {}

    def _m_chat_update(self, params, now):
        key = (str(params.get("channel", "")), str(params.get("ts", "")))
        msg = self.messages.get(key)
        if msg is None:
            return 200, {"ok": False, "error": "message_not_found"}, {}
        msg.text = str(params.get("text", msg.text))
        if "blocks" in params:
            msg.blocks = _blocks(params.get("blocks"))
        msg.edits += 1
        return 200, {"ok": True, "channel": key[0], "ts": key[1]}, {}

    def _m_chat_getPermalink(self, params, now):
        channel, ts = str(params.get("channel", "")), str(params.get("message_ts", ""))
        if (channel, ts) not in self.messages:
            return 200, {"ok": False, "error": "message_not_found"}, {}
        link = f"https://standin.slack.test/archives/{channel}/p{ts.replace('.', '')}"
        return 200, {"ok": True, "channel": channel, "permalink": link}, {}

    def _m_chat_postEphemeral(self, params, now):
        channel = str(params.get("channel", ""))
        if channel in self.refused_channels:
            return 200, {"ok": False, "error": self.refused_channels[channel]}, {}
        return 200, {"ok": True, "message_ts": f"1700000001.{next(self._ts):06d}"}, {}

    def _m_views_publish(self, params, now):
        user, view = str(params.get("user_id", "")), params.get("view")
        if isinstance(view, str):
            try:
                view = json.loads(view)
            except ValueError:
                view = None
        if not user:
            return 200, {"ok": False, "error": "invalid_arguments"}, {}
        if not isinstance(view, dict) or view.get("type") != "home" or not isinstance(
                view.get("blocks"), list):
            return 200, {"ok": False, "error": "invalid_arguments"}, {}
        if len(view["blocks"]) > MAX_VIEW_BLOCKS:
            return 200, {"ok": False, "error": "invalid_blocks",
                         "response_metadata": {"messages": [
                             f"[ERROR] must be no more than {MAX_VIEW_BLOCKS} items "
                             "[json-pointer:/view/blocks]"]}}, {}
        old = self.views.get(user)
        published = View(old.id if old else f"V{next(self._ts):08d}", user, view["blocks"],
                         str(view.get("private_metadata") or ""),
                         str(view.get("callback_id") or ""), old.publishes + 1 if old else 1)
        self.views[user] = published
        return 200, {"ok": True, "view": {
            "id": published.id, "type": "home", "blocks": published.blocks,
            "private_metadata": published.private_metadata,
            "callback_id": published.callback_id, "hash": f"{published.publishes}.h"}}, {}

    def _m_usergroups_users_list(self, params, now):
        group = str(params.get("usergroup", ""))
        if group not in self.usergroups:
            return 200, {"ok": False, "error": "no_such_subteam"}, {}
        return 200, {"ok": True, "users": list(self.usergroups[group])}, {}


def _blocks(value: Any) -> list[dict] | None:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


class _Handler(BaseHTTPRequestHandler):
    standin: SlackStandIn
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True   # kept-alive clients: no 40 ms wait for a delayed ACK

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        return

    def _serve(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        params: dict[str, Any] = dict(parse_qsl(url.query))
        ctype = self.headers.get("Content-Type", "")
        if raw and "json" in ctype:
            try:
                params.update(json.loads(raw))
            except ValueError:
                params["_raw"] = raw.decode(errors="replace")
        elif raw:
            params.update(parse_qsl(raw.decode(errors="replace")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        path = url.path
        if path.startswith("/api/"):
            method = path.removeprefix("/api/")
        elif path.startswith("/response/"):
            method = "response/" + path.removeprefix("/response/")
        else:
            self._send(404, {"ok": False, "error": "not_found"}, {})
            return
        status, body, extra = self.standin.handle(method, params, headers)
        self._send(status, body, extra)

    def _send(self, status: int, body: dict, extra: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_POST = _serve
    do_GET = _serve
