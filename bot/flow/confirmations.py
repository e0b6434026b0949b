"""Pending stop confirmations in Redis: created once, consumed at most once, across replicas.

    CREATE ──▶ the record (SET NX EX ttl), the job's claim (bot.flow.claims), and an expiring
        entry (a leased entry, bot.flow.leases: Keys.expiring(), due at the expiry plus
        EXPIRY_MARGIN_MS) ──▶ the request posted: NOTE puts its ts on the entry
    CONSUME (confirm, approve, cancel; a click after the expiry) or DISCARD ──▶ the entry goes
        in the same script, so a decided request is never edited as expired
    │ a protected job's first confirm (AWAITING) keeps it, with confirmed_by
    nobody clicked: the entry falls due ──▶ the sweeper (bot.flow.expiry) on one replica edits
        the message "Expired: ..." and forgets it
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import redis

from bot.core.keys import Keys
from bot.core.records import known
from bot.flow.audit import AUDIT_LUA, Audit
from bot.flow.claims import CLAIM_LUA, Claim, Claims
from bot.modelarts.refs import JobRef, parse_ref

# Consume a pending confirmation, atomically; on a confirm, owe its outcome reply in the same
# step; keep the job's claim (bot.flow.claims) and audit the click (bot.flow.audit) in it too.
# KEYS[1] pending record, KEYS[2] done marker, KEYS[3] owed-replies zset, KEYS[4] owed-replies
# hash (bot.flow.outcomes: the entry it writes is an OwedEntry), only with ARGV[4], KEYS[5]
# confirmation index, KEYS[6] audit stream, KEYS[7] claims hash, KEYS[8] claims index, KEYS[9]
# expiring zset, KEYS[10] expiring hash (bot.flow.expiry: the entry goes with the record),
# KEYS[11..] keys to read with it (the usergroup cache the role re-check reads next); all under
# the {flow} tag (bot.core.keys)
# ARGV[1] clicking user, ARGV[2] new state ("confirmed"|"approved"|"cancelled"), ARGV[3] marker
# TTL seconds, ARGV[4] owner of the owed reply ("" = owe none), ARGV[5] the click's message ts,
# ARGV[6] the owner's lease ms, ARGV[7] confirmation id, ARGV[8] audit retention ms ("" = no
# audit), ARGV[9] the click's channel, ARGV[10] "1": the record's channel must be ARGV[9],
# ARGV[11] ms a "stopping" claim lasts
# returns {"ok", record, lost, {values of KEYS[9..]}} (record deleted, marker set, reply owed,
#       claim "stopping" or, cancelled, dropped)
#       | {"awaiting", record, lost}: a protected job's confirm: the record keeps its TTL and
#         gains confirmed_by, the claim is "approval"; nothing is owed (a second confirm: lost "")
#       | {"wrong_channel", record, lost} | {"not_requester", record, lost}
#       | {"self_approval", record, lost} | {"not_confirmed", record, ""} (all four: nothing
#         changed, the buttons still work where they were posted) | {"handled", marker}
#       | {"expired", "", lost}; lost is "1" when the audit entry (the state, "refused" or
#       "expired") could not be written. The channel is compared before the requester: a
#       button clicked elsewhere is refused whoever clicks it. "approved" is for anyone but the
#       requester, once the requester has confirmed; the caller checked the approver's role.
CONSUME = AUDIT_LUA + CLAIM_LUA + """
local function audited(f)
  if ARGV[8] == '' or audit(KEYS[6], f, ARGV[8]) then return '' end
  return '1'
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local v = redis.call('GET', KEYS[1])
if not v then
  local d = redis.call('GET', KEYS[2])
  if d then return {'handled', d} end
  redis.call('ZREM', KEYS[5], ARGV[7])
  redis.call('ZREM', KEYS[9], ARGV[7])
  redis.call('HDEL', KEYS[10], ARGV[7])
  return {'expired', '', audited({event='expired', outcome='expired', user=ARGV[1],
                                  channel=ARGV[9], confirmation=ARGV[7]})}
end
local c = cjson.decode(v)
if ARGV[10] == '1' and c['channel'] ~= ARGV[9] then
  return {'wrong_channel', v, audited(audit_confirmation(c, {event='refused',
                                      outcome='wrong_channel', user=ARGV[1]}))}
end
local confirmed_by = c['confirmed_by'] or ''
if ARGV[2] == 'approved' then
  if c['protected'] ~= true or confirmed_by == '' then return {'not_confirmed', v, ''} end
  if c['requester'] == ARGV[1] then
    return {'self_approval', v, audited(audit_confirmation(c, {event='refused',
                                        outcome='self_approval', user=ARGV[1]}))}
  end
