"""The baseline: a bare Bolt app whose slash command and buttons only ack, under the bot's server.

    python -m bench.harness.baseline      # reads the same environment as ``python -m bot serve``

It is configured as the bot's App is (request verification on, token verification off, same
client, ``process_before_response=True``), and served by ``bot.app.serve.Server`` with the same
options: only ``load()`` differs. ``BENCH_BOLT_DEFAULT=1`` keeps Bolt's default instead
(``process_before_response=False``: the listener runs on a pool and Bolt polls for its ack
every 10 ms), to show what that default costs.
"""

from __future__ import annotations

import logging
import os
import re

from slack_bolt import Ack, App
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from bot.app.serve import Server
from bot.app.web import create_wsgi
from bot.core.settings import load_settings


def bare_app(token: str, signing_secret: str, api_url: str, *, bolt_default: bool = False
             ) -> App:
    app = App(client=WebClient(token=token, base_url=api_url), signing_secret=signing_secret,
              token_verification_enabled=False, ignoring_self_events_enabled=False,
              logger=logging.getLogger("bench.harness.baseline"),
              process_before_response=not bolt_default)
    app.verifier = SignatureVerifier(signing_secret)  # the edge checks it first, as for the bot

    @app.command("/modelarts")
    def command(ack: Ack) -> None:
        ack()

    @app.action(re.compile(".*"))
    def button(ack: Ack) -> None:
        ack()

    return app


class _Shell:
    """What ``create_wsgi`` reads from a bot: its App. The same routing wraps both apps."""

    def __init__(self, app: App) -> None:
        self.app = app


class BaselineServer(Server):
    def load(self):
        s = self.settings
        assert s.SLACK_BOT_TOKEN and s.SLACK_SIGNING_SECRET
        app = bare_app(s.SLACK_BOT_TOKEN.get_secret_value(),
                       s.SLACK_SIGNING_SECRET.get_secret_value(), s.SLACK_API_URL,
                       bolt_default=os.environ.get("BENCH_BOLT_DEFAULT") == "1")
        return create_wsgi(_Shell(app))  # type: ignore[arg-type]


def main() -> None:
    BaselineServer(load_settings()).run()


if __name__ == "__main__":
    main()
