"""Logging: one JSON object a line, with secrets scrubbed from every record."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

from bot import metrics

DECISIONS = logging.getLogger("bot.decision")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class ScrubSecrets(logging.Filter):
    """Replaces any known secret value in a record's final text with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            record.msg, record.args = self.scrub(message), ()
            if record.exc_info:
                record.exc_text = self.scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
            for key, value in list(record.__dict__.items()):
                if key not in _STANDARD and isinstance(value, str):
                    record.__dict__[key] = self.scrub(value)
        return True


def setup(level: str = "INFO", secrets: Iterable[str] = (), stream=None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ScrubSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def decision(event: str, **fields: object) -> None:
    """One structured line per decision: requested, denied, confirmed, stopped, failed, ...;
    and one count in ``modelarts_bot_decisions_total{event,outcome}``."""
    DECISIONS.info(event, extra={"event": event, **fields})
    metrics.decision(event, fields.get("outcome"))
