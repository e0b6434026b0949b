"""Every stop followed to its end: a watch per stop, kept in Redis, that any replica continues.

    stop accepted or outcome unknown ──▶ the outcome reply posted ──▶ DONE of the owed reply opens
        the watch in the same script (bot.flow.outcomes), or recovery's DONE opens an "unknown"
        watch for an interrupted stop
    every replica, WORKERS threads: CLAIM the oldest due watch (the lease, bot.flow.leases: it
        becomes the owner) ──▶ look the job up ──▶ nothing to say: SET, due after the interval,
        owner released
        │ something to say (final state, took effect, deadline): SET the text (owner only)
        ──▶ edit the request message and the alert (final only) ──▶ post ──▶ DONE (final) or
        SET the text cleared (took effect) │ Slack refused: SET, due after a backoff
    A failed look-up is retried at the next tick, never reported as final. Nothing is stopped.

Keys (bot.core.keys: Keys.watches()): a zset  id -> next check (Redis ms); id = the confirmation id
                                 a hash  id -> JSON {c, user, kind: accepted|unknown, since,
                                     deadline, span (epoch s), owner, say, blocks, end, tries,
                                     checks, state, error, verdict (once there was something to
                                     say), audit (once checked: "" = none)}: ``WatchEntry``
Status calls per watch: at most span / interval + 2 (a failed look-up counts too).

Crash windows that remain: a post Slack accepted whose answer was lost, or a replica dying
between a post and its DONE/SET, posts that message again (Slack has no idempotency key); Redis
down at that moment is waited for (REDIS_PATIENCE, bot.flow.leases), and a restart that loses
data loses watches. A replica dying after the stop and before its owed reply's DONE leaves the
owed reply, whose recovery posts "outcome unknown" and opens an unknown watch: the stop is
settled by status.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import redis

from bot.core.contact import DEFAULT as CONTACT
from bot.core.keys import Keys
from bot.core.outage import Outage
from bot.core.slack_out import SlackOut
from bot.flow import blocks as b
from bot.flow.audit import AUDIT_LUA, Audit, AuditEntry, as_arg
from bot.flow.claims import CLAIM_LUA
from bot.flow.confirmations import Confirmation
from bot.flow.leases import MAX_TRIES, NOW_LUA, Lease, Write, patient, retry_ms
from bot.flow.poller import Poller
from bot.modelarts.models import Failure
from bot.modelarts.refs import JobRef

log = logging.getLogger(__name__)

STOPPED = ("KILLED", "Terminated")   # the final states a stop leads to (v1, v2)
WORKERS = 2                          # threads per replica checking watches
FIRST_CHECK_MS = 1000                # at least this long after the outcome reply

# Open a watch, unless one is open for this id.
# KEYS[1] zset, KEYS[2] hash; ARGV[1] id, ARGV[2] entry JSON, ARGV[3] ms until the first check
# returns 1 if opened, 0 if it existed
OPEN = NOW_LUA + """
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""

# Replace a watch's entry, only for its owner; append an audit entry with it (a verified state).
# KEYS[1] zset, KEYS[2] hash, KEYS[3] audit stream; ARGV[1] id, ARGV[2] owner, ARGV[3] new entry
# JSON (its own owner), ARGV[4] ms until due, ARGV[5] audit entry JSON ("" = none),
# ARGV[6] audit retention ms
# returns 1 if replaced, 2 if replaced but the audit entry was refused, 0 if the watch is gone or
# another owner holds it
SET = AUDIT_LUA + NOW_LUA + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw or cjson.decode(raw)['owner'] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
if ARGV[5] ~= '' and not audit(KEYS[3], cjson.decode(ARGV[5]), ARGV[6]) then return 2 end
return 1
"""

# The watch has ended and its last message is posted: forget it, only for its owner, drop its
# job's claim (bot.flow.claims: a new request is allowed) and append its audit entry (the
# verified final state).
# KEYS[1] zset, KEYS[2] hash, KEYS[3] audit stream, KEYS[4] claims hash, KEYS[5] claims index;
# ARGV[1] id, ARGV[2] owner, ARGV[3] audit entry JSON ("" = none), ARGV[4] audit retention ms,
# ARGV[5] the job's key
# returns 1 if deleted, 2 if deleted but the audit entry was refused, 0 if gone or another owner
DONE = AUDIT_LUA + CLAIM_LUA + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw or cjson.decode(raw)['owner'] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
claim_drop(KEYS[4], KEYS[5], ARGV[5], ARGV[1])
if ARGV[3] ~= '' and not audit(KEYS[3], cjson.decode(ARGV[3]), ARGV[4]) then return 2 end
return 1
"""

