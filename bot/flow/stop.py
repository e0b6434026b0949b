"""The stop flow: look up, check the role, claim the job, ask to confirm, consume once, stop,
report.

    request ──▶ look up, role ──▶ CREATE: the job's claim (bot.flow.claims) ──▶ post the request
        │ another request holds the job: "Already being stopped: @alice asked at ..." (nothing
        stored, nothing called)
    Confirm (the requester) ──▶ CONSUME ──▶ role re-check ──▶ stop ──▶ report
        │ a protected job: CONSUME keeps the record ("awaiting") ──▶ the message offers Approve
    Approve (anyone else) ──▶ their role among the approvers (before anything changes) ──▶
        CONSUME "approved" (one of any number of concurrent Approves) ──▶ as a confirm
    stop refused ──▶ look up once more: stopping or ended ──▶ "already", followed like a stop
        │ still running ──▶ a failure, and the claim is released

Every method runs after the Slack ack. ``notify`` sends an ephemeral message to the user (a
message in their DM for a Stop pressed on the Home tab). Once an outcome is reported, the
requester's Home tab is published again (``home``, bot.flow.home).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Protocol

import redis

from bot.core import metrics
from bot.core.logs import decision
from bot.core.slack_out import SlackOut
from bot.flow import blocks as b
from bot.flow.claims import Claim
from bot.flow.click import Click
from bot.flow.confirmations import Confirmation, ConfirmationStore, Consumed, Owe, Result, new_id
from bot.flow.outcomes import OwedReplies
from bot.flow.roles import RoleChecker
from bot.modelarts.hints import hint_for
from bot.modelarts.models import Failure, Job, JobEvent, StopOutcome
from bot.modelarts.refs import JobRef, ref_fields

log = logging.getLogger(__name__)
Notify = Callable[[str], None]


@dataclass(frozen=True)
class StopTarget:
    """What a Stop button on an alert stops: the job, and the alert's summary as the reason."""

    ref: JobRef
    reason: str = ""


class AlertHooks(Protocol):
    """The alert messages (bot.alerts.messages), as the flow sees them: each never raises."""

    def find(self, channel: str, ref: JobRef) -> str | None:
        """The ts of the newest alert about ``ref`` in ``channel``, or None."""

    def requested(self, c: Confirmation, line: str) -> None:
        """Show ``line`` (a pending request, or none: "") on the alert ``c.alert_ts``."""

    def stop_reported(self, c: Confirmation, user: str, outcome: StopOutcome) -> None:
        """A stop confirmed from the alert has an outcome."""

    def show(self, c: Confirmation, line: str) -> None:
        """Show ``line`` as the alert's outcome (its Stop button goes)."""

class HomeHook(Protocol):
    """The Home tab (bot.flow.home), as the flow sees it."""

    def refresh(self, user: str) -> None:
        """Publish ``user``'s Home tab again, later; never raises, never waits."""


REDIS_DOWN = ("I can't reach my state store (Redis), so I can't keep a confirmation. "
              "Nothing was stopped. Try again in a moment.")
INVITE = ("I'm not in this channel, so I can't post the confirmation here. "
          "Invite me with `/invite @ModelArts Bot` and try again. Nothing was stopped.")
NOT_IN_CHANNEL = {"not_in_channel", "channel_not_found", "is_archived"}
MAX_REASON = 300


def pending_line(c: Confirmation, ttl: int) -> str:
    """The alert's note while a request waits for its confirm."""
    return (f"Stop requested by {b.mention(c.requester)}, waiting for confirmation (asked at "
            f"{b.hhmm(c.created_at)}, until {b.hhmm(c.created_at + ttl)}).")


def lookup_failed(ref: JobRef, failure: Failure) -> str:
    hint = hint_for(failure.error_code, read_only=True)
    status = f" (HTTP {failure.http_status})" if failure.http_status else ""
    text = (f"Could not look up {ref}: `{b.code(failure.error_code)}`{status}: "
            f"{b.escape(failure.error_msg)}. Nothing was stopped.")
    return text + (f"\nHint: {hint}" if hint else "")


