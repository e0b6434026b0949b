"""Message builders: pure functions from values to Slack text and Block Kit, no I/O.

Every message naming a job links its name to the job's console page (``job_ref``, ``job_name``):
a job carries its link (``Job.link``, stamped by the client), a confirmation the one its job had
(``Confirmation.link``); anything else asks ``Fleet.link(ref)`` and passes it in.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Sequence
from urllib.parse import quote

from bot.core.contact import DEFAULT as CONTACT
from bot.flow.confirmations import Confirmation
from bot.modelarts.models import Job, JobEvent, StopOutcome, TrainingJob
from bot.modelarts.refs import DEFAULT, JobRef

CONFIRM = "modelarts_stop_confirm"
CANCEL = "modelarts_stop_cancel"
APPROVE = "modelarts_stop_approve"    # a protected job's second person


def mention(user: str) -> str:
    return f"<@{user}>"


def duration(ms: int | None) -> str:
    if ms is None or ms < 0:
        return "unknown"
    minutes, seconds = divmod(ms // 1000, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s"


def job_ref(name: str, ref: JobRef, url: str = "") -> str:
    """``*team-a-resnet* (job_id 182626, version 278813)`` or ``(training_job_id ...)``; with
    several projects, ``bj4 · *team-a-resnet50* (...)`` (the default project is not named).
    ``url``: the job's console page, linked from its name ("" for none)."""
    project = "" if ref.project == DEFAULT else f"{escape(ref.project)} · "
    return f"{project}{job_name(name or 'unnamed job', url)} ({ref})"


def job_name(name: str, url: str = "") -> str:
    """``*name*``, its text a link to ``url`` when there is one: ``*<url|name>*``."""
    shown = escape(name)
    return f"*{link(url, shown)}*" if url else f"*{shown}*"


# What a URL may keep as it is inside ``<url|text>``; anything else is percent-encoded (``|``
# would end the URL, ``<`` ``>`` the link, a space or a control character break it).
_URL_SAFE = "!#$%&'()*+,/:;=?@[]~"


def link(url: str, text: str) -> str:
    """A mrkdwn link ``<url|text>``, ``text`` already escaped; the URL percent-encoded where it
    must be and its ``&`` written ``&amp;``, as Slack asks. "" URL: the text alone."""
    if not url:
        return text
    return f"<{quote(clean(url), safe=_URL_SAFE).replace('&', '&amp;')}|{text}>"


def state_word(ref: JobRef) -> str:
    return "phase" if ref.api == "v2" else "status"


def extras(job: Job) -> list[str]:
    """For v2: nodes, flavor, pool and creator (v1 versions carry none of these)."""
    if not isinstance(job, TrainingJob):
        return []
    out = []
    if job.node_count:
        plural = "s" if job.node_count != 1 else ""
        out.append(f"{job.node_count} × {escape(job.flavor_type or 'compute')} node{plural}")
    if job.flavor_name or job.flavor_id:
        out.append(f"flavor {escape(job.flavor_name or job.flavor_id)}")
    if job.pool_name or job.pool_id:
        out.append(f"pool {escape(job.pool_name or job.pool_id)}")
    out.append(f"created by {escape(job.user_name)}" if job.user_name else "creator unknown")
    return out


def ran(job: Job, lead: str) -> str:
    """How long it has run; a job that has not started yet (queued, creating) says so."""
    if job.duration_ms == 0 and not job.stopping and job.state not in ("RUNNING", "Running"):
        return "never started" if job.final else "not started yet"
    return f"{lead} {duration(job.duration_ms)}"


def details(job: Job) -> str:
    """What is about to die: state, running time and the v2 extras."""
    return ", ".join([f"{state_word(job.ref)} {escape(job.state)}",
                      ran(job, "running for"), *extras(job)])