AlertFinal = Callable[[Confirmation, str], None]


@dataclass(frozen=True)
class WatchEntry:
    """A watch, as its hash holds it (the JSON names are the fields', but ``c``: the
    confirmation record's JSON). Times are epoch seconds."""

    confirmation: Confirmation
    user: str                    # who confirmed the stop
    kind: str                    # "accepted" | "unknown" (the stop's answer was not known)
    since: float | None          # when the stop was confirmed; None: not known (recovery)
    deadline: float              # then the watch ends, whatever the job's state
    span: float
    owner: str = ""              # the lease (bot.flow.leases): "" = none
    say: str = ""                # the message to post next ("" = nothing to say yet)
    blocks: list | None = None   # its blocks (the "not taken effect" buttons)
    end: str = ""                # the request message's last line, when ``say`` is the last
    tries: int = 0               # refused posts of ``say``
    checks: int = 0              # status look-ups so far
    state: str | None = None     # the job's last state seen
    error: str | None = None     # the last failed look-up's error code
    verdict: str | None = None   # the outcome of the audit entry of ``say``
    audit: AuditEntry | None = None   # that entry, appended by the script that records ``say``

    def to_json(self) -> str:
        out = {"c": self.confirmation.to_json(), "user": self.user, "kind": self.kind,
               "since": self.since, "deadline": self.deadline, "span": self.span,
               "owner": self.owner, "say": self.say, "blocks": self.blocks, "end": self.end,
               "tries": self.tries, "checks": self.checks, "state": self.state,
               "error": self.error}
        if self.verdict is not None:
            out["verdict"] = self.verdict
        if self.checks:     # a checked watch carries its audit entry, "" for none
            out["audit"] = as_arg(self.audit)
        return json.dumps(out)

    @classmethod
    def from_json(cls, raw: str | bytes) -> WatchEntry:
        e = json.loads(raw)
        return cls(Confirmation.from_json(e["c"]), e["user"], e["kind"], e.get("since"),
                   e["deadline"], e["span"], e.get("owner") or "",
                   e.get("say") or "", e.get("blocks"), e.get("end") or "",
                   int(e.get("tries") or 0), int(e.get("checks") or 0), e.get("state"),
                   e.get("error"), e.get("verdict"), AuditEntry.from_json(e.get("audit")))


# Make watches due now, unless already due sooner. KEYS[1] the zset, KEYS[2] the entries;
# ARGV the watch ids (those no replica holds, as read just before). Returns how many changed.
DUE_NOW = NOW_LUA + """
local n = 0
for _, wid in ipairs(ARGV) do
  local due = redis.call('ZSCORE', KEYS[1], wid)
  if due and tonumber(due) > now and redis.call('HEXISTS', KEYS[2], wid) == 1 then
    redis.call('ZADD', KEYS[1], 'XX', now, wid); n = n + 1
  end
end
return n
"""


