"""``/modelarts history``: a job's last audit entries (bot.flow.audit), shown to mapped users only.

It reads the newest HISTORY_SCAN entries of the stream (XREVRANGE, BATCH a call) and keeps the
job's: no per-job index to keep in step with the stream's trimming. When the job's entries are
older than that window, the answer says so and points to ``modelarts-bot audit --job``.

A job may be named by its id, or by its name (``team-a-resnet50``, ``ap3/team-a-resnet50``).
A name is looked up in those same entries, not in ModelArts: every entry about a job carries
its ``job_name`` (taken when the stop was requested), so the history of a job that ended, or was
deleted since, is found by name too, with no ModelArts call. One job of that name: its history.
Several (a name reused, or the same name in two projects): each is named, newest first, with
the command that shows it. The name must match exactly (as ModelArts names are unique per
project while a job exists); ``<project>/`` keeps to that project.

Entries are shown in plain words (``plain``): "stop requested: ModelArts accepted it", not
``stopped stop_requested``; the codes stay in the stream for ``modelarts-bot audit``.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from bot.flow import blocks as b
from bot.flow.audit import HISTORY_SCAN, Audit, Entry, JobFilter, select
from bot.flow.roles import RoleChecker
from bot.modelarts.refs import DEFAULT, JobRef

LAST = 10
SHOWN_JOBS = 10       # jobs of one name named at most
REDIS_DOWN = "I can't reach my state store (Redis), so I can't show the history. Try again shortly."

# (event, outcome) -> words. An outcome not listed falls back on the event's own entry, then on
# the codes with spaces for underscores: a new code reads plainly before it has words here.
EVENTS = {
    "requested": "asked to stop",
    "confirmed": "confirmed",
    "approved": "approved",
    "cancelled": "cancelled",
    "expired": "expired: nobody confirmed in time",
    "refused": "refused",
    "denied": "denied",
    "failed": "failed",
    "stopped": "stop requested",
    "already": "nothing to stop",
    "verified": "followed up",
    "smn": "ModelArts event",
}
WORDS = {
    ("confirmed", "awaiting_approval"): "confirmed: waiting for a second person to approve",
    ("expired", "expired"): EVENTS["expired"],
    ("refused", "wrong_channel"): "refused: the button was pressed in another channel",
    ("refused", "self_approval"): "refused: the requester cannot approve their own stop",
    ("refused", "not_requester"): "refused: only the requester can confirm",
    ("refused", "already_requested"): "refused: a stop of this job was already requested",
    ("refused", "not_running"): "refused: the job was not running",
    ("denied", "no_role"): "denied: no role of theirs allows this job",
    ("denied", "not_approver"): "denied: not an approver of this job",
    ("denied", "role_lost"): "denied: the requester's roles no longer allow this job",
    ("denied", "unmapped"): "denied: no role",
    ("failed", "post_failed"): "failed: the request could not be posted",
    ("failed", "lookup_failed"): "failed: the job could not be looked up",
    ("failed", "stop_failed"): "failed: ModelArts refused the stop",
    ("failed", "unknown"): "outcome unknown: no answer from ModelArts in time",
    ("failed", "interrupted"): "outcome unknown: the bot was interrupted during the stop",
    ("stopped", "stop_requested"): "stop requested: ModelArts accepted it",
    ("already", "already_ended"): "nothing to stop: the job had already ended",
    ("already", "already_stopping"): "nothing to stop: the job was already stopping",
    ("verified", "stopped"): "followed up: the job stopped",
    ("verified", "ended_on_its_own"): "followed up: the job ended on its own",
    ("verified", "took_effect"): "followed up: the stop took effect",
    ("verified", "not_taken_effect"): "followed up: the stop did not take effect",
    ("verified", "deadline"): "followed up: still not stopped at the deadline",
    ("smn", "job_event"): "ModelArts event",
}
OUTCOMES = {   # an outcome that reads the same after any event
    "redis_unavailable": "the state store (Redis) was unreachable",
}


def plain(event: str, outcome: str = "") -> str:
    """An audit entry's event and outcome in plain words, e.g. ("stopped", "stop_requested")
    -> "stop requested: ModelArts accepted it". Pure; for history and the Home tab."""
    if (event, outcome) in WORDS:
        return WORDS[event, outcome]
    head = EVENTS.get(event) or _spaced(event) or "entry"
    if not outcome or outcome == event:
        return head
    return f"{head}: {OUTCOMES.get(outcome) or _spaced(outcome)}"


def _spaced(code: str) -> str:
    return code.replace("_", " ").strip()


def unmapped(contact: str) -> str:
    return ("You have no role in this bot's roles file, so you can't see a job's history. "
            f"Ask {contact} to map you.")


class History:
    def __init__(self, roles: RoleChecker, audit: Audit) -> None:
        self.roles = roles
        self.audit = audit

    def show(self, user: str, ref: JobRef, notify: Callable[[str], None]) -> None:
        """By id. A ``<project>/`` id keeps to that project; a bare one is any project's."""
        got = self._newest(user, notify)
        if got is not None:
            entries, whole = got
            project = None if ref.project == DEFAULT else ref.project
            notify(history_text(ref, list(select(entries, JobFilter.of(ref, project)))[-LAST:],
                                whole))

    def show_named(self, user: str, name: str, notify: Callable[[str], None],
                   project: str | None = None) -> None:
        """By name, looked up in the audit entries (see the module's docstring)."""
        got = self._newest(user, notify)
        if got is None:
            return
        entries, whole = got
        jobs = named(entries, name, project)
        if len(jobs) == 1:
            ref = jobs[0]
            notify(history_text(ref, list(select(entries, JobFilter.of(ref, ref.project)))[-LAST:],
                                whole))
        else:
            notify(several_text(name, project, jobs, entries, whole))

    def _newest(self, user: str, notify: Callable[[str], None]
                ) -> tuple[list[Entry], bool] | None:
        """The newest entries, or None (the user told why not)."""
        try:
            if not self.roles.is_mapped(user):
                notify(unmapped(self.roles.contact))
                return None
            return self.audit.newest()
        except redis.RedisError:
            notify(REDIS_DOWN)
            return None


