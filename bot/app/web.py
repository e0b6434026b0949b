"""The WSGI application that ``serve`` runs: Slack events, the health check, the alert intake."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable

from slack_bolt import BoltRequest
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.app.wiring import Bot
from bot.slack import guard

log = logging.getLogger(__name__)
MAX_BODY = 1 << 20
Wsgi = Callable[[dict, Callable], Iterable[bytes]]


def plain(start_response: Callable, status: str, text: str,
          ctype: str = "text/plain; charset=utf-8") -> list[bytes]:
    data = text.encode()
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(data)))])
    return [data]


def refusal(raw: bytes, content_type: str | None) -> guard.Refused | None:
    """Why Bolt cannot build a request from this body; None when it can. Bolt parses (and
    indexes into) the body before it checks the signature, so this would be a 500 from anyone.
    What the body holds is checked next, in ``GuardedApp.dispatch`` (bot/slack/guard.py)."""
    try:
        request = BoltRequest(body=raw.decode("utf-8"),
                              headers={"content-type": [content_type or ""]})
    except UnicodeDecodeError:
        return guard.Refused(400, "the body is not UTF-8")
    except RecursionError:   # json gives up at about 1000 levels; guard.MAX_DEPTH is far lower
        return guard.Refused(400, f"the body is nested deeper than {guard.MAX_DEPTH} levels")
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        return guard.Refused(400, "the body is not a form or JSON object Slack would send")
    if not isinstance(request.body, dict):
        return guard.Refused(400, "the body is not a JSON object")
    return None


def signed(app: object, raw: bytes, environ: dict) -> bool:
    """The signature, checked before the body is parsed: an unsigned megabyte costs an HMAC,
    not a parse. An app without a verifier (Socket Mode's) takes nothing over HTTP: fail closed."""
    verifier = getattr(app, "verifier", None)
    if verifier is None:
        return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return True   # refused next as not UTF-8, before any parse
    return guard.ssl_check(text) or guard.signed_raw(
        verifier, text, environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""),
        environ.get("HTTP_X_SLACK_SIGNATURE", ""))


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
        if not signed(bot.app, raw, environ):
            return plain(start_response, "401 Unauthorized", "invalid request\n")
        refused = refusal(raw, environ.get("CONTENT_TYPE"))
        if refused:
            log.warning("refused a request body: %s", refused.reason)
            return plain(start_response, "400 Bad Request", f"refused: {refused.reason}\n")
        environ["wsgi.input"] = io.BytesIO(raw)
        return slack(environ, start_response)

    return application
