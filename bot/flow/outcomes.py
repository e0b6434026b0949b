"""Outcome replies owed, kept in Redis: every stop the bot may have sent gets exactly one reply in
its thread, even when the replica dies right after sending it, or Slack refuses for a while.

    confirm ──consume + OPEN, one script (bot.flow.confirmations)──▶ owed: stage "stopping",
        owner = this call, due = now + lease (the budget: confirm to outcome posted)
        ──▶ role re-check fails: DONE │ stop_version ──▶ [SET (owner only): due = now +
        POST_LEASE_MS, only when less than POST_LEASE_MS of the lease is left] ──▶
        chat.postMessage ──▶ accepted: DONE (owner only) │ refused (429, 5xx, network): SET owner
        "", stage "outcome", the reply text, due later
    recovery, a thread in every replica: CLAIM the oldest due entry (it becomes the owner) ──▶
        post its reply text, or "Outcome unknown" when the stop's answer was never known
        ──▶ DONE │ refused: due later, at most MAX_TRIES times. Recovery never calls ModelArts.
    DONE also opens the watch that follows the stop to its end (bot.flow.watches): the owner's
        (accepted or unknown outcome) kept in the entry, or an "unknown" one for an interrupted
        stop; so a replica dying anywhere between the stop and the reply still leaves a watch.

Keys (bot.core.keys: Keys.owed()): a zset  cid -> due (Redis ms)
                              a hash  cid -> JSON {c: record JSON, user, owner, stage, text,
                                                   tries, ts: the click's message ts}
An owner that was too slow (its entry claimed) posts nothing: the claimer posts. What remains is
Slack's: a reply it accepted but whose answer was lost is posted again (no idempotency key).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import redis
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.core.keys import Keys
from bot.flow import blocks as b
from bot.flow.audit import AUDIT_LUA, Audit
from bot.flow.confirmations import Confirmation, Owe
from bot.flow.poller import Poller

if TYPE_CHECKING:
    from bot.flow.watches import Watches

log = logging.getLogger(__name__)

POST_LEASE_MS = 30_000     # time one post may take (no 429 retries in the client: see below)
MAX_TRIES = 20             # then the reply is given up, with an error in the log
REDIS_PATIENCE = 15.0      # seconds an owner keeps trying Redis (a restart takes a few)
_NOW = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# Owe a reply: the stop is about to be sent.
# KEYS[1] zset, KEYS[2] hash; ARGV[1] cid, ARGV[2] entry JSON, ARGV[3] ms until due
# returns 1
OPEN = _NOW + """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
return 1
"""

# Change an entry, only for its owner.
# KEYS[1] zset, KEYS[2] hash; ARGV[1] cid, ARGV[2] owner, ARGV[3] new owner ("" = none),
# ARGV[4] stage ("" = keep), ARGV[5] text ("" = keep), ARGV[6] ms until due, ARGV[7] tries to add,
# ARGV[8] the watch to open once the reply is posted (bot.flow.watches entry JSON; "" = keep),
# ARGV[9] the audit entry its DONE appends (bot.flow.audit entry JSON; "" = keep)
# returns 1 if changed, 0 if the entry is gone or another owner holds it
SET = _NOW + """
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
DONE = _NOW + AUDIT_LUA + """
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

# Take the oldest due entry: its owner died, was too slow, or Slack refused it earlier. Also
# the watches' claim (bot.flow.watches): the same zset + hash of JSON entries with an owner.
# KEYS[1] zset, KEYS[2] hash; ARGV[1] new owner, ARGV[2] lease ms
# returns {cid, entry JSON} | nil when nothing is due
CLAIM = _NOW + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
if #due == 0 then return false end
local raw = redis.call('HGET', KEYS[2], due[1])
if not raw then
  redis.call('ZREM', KEYS[1], due[1])
  return false
end
local e = cjson.decode(raw)
e['owner'] = ARGV[1]
raw = cjson.encode(e)
redis.call('HSET', KEYS[2], due[1], raw)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), due[1])
return {due[1], raw}
"""


def patient(call: Callable[[], object], seconds: float = REDIS_PATIENCE) -> object:
    """``call()``, tried again on RedisError for ``seconds``; the last error propagates."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except redis.RedisError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def retry_ms(exc: Exception, tries: int) -> int:
    """Slack's Retry-After for a 429, else an exponential backoff (1 s .. 60 s)."""
    if isinstance(exc, SlackApiError) and exc.response.status_code == 429:
        value = (exc.response.headers or {}).get("Retry-After") or \
            (exc.response.headers or {}).get("retry-after")
        try:
            return int(float(value[0] if isinstance(value, list) else value) * 1000) + 1
        except (TypeError, ValueError):
            pass
    return min(60_000, 1000 * 2 ** min(tries, 6))


