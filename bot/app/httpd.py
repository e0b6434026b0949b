"""A threaded WSGI server on a daemon thread, quiet in the logs: /healthz and /alerts in Socket
Mode, and the app served in-process by the shell, the tests and the alert-storm bench."""

from __future__ import annotations

import threading
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base's name
        return


def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0) -> WSGIServer:
    """Serve ``app`` on host:port (0: a free port) until ``shutdown()``."""
    httpd = make_server(host, port, app, server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd
