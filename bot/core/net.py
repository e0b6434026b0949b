"""Why a connection failed, in a few words a person can act on.

requests, urllib3 and urllib wrap the real cause several layers deep::

    requests.ConnectionError            urllib.error.URLError
      └─ urllib3 MaxRetryError            └─ .reason
           └─ .reason: NewConnectionError      └─ ssl.SSLCertVerificationError
                └─ __cause__: ConnectionRefusedError

``reason(exc)`` walks that chain (``__cause__``, ``__context__``, ``.reason``, exception
``args``) and names the most telling cause it finds: "connection refused", "certificate verify
failed: self-signed certificate", "timed out", "host name not resolved"... It never repeats the
exceptions' own text, which may hold a URL with user info or a pool's repr.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from http.client import RemoteDisconnected

from urllib3.exceptions import TimeoutError as Urllib3Timeout


def reason(exc: BaseException) -> str:
    chain = list(_chain(exc))
    for cause in chain:   # the most specific first: TLS, then the socket's own errors
        if isinstance(cause, ssl.SSLCertVerificationError):
            detail = getattr(cause, "verify_message", "") or ""
            return f"certificate verify failed: {detail}" if detail else "certificate verify failed"
    for cause in chain:
        if isinstance(cause, ssl.SSLError):
            return f"TLS failed ({cause.reason or type(cause).__name__})"
    for kind, words in _SOCKET_REASONS:   # urllib3's NewConnectionError is a "timeout" too
        if any(isinstance(cause, kind) for cause in chain):
            return words
    return type(exc).__name__


# Most telling first: a refused connect may arrive wrapped in urllib3's connect-timeout class.
_SOCKET_REASONS: tuple[tuple[type | tuple[type, ...], str], ...] = (
    (ConnectionRefusedError, "connection refused"),
    (socket.gaierror, "host name not resolved"),
    (RemoteDisconnected, "closed the connection without an answer"),   # a ConnectionReset
    (ConnectionResetError, "connection reset"),
    ((TimeoutError, Urllib3Timeout), "timed out"),
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps, each once, outermost first."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 32:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None),
                   *current.args]
        todo.extend(e for e in wrapped if isinstance(e, BaseException))
