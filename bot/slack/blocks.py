"""Message builders: pure functions from values to Slack text and Block Kit, no I/O."""

from __future__ import annotations

from bot.flow.confirmations import Confirmation
from bot.modelarts.models import JobVersion, StopOutcome

CONFIRM = "modelarts_stop_confirm"
CANCEL = "modelarts_stop_cancel"


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


def job_ref(name: str, job_id: int, version_id: int, version_name: str = "") -> str:
    version = f"{version_name} ({version_id})" if version_name else str(version_id)
    return f"*{escape(name)}* (job_id {job_id}, version {escape(version)})"


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(text: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def status_text(v: JobVersion) -> str:
    return (f"{job_ref(v.job_name, v.job_id, v.version_id, v.version_name)}: "
            f"*{v.status_name}* ({v.status}), running time {duration(v.duration_ms)}")


def not_running_text(v: JobVersion) -> str:
    return (f"{job_ref(v.job_name, v.job_id, v.version_id, v.version_name)} is "
            f"{v.status_name}, not running: nothing to stop.")


def denied_text(job_name: str, job_id: int, version_id: int, would_allow: list[str]) -> str:
    roles = ", ".join(f"`{r}`" for r in would_allow) if would_allow else "none is defined"
    return (f"You may not stop {job_ref(job_name, job_id, version_id)}. "
            f"Roles that allow it: {roles}. Ask the platform team to map you to one.")


def request_message(v: JobVersion, requester: str, cid: str, ttl: int) -> tuple[str, list[dict]]:
    text = (f"{mention(requester)} asks to stop "
            f"{job_ref(v.job_name, v.job_id, v.version_id, v.version_name)}, "
            f"status {v.status_name}, running for {duration(v.duration_ms)}.")
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
    note = context(f"Only {mention(requester)} can confirm, within {ttl // 60 or 1} min"
                   f"{'' if ttl >= 60 else f' ({ttl}s)'}.")
    return text, [section(text), buttons, note]


def settled(c: Confirmation, line: str) -> tuple[str, list[dict]]:
    """The request message once decided: what was asked, and what became of it. No buttons."""
    asked = (f"{mention(c.requester)} asked to stop "
             f"{job_ref(c.job_name, c.job_id, c.version_id, c.version_name)}.")
    return f"{asked} {line}", [section(asked), context(line)]


def stopping(c: Confirmation, by: str) -> tuple[str, list[dict]]:
    return settled(c, f"Stopping... confirmed by {mention(by)}")


def outcome_line(outcome: StopOutcome) -> str:
    if outcome.is_success:
        return "Stop requested: ModelArts accepted it."
    if outcome.unknown:
        return "Outcome unknown: check status."
    return f"Stop failed: {outcome.error_code}"


def outcome_reply(c: Confirmation, outcome: StopOutcome, hint: str | None) -> str:
    ref = job_ref(c.job_name, c.job_id, c.version_id, c.version_name)
    if outcome.is_success:
        return (f":white_check_mark: Stop requested for {ref}. ModelArts is stopping it "
                f"(RUNNING → KILLING → KILLED). Check with "
                f"`/modelarts status {c.job_id} {c.version_id}`.")
    if outcome.unknown:
        text = (f":warning: Outcome unknown for {ref}: ModelArts did not answer in time, "
                f"the stop may or may not have been carried out. Check with "
                f"`/modelarts status {c.job_id} {c.version_id}` before trying again.")
    else:
        status = f" (HTTP {outcome.http_status})" if outcome.http_status else ""
        text = (f":x: Stop failed for {ref}: `{outcome.error_code}`{status}: "
                f"{escape(outcome.error_msg or 'no message')}")
    if hint:
        text += f"\nHint: {hint}"
    if outcome.request_id:
        text += f"\nRequest id: `{escape(outcome.request_id)}`"
    return text


def interrupted_reply(c: Confirmation) -> str:
    """The owed reply for a confirmed stop whose answer the bot never saw (the replica died)."""
    return (f":warning: Outcome unknown for "
            f"{job_ref(c.job_name, c.job_id, c.version_id, c.version_name)}: the bot was "
            f"interrupted around sending the stop, so it can't tell whether ModelArts got it. "
            f"Check with "
            f"`/modelarts status {c.job_id} {c.version_id}` before trying again.")


def strip_buttons(blocks: list[dict] | None, line: str) -> list[dict]:
    """The message's blocks without its buttons, with ``line`` as a context note."""
    kept = [b for b in (blocks or []) if isinstance(b, dict) and b.get("type") != "actions"]
    return [*kept, context(line)]