elseif c['requester'] ~= ARGV[1] then
  return {'not_requester', v, audited(audit_confirmation(c, {event='refused',
                                      outcome='not_requester', user=ARGV[1]}))}
end
local job = c['ref']
if ARGV[2] == 'confirmed' and c['protected'] == true then
  if confirmed_by ~= '' then return {'awaiting', v, ''} end
  c['confirmed_by'] = ARGV[1]
  local nv = cjson.encode(c)
  redis.call('SET', KEYS[1], nv, 'KEEPTTL')
  local pe = redis.call('HGET', KEYS[10], ARGV[7])
  if pe then
    local e = cjson.decode(pe)
    e['c'] = nv
    redis.call('HSET', KEYS[10], ARGV[7], cjson.encode(e))
  end
  local held = claim_live(KEYS[7], KEYS[8], job, now)
  if held and held['id'] == c['id'] then
    held['state'], held['by'] = 'approval', ARGV[1]
    claim_put(KEYS[7], KEYS[8], job, held)
  end
  return {'awaiting', nv, audited(audit_confirmation(c, {event='confirmed',
                                  outcome='awaiting_approval', user=ARGV[1]}))}
end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[5], ARGV[7])
redis.call('ZREM', KEYS[9], ARGV[7])
redis.call('HDEL', KEYS[10], ARGV[7])
redis.call('SET', KEYS[2], cjson.encode({state=ARGV[2], by=ARGV[1]}), 'EX', tonumber(ARGV[3]))
if ARGV[2] == 'cancelled' then
  claim_drop(KEYS[7], KEYS[8], job, c['id'])
else
  local held = claim_live(KEYS[7], KEYS[8], job, now)
  if held and held['id'] == c['id'] then
    held['state'], held['by'], held['until'] = 'stopping', ARGV[1], now + tonumber(ARGV[11])
    claim_put(KEYS[7], KEYS[8], job, held)
  end
end
if ARGV[4] and ARGV[4] ~= '' then
  redis.call('HSET', KEYS[4], ARGV[7], cjson.encode({c=v, user=ARGV[1], owner=ARGV[4],
    stage='stopping', text='', tries=0, ts=ARGV[5]}))
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[7])
end
local also = {}
if #KEYS > 10 then also = redis.call('MGET', unpack(KEYS, 11)) end
local f = {event=ARGV[2], user=ARGV[1]}
if ARGV[2] == 'approved' then f['approver'] = ARGV[1] end
return {'ok', v, audited(audit_confirmation(c, f)), also}
"""

# Store a new confirmation (SET NX EX) and claim its job (bot.flow.claims), unless a live claim
# holds the job; index it by expiry (dropping expired ids), open its expiring entry (a leased
# entry {c, owner, tries}, due ARGV[7] ms after the expiry: bot.flow.expiry) and audit
# "requested" (bot.flow.audit) or, the job held, "refused already_requested", in one step.
# KEYS[1] pending record, KEYS[2] confirmation index, KEYS[3] audit stream, KEYS[4] claims hash,
# KEYS[5] claims index, KEYS[6] expiring zset, KEYS[7] expiring hash (bot.core.keys, {flow})
# ARGV[1] record JSON, ARGV[2] TTL seconds, ARGV[3] confirmation id, ARGV[4] audit retention ms
# ("" = no audit), ARGV[5] the job's key, ARGV[6] the new claim's JSON (its "until" set here),
# ARGV[7] ms after the expiry that the expiring entry falls due
# returns {1, lost} when stored, {0, ""} when that id exists, {2, lost, claim JSON} when another
# request holds the job (nothing stored); lost "1": the entry was not written
CREATE = AUDIT_LUA + CLAIM_LUA + """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local c = cjson.decode(ARGV[1])
claim_prune(KEYS[4], KEYS[5], now)
local held = claim_live(KEYS[4], KEYS[5], ARGV[5], now)
if held then
  local lost = ''
  if ARGV[4] ~= '' then
    local f = audit_confirmation(c, {event='refused', outcome='already_requested',
                                     user=c['requester']})
    f['confirmation'] = held['id']
    if not audit(KEYS[3], f, ARGV[4]) then lost = '1' end
  end
  return {2, lost, cjson.encode(held)}
