"""Fixtures for job alerts: bot replicas that serve POST /alerts and run the alert dispatcher."""

from __future__ import annotations

import json

import pytest
import requests

from tests.plugins.slack import BotServer

ALERTS_TOKEN = "alerts-token-93b1f0c4e2"  # noqa: S105 - distinctive, so leaks can be grepped


def generic(n: int = 0, **fields) -> dict:
    """A generic alert body for team-a-resnet (RUNNING); ``n`` makes the summary distinct."""
    body = {"channel": "C0ALERTS", "job_id": "182626", "version_id": "278813",
            "job_name": "team-a-resnet", "status": "RUNNING",
            "summary": "loss is NaN" if n == 0 else f"loss is NaN #{n}",
            "severity": "critical", "url": "https://grafana.example.com/d/abc"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}


class AlertBot(BotServer):
    def alert(self, body: dict | bytes | str, token: str | None = ALERTS_TOKEN,
              ) -> requests.Response:
        data = body if isinstance(body, bytes | str) else json.dumps(body)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return self.http.post(self.url + "/alerts", data=data, headers=headers, timeout=10)


@pytest.fixture
def make_alert_bot(bot_settings, slack_api):
    """Build and serve a replica with the alert intake; ``dispatch=False`` leaves its dispatcher
    stopped. Each call is another replica sharing Redis and the stand-in."""
    from bot.app.web import create_wsgi, routes
    from bot.app.wiring import create_bot

    servers: list[AlertBot] = []

    def make(dispatch: bool = True, **overrides) -> AlertBot:
        values = {"ALERTS_TOKEN": ALERTS_TOKEN, "ALERT_POST_INTERVAL_SECONDS": 0, **overrides}
        bot = create_bot(bot_settings(**values), session=requests.Session())
        server = AlertBot(create_wsgi(bot, routes(bot, metrics=False)), slack_api)
        server.bot = bot
        servers.append(server)
        if dispatch:
            bot.start_background()
        return server

    yield make
    for server in servers:
        server.bot.close()
        server.close()
