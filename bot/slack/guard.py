"""The checks a request passes before Bolt reads it, for HTTP and Socket Mode alike.

Bolt indexes into a body while it builds the request (team, user, channel...), while it builds
every listener's arguments (``actions[0]``, ``event.type``, ``view.type``), while it logs an
unhandled request, and our listeners index the command form. On a body Slack would never send,
each of those raises, and Bolt answers 500 (or its error handler raises again). So:

- deny by default: only the kinds this app serves go to Bolt (slash commands, block_actions,
  the Events API's ``app_home_opened``, and Bolt's own url_verification and ssl_check); any
  other kind is a 404, as Bolt answers a request no listener takes;
- an Events API body (``event_callback``) of any other event type is answered 200 and goes no
  further (``Refused.ignored``): Slack retries an event answered otherwise, and in the end turns
  the app's events off;
- a served kind must carry what its listener reads, with Slack's types;
- Bolt's own readers must run on it without raising.

- a slash command is answered on its ``response_url`` after the ack, with whatever the bot has
  to say: it must start with one of ``response_urls`` (Settings.response_url_prefixes:
  https://hooks.slack.com/, SLACK_API_URL's origin, SLACK_RESPONSE_URLS), or the bot would
  post to any host a signed (or socket) body names.

``refusal(body, response_urls=...)`` says why not, or None; ``unbuildable(body)`` whether Bolt
can build a request at all (Socket Mode asks before Bolt does; HTTP: bot/app/web.py, whose one
parse is Bolt's request); ``signed_raw`` is Bolt's signature check without its exceptions (the
HTTP edge runs it on the raw body, once). ``admit`` runs the checks on a request an edge built and
marks it; GuardedApp (bot/slack/app.py) dispatches only marked requests. A new kind of listener:
add its kind and fields here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from urllib.parse import parse_qsl, urlsplit

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.adapter.socket_mode.builtin import SocketModeHandler
from slack_bolt.adapter.socket_mode.internals import build_headers, send_response
from slack_bolt.logger.messages import warning_unhandled_request
from slack_bolt.request.internals import build_context
from slack_bolt.request.payload_utils import (
    to_action,
    to_command,
    to_event,
    to_message,
    to_options,
    to_shortcut,
    to_step,
    to_view,
)
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.client import BaseSocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest

log = logging.getLogger(__name__)

# Slack's deepest payloads (rich text inside a message inside an action payload) are about 12
# levels; anything deeper is refused before code that recurses over it (json.dumps, repr) runs.
MAX_DEPTH = 40
MAX_ID_LENGTH = 200   # the longest user or channel id taken; Slack's are about 11 characters


HOME_EVENT = "app_home_opened"   # the one event this app subscribes to (manifest.yml)


@dataclass(frozen=True)
class Refused:
    """A body not passed to Bolt: the HTTP status to answer and why (a 2xx: ``ignored``)."""

    status: int
    reason: str

    @property
    def ignored(self) -> bool:
        """A request answered as taken (acked, over Socket Mode) that goes no further."""
        return self.status < 300


def too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """True when ``value`` nests lists and dicts more than ``limit`` levels (no recursion)."""
    level = [value]
    for _ in range(limit):
        level = [child for item in level
                 for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, dict | list)]
        if not level:
            return False
    return True


def refusal(body: object, *, response_urls: Sequence[str]) -> Refused | None:
    """Why this body does not go on to Bolt's middleware and listeners; None when it does.
    ``response_urls``: the prefixes a command's response_url may start with (none: every
    command is refused). (That Bolt can build a request from it at all is ``unbuildable``'s
    question.)"""
    if not isinstance(body, dict):
        return Refused(400, "the body is not a JSON object")
    if too_deep(body):
        return Refused(400, f"the body is nested deeper than {MAX_DEPTH} levels")
    checks = [check for applies, check in _SERVED if applies(body)]
    if not checks:
        return Refused(404, "no listener for this kind of request")
    for check in [*checks, _bolt_reads]:
        reason = check(body)
        if reason:
            return Refused(400, reason)
    if "command" in body and not body["response_url"].startswith(tuple(response_urls)):
        return Refused(400, "slash command whose response_url is not on a Slack host "
                            "(https://hooks.slack.com/, SLACK_API_URL's, or SLACK_RESPONSE_URLS)")
    if body.get("type") == "event_callback" and body["event"]["type"] != HOME_EVENT:
        return Refused(200, "an event this app does not subscribe to")
    return None


def form_read_as_payload(req: BoltRequest) -> dict | None:
    """The form Bolt lost: it reads any form body containing the text "payload" as an
    interactive ``payload=`` field, so ``/modelarts stop payload-job`` reached it as ``{}``.
    Returns that form (for the caller to take instead), or None when Bolt read it right."""
    if req.mode != "http" or req.body or "payload" not in req.raw_body:
        return None
    if req.content_type == "application/json" or req.raw_body.startswith("{"):
        return None
    form = dict(parse_qsl(req.raw_body, keep_blank_values=True))
    return form if form and "payload" not in form else None


def unbuildable(body: dict) -> Refused | None:
    """Why Bolt cannot build a request (its context: team, user, channel...) from ``body``."""
    try:
        build_context(BoltContext(), body)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError):
        return Refused(400, "the body's team, user or channel fields are not of Slack's types")
    return None


def _command(body: dict) -> str | None:
    """The fields the command listener reads: all strings, the ids short and present."""
    for name in ("command", "user_id", "channel_id", "response_url"):
        if not isinstance(body.get(name), str) or not body[name]:
            return f"slash command without a {name} string"
    if len(body["user_id"]) > MAX_ID_LENGTH or len(body["channel_id"]) > MAX_ID_LENGTH:
        return "slash command with an id too long"
    if not isinstance(body.get("text", ""), str):
        return "slash command whose text is not a string"
    if not _http_url(body["response_url"]):   # the listener answers there, after the ack
        return "slash command whose response_url is not an http(s) URL"
    return None


def _http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        return parts.scheme in ("https", "http") and bool(parts.hostname)
    except ValueError:
        return False


def _actions(body: dict) -> str | None:
    """Bolt's action matcher reads ``actions[0].action_id``; the button listeners check the rest."""
    actions = body.get("actions")
    if not (isinstance(actions, list) and actions
            and all(isinstance(a, dict) and isinstance(a.get("action_id"), str)
                    for a in actions)):
        return "interactive payload without a list of actions with an action_id"
    if not isinstance(body.get("user"), dict):
        return "interactive payload without a user object"
    return None


