"""Every stop followed to its end: a watch per stop, kept in Redis, that any replica continues.

    stop accepted or outcome unknown ──▶ the outcome reply posted ──▶ DONE of the owed reply opens
        the watch in the same script (bot.flow.outcomes), or recovery's DONE opens an "unknown"
        watch for an interrupted stop
    every replica, WORKERS threads: CLAIM the oldest due watch (a lease: it becomes the owner)
        ──▶ look the job up ──▶ nothing to say: SET, due after the interval, owner released
        │ something to say (final state, took effect, deadline): SET the text (owner only)
        ──▶ edit the request message and the alert (final only) ──▶ post ──▶ DONE (final) or
        SET the text cleared (took effect) │ Slack refused: SET, due after a backoff
    A failed look-up is retried at the next tick, never reported as final. Nothing is stopped.

Keys (bot.core.keys: Keys.watches()): a zset  id -> next check (Redis ms); id = the confirmation id
                                 a hash  id -> JSON {c, user, kind: accepted|unknown, since,
                                     deadline, span (epoch s), owner, say, blocks, end, tries,
                                     checks, state, error}
Status calls per watch: at most span / interval + 2 (a failed look-up counts too).

Crash windows that remain: a post Slack accepted whose answer was lost, or a replica dying
between a post and its DONE/SET, posts that message again (Slack has no idempotency key); Redis
down at that moment is waited for (REDIS_PATIENCE), and a restart that loses data loses watches. A
replica dying after the stop and before its owed reply's DONE leaves the owed reply, whose
recovery posts "outcome unknown" and opens an unknown watch: the stop is settled by status.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import redis
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.core.keys import Keys
from bot.flow import blocks as b
from bot.flow.audit import AUDIT_LUA, Audit
from bot.flow.confirmations import Confirmation
from bot.flow.outcomes import CLAIM, MAX_TRIES, patient, retry_ms
from bot.flow.poller import Poller
from bot.modelarts.models import Failure

log = logging.getLogger(__name__)

STOPPED = ("KILLED", "Terminated")   # the final states a stop leads to (v1, v2)
WORKERS = 2                          # threads per replica checking watches
FIRST_CHECK_MS = 1000                # at least this long after the outcome reply
_NOW = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# Open a watch, unless one is open for this id.
# KEYS[1] zset, KEYS[2] hash; ARGV[1] id, ARGV[2] entry JSON, ARGV[3] ms until the first check
# returns 1 if opened, 0 if it existed
OPEN = _NOW + """
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
SET = AUDIT_LUA + _NOW + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw or cjson.decode(raw)['owner'] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
if ARGV[5] ~= '' and not audit(KEYS[3], cjson.decode(ARGV[5]), ARGV[6]) then return 2 end
return 1
"""

# The watch has ended and its last message is posted: forget it, only for its owner, and append
# its audit entry (the verified final state).
# KEYS[1] zset, KEYS[2] hash, KEYS[3] audit stream; ARGV[1] id, ARGV[2] owner, ARGV[3] audit
# entry JSON ("" = none), ARGV[4] audit retention ms
# returns 1 if deleted, 2 if deleted but the audit entry was refused, 0 if gone or another owner
DONE = AUDIT_LUA + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw or cjson.decode(raw)['owner'] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[3] ~= '' and not audit(KEYS[3], cjson.decode(ARGV[3]), ARGV[4]) then return 2 end
return 1
"""

AlertFinal = Callable[[Confirmation, str], None]


