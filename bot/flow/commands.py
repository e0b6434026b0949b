"""Parse the text after ``/modelarts``: a pure function, errors as values."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from bot.errors import InvalidIdError
from bot.modelarts.models import validate_id

MAX_TEXT = 200
USAGE = (
    "Usage:\n"
    "• `/modelarts stop &lt;job_id&gt; &lt;version_id&gt;`: stop a running training job version "
    "(asks you to confirm)\n"
    "• `/modelarts status &lt;job_id&gt; &lt;version_id&gt;`: show a version's status\n"
    "• `/modelarts help`: this message"
)


@dataclass(frozen=True)
class Command:
    action: str          # "help" | "stop" | "status"
    job_id: int = 0
    version_id: int = 0


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
    if len(args) < 2:
        return Invalid(f"`{action}` needs a job id and a version id, e.g. "
                       f"`/modelarts {action} 182626 278813`.")
    if len(args) > 2:
        return Invalid(f"`{action}` takes exactly two ids; I got {len(args)} words after it.")
    try:
        job_id = validate_id(args[0], "job_id")
        version_id = validate_id(args[1], "version_id")
    except InvalidIdError as exc:
        return Invalid(f"{exc}.")
    return Command(action, job_id, version_id)
