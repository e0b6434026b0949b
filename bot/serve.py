"""Run the WSGI app under gunicorn (gthread workers): a production server, not Bolt's dev one."""

from __future__ import annotations

from gunicorn.app.base import BaseApplication

from bot.settings import Settings


class Server(BaseApplication):
    """Each worker builds its own bot after the fork, so no socket is shared between processes."""

    def __init__(self, settings: Settings, options: dict | None = None) -> None:
        self.settings = settings
        self.options = {
            "bind": f"{settings.HOST}:{settings.PORT}",
            "workers": settings.WEB_CONCURRENCY,
            "threads": settings.WEB_THREADS,
            "worker_class": "gthread",
            "timeout": 30,
            "graceful_timeout": 20,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": settings.LOG_LEVEL.lower(),
            "proc_name": "modelarts-bot",
            **(options or {}),
        }
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        import atexit

        from bot.alerts.intake import routes
        from bot.logs import setup
        from bot.web import create_wsgi
        from bot.wiring import create_bot

        setup(self.settings.LOG_LEVEL, secret_values(self.settings))
        bot = create_bot(self.settings)
        bot.start_background()   # load() runs in each worker after the fork: threads are its own
        atexit.register(bot.close)
        return create_wsgi(bot, routes(bot))


def secret_values(settings: Settings) -> list[str]:
    names = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "MODELARTS_AK",
             "MODELARTS_SK", "MODELARTS_PASSWORD", "ALERTS_TOKEN")
    values = (getattr(settings, n) for n in names)
    return [v.get_secret_value() for v in values if v is not None]
