"""Run the WSGI app under gunicorn: a production server, not Bolt's dev one.

Workers are bot.app.worker's BufferingWorker (gthread, but a thread only gets a complete request, so
slow clients cannot take every thread). No control socket: two instances on one host would
overwrite each other's, and a read-only root only logs a warning.

Metrics: every worker writes its counts to files in PROMETHEUS_MULTIPROC_DIR (emptied at start; a
temporary directory, removed at exit, when unset), and ``GET /metrics`` sums them.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from gunicorn.app.base import BaseApplication

from bot.app.worker import worker_class
from bot.core.settings import Settings


class Server(BaseApplication):
    """Each worker builds its own bot after the fork, so no socket is shared between processes."""

    def __init__(self, settings: Settings, options: dict | None = None) -> None:
        self.settings = settings
        self.options = {
            "bind": f"{settings.HOST}:{settings.PORT}",
            "workers": settings.WEB_CONCURRENCY,
            "threads": settings.WEB_THREADS,
            "worker_class": worker_class(settings.WEB_REQUEST_TIMEOUT_SECONDS),
            "control_socket_disable": True,
            "timeout": 30,
            "graceful_timeout": 20,
            "keepalive": 5,
            "accesslog": None,
            "errorlog": "-",
            "loglevel": settings.LOG_LEVEL.lower(),
            "proc_name": "modelarts-bot",
            "child_exit": child_exit,
            **(options or {}),
        }
        self.metrics_dir, self.own_metrics_dir = metrics_dir()
        if self.own_metrics_dir:
            self.options.setdefault("on_exit", self.remove_metrics_dir)
        super().__init__()

    def remove_metrics_dir(self, server: object = None) -> None:
        shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        import atexit

        from bot.app.wiring import create_bot
        from bot.core.logs import setup

        setup(self.settings.LOG_LEVEL, secret_values(self.settings))
        bot = create_bot(self.settings)
        bot.start_background()   # load() runs in each worker after the fork: threads are its own
        atexit.register(bot.close)
        return application(bot)


def application(bot):
    """One worker's WSGI app: Slack events (acks timed), /healthz, /alerts and /metrics."""
    from bot.app.metrics_web import timed
    from bot.app.web import create_wsgi, routes

    return timed(create_wsgi(bot, routes(bot, metrics=True)))


def metrics_dir() -> tuple[str, bool]:
    """PROMETHEUS_MULTIPROC_DIR emptied of old workers' files, or a new temporary one (True);
    metrics are kept there from now on, in this process and in the workers it forks."""
    from bot.core import metrics

    path, own = os.environ.get("PROMETHEUS_MULTIPROC_DIR"), False
    if not path:
        path, own = tempfile.mkdtemp(prefix="modelarts-bot-metrics-"), True
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.remove(os.path.join(path, name))
    metrics.use_multiprocess_dir(path)
    return path, own


def child_exit(server: object, worker: object) -> None:
    """gunicorn hook: a dead worker's gauges leave /metrics (its counters stay in the sums)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def secret_values(settings: Settings) -> list[str]:
    return settings.secret_values()
