"""The Bolt app: listeners registered by kind, one error handler."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bot.core.errors import ConfigError
from bot.flow.finder import Finder
from bot.flow.history import History
from bot.flow.home import Home
from bot.flow.stop import StopFlow
from bot.slack.guard import admitted
from bot.slack.later import Later, report_error
from bot.slack.listeners import actions, alerts, commands
from bot.slack.listeners import home as home_tab

log = logging.getLogger(__name__)


class GuardedApp(App):
    """Bolt indexes into a body before any middleware runs, its signature check included: a
    body Slack never sends would be a 500. So each edge checks a request once, before Bolt:
    over HTTP (bot/app/web.py), the signature on the raw body (401, as Bolt answers), one parse,
    then the body (bot/slack/guard.py: 400, or 404 for a kind we do not serve); over Socket Mode
    (guard.GuardedSocketModeHandler), the body (unsigned: the socket is the authentication).
    Bolt's own signature check is off (the edge made it); a request no edge admitted is refused
    here, 401, so the app fails closed whatever adapter reaches it.
    ``verifier``: the HTTP edge's (None for Socket Mode: HTTP then takes nothing);
    ``response_urls``: the prefixes a command's response_url must start with (guard.refusal)."""

    def __init__(self, *, signing_secret: str, response_urls: Sequence[str],
                 verify: bool = True, **kwargs: object) -> None:
        super().__init__(signing_secret=signing_secret, request_verification_enabled=False,
                         **kwargs)
        self.verifier = SignatureVerifier(signing_secret) if verify else None
        self.response_urls = tuple(response_urls)

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        if not admitted(req):
            log.warning("refused a request that no edge admitted (mode %s)", req.mode)
            return BoltResponse(status=401, body={"error": "invalid request"})
        return super().dispatch(req)


def create_app(flow: StopFlow, client: WebClient, signing_secret: str | None, *,
               response_urls: Sequence[str] | None, socket_mode: bool,
               alert_ids: alerts.Lookup, later: Later, finder: Finder,
               history: History, home: Home) -> App:
    """Over HTTP every request is verified with ``signing_secret``: without one the app is not
    built (fail closed). Only ``socket_mode`` goes unsigned: the socket is the authentication.
    ``response_urls``: where a command's response_url may point, on both transports
    (Settings.response_url_prefixes): required (a ConfigError without it, checked after the
    secret), and not empty. Every collaborator comes from bot/app/wiring.py: ``later``, the
    pools for work after the ack (bot/slack/later.py); ``finder``, lists and look-ups by name
    (bot/flow/finder.py); ``history``, /modelarts history (bot/flow/history.py); ``home``,
    the Home tab (bot/flow/home.py)."""
    if not socket_mode and not signing_secret:
        raise ConfigError("SLACK_SIGNING_SECRET is missing: HTTP mode needs it to verify requests")
    if not response_urls or not all(isinstance(u, str) and u for u in response_urls):
        raise ConfigError("create_app needs response_urls (Settings.response_url_prefixes): "
                          "the prefixes a command's response_url may start with")
    app = GuardedApp(
        client=client,
        signing_secret=signing_secret or "unused-in-socket-mode",
        response_urls=response_urls,
        verify=not socket_mode,
        token_verification_enabled=False,
        ignoring_self_events_enabled=False,
        logger=logging.getLogger("bot.bolt"),
        process_before_response=True,   # ack from the request thread; work: later.py
    )
    commands.register(app, flow, later, finder, history)
    actions.register(app, flow, later)
    alerts.register(app, flow, later, alert_ids)
    home_tab.register(app, later, home)

    @app.error
    def on_error(error: Exception) -> None:
        report_error(error)

    return app
