"""The audit trail: every decision of the bot, appended to one Redis Stream (``Keys.audit()``).

Writing rides on a round trip the flow makes anyway (issue 13):

  requested                         CREATE of the confirmation (bot.flow.confirmations)
  failed post_failed                its DISCARD, when Slack refuses the request message
  confirmed, cancelled, expired,    CONSUME, from the record it consumes and the clicking user
    refused not_requester,            (a refused click consumes nothing)
    refused wrong_channel
  stopped, failed (stop_failed,     DONE of the owed outcome reply (bot.flow.outcomes); the
    unknown, interrupted),            entry travels in the owed entry when Slack refuses the reply
    denied role_lost
  refused, denied, failed lookup    a round trip of its own (``Audit.write``): there the flow
    at request time                   makes none
  later states (watches)            their script: ``AUDIT_LUA`` + ``Audit.entry`` (the hook)

Inside a script the XADD runs under ``redis.pcall``: a refused write never aborts the script, so
never a stop; the script reports it and the caller counts it (``Audit.lost``), as ``write`` does.
Retention: each XADD trims by id (exact ``MINID``: now less the retention, from Redis' clock in
a script), so the stream holds AUDIT_RETENTION_DAYS and no more, at no extra round trip; each
entry is trimmed once, so the trim costs O(1) amortized.

An entry's time is its id (Redis ms, UTC). Its fields are ``FIELDS``, empty ones left out; no
free text from ModelArts or Slack, so never a secret.

Printed (``cli``), a job name is still text someone else chose: every control character (C0,
DEL, C1), line and paragraph separator and bidi control is shown as an escape (``\\x1b``,
``\\u202e``; a backslash as ``\\\\``) in the table, and the --json lines escape the ones JSON
itself leaves raw, so nothing in an entry moves the cursor, retitles the terminal or reorders
the line.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import redis

from bot.core import metrics
from bot.core.errors import InvalidIdError
from bot.core.keys import Keys
from bot.modelarts.refs import (
    DEFAULT,
    V2_SHAPE,
    JobRef,
    V1Job,
    V2Job,
    parse_ref,
    ref_fields,
    validate_id,
)

log = logging.getLogger(__name__)

FIELDS = ("event", "user", "requester", "channel", "api", "job_id", "version_id",
          "training_job_id", "job_name", "outcome", "error_code", "http_status", "request_id",
          "confirmation", "state", "topic", "message_id", "smn_event", "reason", "approver",
          "project")
DAY_MS = 24 * 3600 * 1000
BATCH = 500             # entries per XRANGE/XREVRANGE call
HISTORY_SCAN = 5000     # /modelarts history reads at most this many of the newest entries

# Lua functions for a script that audits (prepend it). The script needs nothing else defined.
# audit(stream, fields, keep_ms): XADD one entry (fields: a table name -> value, empty values left
#   out, in name order), trimming by id every entry older than keep_ms (exact MINID, Redis time);
#   returns true, or false when Redis refused the XADD (the script goes on).
# audit_confirmation(record, fields): fields plus the confirmation record's requester, channel,
#   job name, id, reason and job (project, api and ids, from its ref key).
AUDIT_LUA = """
local function audit(stream, f, keep)
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  local names, flat = {}, {}
  for k, v in pairs(f) do
    if v ~= cjson.null and v ~= '' then names[#names + 1] = k end
  end
  table.sort(names)
  for _, k in ipairs(names) do
    flat[#flat + 1] = k
    flat[#flat + 1] = tostring(f[k])
  end
  local r = redis.pcall('XADD', stream, 'MINID', string.format('%.0f', now - tonumber(keep)),
                        '*', unpack(flat))
  return not (type(r) == 'table' and r.err)
end
local function audit_confirmation(c, f)
  f['requester'], f['channel'], f['job_name'], f['confirmation'], f['reason'] =
    c['requester'], c['channel'], c['job_name'], c['id'], c['reason']
  local key = c['ref'] or ''
  local project, rest = string.match(key, '^([a-z0-9%-]+)/(.*)$')
  f['project'] = project
  local api, a, b = string.match(rest or key, '^(v[12]):([^:]+):?(.*)$')
  f['api'] = api
  if api == 'v1' then f['job_id'], f['version_id'] = a, b else f['training_job_id'] = a end
  return f
end
"""


def job_fields(ref: JobRef) -> dict[str, str]:
    """api, ids and project of a job, as entry fields."""
    return {k: str(v) for k, v in ref_fields(ref).items()}


class Confirmation(Protocol):
    """What an entry takes from a confirmation (bot.flow.confirmations.Confirmation, which
    imports this module: so the audit trail names the fields it reads, not the class)."""

    @property
    def id(self) -> str: ...
    @property
    def requester(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def job_name(self) -> str: ...
    @property
    def ref(self) -> JobRef: ...


@dataclass(frozen=True)
class AuditEntry:
    """An entry to append: its fields (only names in FIELDS, empty ones left out, made by
    ``Audit.entry``). It travels as JSON (``to_json``) in a script's ARGV, and inside an owed
    reply or a watch until the script that appends it runs; there "" means none (``as_arg``)."""

    fields: dict[str, str]

    @property
    def event(self) -> str:
        return self.fields.get("event", "")

    def to_json(self) -> str:
        return json.dumps(self.fields)

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> AuditEntry | None:
        """The entry in ``raw``; None for none ("" or None)."""
        return cls(json.loads(raw)) if raw else None


def as_arg(entry: AuditEntry | None) -> str:
    """``entry`` for a script's ARGV: its JSON, or "" for none."""
    return entry.to_json() if entry else ""


@dataclass(frozen=True)
class Entry:
    id: str
    fields: dict[str, str]

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(int(self.id.split("-")[0]) / 1000, UTC)

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    @property
    def project(self) -> str:
        """The entry's project (an entry of the default one names none)."""
        return self.get("project") or DEFAULT

    @property
    def job(self) -> JobRef | None:
        """The job the entry is about, or None (an entry that names no job, or a bad one)."""
        try:
            if self.get("api") == "v2":
                return V2Job(self.get("training_job_id"), self.project)
            if self.get("api") == "v1":
                return V1Job(validate_id(self.get("job_id"), "job_id"),
                             validate_id(self.get("version_id"), "version_id"), self.project)
        except InvalidIdError:
            return None
        return None

    def as_json(self) -> dict[str, str]:
        stamp = self.time.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.time.microsecond // 1000:03d}Z"
        return {"id": self.id, "time": stamp, **dict(sorted(self.fields.items()))}


class Audit:
    """Writes entries (``write``: one round trip, never raises) and reads them back."""

    def __init__(self, client: redis.Redis, prefix: str, retention_days: int = 90) -> None:
        self.redis = client
        self.key = Keys(prefix).audit()
        self.keep_ms = retention_days * DAY_MS

    @staticmethod
    def fields(event: str, c: Confirmation | None = None, ref: JobRef | None = None,
               **more: object) -> dict[str, str]:
        """An entry's fields: from the confirmation ``c`` (or the job ``ref``), then ``more``.
        Only names in FIELDS are kept, and empty values (None, "") are left out."""
        out: dict[str, object] = {"event": event}
        if c is not None:
            out |= {"requester": c.requester, "channel": c.channel, "job_name": c.job_name,
                    "confirmation": c.id, "reason": getattr(c, "reason", "")}
            ref = c.ref
        if ref is not None:
            out |= job_fields(ref)
        out |= more
        return {k: str(v) for k, v in out.items() if k in FIELDS and v not in (None, "")}

    def entry(self, event: str, c: Confirmation | None = None, ref: JobRef | None = None,
              **more: object) -> AuditEntry:
        """An entry for a script to append (``audit(KEYS[n], cjson.decode(ARGV[m]),
        ARGV[m + 1])`` with ARGV[m] = ``as_arg(entry)``, ARGV[m + 1] = ``keep_ms``)."""
        return AuditEntry(self.fields(event, c, ref, **more))

    def write(self, event: str, c: Confirmation | None = None, ref: JobRef | None = None,
              **more: object) -> bool:
        """Append an entry in a round trip of its own; False (logged, counted) if Redis failed."""
        return self.append(self.fields(event, c, ref, **more))

    def append(self, fields: dict[str, str] | AuditEntry) -> bool:
        """``write`` for fields already made (a dict, or an ``entry``)."""
        data = fields.fields if isinstance(fields, AuditEntry) else fields
        try:
            self.redis.xadd(self.key, data, minid=int(time.time() * 1000) - self.keep_ms,
                            approximate=False)
        except redis.RedisError as exc:
            self.lost(data.get("event", ""), type(exc).__name__)
            return False
        return True

    @staticmethod
    def lost(event: str, why: str = "refused in a script") -> None:
        """An entry that could not be written: logged and counted, nothing else."""
        log.warning("audit entry not written (%s)", why, extra={"event": event})
        metrics.audit_write_error()

    # -- reading -----------------------------------------------------------------------------
    def read(self, since_ms: int | None = None) -> Iterator[Entry]:
        """Entries oldest first, from ``since_ms`` (epoch ms; None: all), BATCH per call."""
        start = str(since_ms) if since_ms else "-"
        while True:
            got = self.redis.xrange(self.key, start, "+", count=BATCH)
            for raw_id, raw in got:
                yield _entry(raw_id, raw)
            if len(got) < BATCH:
                return
            start = "(" + _text(got[-1][0])

    def newest_of(self, user: str, want: int, bound: int = HISTORY_SCAN,
                  first: int = 200) -> list[Entry]:
        """The ``want`` newest entries about ``user`` (as the user or the requester), newest
        first, from at most ``bound`` of the newest entries: ``first`` in the first call (most
        Home tabs need no more), then BATCH a call, stopping once ``want`` are found."""
        out: list[Entry] = []
        end, read = "+", 0
        while read < bound and len(out) < want:
            count = min(first if not read else BATCH, bound - read)
            got = self.redis.xrevrange(self.key, end, "-", count=count)
            read += len(got)
            out += [e for e in (_entry(raw_id, raw) for raw_id, raw in got)
                    if user in (e.get("user"), e.get("requester"))]
            if len(got) < count:
                break
            end = "(" + _text(got[-1][0])
        return out[:want]

    def newest(self, bound: int = HISTORY_SCAN) -> tuple[list[Entry], bool]:
        """Up to ``bound`` newest entries, oldest first; True when that is the whole stream."""
        out: list[Entry] = []
        end = "+"
        while len(out) < bound:
            count = min(BATCH, bound - len(out))
            got = self.redis.xrevrange(self.key, end, "-", count=count)
            out += [_entry(raw_id, raw) for raw_id, raw in got]
            if len(got) < count:
                return out[::-1], True
            end = "(" + _text(got[-1][0])
        return out[::-1], False


@dataclass(frozen=True)
class JobFilter:
    """Which job's entries: a v1 version, all versions of a v1 job, or a v2 training job; of one
    project, or (``project`` None) of any."""

    api: str
    job_id: str = ""
    version_id: str = ""
    training_job_id: str = ""
    project: str | None = None

    @classmethod
    def of(cls, ref: JobRef, project: str | None = None) -> JobFilter:
        if isinstance(ref, V1Job):
            return cls("v1", str(ref.job_id), str(ref.version_id), project=project)
        return cls("v2", training_job_id=ref.training_job_id, project=project)

    @classmethod
    def parse(cls, text: str) -> JobFilter:
        """A training_job_id, ``JOB:VERSION``, ``v1:JOB:VERSION``, ``v2:ID`` or a bare v1 job id
        (every version); InvalidIdError otherwise."""
        text = text.strip()
        if text.isascii() and text.isdigit():
            return cls("v1", str(validate_id(text, "job_id")))
        if V2_SHAPE.match(text):
            return cls.of(V2Job(text))
        return cls.of(parse_ref(text))

    def matches(self, e: Entry) -> bool:
        if e.get("api") != self.api or self.project not in (None, e.project):
            return False
        if self.api == "v2":
            return e.get("training_job_id") == self.training_job_id
        return e.get("job_id") == self.job_id and (
            not self.version_id or e.get("version_id") == self.version_id)


def select(entries: Iterable[Entry], job: JobFilter | None = None,
           user: str | None = None) -> Iterator[Entry]:
    """Entries (oldest first) for ``job`` and ``user`` (as the user or the requester). A job's
    entries include the later ones of its confirmations that carry no job (a click on an expired
    confirmation only knows the confirmation's id)."""
    cids: set[str] = set()
    for e in entries:
        if job is not None:
            if job.matches(e):
                cids.add(e.get("confirmation"))
            elif not (e.get("confirmation") in cids and not e.get("api")):
                continue
        if user and user not in (e.get("user"), e.get("requester")):
            continue
        yield e


SINCE = re.compile(r"\A(\d{1,6})([smhdw])\Z")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> int | None:
    """``30m``, ``24h``, ``7d``, ``2w`` as seconds; ``all``: None. ValueError otherwise."""
    if text == "all":
        return None
    got = SINCE.match(text.strip())
    if not got:
        raise ValueError(f"--since {text!r}: expected a number and a unit (s, m, h, d, w), "
                         "like 24h, or all")
    return int(got.group(1)) * UNITS[got.group(2)]


def job_text(e: Entry) -> str:
    if e.get("api") == "v2":
        return f"v2:{e.get('training_job_id')}"
    if e.get("api") == "v1":
        return f"v1:{e.get('job_id')}:{e.get('version_id')}"
    return "-"


COLUMNS = (("TIME (UTC)", 19), ("EVENT", 10), ("OUTCOME", 16), ("USER", 12), ("REQUESTER", 12),
           ("JOB", 24), ("JOB NAME", 18), ("ERROR", 20), ("CONFIRMATION", 22))


def table_row(e: Entry) -> str:
    error = f"{e.get('error_code')} {e.get('http_status')}".strip() if e.get("error_code") else ""
    cells = (e.time.strftime("%Y-%m-%d %H:%M:%S"), e.get("event"), e.get("outcome"),
             e.get("user"), e.get("requester"), job_text(e), e.get("job_name"), error,
             e.get("confirmation"))
    return "  ".join(_cell(v or "-", w) for v, (_, w) in zip(cells, COLUMNS, strict=True)).rstrip()


def table_header() -> str:
    return "  ".join(_cell(name, width) for name, width in COLUMNS).rstrip()


def print_entries(entries: Iterable[Entry], as_json: bool, out: Callable[[str], None]) -> int:
    """Print entries (a table, or one JSON object a line); returns how many."""
    n = 0
    for e in entries:
        if not n and not as_json:
            out(table_header())
        out(json_line(e) if as_json else table_row(e))
        n += 1
    return n


# What a terminal would act on rather than show: C0 and DEL, C1, the line and paragraph
# separators, and the bidi controls (ALM, LRM, RLM, embeddings and overrides, isolates).
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_SHOWN = re.compile(CONTROLS.pattern[:-1] + r"\\]")   # the same, and the backslash


def visible(text: str) -> str:
    r"""``text`` with every CONTROLS character as an escape (``\x1b``, ``\u202e``) and each
    backslash doubled, so an escape shown is never one the text spelled out itself."""
    return _SHOWN.sub(_escape, text)


def _escape(found: re.Match) -> str:
    code = ord(found.group())
    if code == ord("\\"):
        return "\\\\"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def json_line(e: Entry) -> str:
    r"""One entry as a JSON line. json.dumps escapes C0 but leaves DEL, C1, the separators and
    the bidi controls raw (ensure_ascii=False keeps names readable): those become ``\uXXXX``,
    valid JSON for the same string."""
    return CONTROLS.sub(lambda m: f"\\u{ord(m.group()):04x}",
                        json.dumps(e.as_json(), ensure_ascii=False))


def _cell(value: str, width: int) -> str:
    value = visible(value)
    return value.ljust(width) if len(value) <= width else value[:width - 1] + "…"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _entry(raw_id: bytes | str, raw: dict) -> Entry:
    return Entry(_text(raw_id), {_text(k): _text(v) for k, v in raw.items()})


def cli(settings, since: str, job: str | None, user: str | None, as_json: bool,
        out: Callable[[str], None] = print, err: Callable[[str], None] = print) -> int:
    """``modelarts-bot audit``: 0 (even with no entries), 2 for a bad argument, 1 if Redis fails."""
    from bot.core.redis_conn import connect

    try:
        seconds = parse_since(since)
        wanted = JobFilter.parse(job) if job else None
    except InvalidIdError as exc:
        err(f"modelarts-bot audit: --job {job!r}: expected a training_job_id, JOB:VERSION, "
            f"v1:JOB:VERSION or a v1 job id ({exc})")
        return 2
    except ValueError as exc:
        err(f"modelarts-bot audit: {exc}")
        return 2
    audit = Audit(connect(settings), settings.REDIS_KEY_PREFIX, settings.AUDIT_RETENTION_DAYS)
    since_ms = int((time.time() - seconds) * 1000) if seconds is not None else None
    try:
        n = print_entries(select(audit.read(since_ms), wanted, user), as_json, out)
    except redis.RedisError as exc:
        err(f"modelarts-bot audit: Redis failed: {type(exc).__name__}: {exc}")
        return 1
    if not n and not as_json:
        err("no audit entries match")
    return 0