class StopFlow:
    def __init__(self, slack: SlackOut, modelarts, roles: RoleChecker,
                 store: ConfirmationStore, alerts: AlertHooks | None = None,
                 owed: OwedReplies | None = None, side: ThreadPoolExecutor | None = None
                 ) -> None:
        """``alerts``: the job's alert message shows its pending request and the outcome.
        ``owed``: outcome replies kept in Redis, so they survive a crash (None: posted once).
        ``side``: runs the Slack calls that need not wait (nothing run there waits on another)."""
        self.slack = slack
        self.modelarts = modelarts
        self.roles = roles
        self.store = store
        self.alerts = alerts
        self.owed = owed
        self.side = side or ThreadPoolExecutor(8, thread_name_prefix="flow-side")
        # The Home tab, refreshed after each outcome; set by bot/app/wiring.py once it exists
        # (it reads the running jobs through the Finder, which is built on this flow).
        self.home: HomeHook | None = None

    # -- /modelarts status ------------------------------------------------------------------
    def status(self, user: str, ref: JobRef, notify: Notify) -> None:
        try:
            mapped = self.roles.is_mapped(user)
        except redis.RedisError:
            notify("I can't reach my state store (Redis) to check your role. Try again shortly.")
            return
        if not mapped:
            notify("You have no role in this bot's roles file, so you can't look up jobs. "
                   f"Ask {self.roles.contact} to map you.")
            return
        found = self.modelarts.lookup(ref)
        if isinstance(found, Failure):
            notify(lookup_failed(ref, found))
        else:
            notify(b.status_text(found, self.why_ended(found)))

    def why_ended(self, job: Job) -> list[JobEvent]:
        """An ended v2 job's events, which say why (one call); none for a job that runs, a v1
        version, or when the call fails (the message is then as it was without them)."""
        if job.ref.api != "v2" or not job.final:
            return []
        events = self.modelarts.events(job.ref)
        return [] if isinstance(events, Failure) else events

    # -- /modelarts stop, and the alert's Stop button ---------------------------------------
    def request(self, user: str, channel: str, ref: JobRef, notify: Notify,
                thread_ts: str | None = None, alert_ts: str | None = None,
                reason: str = "") -> Confirmation | None:
        """Post a confirmation request, or tell the user why not. Returns what was stored."""
        where = {"user": user, "channel": channel, **ref_fields(ref)}
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
            verdict = self.roles.check(user, found.name, project=found.ref.project)
        except redis.RedisError:
            decision("failed", **where, outcome="redis_unavailable")
            notify(REDIS_DOWN)
            return None
        if not verdict.allowed:
            decision("denied", **where, job_name=found.name, outcome="no_role")
            notify(b.denied_text(found.name, ref, verdict.would_allow, self.roles.contact,
                                 found.link))
            self.store.audit.write("denied", ref=ref, user=user, channel=channel,
                                   job_name=found.name, outcome="no_role")
            return None
        if alert_ts is None and self.alerts and not thread_ts:
            alert_ts = self.alerts.find(channel, found.ref)
        return self._ask(user, channel, found, notify, thread_ts, alert_ts, where, reason)

    def _ask(self, user: str, channel: str, job: Job, notify: Notify, thread_ts: str | None,
             alert_ts: str | None, where: dict, reason: str) -> Confirmation | None:
        """Claim the job and store the confirmation, then post the request: no button exists
        before its state, and no second request for a job while one is open."""
        guard = self.roles.roles.protection(job.name, job.ref.project)
        c = Confirmation(new_id(), user, channel, "", thread_ts or "", job.ref, job.name,
                         time.time(), alert_ts, reason[:MAX_REASON], guard is not None,
                         guard.approvers if guard else (), link=job.link)
        try:
            created = self.store.create(c)
        except redis.RedisError:
            decision("failed", **where, outcome="redis_unavailable")
            notify(REDIS_DOWN)
            return None
        if created.held:
            decision("refused", **where, job_name=job.name, outcome="already_requested",
                     confirmation=created.held.id)
            notify(self._held_text(created.held))
            return None
        text, blocks = b.request_message(job, user, c.id, self.store.ttl, c.reason,
                                         c.protected, c.approvers)
        posted = self.slack.post(channel, text, blocks, thread_ts=thread_ts)
        if not posted.ok:
            error = posted.error or "unknown"
            self._discard(c.id, error)
            decision("failed", **where, outcome="post_failed", error_code=error)
            notify(INVITE if error in NOT_IN_CHANNEL else
                   f"Slack refused to post the confirmation (`{error}`). Nothing was stopped.")
            return None
        c = replace(c, ts=posted.data["ts"], thread_ts=thread_ts or posted.data["ts"])
        try:
            self.store.claims.note(c.ref, c.id, c.ts, c.thread_ts)
        except redis.RedisError:
            log.warning("could not note the request message on its claim",
                        extra={"confirmation": c.id})
        if c.alert_ts and self.alerts:
            self.alerts.requested(c, pending_line(c, self.store.ttl))
        decision("requested", **where, job_name=job.name, confirmation=c.id,
                 protected=c.protected or None)
        return c

    def _held_text(self, held: Claim) -> str:
        """Who holds the job's request, with a link to it (the message, else its thread)."""
        link = None
        if held.ts:
            got = self.slack.permalink(held.channel, held.ts)
            link = got.get("permalink") if got.ok else None
        return b.already_requested(held.state, held.requester, held.at, held.by, link)

    def _discard(self, cid: str, error: str) -> None:
        try:
            self.store.discard(cid, error)
        except redis.RedisError:
            log.warning("could not discard confirmation %s; it expires by itself", cid)

    def _release(self, c: Confirmation) -> None:
        """The stop was refused and the job still runs: a new request is allowed now."""
        try:
            self.store.claims.release(c.ref, c.id)
        except redis.RedisError:
            log.warning("could not release the job's claim; it expires by itself",
                        extra={"confirmation": c.id})

    # -- the buttons ------------------------------------------------------------------------
    def confirm(self, click: Click) -> StopOutcome | None:
        """The Confirm button: ``click.value`` is the confirmation's id."""
        user = click.user
        # One round trip: consume, owe the outcome reply, read the role re-check's cache.
        owe = self.owed.owe(click.ts) if self.owed else None
        got = self._consume(click, "confirmed", self.roles.cache_keys(user), owe)
        if got is None:
            return None
        if got.result is Result.AWAITING:
            self._awaiting(got.confirmation, user)
            return None
        return self._stop(got.confirmation, user, got.fetched, owe)

    def approve(self, click: Click) -> StopOutcome | None:
        """The Approve button of a protected job: ``click.value`` is the confirmation's id. The
        approver's role is checked before anything changes; the consume makes one of any number
        of concurrent Approves the one that stops."""
        user, notify = click.user, click.notify
        try:
            c = self.store.peek(click.value)
            verdict = (self.roles.check(user, c.job_name, among=c.approvers,
                                        project=c.ref.project)
                       if c and c.requester != user else None)
        except redis.RedisError:
            notify(REDIS_DOWN)
            return None
        if verdict is not None and not verdict.allowed:
            who = (f"a role among {b.roles_list(c.approvers)} that allows it" if c.approvers
                   else "a role that allows it")
            decision("denied", user=user, channel=click.channel, **ref_fields(c.ref),
                     confirmation=c.id, outcome="not_approver")
            self.store.audit.write("denied", c, user=user, outcome="not_approver")
            notify(f"You can't approve this stop: approving {b.job_ref(c.job_name, c.ref, c.link)} "
                   f"needs {who}. Nothing was stopped.")
            return None
        requester = c.requester if c else user
        owe = self.owed.owe(click.ts) if self.owed else None
        got = self._consume(click, "approved", self.roles.cache_keys(requester), owe)
        if got is None:
            return None
        return self._stop(got.confirmation, user, got.fetched, owe, approver=user)

    def _awaiting(self, c: Confirmation, user: str) -> None:
        """A protected job's requester confirmed: now it waits for a second person."""
        self._update(c.channel, c.ts, *b.awaiting(c, user))
        decision("confirmed", user=user, channel=c.channel, **ref_fields(c.ref),
                 confirmation=c.id, outcome="awaiting_approval")
        if c.alert_ts and self.alerts:
            self.alerts.requested(c, f"Stop confirmed by {b.mention(user)}, waiting for a "
                                     "second person.")

    def _stop(self, c: Confirmation, user: str, fetched: dict, owe: Owe | None,
              approver: str | None = None) -> StopOutcome | None:
        """Consumed: re-check the requester's role, stop, report."""
        where = {"user": user, "channel": c.channel, **ref_fields(c.ref), "confirmation": c.id}
        try:
            verdict = self.roles.check(c.requester, c.job_name, fetched, project=c.ref.project)
        except redis.RedisError:
            verdict = None
        if verdict is None or not verdict.allowed:
            why = ("the bot could not check the role (Redis unreachable)" if verdict is None
                   else f"{b.mention(c.requester)} no longer holds a role that allows it")
            lost = "role_lost" if verdict else "redis_unavailable"
            entry = self.store.audit.entry("denied", c, user=user, outcome=lost)
            # The debt goes first: a crash before the update must not post "outcome unknown".
            if owe:   # audited in the DONE that drops the owed reply
                self.owed.cancel(c.id, owe, entry)
            else:
                self.store.audit.append(entry)
            self._release(c)
            self._update(c.channel, c.ts, *b.settled(c, f"Not stopped: {why}."))
            decision("denied", **where, outcome=lost)
            return None
        # Consumed and allowed: the stop goes now, while "Stopping..." is on its way to Slack.
        stopping = self.side.submit(self._update, c.channel, c.ts, *b.stopping(c, user, approver))
        decision("confirmed" if approver is None else "approved", **where)
        outcome = self.modelarts.stop(c.ref)
        metrics.stop_request(c.ref.api, "accepted" if outcome.is_success else
                             "unknown" if outcome.unknown else "refused", c.ref.project)
        self.report(c, user, outcome, owe, after=stopping, approver=approver,
                    already=self._already(c, outcome))
        return outcome

    def _already(self, c: Confirmation, outcome: StopOutcome) -> Job | None:
        """A refused stop of a job that is stopping or has ended already: the job, looked up
        once more; None for any other refusal (or a failed look-up)."""
        if outcome.is_success or outcome.unknown:
            return None
        found = self.modelarts.lookup(c.ref)
        if isinstance(found, Failure) or not (found.stopping or found.final):
            return None
        return found

    def report(self, c: Confirmation, user: str, outcome: StopOutcome,
               owe: Owe | None = None, after: Future | None = None,
               approver: str | None = None, already: Job | None = None) -> None:
        """The outcome: a reply in the thread and, at the same time, the request message
        settled (once ``after``, the "Stopping..." update, is done: it must not land last).
        ``already``: the job, stopping or ended, when ModelArts refused for that reason."""
        hint = None if outcome.is_success or already else hint_for(outcome.error_code or "")
        if already:
            event = "already"
            verdict = "already_ended" if already.final else "already_stopping"
        else:
            event = "stopped" if outcome.is_success else "failed"
            verdict = ("unknown" if outcome.unknown else
                       "stop_requested" if outcome.is_success else "stop_failed")
        result = {"outcome": verdict, "error_code": outcome.error_code,
                  "http_status": outcome.http_status, "approver": approver}
        decision(event, user=user, channel=c.channel, **ref_fields(c.ref), confirmation=c.id,
                 **result)
        # The audit entry rides the owed reply's DONE (bot.flow.outcomes).
        entry = self.store.audit.entry(event, c, user=user, request_id=outcome.request_id,
                                       state=already.state if already else None, **result)
        # Accepted, unknown or already stopping: followed to its end, the watch opened once the
        # reply is posted; the watch's end releases the job's claim.
        follow = ("accepted" if outcome.is_success or (already and not already.final) else
                  "unknown" if outcome.unknown else None)
        watched = bool(follow and self.owed and self.owed.watches)
        text = (b.already_reply(c, already.state, already.final) if already else
                b.outcome_reply(c, outcome, hint, watched, approver))
        if self.owed and owe:   # retried until it lands, by this replica or another
            reply = self.side.submit(self.owed.deliver, c, owe, text,
                                     (follow, user) if follow else None, entry)
        else:
            reply = self.side.submit(self._post, c.channel, text, thread_ts=c.thread_ts)
            self.store.audit.append(entry)
        if not follow:
            self._release(c)
        if after:
            after.result()
        line = (b.already_line(already.state) if already else
                f"{b.outcome_line(outcome)} Confirmed by {b.mention(c.confirmed_by or user)}"
                + (f", approved by {b.mention(approver)}." if approver else "."))
        self._update(c.channel, c.ts, *b.settled(c, line))
        reply.result()
        if c.alert_ts and self.alerts:
            if already:
                self.alerts.show(c, b.already_line(already.state))
            else:
                self.alerts.stop_reported(c, user, outcome)
        if self.home:
            self.home.refresh(c.requester)

    def cancel(self, click: Click) -> None:
        """The Cancel button: ``click.value`` is the confirmation's id."""
        user, cid = click.user, click.value
        got = self._consume(click, "cancelled")
        if got is None:
            return
        c = got.confirmation
        self._update(c.channel, c.ts, *b.settled(
            c, f"Cancelled by {b.mention(user)}. Nothing was stopped."))
        if c.alert_ts and self.alerts:
            self.alerts.requested(c, "")
        decision("cancelled", user=user, channel=c.channel, **ref_fields(c.ref),
                 confirmation=cid)

    def _consume(self, click: Click, state: str, also_get: Sequence[str] = (),
                 owe: Owe | None = None) -> Consumed | None:
        """What the consume did, OK or AWAITING (its confirmation's ts filled from the click),
        or None (the user told why)."""
        user, cid, channel, notify = click.user, click.value, click.channel, click.notify
        message_ts, message_blocks = click.ts, click.blocks
        verb = {"confirmed": "confirm", "approved": "approve"}.get(state, "cancel")
        try:
            got = self.store.consume(cid, user, state, also_get, owe, channel=channel)
        except redis.RedisError:
            decision("failed", user=user, channel=channel, confirmation=cid,
                     outcome="redis_unavailable")
            notify("I can't reach my state store (Redis), so I can't check this confirmation. "
                   "Nothing was stopped. Try again in a moment.")
            return None
        if got.result in (Result.OK, Result.AWAITING):
            c = got.confirmation
            return replace(got, confirmation=replace(
                c, ts=c.ts or message_ts, thread_ts=c.thread_ts or message_ts))
        c = got.confirmation
        if got.result is Result.WRONG_CHANNEL:   # compared in the consume: nothing consumed
            decision("refused", user=user, channel=channel, confirmation=cid,
                     outcome="wrong_channel")
            notify(f"This button belongs to another channel, so I can't {verb} it from here. "
                   "Nothing was stopped.")
        elif got.result is Result.NOT_REQUESTER:
            requester = c.requester if c else "the requester"
            notify(f"Only {b.mention(requester)} can {verb} this request.")
        elif got.result is Result.SELF_APPROVAL:
            decision("refused", user=user, channel=channel, confirmation=cid,
                     outcome="self_approval")
            notify("You asked for this stop, so you can't approve it too: a second person "
                   "must. Nothing was stopped.")
        elif got.result is Result.NOT_CONFIRMED:
            notify("This request is not confirmed by its requester yet, so there is nothing "
                   "to approve. Nothing was stopped.")
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


