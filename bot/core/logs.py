"""Logging: one JSON object a line, with secrets scrubbed from every record.

A record on its way out (``setup``: one handler, this filter, this formatter)::

    logger.error(msg, *args, exc_info=..., extra={...})
      └─ ScrubSecrets       msg % args ─▶ scrubbed msg; each extra scrubbed through dicts,
         │                  lists and tuples (any other object as its str()); the traceback
         │                  formatted and scrubbed into exc_text (exc_info dropped, so nothing
         │                  formats it again unscrubbed); stack_info scrubbed
      └─ JsonFormatter      {"ts", "level", "logger", "msg", extras..., "exc", "stack"}: "exc"
                            from exc_info, or from exc_text once the scrub has taken exc_info

``serve`` (``capture``) goes further, so that every line the process writes is one JSON object:
gunicorn's own loggers hand their records to this handler (bot.app.serve.JsonGunicornLogger);
what is printed to stdout or stderr (gunicorn's few ``print`` calls when a worker cannot boot, a
library's warning) becomes a record of logger "stdout" / "stderr", a line each, scrubbed; and an
uncaught exception, in any thread, is logged with its traceback. Left out: bytes written to the
file descriptors by C code (a fatal error of the interpreter itself).
"""

from __future__ import annotations

import io
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable

from bot.core import metrics

DECISIONS = logging.getLogger("bot.decision")
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
MAX_DEPTH = 20   # levels of an extra the scrub walks; deeper (or a cycle) goes as its str()


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
        exc = self.formatException(record.exc_info) if record.exc_info else record.exc_text
        if exc:
            out["exc"] = exc
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


class ScrubSecrets(logging.Filter):
    """Replaces any known secret value in a record's final text with ``***``: the message, the
    traceback, the stack and every extra, however nested (``scrub_value``)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def scrub_value(self, value: object, within: tuple[int, ...] = ()) -> object:
        """``value`` with every string in it scrubbed: dicts (keys too), lists and tuples walked
        (``within``: the ids of the containers above; past MAX_DEPTH of them, or on a cycle,
        the rest goes as one string), numbers, booleans and None kept, and any other object
        replaced by its scrubbed str() (what the formatter would have printed)."""
        if isinstance(value, str):
            return self.scrub(value)
        if value is None or isinstance(value, bool | int | float):
            return value
        if len(within) < MAX_DEPTH and id(value) not in within:
            inner = (*within, id(value))
            if isinstance(value, dict):
                return {self.scrub_value(k, inner): self.scrub_value(v, inner)
                        for k, v in value.items()}
            if isinstance(value, list | tuple):
                return [self.scrub_value(v, inner) for v in value]
        return self.scrub(_text(value))

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            record.msg, record.args = self.scrub(message), ()
            if record.exc_info:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
                record.exc_info = None
            if record.exc_text:
                record.exc_text = self.scrub(record.exc_text)
            if record.stack_info:
                record.stack_info = self.scrub(record.stack_info)
            for key, value in list(record.__dict__.items()):
                if key not in _STANDARD:
                    record.__dict__[key] = self.scrub_value(value)
        return True


def _text(value: object) -> str:
    try:
        return str(value)
    except Exception:   # noqa: BLE001 - a __str__ that raises must not lose the line
        return f"<{type(value).__name__} that cannot be printed>"


class JsonLines(io.TextIOBase):
    """A text stream that writes each line given to it as one JSON object on ``raw``: a line
    that is one already (a log record) as it is, any other as {"ts", "level", "logger", "msg"}."""

    def __init__(self, raw, name: str, level: str, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.raw = raw
        self.name, self.level = name, level
        self.scrub = ScrubSecrets(secrets).scrub
        self._pending = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self._pending += text
            *lines, self._pending = self._pending.split("\n")
            for line in lines:
                self._line(line)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            if self._pending:
                self._line(self._pending)
                self._pending = ""
        self.raw.flush()

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        if not is_json_object(line):
            now = time.time()
            line = json.dumps({
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
                + f".{int(now % 1 * 1000):03d}Z",
                "level": self.level, "logger": self.name, "msg": self.scrub(line.rstrip())},
                ensure_ascii=False)
        self.raw.write(line + "\n")

    def fileno(self) -> int:
        return self.raw.fileno()

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return getattr(self.raw, "encoding", "utf-8")


def is_json_object(line: str) -> bool:
    if not line.startswith("{"):
        return False
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def capture(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """``setup``, and every line of stdout and stderr as JSON, warnings and uncaught exceptions
    as records (``serve``: the whole process, and the workers it forks). Idempotent."""
    secrets = list(secrets)
    if not isinstance(sys.stderr, JsonLines):
        sys.stderr = JsonLines(sys.stderr, "stderr", "error", secrets)
    if not isinstance(sys.stdout, JsonLines):
        sys.stdout = JsonLines(sys.stdout, "stdout", "info", secrets)
    setup(level, secrets)
    logging.captureWarnings(True)   # a warning shown: one "py.warnings" record
    sys.excepthook = _uncaught
    threading.excepthook = _uncaught_in_thread


def _uncaught(kind, exc, tb) -> None:
    logging.getLogger("bot.uncaught").critical("uncaught exception", exc_info=(kind, exc, tb))


def _uncaught_in_thread(args) -> None:
    if issubclass(args.exc_type, SystemExit):
        return
    logging.getLogger("bot.uncaught").error(
        "uncaught exception in thread %s", getattr(args.thread, "name", "?"),
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback))


def setup(level: str = "INFO", secrets: Iterable[str] = (), stream=None) -> None:
    """One JSON handler on the root logger (on stderr, or ``stream``)."""
    if stream is None:   # under ``capture``, straight to the real stream: no second parse
        stream = sys.stderr.raw if isinstance(sys.stderr, JsonLines) else sys.stderr
    handler = logging.StreamHandler(stream)
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
