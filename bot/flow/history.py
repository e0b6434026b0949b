"""``/modelarts history``: a job's last audit entries (bot.flow.audit), shown to mapped users only.

It reads the newest HISTORY_SCAN entries of the stream (XREVRANGE, BATCH a call) and keeps the
job's: no per-job index to keep in step with the stream's trimming. When the job's entries are
older than that window, the answer says so and points to ``modelarts-bot audit --job``.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from bot.flow import blocks as b
from bot.flow.audit import HISTORY_SCAN, Audit, Entry, JobFilter, select
from bot.flow.roles import RoleChecker
from bot.modelarts.refs import JobRef

LAST = 10
REDIS_DOWN = "I can't reach my state store (Redis), so I can't show the history. Try again shortly."
UNMAPPED = ("You have no role in this bot's roles file, so you can't see a job's history. "
            "Ask the platform team to map you.")


class History:
    def __init__(self, roles: RoleChecker, audit: Audit) -> None:
        self.roles = roles
        self.audit = audit

    def show(self, user: str, ref: JobRef, notify: Callable[[str], None]) -> None:
        try:
            if not self.roles.is_mapped(user):
                notify(UNMAPPED)
                return
            entries, whole = self.audit.newest()
        except redis.RedisError:
            notify(REDIS_DOWN)
            return
        notify(history_text(ref, list(select(entries, JobFilter.of(ref)))[-LAST:], whole))


def history_text(ref: JobRef, entries: list[Entry], whole: bool) -> str:
    """The ephemeral answer: one line per entry, oldest first. Pure."""
    if not entries:
        where = ("in the audit trail" if whole else
                 f"in the last {HISTORY_SCAN} decisions; try `modelarts-bot audit --job "
                 f"{ref.key}` for older ones")
        return f"No history for {ref} {where}."
    name = next((e.get("job_name") for e in reversed(entries) if e.get("job_name")), "")
    title = f"*History of {ref}*" + (f" ({b.escape(name)})" if name else "")
    return "\n".join([f"{title}: the last {len(entries)}, oldest first, UTC", *map(line, entries)])


def line(e: Entry) -> str:
    who = b.mention(e.get("user")) if e.get("user") else "the bot"
    text = f"• `{e.time:%Y-%m-%d %H:%M:%S}` {who} *{e.get('event')}*"
    if e.get("outcome") and e.get("outcome") != e.get("event"):
        text += f": {e.get('outcome')}"
    if e.get("error_code"):
        status = f" HTTP {e.get('http_status')}" if e.get("http_status") else ""
        text += f" (`{b.code(e.get('error_code') or '-')}`{status})"
    if e.get("state"):
        text += f", status {b.escape(e.get('state'))}"
    if e.get("requester") and e.get("requester") != e.get("user"):
        text += f", requested by {b.mention(e.get('requester'))}"
    return text
