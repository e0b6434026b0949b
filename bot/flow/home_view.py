"""The Home tab's view: pure builders from what the bot knows of one user to Block Kit, no I/O.

    who you are       one section: each role you hold, how (directly, or through a user group)
                      and the jobs it allows
    running jobs      the list's own blocks (bot.flow.lists.job_list): at most 20 entries, each
                      with the list's Stop button (same action id, same value), :lock: marks
    your requests     one section: a line per open request of yours (bot.flow.claims)
    your decisions    one section: your last 10 audit entries, in plain words
    a context line    when it was built

That is at most 1 + 1 + 1 + 40 + 1 + 1 + 1 + 1 + 1 blocks (the job part is cut to 40; it is
about 25 with 20 entries and their notes), far below the 100 Slack allows a Home view.

An unmapped user gets one section saying why and who to ask, nothing else: no job, role or
count. Where a Stop pressed here asks to confirm (the user's direct messages with the bot) rides
in the view's ``private_metadata`` (``metadata``/``dm_of``), which Slack sends back with the
click.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.flow import blocks as b
from bot.flow import history, lists
from bot.flow.audit import Entry, job_text
from bot.flow.claims import Claim
from bot.modelarts.models import Job
from bot.modelarts.refs import DEFAULT

MAX_BLOCKS = 100        # Slack's limit for a Home view
MAX_JOB_BLOCKS = 40     # the running-jobs part: heading, 20 entries and the notes, cut here
MAX_REQUESTS = 10
LAST_DECISIONS = 10
CALLBACK_ID = "modelarts_home"
NO_ROLE_WHY = ("The bot's roles file maps no role to you, directly or through a user group, so "
               "you can't see or stop training jobs here.")
REDIS_DOWN = ("I can't reach my state store (Redis), so I can't show who you are to the bot. "
              "Open this tab again in a moment.")
_DM = re.compile(r"^D[A-Z0-9]{2,30}$")

STATES = {
    "pending": "waiting for your confirmation",
    "approval": "confirmed; waiting for a second person to approve",
    "stopping": "stop sent; followed until the job ends",
}


def plain(e: Entry) -> str:
    """An entry's event and outcome in plain words (bot.flow.history.plain, as history says
    them): "stop requested: ModelArts accepted it"."""
    return history.plain(e.get("event"), e.get("outcome"))


# -- where a Home Stop asks to confirm ------------------------------------------------------------
def metadata(dm: str | None) -> str:
    """The view's ``private_metadata``: the user's direct-message channel with the bot."""
    return json.dumps({"dm": dm}) if dm else ""


def dm_of(private_metadata: object) -> str | None:
    """The DM channel a Home view carries (``metadata``), or None (absent or not a DM id)."""
    if not isinstance(private_metadata, str) or not private_metadata or (
            len(private_metadata) > 200):
        return None
    try:
        dm = json.loads(private_metadata).get("dm")
    except (ValueError, AttributeError):
        return None
    return dm if is_dm(dm) else None


def is_dm(channel: object) -> bool:
    return isinstance(channel, str) and bool(_DM.match(channel))


# -- the view -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    """An open request of the user's: its job, its claim, and until when it stays open."""

    key: str                 # the job (JobRef.key)
    claim: Claim
    until: float             # epoch s
    name: str = ""           # the job's name, when the bot knows it


@dataclass
class Seen:
    """What the Home tab shows a mapped user (``Home.view`` gathers it)."""

    user: str
    roles: list[tuple[str, str | None]]                # (role, None | usergroup id)
    globs: dict[str, tuple[str, ...]]                  # role -> job globs
    jobs: list[Job] = field(default_factory=list)      # running, the user may stop, newest first
    hidden: int = 0                                    # running, another role's
    stopping: int = 0                                  # being stopped (anyone's): not listed
    locked: frozenset[str] = frozenset()               # keys of protected jobs
    partial: bool = False
    problems: Sequence[str] = ()                       # sources that could not be read
    jobs_note: str = ""                                # why no jobs are shown (the scan failed)
    requests: list[Request] = field(default_factory=list)
    decisions: list[Entry] = field(default_factory=list)   # newest first
    at: float = field(default_factory=time.time)


def view(blocks: list[dict], dm: str | None) -> dict:
    return {"type": "home", "callback_id": CALLBACK_ID, "private_metadata": metadata(dm),
            "blocks": blocks[:MAX_BLOCKS]}


def unmapped(dm: str | None = None, contact: str = "the platform team") -> dict:
    """For a user who may stop nothing: why, and who to ask (SUPPORT_CONTACT, as Slack text);
    nothing about any job."""
    return view([b.section(f"*You are in no role: ask {contact}.*"), b.context(NO_ROLE_WHY)],
                dm)


