"""The WSGI application that ``serve`` runs: Slack events, the probes (bot.app.probes: /healthz,
/readyz), the alert intake."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse

from bot.app.probes import healthz, readiness
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


def parse(text: str, environ: dict) -> BoltRequest | guard.Refused:
    """The one parse of a body: the request Bolt dispatches, or why Bolt cannot build one from
    this body (Bolt parses, and indexes into, the body as it builds the request: a 500 from
    anyone). What the body holds is checked next (``guard.admit``)."""
    try:
        request = BoltRequest(body=text, query=environ.get("QUERY_STRING", ""),
                              headers=WsgiHttpRequest(environ).get_headers())
    except RecursionError:   # json gives up at about 1000 levels; guard.MAX_DEPTH is far lower
        return guard.Refused(400, f"the body is nested deeper than {guard.MAX_DEPTH} levels")
    except (ValueError, TypeError, AttributeError, KeyError, IndexError):
        return guard.Refused(400, "the body is not a form or JSON object Slack would send")
    if not isinstance(request.body, dict):
        return guard.Refused(400, "the body is not a JSON object")
    return request


def refusal(raw: bytes, content_type: str | None) -> guard.Refused | None:
    """Why Bolt cannot build a request from this body; None when it can (``parse``'s answer,
    for bench/probes/guard.py)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return guard.Refused(400, "the body is not UTF-8")
    got = parse(text, {"CONTENT_TYPE": content_type or ""})
    return got if isinstance(got, guard.Refused) else None


def signed(app: object, raw: bytes, environ: dict) -> bool:
    """The signature, checked before the body is parsed: an unsigned megabyte costs an HMAC,
    not a parse. An app without a verifier (Socket Mode's) takes nothing over HTTP: fail closed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return getattr(app, "verifier", None) is not None  # refused next as not UTF-8
    return signed_text(app, text, environ)


def signed_text(app: object, text: str, environ: dict) -> bool:
    verifier = getattr(app, "verifier", None)
    if verifier is None:
        return False
    return guard.ssl_check(text) or guard.signed_raw(
        verifier, text, environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""),
        environ.get("HTTP_X_SLACK_SIGNATURE", ""))


def slack_events(app: App, raw: bytes, environ: dict, start_response: Callable
                 ) -> Iterable[bytes]:
    """The Slack edge over HTTP: the signature once, on the raw body; one parse; the guard; then
    Bolt, which checks neither again (GuardedApp dispatches only an admitted request)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if getattr(app, "verifier", None) is None or (
            text is not None and not signed_text(app, text, environ)):
        return plain(start_response, "401 Unauthorized", "invalid request\n")
    got = parse(text, environ) if text is not None else guard.Refused(400, "the body is not UTF-8")
    if isinstance(got, guard.Refused):
        log.warning("refused a request body: %s", got.reason)
        return plain(start_response, "400 Bad Request", f"refused: {got.reason}\n")
    # The guard holds for the bot's GuardedApp; a bare Bolt App (bench/harness/baseline.py) has
    # no response_urls and gets the parsed request as it is (and checks its signature itself).
    urls = getattr(app, "response_urls", None)
    refused = guard.admit(got, response_urls=urls) if urls is not None else None
    if refused and refused.ignored:
        log.info("ignored a request: %s", refused.reason)
        response = BoltResponse(status=refused.status, body=f"ignored: {refused.reason}")
    elif refused:
        log.warning("refused a request: %s", refused.reason)
        response = BoltResponse(status=refused.status, body=f"refused: {refused.reason}")
    else:
        response = app.dispatch(got)
    answer = WsgiHttpResponse(status=response.status, headers=response.headers,
                              body=response.body)
    start_response(answer.status, answer.get_headers())
    return answer.get_body()


def routes(bot: Bot, *, metrics: bool) -> dict[str, Wsgi]:
    """The paths served beside /slack/events and /healthz, for every entry point (``serve``,
    Socket Mode's side server, the shell): /readyz, the alert intake, and ``GET /metrics`` when
    ``metrics`` (``serve`` over HTTP)."""
    from bot.alerts.intake import routes as alert_routes
    from bot.alerts.smn.intake import routes as smn_routes
    from bot.app.metrics_sample import Sampler
    from bot.app.metrics_web import metrics_route

    extra = {"/readyz": readiness(bot).route} | alert_routes(bot) | smn_routes(bot)
    if metrics:
        sampler = Sampler(bot.redis, bot.settings.REDIS_KEY_PREFIX,
                          backlog=bot.alerts.backlog if bot.alerts else None,
                          confirmations=bot.flow.store.pending)
        extra["/metrics"] = metrics_route(sampler, bot.settings.METRICS_TOKEN,
                                          open_without_token=bot.settings.METRICS_OPEN)
    return extra


def create_wsgi(bot: Bot, routes: dict[str, Wsgi] | None = None) -> Wsgi:
    extra = routes or {}

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/healthz":
            return healthz(environ, start_response)
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
        return slack_events(bot.app, environ["wsgi.input"].read(length), environ,
                            start_response)

    return application
