"""Run the WSGI app under gunicorn: a production server, not Bolt's dev one.

Workers are bot.app.worker's BufferingWorker (gthread, but a thread only gets a complete request, so
slow clients cannot take every thread). No control socket (gunicorn >= 25.1 opens one unless
``control_socket_disable``): two instances on one host would overwrite each other's, and a
read-only root only logs a warning.

Logs: gunicorn's own lines (start, worker boot and exit, errors) go through the bot's JSON handler
(``JsonGunicornLogger``), and ``serve`` captures stdout and stderr (bot.core.logs.capture): every
line the process writes is one JSON object. No access log (Slack's requests are the decision log).

The master (``Master``) differs from gunicorn's in one signal: SIGHUP re-reads the roles file, in
the master and in every worker (bot.flow.roles_watch), instead of gunicorn's reload (settings come
from the environment, read once: a reload would only restart the workers). Between signals the
master polls the roles file too, so that a worker it starts later begins with the latest good one.

Metrics: every worker writes its counts to files in PROMETHEUS_MULTIPROC_DIR (emptied at start; a
temporary directory, removed at exit, when unset), and ``GET /metrics`` sums them.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger

from bot.app.worker import worker_class
from bot.core.settings import Settings
from bot.flow.roles_watch import RolesWatch, load


class JsonGunicornLogger(Logger):
    """gunicorn's logger, its records handed to the root logger (the bot's JSON handler) instead
    of its own text handlers."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            for handler in [h for h in log.handlers if getattr(h, "_gunicorn", False)]:
                log.removeHandler(handler)
            log.propagate = True


class Master(Arbiter):
    """gunicorn's arbiter; SIGHUP and a poll between signals keep the roles file current."""

    def handle_hup(self) -> None:
        self.check_roles(forced=True)
        self.log.info("SIGHUP: the master holds the roles file sha256 %s; every worker re-reads "
                      "it", self.app.roles.loaded.sha256[:12])
        for pid in list(self.WORKERS):
            self.kill_worker(pid, signal.SIGHUP)

    def manage_workers(self) -> None:
        if self.app.roles.due():
            self.check_roles()
        super().manage_workers()

    def check_roles(self, forced: bool = False) -> None:
        try:
            self.app.roles.check(forced)
        except Exception:  # noqa: BLE001 - the master must outlive a bug in one check
            self.log.exception("roles file: unexpected error; the one in use is kept")


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
            "logger_class": JsonGunicornLogger,
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
        # The master's copy of the roles file, handed to each worker it forks (quiet: the
        # workers log what they load or refuse).
        self.roles = RolesWatch(settings.ROLES_FILE, load(settings.ROLES_FILE), record=False,
                                quiet=True)
        self.bot = None   # in a worker, once ``load`` has built it
        super().__init__()

    def run(self) -> None:
        """gunicorn's BaseApplication.run, with ``Master``."""
        try:
            Master(self).run()
        except RuntimeError as exc:
            import logging

            logging.getLogger("gunicorn.error").critical("cannot serve: %s", exc)
            sys.exit(1)

    def hangup(self) -> None:
        """SIGHUP in a worker (bot.app.worker): check the roles file now. A worker whose bot is
        not built yet checks it when its watch starts."""
        if self.bot is not None and self.bot.roles_watch is not None:
            self.bot.roles_watch.request()

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
        bot = create_bot(self.settings, loaded=self.roles.loaded)
        self.bot = bot
        bot.start_background()   # load() runs in each worker after the fork: threads are its own
        atexit.register(bot.close)
        return application(bot)


def application(bot):
    """One worker's WSGI app: Slack events (acks timed), /healthz, /readyz, /alerts and
    /metrics."""
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
