"""Parse the text after ``/modelarts``: a pure function, errors as values."""

from __future__ import annotations

import difflib
import re
import unicodedata
from dataclasses import dataclass, replace

from bot.core.errors import InvalidIdError
from bot.modelarts.refs import V2_SHAPE, JobRef, ref_from_words, split_project

MAX_TEXT = 200
MAX_REASON = 300
REASON_MARK = " -- "     # `/modelarts stop <job> -- <reason>`
USAGE = (
    "Usage:\n"
    "• `/modelarts list [filter]`: the running jobs you may stop, each with a Stop button; "
    "filter by a part of the name or a glob (`team-a-*`)\n"
    "• `/modelarts stop &lt;training_job_id or name&gt; [-- reason]`: stop a running training "
    "job (asks you to confirm; the reason, up to 300 characters, goes on record)\n"
    "• Protected jobs (marked :lock: in lists) need a second person: after your Confirm, "
    "someone else, holding an approver role that allows the job, presses Approve before the "
    "confirmation expires\n"
    "• `/modelarts status &lt;training_job_id or name&gt;`: show a training job's phase\n"
    "• Old-version jobs: `/modelarts stop &lt;job_id&gt; &lt;version_id&gt;` and "
    "`/modelarts status &lt;job_id&gt; &lt;version_id&gt;`\n"
    "• `/modelarts history &lt;name or training_job_id&gt;` (or `&lt;job_id&gt; "
    "&lt;version_id&gt;`): the last 10 decisions about a job, also one that has ended\n"
    "• `/modelarts help`: this message"
)
KNOWN = ("help", "list", "stop", "status", "history")
CLOSE = 0.7     # difflib ratio for "did you mean": one letter off or two swapped in a short word
# The three ways to name a job, for a command that got none.
FORMS = ("`{action}` needs a job: its name (`/modelarts {action} team-a-resnet50`, or "
         "`&lt;project&gt;/&lt;name&gt;` with several projects), its training_job_id "
         "(`/modelarts {action} 3faf5c03-aaa1-4cbe-879d-24b05d997347`), or, for an old-version "
         "job, its job_id and version_id (`/modelarts {action} 182626 278813`).")
MAX_NAME = 64
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")            # a job name, as ModelArts allows them
PATTERN = re.compile(r"^[A-Za-z0-9_*?-]{1,64}$")       # a list filter: a name part or a glob
# Only hex digits (8 or more) and separators: a mistyped training_job_id, not a name.
ID_LIKE = re.compile(r"^(?=(?:[-_]*[0-9a-fA-F]){8})[0-9a-fA-F_-]+$")


@dataclass(frozen=True)
class Command:
    action: str                  # "help" | "list" | "stop" | "status" | "history"
    ref: JobRef | None = None    # stop/status/history by id
    name: str | None = None      # stop/status/history by exact name (ref is None)
    pattern: str | None = None   # list: a part of the name, or a glob with * and ?
    reason: str = ""             # stop: the text after ` -- `
    project: str | None = None   # by name: `<project>/<name>` (None: every project)


@dataclass(frozen=True)
class Invalid:
    reason: str

    @property
    def message(self) -> str:
        return f"{self.reason}\n\n{USAGE}"