# -- escaping: every value from outside (job names, statuses, summaries, error messages) -------
# Control characters go: C0 and C1 (Cc), and the format characters (Cf: the bidi controls that
# reorder what is shown, zero-width ones that make two names look alike), lone surrogates (Cs).
# Line breaks become a space (a value cannot start a line of its own: no fake "*Status:*" line,
# no ">" quote); any other of them becomes U+FFFD, so it shows that something was there.
_BREAKS = frozenset("\n\r\t\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_REPLACED = frozenset({"Cc", "Cf", "Cs"})


def _char(ch: str, lines: bool) -> str:
    if ch in _BREAKS:
        return "\n" if lines and ch in "\n\r" else " "
    return "\ufffd" if unicodedata.category(ch) in _REPLACED else ch


# Slack has no backslash escape for mrkdwn: a marker is neutralized by a look-alike that is not
# one. ``_`` only where it could open or close italics (Slack formats ``_x_`` at word boundaries,
# never inside a word), so ``team_b_yolo`` stays what users type.
_MARKS = str.maketrans({"*": "\u2217", "~": "\u223c", "`": "\u02cb"})
_LOOSE_UNDERSCORE = re.compile(r"(?<![^\W_])_|_(?![^\W_])")


def clean(text: object, *, lines: bool = False) -> str:
    """``text`` without control characters: for plain_text fields (and under the two below).
    ``lines``: keep line breaks (as ``\\n``), for multi-line fields such as a description."""
    value = str(text).replace("\r\n", "\n")
    if value.isascii() and value.isprintable():
        return value
    return "".join(_char(ch, lines) for ch in value)


def _entities(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape(text: object, *, lines: bool = False) -> str:
    """Any value shown in mrkdwn (a section, a context, a message's fallback ``text``): no
    mention (``<!here>``), link or entity (``&``, ``<``, ``>`` escaped as Slack asks), no bold,
    italics, strike or code (``*_~` `` neutralized), no control character, one line unless
    ``lines``."""
    return _LOOSE_UNDERSCORE.sub("\u02cd", _entities(clean(text, lines=lines)).translate(_MARKS))


def code(text: object) -> str:
    """A value shown inside backticks: markers are literal there, but a backtick would end the
    span, so only it is replaced, besides what ``escape`` always does."""
    return _entities(clean(text)).replace("`", "\u02cb")


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def status_text(job: Job, events: Sequence[JobEvent] = ()) -> str:
    """``events``: an ended job's last events, which say why it ended (``events_text``)."""
    if isinstance(job, TrainingJob):
        second = job.secondary_phase
        code = f" ({escape(second)})" if second and second != job.phase else ""
    else:
        code = f" ({escape(job.status)})"
    return ", ".join([f"{job_ref(job.name, job.ref, job.link)}: *{escape(job.state)}*{code}",
                      ran(job, "running time"), *extras(job)]) + events_text(events)


def not_running_text(job: Job) -> str:
    return (f"{job_ref(job.name, job.ref, job.link)} is {escape(job.state)}, not running: "
            "nothing to stop.")


def denied_text(job_name: str, ref: JobRef, would_allow: list[str],
                contact: str = CONTACT, url: str = "") -> str:
    """``contact``: who maps users to roles, as Slack text (bot.core.contact); ``url``: the
    job's console link."""
    roles = ", ".join(f"`{r}`" for r in would_allow) if would_allow else "none is defined"
    return (f"You may not stop {job_ref(job_name, ref, url)}. "
            f"Roles that allow it: {roles}. Ask {contact} to map you to one.")


# -- why a job ended: its last events (``GET .../training-jobs/{id}/events``) ------------------
MAX_EVENTS = 3
MAX_EVENT_TEXT = 200


def why_events(events: Sequence[JobEvent]) -> list[JobEvent]:
    """Up to three of the newest events (``events`` newest first), those that explain an end
    first: the job's own errors, other errors, the job's own (source Job), then the rest;
    newest first within each."""
    def rank(e: JobEvent) -> tuple[int, int]:
        error, own = e.level.lower() == "error", e.source.lower() == "job"
        return (0 if error and own else 1 if error else 2 if own else 3), -(e.time_ms or 0)
    return sorted(events, key=rank)[:MAX_EVENTS]


def event_line(e: JobEvent) -> str:
    """``• 03:12 UTC Error: Training job failed.``: the message's first line, cut."""
    text = next((line.strip() for line in e.message.splitlines() if line.strip()), "")
    if len(text) > MAX_EVENT_TEXT:
        text = text[: MAX_EVENT_TEXT - 1] + "…"
    when = f"{hhmm(e.time_ms / 1000)} " if e.time_ms else ""
    level = f"{escape(e.level)}: " if e.level and e.level.lower() != "info" else ""
    return f"• {when}{level}{escape(text)}"


def events_text(events: Sequence[JobEvent]) -> str:
    """``\nLast job events:\n• ...`` (one line each), or "" for none."""
    chosen = why_events(events)
    if not chosen:
        return ""
    return "\nLast job events:\n" + "\n".join(event_line(e) for e in chosen)


def roles_list(roles: tuple[str, ...] | list[str]) -> str:
    return ", ".join(f"`{code(r)}`" for r in roles)


def reason_line(reason: str) -> str:
    """`` Reason: ...`` (with its leading space), or "" for none."""
    return f" Reason: {escape(reason)}" if reason else ""


def protected_note(approvers: tuple[str, ...]) -> str:
    who = f"roles: {roles_list(approvers)}" if approvers else "any role that allows the job"
    return f":lock: Protected: needs a second person ({who})."


def within(seconds: int) -> str:
    """A confirmation's time to live: ``30 s``, ``2 min``, ``1 min 30 s``."""
    minutes, rest = divmod(max(0, int(seconds)), 60)
    if not minutes:
        return f"{rest} s"
    return f"{minutes} min" + (f" {rest} s" if rest else "")


def request_message(job: Job, requester: str, cid: str, ttl: int, reason: str = "",
                    protected: bool = False, approvers: tuple[str, ...] = ()
                    ) -> tuple[str, list[dict]]:
    text = (f"{mention(requester)} asks to stop {job_ref(job.name, job.ref, job.link)}, "
            f"{details(job)}.{reason_line(reason)}")
    buttons = {
        "type": "actions",
        "block_id": "modelarts_stop",
        "elements": [
            {"type": "button", "action_id": CONFIRM, "style": "danger", "value": cid,
             "text": {"type": "plain_text", "text": "Confirm stop"}},
            {"type": "button", "action_id": CANCEL, "value": cid,
             "text": {"type": "plain_text", "text": "Cancel"}},
        ],
    }
    note = f"Only {mention(requester)} can confirm, within {within(ttl)}."
    if not protected:
        return text, [section(text), buttons, context(note)]
    note = f"{protected_note(approvers)} {note}"
    return f"{text} {protected_note(approvers)}", [section(text), buttons, context(note)]


def awaiting(c: Confirmation, by: str) -> tuple[str, list[dict]]:
    """A protected job's request once its requester confirmed: Approve (anyone else with an
    approver role) or Cancel."""
    who = f"roles: {roles_list(c.approvers)}" if c.approvers else "any role that allows the job"
    asked = (f"{mention(c.requester)} asks to stop {job_ref(c.job_name, c.ref, c.link)}."
             f"{reason_line(c.reason)}")
    line = f"Confirmed by {mention(by)}. Waiting for a second person ({who})."
    buttons = {"type": "actions", "block_id": "modelarts_stop", "elements": [
        {"type": "button", "action_id": APPROVE, "style": "danger", "value": c.id,
         "text": {"type": "plain_text", "text": "Approve stop"}},
        {"type": "button", "action_id": CANCEL, "value": c.id,
         "text": {"type": "plain_text", "text": "Cancel"}}]}
    note = context(f"{line} The requester cannot approve their own request.")
    return f"{asked} {line}", [section(asked), buttons, note]


def settled(c: Confirmation, line: str) -> tuple[str, list[dict]]:
    """The request message once decided: what was asked, and what became of it. No buttons."""
    asked = (f"{mention(c.requester)} asked to stop {job_ref(c.job_name, c.ref, c.link)}."
             f"{reason_line(c.reason)}")
    return f"{asked} {line}", [section(asked), context(line)]


def expired(c: Confirmation, ttl: int) -> tuple[str, list[dict]]:
    """The request message once its time ran out with no click (bot.flow.expiry): no buttons.
    A protected job its requester confirmed waited for a second person instead."""
    who = "approved" if c.confirmed_by else "confirmed"
    return settled(c, f"Expired: nobody {who} within {within(ttl)}. Nothing was stopped.")


def already_requested(state: str, requester: str, at: float, by: str, link: str | None) -> str:
    """Another request holds the job (bot.flow.claims): who asked, when, and where."""
    where = f" (<{link}|the request>)" if link else ""
    lead = f"Already being stopped: {mention(requester)} asked at {hhmm(at)}{where}."
    if state == "stopping":
        return f"{lead} The stop is under way; wait for the outcome in its thread."
    if state == "approval":
        return (f"{lead} Confirmed by {mention(by or requester)}, it waits for a second person: "
                "approve it there if you may, or wait for the outcome in its thread.")
    return f"{lead} Press Confirm there, or wait for the outcome in its thread."


def already_reply(c: Confirmation, state: str, ended: bool) -> str:
    """ModelArts refused the stop because the job is stopping or has ended: not a failure."""
    name = job_name(c.job_name or "the job", c.link)
    why = ("someone or something else stopped it first" if not ended or state in
           ("Terminated", "KILLED") else "it had ended before this stop")
    return (f":information_source: {name} was already {escape(state)}: {why}. Nothing more to "
            "do." + (" I'll post here when it has stopped." if not ended else ""))


def already_line(state: str) -> str:
    return f"Already {escape(state)}: nothing more to do."


def stopping(c: Confirmation, by: str, approver: str | None = None) -> tuple[str, list[dict]]:
    if approver:
        return settled(c, f"Stopping... confirmed by {mention(c.confirmed_by or c.requester)}, "
                          f"approved by {mention(approver)}")
    return settled(c, f"Stopping... confirmed by {mention(by)}")


def outcome_line(outcome: StopOutcome) -> str:
    if outcome.is_success:
        return "Stop requested: ModelArts accepted it."
    if outcome.unknown:
        return "Outcome unknown: check status."
    return f"Stop failed: {escape(outcome.error_code)}"


STOP_PATH = {"v1": "RUNNING → KILLING → KILLED", "v2": "Running → Terminating → Terminated"}


def outcome_reply(c: Confirmation, outcome: StopOutcome, hint: str | None,
                  watched: bool = False, approver: str | None = None) -> str:
    """``watched``: the bot follows the stop (bot.flow.watches) and says so. ``approver``: a
    protected job's second person."""
    ref = job_ref(c.job_name, c.ref, c.link)
    tail = people(c, approver) + (f"\n{reason_line(c.reason).strip()}" if c.reason else "")
    if outcome.is_success:
        follow = ("I'll post here when it has stopped." if watched else
                  f"Check with `/modelarts status {c.ref.args}`.")
        return (f":white_check_mark: Stop requested for {ref}. ModelArts is stopping it "
                f"({STOP_PATH[c.ref.api]}). {follow}") + tail
    if outcome.unknown:
        text = (f":warning: Outcome unknown for {ref}: ModelArts did not answer in time, "
                f"the stop may or may not have been carried out. " + (
                    checking(c) if watched else
                    f"Check with `/modelarts status {c.ref.args}` before trying again."))
    else:
        status = f" (HTTP {outcome.http_status})" if outcome.http_status else ""
        text = (f":x: Stop failed for {ref}: `{code(outcome.error_code)}`{status}: "
                f"{escape(outcome.error_msg or 'no message')}")
    if hint:
        text += f"\nHint: {hint}"
    if outcome.request_id:
        text += f"\nRequest id: `{code(outcome.request_id)}`"
    return text + tail


def people(c: Confirmation, approver: str | None) -> str:
    """A protected stop's two people, on a line of its own; "" otherwise."""
    if not approver:
        return ""
    confirmed = mention(c.confirmed_by or c.requester)
    return f"\nConfirmed by {confirmed}, approved by {mention(approver)}."


def interrupted_reply(c: Confirmation, watched: bool = False) -> str:
    """The owed reply for a confirmed stop whose answer the bot never saw (the replica died)."""
    return (f":warning: Outcome unknown for {job_ref(c.job_name, c.ref, c.link)}: the bot was "
            f"interrupted around sending the stop, so it can't tell whether ModelArts got it. " +
            (checking(c) if watched else
             f"Check with `/modelarts status {c.ref.args}` before trying again."))


# -- following a stop to its end (bot.flow.watches) ----------------------------------------------
def checking(c: Confirmation) -> str:
    return (f"I'm checking its status (`/modelarts status {c.ref.args}`) and will say here "
            f"whether the stop took effect.")


STOP_REQUEST = "modelarts_stop_request"  # Stop on an alert or a list: asks for a confirmation


def took(seconds: float) -> str:
    """``14 s``, ``10 min``, ``3 min 5 s``."""
    seconds = max(0, round(seconds))
    minutes, rest = divmod(seconds, 60)
    if seconds < 120:
        return f"{seconds} s"
    return f"{minutes} min" + (f" {rest} s" if rest else "")


def ended_line(user: str, state: str, at: float, stopped: bool) -> str:
    """The request message's (and the alert's) last line once the job has ended."""
    who = f"Stopped by {mention(user)}" if stopped else f"Stop confirmed by {mention(user)}"
    return f"{who} · {escape(state)} at {hhmm(at)}" + ("" if stopped else " (ended on its own)")


def watch_final(c: Confirmation, state: str, stopped: bool, since: float | None,
                now: float, unknown: bool, events: Sequence[JobEvent] = ()) -> str:
    """The job reached a final state: by the stop (``stopped``) or on its own. ``events``: its
    last events, read once after the final state (none when that call failed)."""
    name = job_name(c.job_name or "the job", c.link)
    after = f" ({'stopped' if stopped else 'ended'} {took(now - since)} after the request)" \
        if since else ""
    if stopped:
        lead = "The stop did take effect: " if unknown else ""
        return (f":white_check_mark: {lead}{name} is {escape(state)}{after}."
                f"{reason_line(c.reason)}{events_text(events)}")
    return (f":information_source: {name} is {escape(state)}: it ended on its own before the "
            f"stop took effect{after}.{reason_line(c.reason)}{events_text(events)}")


def watch_took_effect(c: Confirmation, state: str, span: float) -> str:
    return (f":white_check_mark: The stop did take effect: "
            f"{job_name(c.job_name or 'the job', c.link)} is {escape(state)}. I'll follow it "
            f"for up to {took(span)} and post here when it has stopped.")


def watch_deadline(c: Confirmation, user: str, state: str | None, span: float,
                   error: str | None = None, contact: str = CONTACT) -> str:
    """The deadline passed and the job is still stopping (or its status could not be read)."""
    name = job_ref(c.job_name, c.ref, c.link)
    now = (f"is still {escape(state)} after {took(span)}" if state else
           f"could not be looked up for {took(span)} (last error `{code(error or '?')}`)")
    return (f":warning: {mention(user)} {name} {now}, so I stopped watching it. Nothing was "
            f"stopped again. Check `/modelarts status {c.ref.args}` and the job's events and "
            f"logs in the ModelArts console; ask {contact} if it stays like this.")


def watch_not_taken(c: Confirmation, user: str, state: str,
                    span: float) -> tuple[str, list[dict]]:
    """The stop's outcome was unknown and the job still runs: say so, offer a fresh Stop."""
    text = (f":x: {mention(user)} The stop did not take effect: "
            f"{job_ref(c.job_name, c.ref, c.link)} is still {escape(state)} after "
            f"{took(span)}. Nothing was stopped again. To stop it, press Stop: it asks for a new "
            f"confirmation.")
    button = {"type": "actions", "block_id": "modelarts_watch", "elements": [
        {"type": "button", "action_id": STOP_REQUEST, "style": "danger", "value": c.ref.key,
         "text": {"type": "plain_text", "text": "Stop"}}]}
    return text, [section(text), button]


def not_taken_line(state: str, at: float) -> str:
    return f"The stop did not take effect: still {escape(state)} at {hhmm(at)}."


def deadline_line(user: str, state: str | None, at: float) -> str:
    return (f"Stop requested by {mention(user)} · still {escape(state or 'unknown')} at "
            f"{hhmm(at)}: no longer watched.")


def hhmm(epoch: float) -> str:
    return time.strftime("%H:%M", time.gmtime(epoch)) + " UTC"


def strip_buttons(blocks: list[dict] | None, line: str) -> list[dict]:
    """The message's blocks without its buttons, with ``line`` as a context note."""
    kept = [b for b in (blocks or []) if isinstance(b, dict) and b.get("type") != "actions"]
    return [*kept, context(line)]
