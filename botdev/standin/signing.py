"""Sign a request body exactly as Slack does (v0, HMAC-SHA256 of ``v0:{timestamp}:{body}``)."""

from __future__ import annotations

import hashlib
import hmac
import time


def slack_headers(secret: str, body: str | bytes, timestamp: int | None = None) -> dict[str, str]:
    raw = body.encode() if isinstance(body, str) else body
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + raw
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
