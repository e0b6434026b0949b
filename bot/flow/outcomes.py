"""Outcome replies owed, kept in Redis: every stop the bot may have sent gets exactly one reply in
its thread, even when the replica dies right after sending it, or Slack refuses for a while.

    confirm ──consume, which opens the entry in its own script (bot.flow.confirmations)──▶
        owed: stage "stopping", owner = this call, due = now + lease (the budget: confirm to
        outcome posted)
        ──▶ role re-check fails: DONE │ stop_version ──▶ [SET (owner only): due = now +
        POST_LEASE_MS, only when less than POST_LEASE_MS of the lease is left] ──▶
        chat.postMessage ──▶ accepted: DONE (owner only) │ refused (429, 5xx, network): SET owner
        "", stage "outcome", the reply text, due later
    recovery, a thread in every replica: CLAIM the oldest due entry (the lease, bot.flow.leases:
        it becomes the owner) ──▶ post its reply text, or "Outcome unknown" when the stop's
        answer was never known ──▶ DONE │ refused: due later, at most MAX_TRIES times
        (bot.flow.leases). Recovery never calls ModelArts.
    DONE also opens the watch that follows the stop to its end (bot.flow.watches): the owner's
        (accepted or unknown outcome) kept in the entry, or an "unknown" one for an interrupted
        stop; so a replica dying anywhere between the stop and the reply still leaves a watch.

Keys (bot.core.keys: Keys.owed()): a zset  cid -> due (Redis ms)
                              a hash  cid -> JSON {c: record JSON, user, owner, stage, text,
                                                   tries, ts: the click's message ts, watch:
                                                   watch JSON, audit: audit entry JSON (both
                                                   once SET carries them)}: ``OwedEntry``
An owner that was too slow (its entry claimed) posts nothing: the claimer posts. What remains is
Slack's: a reply it accepted but whose answer was lost is posted again (no idempotency key).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, replace

import redis

from bot.core.keys import Keys
from bot.core.outage import Outage
from bot.core.slack_out import SlackOut
from bot.flow import blocks as b
from bot.flow.audit import AUDIT_LUA, Audit, AuditEntry, as_arg
from bot.flow.confirmations import Confirmation, Owe
from bot.flow.leases import MAX_TRIES, NOW_LUA, Lease, Write, patient, retry_ms
from bot.flow.poller import Poller
from bot.flow.watches import WatchEntry, Watches

log = logging.getLogger(__name__)

POST_LEASE_MS = 30_000     # time one post may take (no 429 retries in the client: see below)

# Change an entry, only for its owner.
# KEYS[1] zset, KEYS[2] hash; ARGV[1] cid, ARGV[2] owner, ARGV[3] new owner ("" = none),
# ARGV[4] stage ("" = keep), ARGV[5] text ("" = keep), ARGV[6] ms until due, ARGV[7] tries to add,
# ARGV[8] the watch to open once the reply is posted (bot.flow.watches entry JSON; "" = keep),
# ARGV[9] the audit entry its DONE appends (bot.flow.audit entry JSON; "" = keep)
# returns 1 if changed, 0 if the entry is gone or another owner holds it
SET = NOW_LUA + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return 0 end
local e = cjson.decode(raw)
if e['owner'] ~= ARGV[2] then return 0 end
e['owner'] = ARGV[3]
if ARGV[4] ~= '' then e['stage'] = ARGV[4] end
if ARGV[5] ~= '' then e['text'] = ARGV[5] end
if ARGV[8] and ARGV[8] ~= '' then e['watch'] = ARGV[8] end
if ARGV[9] and ARGV[9] ~= '' then e['audit'] = ARGV[9] end
e['tries'] = (tonumber(e['tries']) or 0) + tonumber(ARGV[7])
redis.call('HSET', KEYS[2], ARGV[1], cjson.encode(e))
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[6]), ARGV[1])
return 1
"""

# The reply landed (or was given up): forget the entry, only for its owner, and open the watch
# that follows the stop (bot.flow.watches), unless one is open already; and append the stop's
# audit entry (bot.flow.audit).
# KEYS[1] zset, KEYS[2] hash; KEYS[3] watches zset, KEYS[4] watches hash (only with ARGV[3]),
# KEYS[5] audit stream (only with ARGV[5])
# ARGV[1] cid, ARGV[2] owner, ARGV[3] watch entry JSON ("" = none), ARGV[4] ms until its check,
# ARGV[5] audit entry JSON ("" = none), ARGV[6] audit retention ms
# returns 1 if deleted, 2 if deleted but the audit entry could not be written, 0 if gone or
# another owner holds it (then no watch is opened and no entry appended)
DONE = NOW_LUA + AUDIT_LUA + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw or cjson.decode(raw)['owner'] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[3] and ARGV[3] ~= '' and redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[3]) == 1 then
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[1])
end
if ARGV[5] and ARGV[5] ~= '' and not audit(KEYS[5], cjson.decode(ARGV[5]), ARGV[6]) then
  return 2
