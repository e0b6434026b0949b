"""Parse the text after ``/modelarts``: a pure function, errors as values."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from bot.errors import InvalidIdError
from bot.modelarts.refs import JobRef, ref_from_words

MAX_TEXT = 200
USAGE = (
    "Usage:\n"
    "• `/modelarts stop &lt;training_job_id&gt;`: stop a running training job (asks you to "
    "confirm)\n"
    "• `/modelarts status &lt;training_job_id&gt;`: show a training job's phase\n"
    "• Old-version jobs: `/modelarts stop &lt;job_id&gt; &lt;version_id&gt;` and "
    "`/modelarts status &lt;job_id&gt; &lt;version_id&gt;`\n"
    "• `/modelarts help`: this message"
)
EXAMPLE = "e.g. `/modelarts {action} 3faf5c03-aaa1-4cbe-879d-24b05d997347`"


@dataclass(frozen=True)
class Command:
    action: str                  # "help" | "stop" | "status"
    ref: JobRef | None = None


@dataclass(frozen=True)
class Invalid:
    reason: str

    @property
    def message(self) -> str:
        return f"{self.reason}\n\n{USAGE}"


def parse(text: str | None) -> Command | Invalid:
    text = (text or "").strip()
    if len(text) > MAX_TEXT:
        return Invalid(f"That command is {len(text)} characters long; I expect a few words.")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in text):
        return Invalid("That command contains control characters.")
    words = text.split()
    if not words or words[0].lower() == "help":
        return Command("help") if len(words) <= 1 else Invalid("`help` takes no arguments.")
    action = words[0].lower()
    if action not in ("stop", "status"):
        return Invalid(f"I don't know the command `{words[0][:30]}`.")
    args = words[1:]
    if not args:
        return Invalid(f"`{action}` needs a training_job_id, {EXAMPLE.format(action=action)} "
                       "(old-version jobs: a job id and a version id).")
    if len(args) > 2:
        return Invalid(f"`{action}` takes a training_job_id, or a job id and a version id; "
                       f"I got {len(args)} words after it.")
    try:
        return Command(action, ref_from_words(args))
    except InvalidIdError as exc:
        return Invalid(f"{exc}.")
