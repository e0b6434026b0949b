"""A 3xx from ModelArts or IAM is a failure, never followed: following one would send the token,
the signature or the IAM password to whatever host the answer names.

``redirect_failure`` names only the target host (never its path, query or user info, which may
carry anything), so the Failure is safe to show and to log.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import requests

from bot.modelarts.models import REDIRECT, Failure

_HOST = re.compile(r"[A-Za-z0-9._:-]{1,253}")  # a name or an IP address; anything else is hidden


def redirect_failure(resp: requests.Response, service: str, setting: str) -> Failure | None:
    """A REDIRECT Failure when ``resp`` is a 3xx, else None."""
    status = resp.status_code
    if not 300 <= status < 400:
        return None
    host = _target_host(resp.url, resp.headers.get("Location"))
    where = f"a redirect to {host}" if host else f"a redirect (HTTP {status}) to no readable host"
    return Failure(REDIRECT, f"{service} answered {where}: check {setting}", status,
                   resp.headers.get("X-Request-Id"))


def _target_host(base: str, location: str | None) -> str | None:
    """``host`` or ``host:port`` of the Location (resolved against the request URL), or None."""
    if not location:
        return None
    try:
        parts = urlsplit(urljoin(base, location.strip()))
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if not host or not _HOST.fullmatch(host):
        return None
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host
