"""Socket Mode: with SLACK_APP_TOKEN set, Slack's requests come over an outbound WebSocket, so
the bot needs no public URL.

The client is slack_sdk's built-in one (standard library only, no extra dependency), driven by
Bolt's Socket Mode adapter: each envelope goes through the same ``App`` as an HTTP request, and
its ack goes back over the socket with the envelope id.

Events: the Home tab's ``app_home_opened`` comes as an ``events_api`` envelope through the same
guard (bot/slack/guard.py) and listener as over HTTP; an event of any other type is acked and
goes no further, as HTTP answers it 200.

Re-deliveries: Slack re-sends an envelope it believes was not acked (``retry_attempt`` > 0).
Each one runs the listener again; what keeps that harmless is the stop flow itself: a confirm
click consumes its confirmation in one atomic Redis step, so a second delivery of the same click
finds it handled and stops nothing (tests/test_socket_mode.py proves it).

HTTP still serves ``/healthz`` (liveness), ``/readyz`` (readiness: Redis and its scripts,
bot.app.probes) and the alert intake on PORT, but not ``/slack/events``: Socket Mode requests are
not signed, so that route would take forgeries. SIGHUP re-reads the roles file
(bot.flow.roles_watch), as under gunicorn.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterable

from bot.app.httpd import serve_in_thread
from bot.app.probes import healthz
from bot.app.web import Wsgi, plain, routes
from bot.app.wiring import Bot
from bot.core.settings import Settings
from bot.slack.guard import GuardedSocketModeHandler as SocketModeHandler  # checks payloads

log = logging.getLogger(__name__)


def create_handler(bot: Bot, *, ping_interval: float = 10) -> SocketModeHandler:
    """The Socket Mode connection for ``bot``; ``connect()`` it, ``close()`` it."""
    token = bot.settings.SLACK_APP_TOKEN
    if token is None:
        raise ValueError("SLACK_APP_TOKEN is not set")
    return SocketModeHandler(bot.app, app_token=token.get_secret_value(), web_client=bot.slack,
                             logger=logging.getLogger("bot.socket_mode"),
                             ping_interval=ping_interval)


def side_wsgi(routes: dict[str, Wsgi]) -> Wsgi:
    """What HTTP serves in Socket Mode: /healthz and ``routes`` (/readyz, the alert intake)."""

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return healthz(environ, start_response)
        if path in routes:
            return routes[path](environ, start_response)
        return plain(start_response, "404 Not Found",
                     "not found (Socket Mode: Slack's requests come over the WebSocket)\n")

    return application


class SocketModeServer:
    """``serve`` with SLACK_APP_TOKEN: the socket, the dispatcher, and /healthz on PORT."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = threading.Event()

    def run(self) -> None:
        from bot.app.serve import secret_values
        from bot.app.wiring import create_bot
        from bot.core.logs import setup

        setup(self.settings.LOG_LEVEL, secret_values(self.settings))
        bot = create_bot(self.settings)
        httpd = serve_in_thread(side_wsgi(routes(bot, metrics=False)), self.settings.HOST,
                                self.settings.PORT)
        handler = create_handler(bot)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        if bot.roles_watch:
            signal.signal(signal.SIGHUP, lambda *_: bot.roles_watch.request())
        try:
            bot.start_background()
            handler.connect()
            log.info("Socket Mode connected; /healthz on %s:%s", self.settings.HOST,
                     httpd.server_address[1])
            self.stopping.wait()
        finally:
            handler.close()
            bot.close()
            httpd.shutdown()
            httpd.server_close()