def _event(body: dict) -> str | None:
    """An Events API body: an event object with a type; app_home_opened with the fields its
    listener reads (bot/slack/listeners/home.py), of Slack's types."""
    event = body.get("event")
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        return "event_callback without an event object with a type"
    if event["type"] != HOME_EVENT:
        return None
    user = event.get("user")
    if not isinstance(user, str) or not 0 < len(user) <= MAX_ID_LENGTH:
        return "app_home_opened without a user id string"
    for name in ("channel", "tab"):
        if name in event and not (isinstance(event[name], str)
                                  and len(event[name]) <= MAX_ID_LENGTH):
            return f"app_home_opened whose {name} is not a short string"
    return None


def _challenge(body: dict) -> str | None:
    if not isinstance(body.get("challenge"), str):
        return "url_verification without a challenge string"
    return None


Check = Callable[[dict], "str | None"]
_SERVED: list[tuple[Callable[[dict], bool], Check]] = [
    (lambda body: "command" in body, _command),
    (lambda body: body.get("type") == "block_actions", _actions),
    (lambda body: body.get("type") == "event_callback", _event),
    (lambda body: body.get("type") == "url_verification", _challenge),
    (lambda body: body.get("ssl_check") == "1", lambda body: None),
]

# What Bolt derives from every body for every listener's (and the error handler's) arguments
# (kwargs_injection.build_required_kwargs), and for its "unhandled request" warning.
_READERS = (to_options, to_shortcut, to_action, to_view, to_command, to_event, to_message,
            to_step, lambda body: warning_unhandled_request(SimpleNamespace(body=body)))