def parse(text: str | None) -> Command | Invalid:
    text = (text or "").strip()
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        return Invalid("That command contains control characters.")
    text, mark, reason = text.partition(REASON_MARK)
    if not mark and text.endswith(REASON_MARK.rstrip()):
        text, mark = text[:-len(REASON_MARK.rstrip())], REASON_MARK
    text, reason = text.strip(), reason.strip()
    if len(text) > MAX_TEXT:
        return Invalid(f"That command is {len(text)} characters long; I expect a few words.")
    if mark:
        problem = _reason_problem(text, reason)
        if problem:
            return Invalid(problem)
        parsed = parse(text)
        return replace(parsed, reason=reason) if isinstance(parsed, Command) else parsed
    words = text.split()
    if not words or words[0].lower() == "help":
        return Command("help") if len(words) <= 1 else Invalid("`help` takes no arguments.")
    action, args = words[0].lower(), words[1:]
    if action == "list":
        return _list(args)
    if action not in KNOWN:
        return Invalid(unknown_text(words[0]))
    if not args:
        return Invalid(FORMS.format(action=action))
    if len(args) > 2:
        return Invalid(f"`{action}` takes a training_job_id, or a job id and a version id; "
                       f"I got {len(args)} words after it.")
    try:
        project, first = split_project(args[0])
    except InvalidIdError as exc:
        return Invalid(f"{exc}.")
    if len(args) == 1 and not V2_SHAPE.match(first):
        named = _by_name(action, first)
        return replace(named, project=project) if (
            isinstance(named, Command) and "/" in args[0]) else named
    try:
        return Command(action, ref_from_words(args))
    except InvalidIdError as exc:
        return Invalid(f"{exc}.")


def unknown_text(word: str) -> str:
    """An unknown subcommand: the known one it begins (``hist``), else the closest one by
    difflib's ratio (at least CLOSE: ``stpo`` is stop, ``restart`` is nothing)."""
    shown, typed = _shown(word[:30]), word.lower()[:30]
    starts = [k for k in KNOWN if k.startswith(typed)]
    close = starts if len(starts) == 1 else difflib.get_close_matches(typed, KNOWN, n=1,
                                                                      cutoff=CLOSE)
    return (f"I don't know the command `{shown}`: did you mean `{close[0]}`?" if close else
            f"I don't know the command `{shown}`.")


def _shown(word: str) -> str:
    """A typed word inside backticks: Slack's three escapes, and no backtick to end the span."""
    return (word.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("`", "\u02cb"))


def _reason_problem(text: str, reason: str) -> str | None:
    if (text.split()[:1] or [""])[0].lower() != "stop":
        return "A reason (after ` -- `) goes with `stop` only."
    if not reason:
        return "Nothing follows ` -- `: write the reason after it, or leave the ` -- ` out."
    if len(reason) > MAX_REASON:
        return f"That reason is {len(reason)} characters long; at most {MAX_REASON}, please."
    return None


def _list(args: list[str]) -> Command | Invalid:
    if not args:
        return Command("list")
    if len(args) > 1:
        return Invalid(f"`list` takes one filter (a part of the name, or a glob like "
                       f"`team-a-*`); I got {len(args)} words after it.")
    if not PATTERN.match(args[0]):
        return Invalid("A filter is up to 64 letters, digits, `_`, `-`, and the wildcards `*` "
                       "and `?`, e.g. `/modelarts list team-a-*`.")
    return Command("list", pattern=args[0])


def _by_name(action: str, word: str) -> Command | Invalid:
    """One word that is not a v2 id: a job name, unless it is all digits (a v1 job id that
    lacks its version) or only hex digits and separators (a mistyped v2 id). Such names are
    still found by ``list`` and its buttons."""
    if word.isascii() and word.isdigit():
        return Invalid(f"`{word[:20]}` looks like an old-version job id: add its version id, "
                       f"`/modelarts {action} {word[:20]} &lt;version_id&gt;`. Today's training "
                       "jobs go by their training_job_id (32-36 letters, digits or '-') or name.")
    if len(word) <= MAX_NAME and ID_LIKE.match(word):
        return Invalid(f"`{word}` looks like a training_job_id but is not one: it must be "
                       "32-36 letters, digits or '-', like 3faf5c03-aaa1-4cbe-879d-24b05d997347. "
                       f"If it is a job's name, pick it from `/modelarts list {word}`.")
    if not NAME.match(word):
        hint = " To pick among jobs, try `/modelarts list` with a filter." if (
            PATTERN.match(word)) else ""
        return Invalid(f"`{action}` takes a training_job_id, a job name (up to {MAX_NAME} "
                       f"letters, digits, `_` and `-`), or a job id and a version id.{hint}")
    return Command(action, name=word)
