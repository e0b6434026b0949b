"""The Bolt app: listeners registered by kind, one error handler."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_bolt import App, BoltContext, BoltRequest, BoltResponse
from slack_bolt.request.internals import build_context
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bot.core.errors import ConfigError
from bot.flow.finder import Finder
from bot.flow.stop import StopFlow
from bot.slack.guard import form_read_as_payload, refusal, signed, unbuildable
from bot.slack.later import Later, report_error
from bot.slack.listeners import actions, alerts, commands

log = logging.getLogger(__name__)


class GuardedApp(App):
    """Bolt indexes into a body before any middleware runs, its signature check included: a
    body Slack never sends would be a 500. So, before Bolt: over HTTP, the signature (401, as
    Bolt answers); then the body (bot/slack/guard.py): 400, or 404 for a kind we do not serve.
    Socket Mode requests come here too (unsigned: the socket is the authentication).
    ``response_urls``: the prefixes a command's response_url must start with (guard.refusal)."""

    def __init__(self, *, signing_secret: str, response_urls: Sequence[str],
                 request_verification_enabled: bool = True, **kwargs: object) -> None:
        super().__init__(signing_secret=signing_secret,
                         request_verification_enabled=request_verification_enabled, **kwargs)
        self.verifier = SignatureVerifier(signing_secret) if request_verification_enabled else None
        self.response_urls = tuple(response_urls)

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        ssl_check = isinstance(req.body, dict) and req.body.get("ssl_check") == "1"  # as Bolt
        verify = req.mode == "http" and self.verifier and not ssl_check
        if verify and not signed(self.verifier, req):
            return BoltResponse(status=401, body={"error": "invalid request"})
        refused, form = None, form_read_as_payload(req)
        if form is not None:
            refused = unbuildable(form)
            if not refused:
                req.body, req.context = form, build_context(BoltContext(), form)
        refused = refused or refusal(req.body, response_urls=self.response_urls)
        if refused:
            log.warning("refused a request: %s", refused.reason)
            return BoltResponse(status=refused.status, body=f"refused: {refused.reason}")
        return super().dispatch(req)


def create_app(flow: StopFlow, client: WebClient, signing_secret: str | None, *,
               response_urls: Sequence[str] | None = None, socket_mode: bool = False,
               alert_ids: alerts.Lookup | None = None, later: Later | None = None,
               finder: Finder | None = None) -> App:
    """Over HTTP every request is verified with ``signing_secret``: without one the app is not
    built (fail closed). Only ``socket_mode`` goes unsigned: the socket is the authentication.
    ``response_urls``: where a command's response_url may point, on both transports
    (Settings.response_url_prefixes): required (a ConfigError without it, checked after the
    secret), and not empty. ``later``: the pools for work after the ack (bot/slack/later.py);
    ``finder``: lists and look-ups by name (bot/flow/finder.py)."""
    if not socket_mode and not signing_secret:
        raise ConfigError("SLACK_SIGNING_SECRET is missing: HTTP mode needs it to verify requests")
    if not response_urls or not all(isinstance(u, str) and u for u in response_urls):
        raise ConfigError("create_app needs response_urls (Settings.response_url_prefixes): "
                          "the prefixes a command's response_url may start with")
    app = GuardedApp(
        client=client,
        signing_secret=signing_secret or "unused-in-socket-mode",
        response_urls=response_urls,
        request_verification_enabled=not socket_mode,
        token_verification_enabled=False,
        ignoring_self_events_enabled=False,
        logger=logging.getLogger("bot.bolt"),
        process_before_response=True,   # ack from the request thread; work: later.py
    )
    later = later or Later()
    commands.register(app, flow, later, finder)
    actions.register(app, flow, later)
    alerts.register(app, flow, later, alert_ids)

    @app.error
    def on_error(error: Exception) -> None:
        report_error(error)

    return app