class OwedReplies:
    def __init__(self, client: redis.Redis, prefix: str, slack: WebClient,
                 budget_seconds: float, post_lease_seconds: float = POST_LEASE_MS / 1000,
                 watches: Watches | None = None, audit: Audit | None = None) -> None:
        """``budget_seconds``: how long a living replica may take from OPEN to its reply posted;
        after that, recovery in any replica takes the entry. ``slack`` must not retry 429s
        itself: a refused post is handed back (due after Retry-After), so a post never outlasts
        the lease it was started under. ``watches``: each stop is followed to its end, the watch
        opened by the DONE that records its reply (None: no watches). ``audit``: where that DONE
        appends the stop's audit entry (default: a 90-day bot.flow.audit.Audit)."""
        self.redis = client
        self.keys = Keys(prefix).owed()
        self.audit = audit or Audit(client, prefix)
        self._done_keys = [*self.keys, *Keys(prefix).watches(), self.audit.key]
        self.slack = slack
        self.budget_ms = int(budget_seconds * 1000)
        self.post_lease_ms = int(post_lease_seconds * 1000)
        self._open = client.register_script(OPEN)
        self._set = client.register_script(SET)
        self._done = client.register_script(DONE)
        self._claim = client.register_script(CLAIM)
        self.watches = watches
        self._poller = Poller("owed-replies", self.recover_one)

    # -- the owner: the replica that sends the stop ----------------------------------------------
    def owe(self, message_ts: str) -> Owe:
        """What the confirm's consume needs to open the owed reply in its own round trip."""
        return Owe(self.keys, uuid.uuid4().hex, message_ts, self.budget_ms, time.monotonic())

    def cancel(self, cid: str, owe: Owe, audit: str = "") -> None:
        """No stop will be sent (the role re-check failed): nothing is owed. ``audit``: the
        entry (bot.flow.audit JSON) that says why, appended by the same DONE."""
        try:
            self._finish(cid, owe.owner, audit=audit)
        except redis.RedisError:
            if audit:
                self.audit.lost("denied", "Redis unreachable")
            log.warning("could not drop an owed reply; recovery will post 'outcome unknown'",
                        extra={"confirmation": cid})

    def deliver(self, c: Confirmation, owe: Owe, text: str,
                follow: tuple[str, str] | None = None, audit: str = "") -> None:
        """Post the outcome the owner knows. If Redis or Slack is down, recovery posts later.
        ``follow``: (watch kind, confirming user): the watch to open once the reply is posted.
        ``audit``: the stop's audit entry (bot.flow.audit JSON), appended by the DONE of the reply.

        While at least POST_LEASE_MS of the lease is left, the entry is certainly still this
        owner's (recovery claims only once it is due), so it posts straight away; later, it
        first renews the lease in Redis (SET), and posts nothing if recovery took the entry."""
        elapsed_ms = (time.monotonic() - owe.started) * 1000
        watch = ""
        if follow and self.watches:   # since: the consume, that is the confirm click
            watch = self.watches.entry(c, follow[1], follow[0], time.time() - elapsed_ms / 1000)
        if elapsed_ms > owe.lease_ms - self.post_lease_ms:
            try:
                mine = patient(lambda: self._set(keys=self.keys, args=[
                    c.id, owe.owner, owe.owner, "outcome", text, self.post_lease_ms, 0, watch,
                    audit]))
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
              tries: int, stage: str = "outcome", watch: str = "", audit: str = "") -> bool:
        """Post ``text``; if Slack refuses, keep it owed (with ``stage``, ``watch`` and
        ``audit``), due after a backoff. Once posted, DONE opens ``watch`` and appends ``audit``."""
        try:
            self.slack.chat_postMessage(channel=channel, text=text, thread_ts=thread or None)
        except (SlackClientError, OSError) as exc:
            delay = retry_ms(exc, tries)
            log.warning("outcome reply refused (%s); trying again in %d ms",
                        type(exc).__name__, delay, extra={"confirmation": cid})
            try:
                patient(lambda: self._set(keys=self.keys, args=[
                    cid, owner, "", stage, text, delay, 1, watch, audit]))
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
        got = self._claim(keys=self.keys, args=[token, self.post_lease_ms])
        if not got:
            return False
        cid, entry = (v.decode() if isinstance(v, bytes) else v for v in got)
        e = json.loads(entry)
        c = Confirmation.from_json(e["c"])
        ts = e.get("ts") or ""
        c = replace(c, ts=c.ts or ts, thread_ts=c.thread_ts or ts)
        stage = e.get("stage") or "stopping"
        watch = e.get("watch") or ""
        if stage != "outcome" and self.watches:   # interrupted: settle it by the job's status
            watch = self.watches.entry(c, e.get("user") or c.requester, "unknown", None)
        audit = e.get("audit") or ("" if stage == "outcome" else self.audit.entry(
            "failed", c, user=e.get("user") or c.requester, outcome="interrupted"))
        if int(e.get("tries") or 0) >= MAX_TRIES:
            log.error("gave up posting an outcome reply after %d tries", MAX_TRIES,
                      extra={"confirmation": cid, "channel": c.channel})
            self._finish(cid, token, watch, audit)
            return True
        text = e.get("text") or b.interrupted_reply(c, watched=bool(watch))
        log.info("posting an owed outcome reply", extra={"confirmation": cid,
                                                         "stage": e.get("stage")})
        if self._post(cid, token, c.channel, c.thread_ts or c.ts, text, int(e.get("tries") or 0),
                      stage, watch, audit) and stage != "outcome" and c.ts:
            self._settle(c, e.get("user") or c.requester)
        return True

    def _finish(self, cid: str, owner: str, watch: str = "", audit: str = "") -> int:
        """DONE: forget the entry, open ``watch`` and append ``audit`` (if any), in one script;
        an audit entry it could not write is counted here."""
        watch = watch if self.watches else ""
        done = self._done(keys=self._done_keys, args=[
            cid, owner, watch, self.watches.first_check_ms if watch else 0, audit,
            self.audit.keep_ms])
        if done == 2:
            self.audit.lost("outcome")
        return done

    def _settle(self, c: Confirmation, user: str) -> None:
        line = f"Outcome unknown: check status. Confirmed by {b.mention(user)}."
        try:
            self.slack.chat_update(channel=c.channel, ts=c.ts, text=b.settled(c, line)[0],
                                   blocks=b.settled(c, line)[1])
        except (SlackClientError, OSError) as exc:
            log.warning("chat.update failed: %s", type(exc).__name__)

    def start(self, every: float = 1.0) -> None:
        self._poller.start(every)

    def stop(self, timeout: float = 10.0) -> None:
        self._poller.stop(timeout)
