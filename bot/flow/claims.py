"""One open stop request per job: the job's claim, kept by the scripts that change a request.

    CREATE of a confirmation (bot.flow.confirmations): no live claim for the job ──▶ claim
        "pending" until the confirmation expires; a live claim ──▶ nothing stored, the caller is
        told who asked, when and where (``Claim``)
    the request message posted ──▶ NOTE: the claim learns its message (for the link), and so
        does the confirmation's expiring entry (bot.flow.expiry: the message to edit)
    CONSUME: cancelled ──▶ dropped │ confirmed (protected job) ──▶ "approval", same expiry
        │ confirmed or approved ──▶ "stopping" for HOLD (the stop, its reply and its watch)
    DISCARD (the request could not be posted), a refused stop (RELEASE), the watch's DONE (the
        final state, or its deadline: bot.flow.watches) ──▶ dropped
    a claim past its ``until`` counts as none, and the next claim of any job prunes it

Every change is in the script that changes the request, so a claim never outlives its request
by more than its ``until``, and two requests for one job, on any replicas, give one confirmation.
Only the claim's own confirmation drops it (``id``): a late RELEASE cannot free a newer request.

Keys (bot.core.keys, {flow}): a hash  job key (``JobRef.key``) -> claim JSON (``Claim``)
                              a zset  job key -> until (Redis ms), for pruning
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis

from bot.core.keys import Keys
from bot.modelarts.refs import JobRef

HOLD_MARGIN = 60   # seconds a "stopping" claim outlives the watch's longest span

# Lua functions for a script that keeps claims (prepend it; ``now`` is Redis ms, the caller's).
# claim_live(hash, index, job, now): the live claim of ``job`` (a table), or nil; an expired one
#   is deleted
# claim_put(hash, index, job, c): store claim ``c`` (its ``until`` included)
# claim_drop(hash, index, job, id): delete the claim of ``job`` if confirmation ``id`` holds it
# claim_prune(hash, index, now): delete up to 50 expired claims
CLAIM_LUA = """
local function claim_live(hash, index, job, now)
  local raw = redis.call('HGET', hash, job)
  if not raw then return nil end
  local c = cjson.decode(raw)
  if tonumber(c['until']) > now then return c end
  redis.call('HDEL', hash, job)
  redis.call('ZREM', index, job)
  return nil
end
local function claim_put(hash, index, job, c)
  redis.call('HSET', hash, job, cjson.encode(c))
  redis.call('ZADD', index, c['until'], job)
end
local function claim_drop(hash, index, job, id)
  local raw = redis.call('HGET', hash, job)
  if raw and cjson.decode(raw)['id'] == id then
    redis.call('HDEL', hash, job)
    redis.call('ZREM', index, job)
  end
end
local function claim_prune(hash, index, now)
  local old = redis.call('ZRANGEBYSCORE', index, '-inf', now, 'LIMIT', 0, 50)
  if #old > 0 then
    redis.call('HDEL', hash, unpack(old))
    redis.call('ZREM', index, unpack(old))
  end
end
"""

# The request message is posted: remember where, on the confirmation's expiring entry (if it is
# still there) and on the job's claim (if this confirmation still holds it).
# KEYS[1] hash, KEYS[2] index, KEYS[3] expiring hash (Keys.expiring()); ARGV[1] job key,
# ARGV[2] confirmation id, ARGV[3] message ts, ARGV[4] thread ts. Returns 1 if the claim noted
# it, 0 if the claim is gone or another's.
NOTE = CLAIM_LUA + """
local pe = redis.call('HGET', KEYS[3], ARGV[2])
if pe then
  local e = cjson.decode(pe)
  e['ts'], e['thread_ts'] = ARGV[3], ARGV[4]
  redis.call('HSET', KEYS[3], ARGV[2], cjson.encode(e))
end
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw then return 0 end
local c = cjson.decode(raw)
if c['id'] ~= ARGV[2] then return 0 end
c['ts'], c['thread_ts'] = ARGV[3], ARGV[4]
claim_put(KEYS[1], KEYS[2], ARGV[1], c)
return 1
"""

# Drop the claim of a job, if this confirmation holds it (a refused stop: the job still runs).
# KEYS[1] hash, KEYS[2] index; ARGV[1] job key, ARGV[2] confirmation id. Returns 0.
RELEASE = CLAIM_LUA + """
claim_drop(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
return 0
"""


@dataclass(frozen=True)
class Claim:
    """Who holds a job's stop request: the claim's JSON, as the scripts write it."""

    id: str                 # the confirmation
    requester: str
    channel: str
    at: float               # when it was requested (epoch s)
    state: str              # "pending" | "approval" | "stopping"
    ts: str = ""            # the request message, once posted
    thread_ts: str = ""
    by: str = ""            # who confirmed (approval, stopping) or approved (stopping)

    @classmethod
    def from_json(cls, raw: str | bytes) -> Claim:
        d = json.loads(raw)
        return cls(d["id"], d["requester"], d["channel"], float(d["at"]), d["state"],
                   d.get("ts") or "", d.get("thread_ts") or "", d.get("by") or "")

    @staticmethod
    def new_json(cid: str, requester: str, channel: str, at: float, until_ms: int) -> str:
        """A new "pending" claim, for CREATE's ARGV."""
        return json.dumps({"id": cid, "requester": requester, "channel": channel, "at": at,
                           "state": "pending", "until": until_ms})


class Claims:
    """The claims outside the confirmation's own scripts: one round trip each, RedisError
    propagates."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.redis = client
        self.keys = Keys(prefix).claims()
        self.expiring = Keys(prefix).expiring()[1]
        self._note = client.register_script(NOTE)
        self._release = client.register_script(RELEASE)

    def note(self, ref: JobRef, cid: str, ts: str, thread_ts: str) -> bool:
        return bool(self._note(keys=[*self.keys, self.expiring],
                               args=[ref.key, cid, ts, thread_ts]))

    def release(self, ref: JobRef, cid: str) -> None:
        self._release(keys=self.keys, args=[ref.key, cid])

    def live(self, now: float) -> dict[str, tuple[Claim, float]]:
        """Every live claim: job key -> (claim, until in epoch s). One HGETALL of the hash,
        O(open requests of all users): it holds only requests still open (each goes with its
        request, an expired one by the next claim's prune), so tens, not thousands. For the
        Home tab (bot.flow.home), which filters by requester."""
        out = {}
        for job, raw in self.redis.hgetall(self.keys[0]).items():
            data = json.loads(raw)
            until = float(data["until"]) / 1000
            if until > now:
                key = job.decode() if isinstance(job, bytes) else job
                out[key] = (Claim.from_json(raw), until)
        return out

    def get(self, ref: JobRef, now: float) -> Claim | None:
        """The job's live claim (``now``: epoch s, this process's clock), or None."""
        raw = self.redis.hget(self.keys[0], ref.key)
        if raw is None or json.loads(raw)["until"] <= now * 1000:
            return None
        return Claim.from_json(raw)