def _bolt_reads(body: dict) -> str | None:
    try:
        for read in _READERS:
            read(body)
    except (TypeError, AttributeError, KeyError, IndexError, ValueError):
        return "the body's fields are not of the types Slack sends"
    return None


ADMITTED = "edge_admitted"   # the context key an edge sets on a request it checked


def admit(req: BoltRequest, *, response_urls: Sequence[str]) -> Refused | None:
    """Check a request an edge built (over HTTP: signed, parsed once): the form Bolt misread
    taken instead (``form_read_as_payload``), then ``refusal``. None: marked admitted."""
    refused, form = None, form_read_as_payload(req)
    if form is not None:
        refused = unbuildable(form)
        if not refused:
            req.body, req.context = form, build_context(BoltContext(), form)
    refused = refused or refusal(req.body, response_urls=response_urls)
    if refused is None:
        req.context[ADMITTED] = True
    return refused


def admitted(req: BoltRequest) -> bool:
    """True when an edge checked this request (``admit``, or the Socket Mode handler)."""
    return req.context.get(ADMITTED) is True


def signed_raw(verifier: SignatureVerifier, body: str, timestamp: str, signature: str) -> bool:
    """The signature check on the raw body, before anything parses it. A timestamp that is not
    an integer (``int()``) or a signature that is not ASCII (``hmac.compare_digest``) is "not
    signed", not a 500."""
    if not (timestamp.isascii() and timestamp.isdigit() and len(timestamp) <= 12
            and signature.isascii()):
        return False
    return verifier.is_valid(body, timestamp, signature)


def ssl_check(raw: str) -> bool:
    """Slack's unsigned ``ssl_check=1`` probe (Bolt lets it through unverified): a short form."""
    return (len(raw) <= 1000 and "ssl_check" in raw   # not a second parse of every command
            and parse_qsl(raw).count(("ssl_check", "1")) == 1)


class GuardedSocketModeHandler(SocketModeHandler):
    """Bolt builds a request from an envelope before ``App.dispatch``: check the payload first,
    with the app's ``response_urls`` (a GuardedApp's, bot/slack/app.py: one list for both
    transports). A refused envelope is logged and not acked (the Socket Mode form of a 4xx)."""

    def __init__(self, app: App, *args: object, **kwargs: object) -> None:
        urls = getattr(app, "response_urls", None)
        if urls is None:
            raise TypeError("GuardedSocketModeHandler needs the app of bot.slack.app.create_app "
                            "(it knows the response_url prefixes to accept)")
        super().__init__(app, *args, **kwargs)
        self.response_urls: tuple[str, ...] = tuple(urls)

    def handle(self, client: BaseSocketModeClient, req: SocketModeRequest) -> None:
        """Bolt's ``handle`` (run_bolt_app, send_response), with the checks run once, before
        Bolt builds the request, and the request marked admitted for GuardedApp."""
        start = time.time()
        refused = (refusal(req.payload, response_urls=self.response_urls)
                   or unbuildable(req.payload))
        if refused and refused.ignored:   # acked, as over HTTP: Slack would send it again
            log.info("ignored a Socket Mode envelope: %s", refused.reason)
            send_response(client, req, BoltResponse(status=200, body=""), start)
            return
        if refused:
            log.warning("refused a Socket Mode envelope: %s", refused.reason)
            return
        bolt_req = BoltRequest(mode="socket_mode", body=req.payload, headers=build_headers(req))
        bolt_req.context[ADMITTED] = True
        send_response(client, req, self.app.dispatch(bolt_req), start)
