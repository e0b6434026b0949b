"""The job list: pure builders from found jobs to Slack text and Block Kit, no I/O.

One section per job with its Stop button as the accessory (one block per entry), so 20 entries
and the notes stay far below Slack's 50 blocks. Names are cut before escaping, every section is
cut to 3,000 characters without splitting an entity, and entries stop early when the message
would pass about 11,000 characters (Slack refuses long block messages: msg_blocks_too_long).
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.contact import DEFAULT as CONTACT
from bot.flow import blocks as b
from bot.flow.blocks import STOP_REQUEST
from bot.modelarts.models import Failure, Job, JobEvent

MAX_ENTRIES = 20
MAX_SUGGESTIONS = 5
MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_TOTAL = 11_000
MAX_NAME = 80


def fit(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, never inside an ``&...;`` entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


def short_name(name: str) -> str:
    """A job name cut for a list entry (before escaping)."""
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 1] + "…"


def stop_button(job: Job, n: int) -> dict:
    """The entry's Stop button: the alert's action, numbered (action ids are unique per
    message); its value is the job's key, which the click parses and checks again."""
    return {"type": "button", "action_id": f"{STOP_REQUEST}:{n}", "style": "danger",
            "value": job.ref.key, "text": {"type": "plain_text", "text": "Stop"}}


def entry(job: Job, n: int, locked: bool = False) -> dict:
    """``locked``: a protected job (bot.flow.roles), marked :lock: (its stop needs two people)."""
    mark = ":lock: " if locked else ""
    text = f"{mark}{b.job_ref(short_name(job.name), job.ref, job.link)}\n{b.details(job)}"
    return {"type": "section", "block_id": f"job_{n}",
            "text": {"type": "mrkdwn", "text": fit(text, MAX_SECTION)},
            "accessory": stop_button(job, n)}


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def matching(pattern: str | None) -> str:
    return f" matching `{b.code(pattern)}`" if pattern else ""


def source_problem(api: str, failure: Failure) -> str:
    """``v1 not available: `APIGW.0101` (HTTP 404): ...``: a source that could not be read."""
    status = f" (HTTP {failure.http_status})" if failure.http_status else ""
    return (f"{api} not available: `{b.code(failure.error_code)}`{status}: "
            f"{b.escape(fit(failure.error_msg, 200))}")


def hidden_line(hidden: int, contact: str = CONTACT) -> str:
    verb = "is" if hidden == 1 else "are"
    return (f"{plural(hidden, 'running job')} {verb} not listed: your roles don't allow you to "
            f"stop them. Ask {contact} if you need to.")


def entries(jobs: list[Job], limit: int, locked: frozenset[str] = frozenset()) -> list[dict]:
    """Entries for the first ``limit`` jobs, fewer if the message would grow too long;
    ``locked``: the keys of protected jobs."""
    out, total = [], 0
    for n, job in enumerate(jobs[:limit]):
        block = entry(job, n, job.ref.key in locked)
        total += len(block["text"]["text"])
        if total > MAX_TOTAL:
            break
        out.append(block)
    return out


def job_list(jobs: list[Job], hidden: int, *, heading: str, problems: Sequence[str] = (),
             limit: int = MAX_ENTRIES, more: str = "narrow it with a filter",
             partial: bool = False, locked: frozenset[str] = frozenset(),
             contact: str = CONTACT) -> tuple[str, list[dict]]:
    """``heading``, then the jobs (newest first) with Stop buttons, then what is not shown;
    ``locked``: the keys of protected jobs; ``contact``: who to ask for a role
    (bot.core.contact)."""
    shown = entries(jobs, limit, locked)
    notes = []
    if len(jobs) > len(shown):
        notes.append(f"and {len(jobs) - len(shown)} more: {more}.")
    if hidden:
        notes.append(hidden_line(hidden, contact))
    if partial:
        notes.append("I stopped reading after the newest running jobs; there are more.")
    if any(job.ref.key in locked for job in jobs[: len(shown)]):
        notes.append(":lock: protected: a stop needs a second person to approve it.")
    notes += problems
    blocks = [b.section(fit(heading, MAX_SECTION)), *shown,
              *(b.context(fit(note, MAX_SECTION)) for note in notes)]
    text = " ".join([heading, *(f"{':lock: ' if job.ref.key in locked else ''}"
                                f"{b.escape(short_name(job.name))} ({job.ref})"
                                for job in jobs[: len(shown)]),
                     *notes])
    return fit(text, 3000), blocks[:MAX_BLOCKS]


def list_message(jobs: list[Job], hidden: int, pattern: str | None, problems: list[str],
                 partial: bool = False, locked: frozenset[str] = frozenset(),
                 contact: str = CONTACT) -> tuple[str, list[dict]]:
    """The answer to ``/modelarts list [pattern]``."""
    if jobs:
        heading = f"*{plural(len(jobs), 'running job')} you may stop*{matching(pattern)}:"
    else:
        heading = f"No running job you may stop{matching(pattern)}."
    return job_list(jobs, hidden, heading=heading, problems=problems, partial=partial,
                    locked=locked, contact=contact)


def several_message(name: str, jobs: list[Job], hidden: int, problems: list[str],
                    locked: frozenset[str] = frozenset(),
                    contact: str = CONTACT) -> tuple[str, list[dict]]:
    """Several running jobs have this name: pick one by its button."""
    shown = b.code(short_name(name))
    heading = (f"*{plural(len(jobs), 'running job')} named `{shown}`* that you may stop: "
               "pick one." if jobs else f"No running job named `{shown}` that you may stop.")
    return job_list(jobs, hidden, heading=heading, problems=problems, locked=locked,
                    contact=contact)


def not_found_message(name: str, similar: list[Job], hidden: int, problems: list[str],
                      locked: frozenset[str] = frozenset(),
                      contact: str = CONTACT) -> tuple[str, list[dict]]:
    """No running job has this name; up to 5 running jobs whose names contain it."""
    heading = f"No running job is named `{b.code(short_name(name))}`."
    if similar:
        heading += " Running jobs whose names contain it, that you may stop:"
    return job_list(similar, hidden, heading=heading, problems=problems,
                    limit=MAX_SUGGESTIONS, more="use `/modelarts list` with a filter",
                    locked=locked, contact=contact)


def not_running_text(name: str, jobs: list[Job], problems: list[str],
                     events: Sequence[JobEvent] = ()) -> str:
    """For status by name: no running job has it, these (newest first) do; ``events``: the one
    job's last events, when there is one."""
    lines = [f"No running job is named `{b.code(short_name(name))}`; the newest with "
             "that name:", *(b.status_text(job, events) for job in jobs), *problems]
    return fit("\n".join(lines), 3000)