def unavailable(dm: str | None = None) -> dict:
    return view([b.section(REDIS_DOWN)], dm)


def home(seen: Seen, dm: str | None) -> dict:
    """The Home view of a mapped user."""
    blocks = [b.section(who_text(seen)), {"type": "divider"}, *jobs_blocks(seen),
              {"type": "divider"}, b.section(requests_text(seen.requests)),
              {"type": "divider"}, b.section(decisions_text(seen.user, seen.decisions)),
              b.context(f"Updated at {b.hhmm(seen.at)}. Opening this tab refreshes it, and so "
                        "does the outcome of each stop you ask for.")]
    return view(blocks, dm)


def who_text(seen: Seen) -> str:
    lines = [f"*You are {b.mention(seen.user)} to ModelArts Bot*, holding:"]
    for role, group in seen.roles:
        how = f"through <!subteam^{b.escape(group)}>" if group else "directly"
        globs = ", ".join(f"`{b.code(g)}`" for g in seen.globs.get(role, ())) or "no jobs"
        lines.append(f"• `{b.code(role)}` ({how}): {globs}")
    if not seen.roles:
        lines.append("• no role (the user group lookup may have failed)")
    return lists.fit("\n".join(lines), lists.MAX_SECTION)


def jobs_blocks(seen: Seen) -> list[dict]:
    """The list's blocks for the running jobs (bot.flow.lists), or why there are none."""
    if seen.jobs_note:
        return [b.section("*Running jobs you may stop*"), b.context(seen.jobs_note)]
    n = len(seen.jobs)
    heading = (f"*{lists.plural(n, 'running job')} you may stop:*" if n else
               "*No running job you may stop.*")
    notes = [*seen.problems]
    if seen.stopping:
        notes.insert(0, f"{lists.plural(seen.stopping, 'job')} being stopped "
                        f"{'is' if seen.stopping == 1 else 'are'} not listed.")
    _, out = lists.job_list(seen.jobs, seen.hidden, heading=heading, problems=notes,
                            more="use `/modelarts list` with a filter", partial=seen.partial,
                            locked=seen.locked)
    return out[:MAX_JOB_BLOCKS]


def requests_text(requests: list[Request]) -> str:
    if not requests:
        return "*Your open requests:* none."
    lines = ["*Your open requests:*"]
    for r in sorted(requests, key=lambda r: r.claim.at, reverse=True)[:MAX_REQUESTS]:
        name = f"*{b.escape(lists.short_name(r.name))}* " if r.name else ""
        state = STATES.get(r.claim.state, r.claim.state.replace("_", " "))
        asked = f"asked at {b.hhmm(r.claim.at)}"
        if r.claim.state != "stopping":   # a stop's claim lasts until its watch ends
            state += f" {place(r.claim.channel)}"
            asked += f", open until {b.hhmm(r.until)}"
        lines.append(f"• {name}(`{b.code(r.key)}`): {state}, {asked}")
    if len(requests) > MAX_REQUESTS:
        lines.append(f"and {len(requests) - MAX_REQUESTS} more.")
    return lists.fit("\n".join(lines), lists.MAX_SECTION)


def place(channel: str) -> str:
    return "in the bot's Messages tab" if is_dm(channel) else f"in <#{b.escape(channel)}>"


def decisions_text(user: str, entries: list[Entry]) -> str:
    if not entries:
        return "*Your last decisions:* none in the audit trail yet."
    n = len(entries)
    lines = [f"*Your last {n} decisions*, newest first (UTC):" if n > 1 else
             "*Your last decision* (UTC):"]
    lines += [decision_line(user, e) for e in entries[:LAST_DECISIONS]]
    return lists.fit("\n".join(lines), lists.MAX_SECTION)


def decision_line(user: str, e: Entry) -> str:
    text = f"• `{e.time:%Y-%m-%d %H:%M}` *{plain(e)}*"
    if e.get("job_name"):
        text += f" · {b.escape(lists.short_name(e.get('job_name')))}"
    if e.get("api"):
        project = e.get("project")
        text += f" ({b.escape(project) + '/' if project and project != DEFAULT else ''}"
        text += f"{job_text(e)})"
    if e.get("user") and e.get("user") != user:
        text += f", by {b.mention(e.get('user'))}"
    elif not e.get("user"):
        text += ", by the bot"
    if e.get("requester") and e.get("requester") != user:
        text += f", asked by {b.mention(e.get('requester'))}"
    return text
