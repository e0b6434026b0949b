"""The stop flow: look up, check the role, ask to confirm, consume once, stop, report.

Every method runs after the Slack ack. ``notify`` sends an ephemeral message to the user.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace

import redis

from bot.core import metrics
from bot.core.logs import decision
from bot.core.slack_out import SlackOut
from bot.flow import blocks as b
from bot.flow.click import Click
from bot.flow.confirmations import Confirmation, ConfirmationStore, Owe, Result, new_id
from bot.flow.outcomes import OwedReplies
from bot.flow.roles import RoleChecker
from bot.modelarts.hints import hint_for
from bot.modelarts.models import Failure, Job, StopOutcome
from bot.modelarts.refs import JobRef

log = logging.getLogger(__name__)
Notify = Callable[[str], None]
AlertOutcome = Callable[[Confirmation, str, StopOutcome], None]

REDIS_DOWN = ("I can't reach my state store (Redis), so I can't keep a confirmation. "
              "Nothing was stopped. Try again in a moment.")
INVITE = ("I'm not in this channel, so I can't post the confirmation here. "
          "Invite me with `/invite @ModelArts Bot` and try again. Nothing was stopped.")
NOT_IN_CHANNEL = {"not_in_channel", "channel_not_found", "is_archived"}


def lookup_failed(ref: JobRef, failure: Failure) -> str:
    hint = hint_for(failure.error_code)
    status = f" (HTTP {failure.http_status})" if failure.http_status else ""
    text = (f"Could not look up {ref}: `{b.code(failure.error_code)}`{status}: "
            f"{b.escape(failure.error_msg)}. Nothing was stopped.")
    return text + (f"\nHint: {hint}" if hint else "")


class StopFlow:
    def __init__(self, slack: SlackOut, modelarts, roles: RoleChecker,
                 store: ConfirmationStore, alert_outcome: AlertOutcome | None = None,
                 owed: OwedReplies | None = None, side: ThreadPoolExecutor | None = None
                 ) -> None:
        """``alert_outcome`` runs after ``report`` for a stop that began at an alert's button.
        ``owed``: outcome replies kept in Redis, so they survive a crash (None: posted once).
        ``side``: runs the Slack calls that need not wait (nothing run there waits on another)."""
        self.slack = slack
        self.modelarts = modelarts
        self.roles = roles
        self.store = store
        self.alert_outcome = alert_outcome
        self.owed = owed
        self.side = side or ThreadPoolExecutor(8, thread_name_prefix="flow-side")

    # -- /modelarts status ------------------------------------------------------------------
    def status(self, user: str, ref: JobRef, notify: Notify) -> None:
        try:
            mapped = self.roles.is_mapped(user)
        except redis.RedisError:
            notify("I can't reach my state store (Redis) to check your role. Try again shortly.")
            return
        if not mapped:
            notify("You have no role in this bot's roles file, so you can't look up jobs. "
                   "Ask the platform team to map you.")
            return
        found = self.modelarts.lookup(ref)
        if isinstance(found, Failure):
            notify(lookup_failed(ref, found))
        else:
            notify(b.status_text(found))

    # -- /modelarts stop, and the alert's Stop button ---------------------------------------
    def request(self, user: str, channel: str, ref: JobRef, notify: Notify,
                thread_ts: str | None = None, alert_ts: str | None = None) -> Confirmation | None:
        """Post a confirmation request, or tell the user why not. Returns what was stored."""
        where = {"user": user, "channel": channel, **job_fields(ref)}
        found = self.modelarts.lookup(ref)
        if isinstance(found, Failure):
            decision("failed", **where, outcome="lookup_failed", error_code=found.error_code)
            notify(lookup_failed(ref, found))
            self.store.audit.write("failed", ref=ref, user=user, channel=channel,
                                   outcome="lookup_failed", error_code=found.error_code,
                                   http_status=found.http_status, request_id=found.request_id)
            return None
        if not found.stoppable:
            decision("refused", **where, outcome="not_running", status=found.state)
            notify(b.not_running_text(found))
            self.store.audit.write("refused", ref=ref, user=user, channel=channel,
                                   job_name=found.name, outcome="not_running", state=found.state)
            return None
        try:
            verdict = self.roles.check(user, found.name)
        except redis.RedisError:
            decision("failed", **where, outcome="redis_unavailable")
            notify(REDIS_DOWN)
            return None
        if not verdict.allowed:
            decision("denied", **where, job_name=found.name, outcome="no_role")
            notify(b.denied_text(found.name, ref, verdict.would_allow))
            self.store.audit.write("denied", ref=ref, user=user, channel=channel,
                                   job_name=found.name, outcome="no_role")
            return None
        return self._ask(user, channel, found, notify, thread_ts, alert_ts, where)

    def _ask(self, user: str, channel: str, job: Job, notify: Notify,
             thread_ts: str | None, alert_ts: str | None, where: dict) -> Confirmation | None:
        """Store the confirmation, then post the request: no button exists before its state."""
        c = Confirmation(new_id(), user, channel, "", thread_ts or "", job.ref, job.name,
                         time.time(), alert_ts)
        try:
            self.store.create(c)
        except redis.RedisError:
            decision("failed", **where, outcome="redis_unavailable")
            notify(REDIS_DOWN)
            return None
        text, blocks = b.request_message(job, user, c.id, self.store.ttl)
        posted = self.slack.post(channel, text, blocks, thread_ts=thread_ts)
        if not posted.ok:
            error = posted.error or "unknown"
            self._discard(c.id, error)
            decision("failed", **where, outcome="post_failed", error_code=error)
            notify(INVITE if error in NOT_IN_CHANNEL else
                   f"Slack refused to post the confirmation (`{error}`). Nothing was stopped.")
            return None
        c = replace(c, ts=posted.data["ts"], thread_ts=thread_ts or posted.data["ts"])
        decision("requested", **where, job_name=job.name, confirmation=c.id)
        return c

    def _discard(self, cid: str, error: str) -> None:
        try:
            self.store.discard(cid, error)
        except redis.RedisError:
            log.warning("could not discard confirmation %s; it expires by itself", cid)

    # -- the buttons ------------------------------------------------------------------------
    def confirm(self, click: Click) -> StopOutcome | None:
        """The Confirm button: ``click.value`` is the confirmation's id."""
        user, cid = click.user, click.value
        # One round trip: consume, owe the outcome reply, read the role re-check's cache.
        owe = self.owed.owe(click.ts) if self.owed else None
        got = self._consume(click, "confirmed", self.roles.cache_keys(user), owe)
        if got is None:
            return None
        c, fetched = got
        where = {"user": user, "channel": c.channel, **job_fields(c.ref), "confirmation": cid}
        try:
            verdict = self.roles.check(c.requester, c.job_name, fetched)
        except redis.RedisError:
            verdict = None
        if verdict is None or not verdict.allowed:
            why = ("the bot could not check your role (Redis unreachable)" if verdict is None
                   else f"{b.mention(user)} no longer holds a role that allows it")
            lost = "role_lost" if verdict else "redis_unavailable"
            entry = self.store.audit.entry("denied", c, user=user, outcome=lost)
            # The debt goes first: a crash before the update must not post "outcome unknown".
            if owe:   # audited in the DONE that drops the owed reply
                self.owed.cancel(c.id, owe, entry)
            else:
                self.store.audit.append(entry)
            self._update(c.channel, c.ts, *b.settled(c, f"Not stopped: {why}."))
            decision("denied", **where, outcome=lost)
            return None
        # Consumed and allowed: the stop goes now, while "Stopping..." is on its way to Slack.
        stopping = self.side.submit(self._update, c.channel, c.ts, *b.stopping(c, user))
        decision("confirmed", **where)
        outcome = self.modelarts.stop(c.ref)
        metrics.stop_request(c.ref.api, "accepted" if outcome.is_success else
                             "unknown" if outcome.unknown else "refused")
        self.report(c, user, outcome, owe, after=stopping)
        return outcome

    def report(self, c: Confirmation, user: str, outcome: StopOutcome,
               owe: Owe | None = None, after: Future | None = None) -> None:
        """The outcome: a reply in the thread and, at the same time, the request message
        settled (once ``after``, the "Stopping..." update, is done: it must not land last)."""
        hint = None if outcome.is_success else hint_for(outcome.error_code or "")
        event = "stopped" if outcome.is_success else "failed"
        result = {"outcome": "unknown" if outcome.unknown else
                  ("stop_requested" if outcome.is_success else "stop_failed"),
                  "error_code": outcome.error_code, "http_status": outcome.http_status}
        decision(event, user=user, channel=c.channel, **job_fields(c.ref), confirmation=c.id,
                 **result)
        # The audit entry rides the owed reply's DONE (bot.flow.outcomes).
        entry = self.store.audit.entry(event, c, user=user, request_id=outcome.request_id,
                                       **result)
        # Accepted or unknown: followed to its end, the watch opened once the reply is posted.
        follow = "accepted" if outcome.is_success else "unknown" if outcome.unknown else None
        if self.owed and owe:   # retried until it lands, by this replica or another
            text = b.outcome_reply(c, outcome, hint, bool(follow and self.owed.watches))
            reply = self.side.submit(self.owed.deliver, c, owe, text,
                                     (follow, user) if follow else None, entry)
        else:
            reply = self.side.submit(self._post, c.channel, b.outcome_reply(c, outcome, hint),
                                     thread_ts=c.thread_ts)
            self.store.audit.append(entry)
        if after:
            after.result()
        line = f"{b.outcome_line(outcome)} Confirmed by {b.mention(user)}."
        self._update(c.channel, c.ts, *b.settled(c, line))
        reply.result()
        if c.alert_ts and self.alert_outcome:
            self.alert_outcome(c, user, outcome)

    def cancel(self, click: Click) -> None:
        """The Cancel button: ``click.value`` is the confirmation's id."""
        user, cid = click.user, click.value
        got = self._consume(click, "cancelled")
        if got is None:
            return
        c = got[0]
        self._update(c.channel, c.ts, *b.settled(
            c, f"Cancelled by {b.mention(user)}. Nothing was stopped."))
        decision("cancelled", user=user, channel=c.channel, **job_fields(c.ref),
                 confirmation=cid)

    def _consume(self, click: Click, state: str, also_get: Sequence[str] = (),
                 owe: Owe | None = None) -> tuple[Confirmation, dict] | None:
        """The consumed confirmation and the values of ``also_get``, or None (user told why)."""
        user, cid, channel, notify = click.user, click.value, click.channel, click.notify
        message_ts, message_blocks = click.ts, click.blocks
        verb = "confirm" if state == "confirmed" else "cancel"
        try:
            got = self.store.consume(cid, user, state, also_get, owe, channel=channel)
        except redis.RedisError:
            decision("failed", user=user, channel=channel, confirmation=cid,
                     outcome="redis_unavailable")
            notify("I can't reach my state store (Redis), so I can't check this confirmation. "
                   "Nothing was stopped. Try again in a moment.")
            return None
        if got.result is Result.OK:
            c = got.confirmation
            return (replace(c, ts=c.ts or message_ts, thread_ts=c.thread_ts or message_ts),
                    got.fetched)
        if got.result is Result.WRONG_CHANNEL:   # compared in the consume: nothing consumed
            decision("refused", user=user, channel=channel, confirmation=cid,
                     outcome="wrong_channel")
            notify(f"This button belongs to another channel, so I can't {verb} it from here. "
                   "Nothing was stopped.")
        elif got.result is Result.NOT_REQUESTER:
            requester = got.confirmation.requester if got.confirmation else "the requester"
            notify(f"Only {b.mention(requester)} can {verb} this request.")
        elif got.result is Result.HANDLED:
            by = f" by {b.mention(got.handled_by)}" if got.handled_by else ""
            notify(f"This request was already handled ({got.handled_as}{by}). Nothing more to do.")
        else:
            decision("expired", user=user, channel=channel, confirmation=cid, outcome="expired")
            notify("This request expired; nothing was stopped. Run `/modelarts stop` again if "
                   "the job still needs stopping.")
            if message_ts:
                self._update(channel, message_ts, "This stop request expired.",
                             b.strip_buttons(message_blocks, "Expired: nothing was stopped."))
        return None

    # -- Slack calls that must not break the flow: SlackOut never raises, and logs a failure --
    def _update(self, channel: str, ts: str, text: str, blocks: list[dict]) -> None:
        self.slack.update(channel, ts, text, blocks)

    def _post(self, channel: str, text: str, thread_ts: str | None = None) -> None:
        self.slack.post(channel, text, thread_ts=thread_ts)


def job_fields(ref: JobRef) -> dict[str, object]:
    """The job's fields for a decision line: api and its ids."""
    return {"api": ref.api, **vars(ref)}