end
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', tonumber(ARGV[2])) then return {0, ''} end
local claim = cjson.decode(ARGV[6])
claim['until'] = now + tonumber(ARGV[2]) * 1000
claim_put(KEYS[4], KEYS[5], ARGV[5], claim)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]) * 1000, ARGV[3])
redis.call('HSET', KEYS[7], ARGV[3], cjson.encode({c=ARGV[1], owner='', tries=0}))
redis.call('ZADD', KEYS[6], now + tonumber(ARGV[2]) * 1000 + tonumber(ARGV[7]), ARGV[3])
if ARGV[4] == '' then return {1, ''} end
if audit(KEYS[3], audit_confirmation(c, {event='requested', user=c['requester']}), ARGV[4]) then
  return {1, ''}
end
return {1, '1'}
"""

# Drop a confirmation whose request message could not be posted, with its job's claim and its
# expiring entry, and audit that.
# KEYS[1] pending record, KEYS[2] confirmation index, KEYS[3] audit stream, KEYS[4] claims
# hash, KEYS[5] claims index, KEYS[6] expiring zset, KEYS[7] expiring hash
# ARGV[1] confirmation id, ARGV[2] audit retention ms ("" = no audit), ARGV[3] Slack's error
# returns "1" when the audit entry could not be written, else ""
DISCARD = AUDIT_LUA + CLAIM_LUA + """
local v = redis.call('GET', KEYS[1])
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[6], ARGV[1])
redis.call('HDEL', KEYS[7], ARGV[1])
if not v then return '' end
local c = cjson.decode(v)
claim_drop(KEYS[4], KEYS[5], c['ref'], ARGV[1])
if ARGV[2] == '' then return '' end
if audit(KEYS[3], audit_confirmation(c, {event='failed', outcome='post_failed',
                                         user=c['requester'], error_code=ARGV[3]}), ARGV[2]) then
  return ''
