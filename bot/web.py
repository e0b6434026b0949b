"""The WSGI application that ``serve`` runs: Slack events, the health check, the alert intake."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable

from slack_bolt import BoltRequest
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.wiring import Bot

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
Wsgi = Callable[[dict, Callable], Iterable[bytes]]


def plain(start_response: Callable, status: str, text: str,
          ctype: str = "text/plain; charset=utf-8") -> list[bytes]:
    data = text.encode()
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


def readable(raw: bytes, content_type: str | None) -> bool:
    """True when Bolt can build a request from this body. Bolt parses (and indexes into) the body
    before it checks the signature, so a form ``payload`` that is not a JSON object, or a body
    that is not UTF-8, would be a 500 from anyone on the internet."""
    try:
        request = BoltRequest(body=raw.decode("utf-8"),
                              headers={"content-type": [content_type or ""]})
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        return False
    return isinstance(request.body, dict)


def create_wsgi(bot: Bot, routes: dict[str, Wsgi] | None = None) -> Wsgi:
    slack = SlackRequestHandler(bot.app, path="/slack/events")
    extra = routes or {}

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            return plain(start_response, "200 OK", "ok\n")
        if path in extra:
            return extra[path](environ, start_response)
        if path != "/slack/events":
            return plain(start_response, "404 Not Found", "not found\n")
        if method != "POST":
            return plain(start_response, "405 Method Not Allowed", "POST only\n")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            return plain(start_response, "413 Content Too Large", "body too large\n")
        raw = environ["wsgi.input"].read(length)
        if not readable(raw, environ.get("CONTENT_TYPE")):
            log.warning("rejected a request body Bolt cannot parse")
            return plain(start_response, "400 Bad Request", "malformed body\n")
        environ["wsgi.input"] = io.BytesIO(raw)
        return slack(environ, start_response)

    return application