end
return 1
"""


@dataclass(frozen=True)
class OwedEntry:
    """An owed reply, as CONSUME opens it (bot.flow.confirmations) and SET changes it; read
    back only (after a CLAIM): the scripts write it."""

    confirmation: Confirmation   # its ts and thread_ts filled from ``ts`` when empty
    user: str                    # who confirmed the stop
    owner: str                   # the lease (bot.flow.leases): "" = none
    stage: str                   # "stopping" (the stop's answer not known) | "outcome"
    text: str                    # the reply to post ("" until known)
    tries: int                   # refused posts
    ts: str                      # the click's message ts
    watch: WatchEntry | None     # the watch to open once the reply is posted
    audit: AuditEntry | None     # the entry DONE appends

    @classmethod
    def from_json(cls, raw: str | bytes) -> OwedEntry:
        e = json.loads(raw)
        c = Confirmation.from_json(e["c"])
        ts = e.get("ts") or ""
        watch = e.get("watch")
        return cls(replace(c, ts=c.ts or ts, thread_ts=c.thread_ts or ts),
                   e.get("user") or c.requester, e.get("owner") or "",
                   e.get("stage") or "stopping", e.get("text") or "", int(e.get("tries") or 0),
                   ts, WatchEntry.from_json(watch) if watch else None,
                   AuditEntry.from_json(e.get("audit")))


class OwedReplies:
    def __init__(self, client: redis.Redis, prefix: str, slack: SlackOut,
                 budget_seconds: float, post_lease_seconds: float = POST_LEASE_MS / 1000,
                 watches: Watches | None = None, *, audit: Audit,
                 outage: Outage | None = None) -> None:
        """``budget_seconds``: how long a living replica may take from the consume that opens the
        entry (CONSUME, bot.flow.confirmations) to its reply posted;
        after that, recovery in any replica takes the entry. ``slack`` must not retry 429s
        itself: a refused post is handed back (due after Retry-After), so a post never outlasts
        the lease it was started under. ``watches``: each stop is followed to its end, the watch
        opened by the DONE that records its reply (None: no watches). ``audit``: where that DONE
        appends the stop's audit entry. ``outage``: the bot's shared one (bot.core.outage)."""
        self.redis = client
        self.keys = Keys(prefix).owed()
        self.lease = Lease(client, self.keys)
        self.audit = audit
        self._done_keys = [*self.keys, *Keys(prefix).watches(), self.audit.key]
        self.slack = slack
        self.budget_ms = int(budget_seconds * 1000)
        self.post_lease_ms = int(post_lease_seconds * 1000)
        self._set = client.register_script(SET)
        self._done = client.register_script(DONE)
        self.watches = watches
        self._poller = Poller("owed-replies", self.recover_one, outage)

    # -- the scripts: one typed call each -------------------------------------------------------
    def _set_entry(self, cid: str, *, owner: str, new_owner: str, due_ms: int, stage: str = "",
                   text: str = "", add_tries: int = 0, watch: WatchEntry | None = None,
                   audit: AuditEntry | None = None) -> bool:
        """SET: if ``owner`` holds the entry, hand it to ``new_owner`` ("" = none), due in
        ``due_ms``; ``stage``, ``text``, ``watch`` and ``audit`` replace the entry's unless
        empty; False if the entry is gone or another owner holds it."""
        return bool(self._set(keys=self.keys, args=[
            cid, owner, new_owner, stage, text, due_ms, add_tries,
            watch.to_json() if watch else "", as_arg(audit)]))

    def _done_entry(self, cid: str, *, owner: str, watch: WatchEntry | None,
                    audit: AuditEntry | None) -> Write:
        """DONE: if ``owner`` holds the entry, forget it, open ``watch`` (first checked after
        the watches' first_check_ms) and append ``audit``."""
        watch = watch if self.watches else None
        return Write(int(self._done(keys=self._done_keys, args=[
            cid, owner, watch.to_json() if watch else "",
            self.watches.first_check_ms if watch else 0, as_arg(audit), self.audit.keep_ms])))

    # -- the owner: the replica that sends the stop ----------------------------------------------
    def owe(self, message_ts: str) -> Owe:
        """What the confirm's consume needs to open the owed reply in its own round trip."""
        return Owe(self.keys, uuid.uuid4().hex, message_ts, self.budget_ms, time.monotonic())

    def cancel(self, cid: str, owe: Owe, audit: AuditEntry | None = None) -> None:
        """No stop will be sent (the role re-check failed): nothing is owed. ``audit``: the
        entry that says why, appended by the same DONE."""
        try:
            self._finish(cid, owe.owner, audit=audit)
        except redis.RedisError:
            if audit:
                self.audit.lost("denied", "Redis unreachable")
            log.warning("could not drop an owed reply; recovery will post 'outcome unknown'",
                        extra={"confirmation": cid})

    def deliver(self, c: Confirmation, owe: Owe, text: str,
                follow: tuple[str, str] | None = None, audit: AuditEntry | None = None) -> None:
        """Post the outcome the owner knows. If Redis or Slack is down, recovery posts later.
        ``follow``: (watch kind, confirming user): the watch to open once the reply is posted.
        ``audit``: the stop's audit entry, appended by the DONE of the reply.

        While at least POST_LEASE_MS of the lease is left, the entry is certainly still this
        owner's (recovery claims only once it is due), so it posts straight away; later, it
        first renews the lease in Redis (SET), and posts nothing if recovery took the entry."""
        elapsed_ms = (time.monotonic() - owe.started) * 1000
        watch = None
        if follow and self.watches:   # since: the consume, that is the confirm click
            watch = self.watches.entry(c, follow[1], follow[0], time.time() - elapsed_ms / 1000)
        if elapsed_ms > owe.lease_ms - self.post_lease_ms:
            try:
                mine = patient(lambda: self._set_entry(
                    c.id, owner=owe.owner, new_owner=owe.owner, stage="outcome", text=text,
                    due_ms=self.post_lease_ms, watch=watch, audit=audit))
            except redis.RedisError:
                log.warning("Redis unreachable: the outcome reply is left to recovery",
                            extra={"confirmation": c.id})
                if audit:
                    self.audit.lost("outcome", "Redis unreachable")
                return
            if not mine:
                log.info("the outcome reply was taken over by recovery",
                         extra={"confirmation": c.id})
                if audit:   # recovery knows no outcome: this replica records it
                    self.audit.append(audit)
                return
        self._post(c.id, owe.owner, c.channel, c.thread_ts or c.ts, text, tries=0, watch=watch,
                   audit=audit)

    def _post(self, cid: str, owner: str, channel: str, thread: str, text: str,
              tries: int, stage: str = "outcome", watch: WatchEntry | None = None,
              audit: AuditEntry | None = None) -> bool:
        """Post ``text``; if Slack refuses, keep it owed (with ``stage``, ``watch`` and
        ``audit``), due after a backoff. Once posted, DONE opens ``watch`` and appends ``audit``."""
        answer = self.slack.post(channel, text, thread_ts=thread or None)
        if not answer.ok:
            delay = retry_ms(answer, tries)
            log.warning("outcome reply refused (%s); trying again in %d ms",
                        answer.error, delay, extra={"confirmation": cid})
            try:
                patient(lambda: self._set_entry(
                    cid, owner=owner, new_owner="", stage=stage, text=text, due_ms=delay,
                    add_tries=1, watch=watch, audit=audit))
            except redis.RedisError:
                pass  # its lease runs out and recovery takes it
            return False
        try:
            if not patient(lambda: self._finish(cid, owner, watch, audit)) and audit:
                self.audit.append(audit)   # recovery took the entry: record the outcome here
        except redis.RedisError:
            log.error("posted an outcome reply but could not record it; it may be posted again",
                      extra={"confirmation": cid})
            if audit:
                self.audit.lost("outcome", "Redis unreachable")
        return True

    # -- recovery: any replica ------------------------------------------------------------------
    def recover_one(self, token: str) -> bool:
        """Post one owed reply that is due; False when none is."""
        got = self.lease.claim(token, self.post_lease_ms)
        if not got:
            return False
        cid, e = got.id, OwedEntry.from_json(got.entry)
        c = e.confirmation
        watch = e.watch
        if e.stage != "outcome" and self.watches:   # interrupted: settle it by the job's status
            watch = self.watches.entry(c, e.user, "unknown", None)
        audit = e.audit or (None if e.stage == "outcome" else self.audit.entry(
            "failed", c, user=e.user, outcome="interrupted"))
        if e.tries >= MAX_TRIES:
            log.error("gave up posting an outcome reply after %d tries", MAX_TRIES,
                      extra={"confirmation": cid, "channel": c.channel})
            self._finish(cid, token, watch, audit)
            return True
        text = e.text or b.interrupted_reply(c, watched=bool(watch))
        log.info("posting an owed outcome reply", extra={"confirmation": cid, "stage": e.stage})
        if self._post(cid, token, c.channel, c.thread_ts or c.ts, text, e.tries, e.stage, watch,
                      audit) and e.stage != "outcome" and c.ts:
            self._settle(c, e.user)
        return True

    def _finish(self, cid: str, owner: str, watch: WatchEntry | None = None,
                audit: AuditEntry | None = None) -> Write:
        """DONE; an audit entry it could not write is counted here."""
        done = self._done_entry(cid, owner=owner, watch=watch, audit=audit)
        if done is Write.AUDIT_LOST:
            self.audit.lost("outcome")
        return done

    def _settle(self, c: Confirmation, user: str) -> None:
        line = f"Outcome unknown: check status. Confirmed by {b.mention(user)}."
        self.slack.update(c.channel, c.ts, *b.settled(c, line))   # a failure is logged there

    def start(self, every: float = 1.0) -> None:
        self._poller.start(every)

    def stop(self, timeout: float = 10.0) -> None:
        self._poller.stop(timeout)