end
return '1'
"""

# How many confirmations wait for a click; expired ids leave the index.
# KEYS[1] confirmation index; returns the count
PENDING = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""

DONE_TTL = 7 * 24 * 3600  # how long "already handled" is remembered
EXPIRY_MARGIN_MS = 1000   # the expiring entry falls due this long after the record expired


class Result(StrEnum):
    OK = "ok"
    AWAITING = "awaiting"              # a protected job's confirm: now it waits for a second person
    WRONG_CHANNEL = "wrong_channel"
    NOT_REQUESTER = "not_requester"
    SELF_APPROVAL = "self_approval"
    NOT_CONFIRMED = "not_confirmed"    # an Approve before the requester's confirm
    HANDLED = "handled"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Confirmation:
    """What a pending confirmation remembers. ``thread_ts`` is where outcome replies go.

    It is stored before the request message is posted, so no button exists without its state.
    The message's ``ts`` (and a ``thread_ts`` that defaults to it) is then unknown and stays
    empty: every click carries it, in Slack's signed payload, and the flow fills it from there.
    """

    id: str
    requester: str
    channel: str
    ts: str
    thread_ts: str
    ref: JobRef
    job_name: str
    created_at: float
    alert_ts: str | None = None
    reason: str = ""                   # after ` -- ` in the command, or the alert's summary
    protected: bool = False            # needs a second person (the roles file's protected:)
    approvers: tuple[str, ...] = ()    # roles whose holders may approve; () = any that allows
    confirmed_by: str = ""             # a protected job's requester, once confirmed
    link: str = ""                     # the job's console page (bot.modelarts.console), or ""

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ref": self.ref.key})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Confirmation:
        """Records made before a field existed take its default; fields of a newer version are
        left (bot.core.records)."""
        data = known(cls, json.loads(raw))
        return cls(**{**data, "ref": parse_ref(data["ref"]),
                      "approvers": tuple(data.get("approvers") or ())})


@dataclass(frozen=True)
class Consumed:
    result: Result
    confirmation: Confirmation | None = None
    handled_by: str | None = None
    handled_as: str | None = None
    fetched: dict[str, bytes | None] = field(default_factory=dict)  # ``also_get``'s values


@dataclass(frozen=True)
class Created:
    """What CREATE did: ``stored``, or nothing because ``held``, another request, holds the job."""

    stored: bool
    held: Claim | None = None


@dataclass(frozen=True)
class Owe:
    """An outcome reply to owe when a confirm consumes: made by OwedReplies.owe()."""

    keys: list[str]
    owner: str
    message_ts: str
    lease_ms: int
    started: float       # time.monotonic() just before the consume: the lease began after it


def new_id() -> str:
    return secrets.token_urlsafe(16)


class ConfirmationStore:
    """Every call is one Redis round trip; RedisError propagates to the caller. Each step is
    audited in its own script (``audit``: bot.flow.audit, made by the factory)."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int, audit: Audit,
                 hold_seconds: float = 3600.0) -> None:
        """``hold_seconds``: how long a confirmed stop keeps its job's claim at most (its watch
        drops it sooner, at the end: bot.flow.claims)."""
        self.redis = client
        self.keys = Keys(prefix)
        self.ttl = ttl_seconds
        self.hold_ms = int(hold_seconds * 1000)
        self.audit = audit
        self.claims = Claims(client, prefix)
        self._consume = client.register_script(CONSUME)
        self._create = client.register_script(CREATE)
        self._discard = client.register_script(DISCARD)
        self._pending = client.register_script(PENDING)

    def _keys(self, cid: str) -> list[str]:
        return [self.keys.pending(cid), self.keys.done(cid)]

    def create(self, c: Confirmation) -> Created:
        """Store it for ``ttl`` seconds and claim its job (audited "requested"), unless another
        request holds the job (``held``: audited "refused") or that id exists already."""
        keys = [self.keys.pending(c.id), self.keys.confirm_index(), self.audit.key,
                *self.claims.keys, *self.keys.expiring()]
        claim = Claim.new_json(c.id, c.requester, c.channel, c.created_at, 0)
        got = self._create(keys=keys, args=[c.to_json(), self.ttl, c.id, self.audit.keep_ms,
                                            c.ref.key, claim, EXPIRY_MARGIN_MS])
        code, lost = int(got[0]), got[1]
        if lost:
            self.audit.lost("requested" if code == 1 else "refused")
        if code == 2:
            return Created(False, Claim.from_json(got[2]))
        return Created(code == 1)

    def discard(self, cid: str, error: str = "") -> None:
        """Drop a confirmation whose request could not be posted, and its claim (audited
        "failed")."""
        keys = [self.keys.pending(cid), self.keys.confirm_index(), self.audit.key,
                *self.claims.keys, *self.keys.expiring()]
        if self._discard(keys=keys, args=[cid, self.audit.keep_ms, error]):
            self.audit.lost("failed")

    def pending(self) -> int:
        """Confirmations waiting for a click (a gauge, bot.app.metrics_sample): one round trip."""
        return int(self._pending(keys=[self.keys.confirm_index()]))

    def peek(self, cid: str) -> Confirmation | None:
        """The pending record, read only (an Approve checks the approver's role first)."""
        if not cid or len(cid) > 64:
            return None
        raw = self.redis.get(self.keys.pending(cid))
        return Confirmation.from_json(raw) if raw else None

    def consume(self, cid: str, user: str, state: str, also_get: Sequence[str] = (),
                owe: Owe | None = None, channel: str | None = None) -> Consumed:
        """Consume atomically (``state`` "confirmed", "approved" or "cancelled"; a protected
        job's confirm is AWAITING and consumes nothing). ``also_get``: {flow} keys read by the
        same script, such as the
        usergroup cache the role re-check reads next; their values (on OK) are in ``fetched``.
        ``owe``: open the owed outcome reply in the same step (see bot.flow.outcomes).
        ``channel``: where the click came from. The record's channel must be it, compared in
        the script: another one is WRONG_CHANNEL and nothing is consumed or owed. None (no
        click: a test, a tool) compares nothing."""
        if not cid or len(cid) > 64:
            return Consumed(Result.EXPIRED)
        keys = [*self._keys(cid), *(owe.keys if owe else self.keys.owed()),
                self.keys.confirm_index(), self.audit.key, *self.claims.keys,
                *self.keys.expiring()]
        args = [user, state, max(DONE_TTL, self.ttl), *(
            (owe.owner, owe.message_ts, owe.lease_ms) if owe else ("", "", 0)), cid,
            self.audit.keep_ms, channel or "", "" if channel is None else "1", self.hold_ms]
        got = self._consume(keys=[*keys, *also_get], args=args)
        kind, raw, lost, values = (*got, "", [])[:4]
        fetched = dict(zip(also_get, values, strict=True)) if values else {}
        result = Result(kind.decode() if isinstance(kind, bytes) else kind)
        if lost:
            self.audit.lost(state if result is Result.OK else result.value)
        if result is Result.EXPIRED:
            return Consumed(result, fetched=fetched)
        if result is Result.HANDLED:
            data = json.loads(raw)
            return Consumed(result, handled_by=data.get("by"), handled_as=data.get("state"),
                            fetched=fetched)
        return Consumed(result, Confirmation.from_json(raw), fetched=fetched)



