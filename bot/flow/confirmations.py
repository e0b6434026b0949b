"""Pending stop confirmations in Redis: created once, consumed at most once, across replicas."""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import redis
from redis.exceptions import NoScriptError

from bot.keys import Keys
from bot.modelarts.refs import JobRef, parse_ref

# Consume a pending confirmation, atomically; on a confirm, owe its outcome reply in the same step.
# KEYS[1] pending record, KEYS[2] done marker, KEYS[3] owed-replies zset, KEYS[4] owed-replies
# hash (bot.flow.outcomes), only with ARGV[4]; all under the {flow} tag (bot.keys)
# ARGV[1] clicking user, ARGV[2] new state ("confirmed"|"cancelled"), ARGV[3] marker TTL seconds,
# ARGV[4] owner of the owed reply ("" = owe none), ARGV[5] the click's message ts,
# ARGV[6] the owner's lease ms, ARGV[7] confirmation id
# returns {"ok", record} (record deleted, marker set, reply owed) | {"not_requester", record}
#       (nothing changed) | {"handled", marker} | {"expired", ""}
CONSUME = """
local v = redis.call('GET', KEYS[1])
if not v then
  local d = redis.call('GET', KEYS[2])
  if d then return {'handled', d} end
  return {'expired', ''}
end
if cjson.decode(v)['requester'] ~= ARGV[1] then return {'not_requester', v} end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], cjson.encode({state=ARGV[2], by=ARGV[1]}), 'EX', tonumber(ARGV[3]))
if ARGV[4] and ARGV[4] ~= '' then
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  redis.call('HSET', KEYS[4], ARGV[7], cjson.encode({c=v, user=ARGV[1], owner=ARGV[4],
    stage='stopping', text='', tries=0, ts=ARGV[5]}))
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[6]), ARGV[7])
end
return {'ok', v}
"""

DONE_TTL = 7 * 24 * 3600  # how long "already handled" is remembered


class Result(StrEnum):
    OK = "ok"
    NOT_REQUESTER = "not_requester"
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

    def to_json(self) -> str:
        return json.dumps({**asdict(self), "ref": self.ref.key})

    @classmethod
    def from_json(cls, raw: str | bytes) -> Confirmation:
        data = json.loads(raw)
        return cls(**{**data, "ref": parse_ref(data["ref"])})


@dataclass(frozen=True)
class Consumed:
    result: Result
    confirmation: Confirmation | None = None
    handled_by: str | None = None
    handled_as: str | None = None
    fetched: dict[str, bytes | None] = field(default_factory=dict)  # ``also_get``'s values


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
    """Every call is one Redis round trip; RedisError propagates to the caller."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.ttl = ttl_seconds
        self._consume = client.register_script(CONSUME)

    def _keys(self, cid: str) -> list[str]:
        return [self.keys.pending(cid), self.keys.done(cid)]

    def create(self, confirmation: Confirmation) -> bool:
        """Store it for ``ttl`` seconds; False if that id exists already (SET NX EX)."""
        key = self._keys(confirmation.id)[0]
        return bool(self.redis.set(key, confirmation.to_json(), nx=True, ex=self.ttl))

    def discard(self, cid: str) -> None:
        self.redis.delete(self._keys(cid)[0])

    def consume(self, cid: str, user: str, state: str, also_get: Sequence[str] = (),
                owe: Owe | None = None) -> Consumed:
        """Consume atomically. ``also_get``: keys read in the same round trip (a pipeline), such
        as the usergroup cache the role re-check reads next; their values are in ``fetched``.
        ``owe``: open the owed outcome reply in the same step (see bot.flow.outcomes)."""
        if not cid or len(cid) > 64:
            return Consumed(Result.EXPIRED)
        keys, args = self._keys(cid), [user, state, max(DONE_TTL, self.ttl)]
        if owe:
            keys += owe.keys
            args += [owe.owner, owe.message_ts, owe.lease_ms, cid]
        if also_get:
            (kind, raw), fetched = self._consume_and_get(keys, args, list(also_get))
        else:
            (kind, raw), fetched = self._consume(keys=keys, args=args), {}
        result = Result(kind.decode() if isinstance(kind, bytes) else kind)
        if result is Result.EXPIRED:
            return Consumed(result, fetched=fetched)
        if result is Result.HANDLED:
            data = json.loads(raw)
            return Consumed(result, handled_by=data.get("by"), handled_as=data.get("state"),
                            fetched=fetched)
        return Consumed(result, Confirmation.from_json(raw), fetched=fetched)

    def _consume_and_get(self, keys: list[str], args: list, also: list[str]):
        """EVALSHA and MGET in one pipeline. Not through ``Script`` with ``client=pipe``: that
        adds a SCRIPT EXISTS round trip to every call. On NOSCRIPT nothing ran: load it, retry.
        A RedisCluster's pipeline refuses EVALSHA and MGET: there, two round trips."""
        if isinstance(self.redis, redis.RedisCluster):
            consumed = self._consume(keys=keys, args=args)
            return consumed, dict(zip(also, self.redis.mget(also), strict=True))
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._consume.sha, len(keys), *keys, *args)
                pipe.mget(also)
                consumed, values = pipe.execute()
        except NoScriptError:
            consumed, values = self._consume(keys=keys, args=args), self.redis.mget(also)
        return consumed, dict(zip(also, values, strict=True))