class Watches:
    def __init__(self, client: redis.Redis, prefix: str, modelarts, slack: SlackOut, *,
                 interval: float, span: float, unknown_span: float, lease_seconds: float,
                 post_lease_seconds: float = 30.0, alert_final: AlertFinal | None = None,
                 audit: Audit, outage: Outage | None = None, contact: str = CONTACT) -> None:
        """``slack`` must hand 429s back (no retries): a post must fit in its lease.
        ``lease_seconds``: a look-up may take this long before another replica takes over.
        ``audit``: where each verified state ("verified" entries) is appended, by the same
        script that records its message. ``outage``: the bot's shared one (bot.core.outage).
        ``contact``: who to ask when a job will not stop (bot.core.contact)."""
        self.redis = client
        self.contact = contact
        self.audit = audit
        self.keys = [*Keys(prefix).watches(), self.audit.key]
        self.claim_keys = Keys(prefix).claims()
        self.lease = Lease(client, self.keys)
        self.modelarts = modelarts
        self.slack = slack
        self.interval_ms = max(1, int(interval * 1000))
        self.span, self.unknown_span = span, unknown_span
        self.lease_ms = int(lease_seconds * 1000)
        self.post_lease_ms = int(post_lease_seconds * 1000)
        self.alert_final = alert_final
        self._open = client.register_script(OPEN)
        self._set = client.register_script(SET)
        self._done = client.register_script(DONE)
        self._due_now = client.register_script(DUE_NOW)
        self._poller = Poller("watches", self.check_one, outage)

    # -- the scripts: one typed call each -------------------------------------------------------
    def _open_entry(self, e: WatchEntry, first_check_ms: int) -> bool:
        """OPEN: False if a watch is open for that id already."""
        return bool(self._open(keys=self.keys[:2], args=[e.confirmation.id, e.to_json(),
                                                         first_check_ms]))

    def _set_entry(self, wid: str, e: WatchEntry, *, owner: str, due_ms: int,
                   audit: AuditEntry | None = None) -> Write:
        """SET: replace the entry (``e``, whose owner is the next one) if ``owner`` holds it,
        due in ``due_ms``, appending ``audit`` with it."""
        return Write(int(self._set(keys=self.keys, args=[
            wid, owner, e.to_json(), due_ms, as_arg(audit), self.audit.keep_ms])))

    def _done_entry(self, wid: str, job: JobRef, *, owner: str,
                    audit: AuditEntry | None) -> Write:
        """DONE: forget the watch if ``owner`` holds it, dropping ``job``'s claim if this
        watch's confirmation holds it, appending ``audit``."""
        return Write(int(self._done(keys=[*self.keys, *self.claim_keys], args=[
            wid, owner, as_arg(audit), self.audit.keep_ms, job.key])))

    # -- opening: usually inside the owed reply's DONE (bot.flow.outcomes) ---------------------
    def entry(self, c: Confirmation, user: str, kind: str, since: float | None) -> WatchEntry:
        """A new watch: ``kind`` "accepted" or "unknown"; ``since`` when the stop was confirmed
        (epoch s), None when not known (recovery)."""
        span = self.span if kind == "accepted" else self.unknown_span
        return WatchEntry(c, user, kind, since, (since or time.time()) + span, span)

    @property
    def first_check_ms(self) -> int:
        return max(self.interval_ms, FIRST_CHECK_MS)

    def open(self, c: Confirmation, user: str, kind: str, since: float | None) -> bool:
        """Open a watch in its own round trip (when no owed reply carries it)."""
        return self._open_entry(self.entry(c, user, kind, since), self.first_check_ms)

    # -- checking: any replica -------------------------------------------------------------------
    def check_now(self, ref: JobRef) -> int:
        """An event said the job ended (SMN): make the watches of its stops that no replica
        holds due now, so the final state is seen within a tick, not at the next interval.
        How many were made due; RedisError propagates."""
        wids = [wid for wid, raw in self.redis.hgetall(self.keys[1]).items()
                if (e := WatchEntry.from_json(raw)).confirmation.ref == ref and not e.owner]
        return int(self._due_now(keys=self.keys[:2], args=wids)) if wids else 0

    def check_one(self, token: str) -> bool:
        """Check one due watch, and say what there is to say; False when none is due."""
        got = self.lease.claim(token, self.lease_ms)
        if not got:
            return False
        wid, e = got.id, WatchEntry.from_json(got.entry)
        if not e.say:
            e = self._decide(e)
            e = replace(e, audit=self._verified(e) if e.say else None)
            if not e.say:
                self._save(wid, token, e, "", self.interval_ms)
                return True
            if not self._save(wid, token, e, token, self.post_lease_ms):
                return True     # overtaken: the new owner decides again
        self._say(wid, token, e)
        return True

    def _decide(self, e: WatchEntry) -> WatchEntry:
        """``e`` after a look-up of the job: what to say (``say``, ``blocks``) and whether it
        ends (``end``: the request message's last line)."""
        c, user = e.confirmation, e.user
        found = self.modelarts.lookup(c.ref)
        now = time.time()
        e = replace(e, checks=e.checks + 1)
        late = now >= e.deadline
        if isinstance(found, Failure):
            e = replace(e, error=found.error_code)
            if not late:
                return e
            return replace(e, say=b.watch_deadline(c, user, None, e.span, found.error_code,
                                                 self.contact),
                           end=b.deadline_line(user, e.state, now), verdict="deadline")
        state = found.state
        e = replace(e, state=state)
        unknown = e.kind == "unknown"
        if found.final:
            stopped = state in STOPPED
            why = self._why(found)
            return replace(e, say=b.watch_final(c, state, stopped, e.since, now, unknown, why),
                           end=b.ended_line(user, state, now, stopped),
                           verdict="stopped" if stopped else "ended_on_its_own")
        if found.stopping and unknown:
            return replace(e, kind="accepted", span=self.span,
                           deadline=max(e.deadline, (e.since or now) + self.span),
                           say=b.watch_took_effect(c, state, self.span), verdict="took_effect")
        if late and unknown:
            say, blocks = b.watch_not_taken(c, user, state, e.span)
            return replace(e, say=say, blocks=blocks, end=b.not_taken_line(state, now),
                           verdict="not_taken_effect")
        if late:
            return replace(e, say=b.watch_deadline(c, user, state, e.span, contact=self.contact),
                           end=b.deadline_line(user, state, now), verdict="deadline")
        return e

    def _why(self, job) -> list:
        """The ended job's last events (one call, v2 only): none when it fails."""
        if job.ref.api != "v2":
            return []
        events = self.modelarts.events(job.ref)
        if isinstance(events, Failure):
            log.info("job events not read: %s", events.error_code, extra={"job": job.ref.key})
            return []
        return events

    def _say(self, wid: str, token: str, e: WatchEntry) -> None:
        """Post ``say``; on the last message, settle the request message and the alert first
        (edits: done again harmlessly when a post is retried)."""
        c = e.confirmation
        if e.end:
            self._settle(c, e.end)
        answer = self.slack.post(c.channel, e.say, e.blocks, thread_ts=c.thread_ts or c.ts or None)
        if not answer.ok:
            e = replace(e, tries=e.tries + 1)
            if e.tries >= MAX_TRIES:
                log.error("gave up posting a watch message after %d tries", MAX_TRIES,
                          extra={"confirmation": wid})
                self._finish(wid, token, e)
                return
            delay = retry_ms(answer, e.tries)
            log.warning("watch message refused (%s); trying again in %d ms",
                        answer.error, delay, extra={"confirmation": wid})
            self._save(wid, token, e, "", delay)
            return
        log.info("watch message posted", extra={"confirmation": wid, "state": e.state,
                                                 "final": bool(e.end)})
        # Posted: record it even through a Redis restart, or the message is posted again.
        if e.end:
            patient(lambda: self._finish(wid, token, e))
        else:
            said = replace(e, say="", blocks=None, tries=0, audit=None)
            patient(lambda: self._save(wid, token, said, "", self.interval_ms, e.audit))

    def _verified(self, e: WatchEntry) -> AuditEntry:
        """The audit entry for what the watch is about to say: outcome stopped,
        ended_on_its_own, took_effect, not_taken_effect or deadline."""
        return self.audit.entry("verified", e.confirmation, user=e.user, outcome=e.verdict,
                                state=e.state, error_code=e.error)

    def _finish(self, wid: str, token: str, e: WatchEntry) -> Write:
        got = self._done_entry(wid, e.confirmation.ref, owner=token, audit=e.audit)
        if got is Write.AUDIT_LOST:
            self.audit.lost("verified")
        return got

    def _save(self, wid: str, token: str, e: WatchEntry, owner: str, due_ms: int,
              audit: AuditEntry | None = None) -> bool:
        """SET ``e`` with ``owner`` as its next owner, as ``token``."""
        got = self._set_entry(wid, replace(e, owner=owner), owner=token, due_ms=due_ms,
                              audit=audit)
        if got is Write.AUDIT_LOST:
            self.audit.lost("verified")
        return bool(got)

    def _settle(self, c: Confirmation, line: str) -> None:
        if c.ts:
            self.slack.update(c.channel, c.ts, *b.settled(c, line))   # a failure is logged there
        if c.alert_ts and self.alert_final:
            self.alert_final(c, line)

    # -- the loop ----------------------------------------------------------------------------
    def start(self, workers: int = WORKERS) -> None:
        self._poller.start(min(1.0, self.interval_ms / 1000), workers)

    def stop(self, timeout: float = 10.0) -> None:
        self._poller.stop(timeout)
