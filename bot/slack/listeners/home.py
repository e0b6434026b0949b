"""The app_home_opened event: the Home tab, published after the ack (bot/flow/home.py).

Bolt acks an event itself once the listener returns; the listener only hands the work to the
lookup pool. The event fires for the Messages tab too (``tab`` "messages"): that one gets
nothing. The guard (bot/slack/guard.py) has checked ``user``, ``channel`` and ``tab``.
"""

from __future__ import annotations

from slack_bolt import App

from bot.flow.home import Home
from bot.slack.later import Later

EVENT = "app_home_opened"


def register(app: App, later: Later, home: Home) -> None:
    @app.event(EVENT)
    def opened(event: dict) -> None:
        if event.get("tab", "home") != "home":
            return
        later(home.opened, event["user"], event.get("channel"))
