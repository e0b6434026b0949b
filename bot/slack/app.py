"""The Bolt app: listeners registered by kind, one error handler."""

from __future__ import annotations

import logging

from slack_bolt import App, BoltRequest, BoltResponse
from slack_sdk import WebClient

from bot.flow.stop import StopFlow
from bot.slack.guard import refusal
from bot.slack.later import Later, report_error
from bot.slack.listeners import actions, alerts, commands

log = logging.getLogger(__name__)


class GuardedApp(App):
    """Bolt indexes into a body before any middleware runs: a body Slack never sends would be a
    500. Answer 400 (404: a kind we do not serve) instead, for HTTP and Socket Mode alike."""

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        refused = refusal(req.body)
        if refused:
            log.warning("refused a request: %s", refused.reason)
            return BoltResponse(status=refused.status, body=f"refused: {refused.reason}")
        return super().dispatch(req)


def create_app(flow: StopFlow, client: WebClient, signing_secret: str | None, *,
               alert_ids: alerts.Lookup | None = None) -> App:
    """``signing_secret`` None means Socket Mode: requests come over the socket, not HTTP."""
    app = GuardedApp(
        client=client,
        signing_secret=signing_secret or "unused-in-socket-mode",
        request_verification_enabled=signing_secret is not None,
        token_verification_enabled=False,
        ignoring_self_events_enabled=False,
        logger=logging.getLogger("bot.bolt"),
        process_before_response=True,   # ack from the request thread; work: later.py
    )
    later = Later()
    commands.register(app, flow, later)
    actions.register(app, flow, later)
    alerts.register(app, flow, later, alert_ids)

    @app.error
    def on_error(error: Exception) -> None:
        report_error(error)

    return app
