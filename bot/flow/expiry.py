"""No stale buttons: a confirmation nobody clicked is edited "Expired" by the bot itself.

    CREATE (bot.flow.confirmations) ──▶ an expiring entry {c, owner, tries}, due
        EXPIRY_MARGIN_MS after the record's TTL ──▶ NOTE adds the request message's ts
    CONSUME / DISCARD ──▶ the entry goes in the same script: a confirmed, cancelled or refused
        request, or one whose button was clicked after the expiry (that click edits it), is never
        edited here
    due ──▶ any replica, every EVERY s: CLAIM (bot.flow.leases: it becomes the owner for LEASE_MS)
        ──▶ chat.update "Expired: nobody confirmed within 2 min. Nothing was stopped.", no
        buttons ──▶ DONE (owner only: forgotten, audited "expired" outcome "expired")
        │ Slack refused for a while (rate limit, network, 5xx): SET, due again after a backoff,
          at most MAX_TRIES times │ for good (message_not_found ...): DONE all the same

The claim makes one replica the editor of each entry: two replicas sweeping at once edit each
message once. The margin puts the claim after the record's own expiry (the same clock: Redis'),
so a Confirm at the last moment wins, and the click removes the entry before it falls due.

Crash windows: an owner dying after the edit and before DONE leaves the entry due again once its
lease runs out, so another replica makes the same edit again (harmless, the same text); a
request whose post was never noted (the replica died between the post and NOTE) has no ts: its
entry is forgotten unedited, and a click on it is answered "expired" (CONSUME) as before.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import redis

from bot.core.keys import Keys
from bot.core.outage import Outage
from bot.core.slack_out import Answer, SlackOut
from bot.flow import blocks as b
from bot.flow.audit import AUDIT_LUA, Audit, as_arg
from bot.flow.confirmations import Confirmation
from bot.flow.leases import MAX_TRIES, NOW_LUA, Lease, Write, patient, retry_ms
from bot.flow.poller import Poller

log = logging.getLogger(__name__)

EVERY = 2.0          # seconds between sweeps when nothing is due (the edit lands within ~3 s)
LEASE_MS = 30_000    # a chat.update (10 s timeout, its retries) fits in it
# Slack errors that a later try may not get: the edit is given up at once.
FOR_GOOD = frozenset({"message_not_found", "channel_not_found", "cant_update_message",
                      "edit_window_closed", "is_archived", "not_in_channel", "invalid_auth",
                      "account_inactive", "token_revoked", "missing_scope", "msg_too_long",
                      "invalid_blocks"})

# Put an entry back, due in ARGV[4] ms, released, for its owner only.
# KEYS[1] zset, KEYS[2] hash; ARGV[1] id, ARGV[2] owner, ARGV[3] new entry JSON
# returns 1 if written, 0 if the entry is gone or another owner holds it
SET = NOW_LUA + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw or cjson.decode(raw)['owner'] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[1])
return 1
"""

# Forget an entry, for its owner only, appending its audit entry.
# KEYS[1] zset, KEYS[2] hash, KEYS[3] audit stream; ARGV[1] id, ARGV[2] owner, ARGV[3] audit
# entry JSON ("" = none), ARGV[4] audit retention ms
# returns 1 if deleted, 2 if deleted but the audit entry was refused, 0 if gone or another owner's
DONE = AUDIT_LUA + """
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw or cjson.decode(raw)['owner'] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
if ARGV[3] ~= '' and not audit(KEYS[3], cjson.decode(ARGV[3]), ARGV[4]) then return 2 end
return 1
"""


class Expiry:
    """The sweeper: ``start()`` runs it on this replica (every replica runs one)."""

    def __init__(self, client: redis.Redis, prefix: str, slack: SlackOut, ttl_seconds: int, *,
                 audit: Audit, alerts=None, outage: Outage | None = None,
                 every: float = EVERY) -> None:
        """``slack`` must hand 429s back (no retries), so an edit fits in its lease. ``alerts``:
        the alert messages (bot.flow.stop.AlertHooks), whose pending note goes."""
        self.audit = audit
        self.keys = [*Keys(prefix).expiring(), audit.key]
        self.lease = Lease(client, self.keys)
        self.slack = slack
        self.ttl = ttl_seconds
        self.alerts = alerts
        self.every = every
        self._set = client.register_script(SET)
        self._done = client.register_script(DONE)
        self._poller = Poller("expiry", self.sweep_one, outage)

    def sweep_one(self, token: str) -> bool:
        """Edit one due confirmation's message as expired; False when none is due."""
        got = self.lease.claim(token, LEASE_MS)
        if not got:
            return False
        entry = json.loads(got.entry)
        c = Confirmation.from_json(entry["c"])
        ts = entry.get("ts") or ""
        if not ts:
            log.info("expired confirmation with no message to edit", extra={"confirmation": c.id})
            self._finish(got.id, token, c)
            return True
        c = replace(c, ts=ts, thread_ts=entry.get("thread_ts") or ts)
        answer = self.slack.update(c.channel, ts, *b.expired(c, self.ttl))
        tries = int(entry.get("tries") or 0) + 1
        if not answer.ok and answer.error not in FOR_GOOD and tries < MAX_TRIES:
            delay = retry_ms(answer, tries)
            log.warning("expired request not edited (%s); trying again in %d ms", answer.error,
                        delay, extra={"confirmation": c.id})
            self._set(keys=self.keys[:2], args=[got.id, token, json.dumps(
                {**entry, "owner": "", "tries": tries}), delay])
            return True
        self._edited(c, answer, tries)
        patient(lambda: self._finish(got.id, token, c))
        if c.alert_ts and self.alerts:
            self.alerts.requested(c, "")
        return True

    def _edited(self, c: Confirmation, answer: Answer, tries: int) -> None:
        if answer.ok:
            log.info("expired request edited", extra={"confirmation": c.id})
        else:
            log.error("gave up editing an expired request after %d tries: %s", tries,
                      answer.error, extra={"confirmation": c.id})

    def _finish(self, cid: str, token: str, c: Confirmation) -> Write:
        entry = self.audit.entry("expired", c, outcome="expired")
        got = Write(int(self._done(keys=self.keys, args=[cid, token, as_arg(entry),
                                                         self.audit.keep_ms])))
        if got is Write.AUDIT_LOST:
            self.audit.lost("expired")
        return got

    def start(self) -> None:
        self._poller.start(self.every)

    def stop(self, timeout: float = 10.0) -> None:
        self._poller.stop(timeout)
