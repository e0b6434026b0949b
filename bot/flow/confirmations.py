"""Pending stop confirmations in Redis: created once, consumed at most once, across replicas."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import redis
from redis.exceptions import NoScriptError

# Consume a pending confirmation, atomically.
# KEYS[1] pending record, KEYS[2] done marker (same hash slot: both carry {id})
# ARGV[1] clicking user, ARGV[2] new state ("confirmed"|"cancelled"), ARGV[3] marker TTL seconds
# returns {"ok", record} (record deleted, marker set) | {"not_requester", record} (nothing changed)
#       | {"handled", marker} | {"expired", ""}
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
return {'ok', v}
"""

# Fill in the request message's ts once it is posted (the record is stored before posting).
# KEYS[1] pending record; ARGV[1] message ts
# returns 1 if filled, 0 if the record is gone (consumed or expired); the TTL is kept
SET_TS = """
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local rec = cjson.decode(v)
rec['ts'] = ARGV[1]
if rec['thread_ts'] == '' then rec['thread_ts'] = ARGV[1] end
redis.call('SET', KEYS[1], cjson.encode(rec), 'KEEPTTL')
return 1
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

    It is stored before the request message is posted, so ``ts`` (and a ``thread_ts`` that
    defaults to it) may still be empty when a very fast click consumes it.
    """

    id: str
    requester: str
    channel: str
    ts: str
    thread_ts: str
    job_id: int
    version_id: int
    job_name: str
    version_name: str
    created_at: float
    alert_ts: str | None = None


@dataclass(frozen=True)
class Consumed:
    result: Result
    confirmation: Confirmation | None = None
    handled_by: str | None = None
    handled_as: str | None = None
    fetched: dict[str, bytes | None] = field(default_factory=dict)  # ``also_get``'s values


def new_id() -> str:
    return secrets.token_urlsafe(16)


class ConfirmationStore:
    """Every call is one Redis round trip; RedisError propagates to the caller."""

    def __init__(self, client: redis.Redis, prefix: str, ttl_seconds: int) -> None:
        self.redis = client
        self.prefix = prefix
        self.ttl = ttl_seconds
        self._consume = client.register_script(CONSUME)
        self._set_ts = client.register_script(SET_TS)

    def _keys(self, cid: str) -> list[str]:
        return [f"{self.prefix}confirm:{{{cid}}}", f"{self.prefix}confirm-done:{{{cid}}}"]

    def create(self, confirmation: Confirmation) -> bool:
        """Store it for ``ttl`` seconds; False if that id exists already (SET NX EX)."""
        key = self._keys(confirmation.id)[0]
        return bool(self.redis.set(key, json.dumps(asdict(confirmation)), nx=True, ex=self.ttl))

    def set_ts(self, cid: str, ts: str) -> bool:
        return bool(self._set_ts(keys=self._keys(cid)[:1], args=[ts]))

    def discard(self, cid: str) -> None:
        self.redis.delete(self._keys(cid)[0])

    def consume(self, cid: str, user: str, state: str, also_get: Sequence[str] = ()) -> Consumed:
        """Consume atomically. ``also_get``: keys read in the same round trip (a pipeline), such
        as the usergroup cache the role re-check reads next; their values are in ``fetched``."""
        if not cid or len(cid) > 64:
            return Consumed(Result.EXPIRED)
        keys, args = self._keys(cid), [user, state, max(DONE_TTL, self.ttl)]
        if also_get:
            (kind, raw), fetched = self._consume_and_get(keys, args, list(also_get))
        else:
            (kind, raw), fetched = self._consume(keys=keys, args=args), {}
        result = Result(kind.decode() if isinstance(kind, bytes) else kind)
        if result is Result.EXPIRED:
            return Consumed(result, fetched=fetched)
        data = json.loads(raw)
        if result is Result.HANDLED:
            return Consumed(result, handled_by=data.get("by"), handled_as=data.get("state"),
                            fetched=fetched)
        return Consumed(result, Confirmation(**data), fetched=fetched)

    def _consume_and_get(self, keys: list[str], args: list, also: list[str]):
        """EVALSHA and MGET in one pipeline. Not through ``Script`` with ``client=pipe``: that
        adds a SCRIPT EXISTS round trip to every call. On NOSCRIPT nothing ran: load it, retry."""
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                pipe.evalsha(self._consume.sha, len(keys), *keys, *args)
                pipe.mget(also)
                consumed, values = pipe.execute()
        except NoScriptError:
            consumed, values = self._consume(keys=keys, args=args), self.redis.mget(also)
        return consumed, dict(zip(also, values, strict=True))


def make_confirmation(**fields: object) -> Confirmation:
    fields.setdefault("id", new_id())
    fields.setdefault("created_at", time.time())
    return Confirmation(**fields)  # type: ignore[arg-type]