def named(entries: list[Entry], name: str, project: str | None = None) -> list[JobRef]:
    """The jobs that entries name ``name`` (of ``project`` only, when given), the one with the
    newest entry first. Pure."""
    last: dict[JobRef, int] = {}
    for n, e in enumerate(entries):
        ref = e.job if e.get("job_name") == name else None
        if ref is not None and project in (None, ref.project):
            last[ref] = n
    return sorted(last, key=last.__getitem__, reverse=True)


def _where(ref: JobRef) -> str:
    return f"{'' if ref.project == DEFAULT else b.escape(ref.project) + ' · '}{ref}"


def history_text(ref: JobRef, entries: list[Entry], whole: bool) -> str:
    """The ephemeral answer: one line per entry, oldest first. Pure."""
    if not entries:
        where = ("in the audit trail" if whole else
                 f"in the last {HISTORY_SCAN} decisions; try `modelarts-bot audit --job "
                 f"{ref.key}` for older ones")
        return f"No history for {_where(ref)} {where}."
    name = next((e.get("job_name") for e in reversed(entries) if e.get("job_name")), "")
    title = f"*History of {_where(ref)}*" + (f" ({b.escape(name)})" if name else "")
    return "\n".join([f"{title}: the last {len(entries)}, oldest first, UTC", *map(line, entries)])


def several_text(name: str, project: str | None, jobs: list[JobRef], entries: list[Entry],
                 whole: bool) -> str:
    """No job, or several, of that name in the entries: say so, or name each. Pure."""
    shown = b.code(f"{project}/{name}" if project else name)
    if not jobs:
        where = "in the audit trail" if whole else f"in the last {HISTORY_SCAN} decisions"
        return (f"No history for a job named `{shown}` {where}. A job's name is on record "
                "once someone asked to stop it; its training_job_id (or job_id and "
                "version_id) finds the rest.")
    newest = {e.job: e for e in entries if e.get("job_name") == name}
    lines = [f"*{len(jobs)} jobs named `{shown}`* have a history, newest first: name one."]
    for ref in jobs[:SHOWN_JOBS]:
        e = newest[ref]
        lines.append(f"• {_where(ref)}: last `{e.time:%Y-%m-%d %H:%M}` UTC, "
                     f"{plain(e.get('event'), e.get('outcome'))}: "
                     f"`/modelarts history {b.code(ref.args)}`")
    if len(jobs) > SHOWN_JOBS:
        lines.append(f"and {len(jobs) - SHOWN_JOBS} more.")
    return "\n".join(lines)


def line(e: Entry) -> str:
    text = f"• `{e.time:%Y-%m-%d %H:%M:%S}` *{b.escape(plain(e.get('event'), e.get('outcome')))}*"
    if e.get("error_code"):
        status = f" HTTP {e.get('http_status')}" if e.get("http_status") else ""
        text += f" (`{b.code(e.get('error_code') or '-')}`{status})"
    if e.get("smn_event"):
        text += f" {b.escape(e.get('smn_event'))}"
    if e.get("state"):
        text += f", status {b.escape(e.get('state'))}"
    who = b.mention(e.get("user")) if e.get("user") else "the bot"
    if e.get("requester") and e.get("requester") != e.get("user"):
        who += f"; requested by {b.mention(e.get('requester'))}"
    return f"{text} ({who})"