class Watches:
    def __init__(self, client: redis.Redis, prefix: str, modelarts, slack: WebClient, *,
                 interval: float, span: float, unknown_span: float, lease_seconds: float,
                 post_lease_seconds: float = 30.0, alert_final: AlertFinal | None = None,
                 audit: Audit | None = None) -> None:
        """``slack`` must hand 429s back (no retries): a post must fit in its lease.
        ``lease_seconds``: a look-up may take this long before another replica takes over.
        ``audit``: where each verified state ("verified" entries) is appended, by the same
        script that records its message."""
        self.redis = client
        self.audit = audit or Audit(client, prefix)
        self.keys = [*Keys(prefix).watches(), self.audit.key]
        self.modelarts = modelarts
        self.slack = slack
        self.interval_ms = max(1, int(interval * 1000))
        self.span, self.unknown_span = span, unknown_span
        self.lease_ms = int(lease_seconds * 1000)
        self.post_lease_ms = int(post_lease_seconds * 1000)
        self.alert_final = alert_final
        self._open = client.register_script(OPEN)
        self._claim = client.register_script(CLAIM)
        self._set = client.register_script(SET)
        self._done = client.register_script(DONE)
        self._poller = Poller("watches", self.check_one)

    # -- opening: usually inside the owed reply's DONE (bot.flow.outcomes) ---------------------
    def entry(self, c: Confirmation, user: str, kind: str, since: float | None) -> str:
        """A new watch's JSON: ``kind`` "accepted" or "unknown"; ``since`` when the stop was
        confirmed (epoch s), None when not known (recovery)."""
        span = self.span if kind == "accepted" else self.unknown_span
        start = since or time.time()
        return json.dumps({"c": c.to_json(), "user": user, "kind": kind, "since": since,
                           "deadline": start + span, "span": span, "owner": "", "say": "",
                           "blocks": None, "end": "", "tries": 0, "checks": 0, "state": None,
                           "error": None})

    @property
    def first_check_ms(self) -> int:
        return max(self.interval_ms, FIRST_CHECK_MS)

    def open(self, c: Confirmation, user: str, kind: str, since: float | None) -> bool:
        """Open a watch in its own round trip (when no owed reply carries it)."""
        return bool(self._open(keys=self.keys, args=[c.id, self.entry(c, user, kind, since),
                                                     self.first_check_ms]))

    # -- checking: any replica -------------------------------------------------------------------
    def check_one(self, token: str) -> bool:
        """Check one due watch, and say what there is to say; False when none is due."""
        got = self._claim(keys=self.keys, args=[token, self.lease_ms])
        if not got:
            return False
        wid, raw = (v.decode() if isinstance(v, bytes) else v for v in got)
        e = json.loads(raw)
        c = Confirmation.from_json(e["c"])
        if not e.get("say"):
            self._decide(e, c)
            e["audit"] = self._verified(e, c) if e["say"] else ""
            if not e["say"]:
                self._save(wid, token, e, "", self.interval_ms)
                return True
            if not self._save(wid, token, e, token, self.post_lease_ms):
                return True     # overtaken: the new owner decides again
        self._say(wid, token, e, c)
        return True

    def _decide(self, e: dict, c: Confirmation) -> None:
        """Look the job up and set what to say (``say``, ``blocks``) and whether it ends (``end``:
        the request message's last line)."""
        found = self.modelarts.lookup(c.ref)
        now, user = time.time(), e["user"]
        e["checks"] = int(e.get("checks") or 0) + 1
        late = now >= float(e["deadline"])
        if isinstance(found, Failure):
            e["error"] = found.error_code
            if late:
                e["say"] = b.watch_deadline(c, user, None, e["span"], found.error_code)
                e["end"] = b.deadline_line(user, e.get("state"), now)
                e["verdict"] = "deadline"
            return
        state = e["state"] = found.state
        unknown = e["kind"] == "unknown"
        if found.final:
            stopped = state in STOPPED
            e["say"] = b.watch_final(c, state, stopped, e.get("since"), now, unknown)
            e["end"] = b.ended_line(user, state, now, stopped)
            e["verdict"] = "stopped" if stopped else "ended_on_its_own"
        elif found.stopping and unknown:
            e["kind"], e["span"] = "accepted", self.span
            e["deadline"] = max(float(e["deadline"]), (e.get("since") or now) + self.span)
            e["say"] = b.watch_took_effect(c, state, self.span)
            e["verdict"] = "took_effect"
        elif late and unknown:
            e["say"], e["blocks"] = b.watch_not_taken(c, user, state, e["span"])
            e["end"] = b.not_taken_line(state, now)
            e["verdict"] = "not_taken_effect"
        elif late:
            e["say"] = b.watch_deadline(c, user, state, e["span"])
            e["end"] = b.deadline_line(user, state, now)
            e["verdict"] = "deadline"

    def _say(self, wid: str, token: str, e: dict, c: Confirmation) -> None:
        """Post ``say``; on the last message, settle the request message and the alert first
        (edits: done again harmlessly when a post is retried)."""
        if e.get("end"):
            self._settle(c, e["end"])
        try:
            self.slack.chat_postMessage(channel=c.channel, text=e["say"], blocks=e.get("blocks"),
                                        thread_ts=c.thread_ts or c.ts or None)
        except (SlackClientError, OSError) as exc:
            e["tries"] = int(e.get("tries") or 0) + 1
            if e["tries"] >= MAX_TRIES:
                log.error("gave up posting a watch message after %d tries", MAX_TRIES,
                          extra={"confirmation": wid})
                self._finish(wid, token, e)
                return
            delay = retry_ms(exc, e["tries"])
            log.warning("watch message refused (%s); trying again in %d ms",
                        type(exc).__name__, delay, extra={"confirmation": wid})
            self._save(wid, token, e, "", delay)
            return
        log.info("watch message posted", extra={"confirmation": wid, "state": e.get("state"),
                                                 "final": bool(e.get("end"))})
        # Posted: record it even through a Redis restart, or the message is posted again.
        if e.get("end"):
            patient(lambda: self._finish(wid, token, e))
        else:
            audit, e["audit"] = e.get("audit") or "", ""
            e["say"], e["blocks"], e["tries"] = "", None, 0
            patient(lambda: self._save(wid, token, e, "", self.interval_ms, audit))

    def _verified(self, e: dict, c: Confirmation) -> str:
        """The audit entry for what the watch is about to say (bot.flow.audit entry JSON): outcome
        stopped, ended_on_its_own, took_effect, not_taken_effect or deadline."""
        return self.audit.entry("verified", c, user=e["user"], outcome=e.get("verdict"),
                                state=e.get("state"), error_code=e.get("error"))

    def _finish(self, wid: str, token: str, e: dict) -> int:
        got = int(self._done(keys=self.keys, args=[wid, token, e.get("audit") or "",
                                                   self.audit.keep_ms]))
        if got == 2:
            self.audit.lost("verified")
        return got

    def _save(self, wid: str, token: str, e: dict, owner: str, due_ms: int,
              audit: str = "") -> bool:
        e["owner"] = owner
        got = int(self._set(keys=self.keys, args=[wid, token, json.dumps(e), due_ms, audit,
                                                  self.audit.keep_ms]))
        if got == 2:
            self.audit.lost("verified")
        return bool(got)

    def _settle(self, c: Confirmation, line: str) -> None:
        if c.ts:
            try:
                self.slack.chat_update(channel=c.channel, ts=c.ts, text=b.settled(c, line)[0],
                                       blocks=b.settled(c, line)[1])
            except (SlackClientError, OSError) as exc:
                log.warning("chat.update failed: %s", type(exc).__name__)
        if c.alert_ts and self.alert_final:
            self.alert_final(c, line)

    # -- the loop ----------------------------------------------------------------------------
    def start(self, workers: int = WORKERS) -> None:
        self._poller.start(min(1.0, self.interval_ms / 1000), workers)

    def stop(self, timeout: float = 10.0) -> None:
        self._poller.stop(timeout)
