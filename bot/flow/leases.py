"""Leased entries in Redis: the one mechanism under owed replies (bot.flow.outcomes) and watches
(bot.flow.watches), so that any replica finishes what another one started.

An entry is a hash field  id -> JSON with an "owner" ("" = none)  and a zset member  id -> due
(Redis ms). The module that keeps the entries opens, changes (SET) and forgets (DONE) them with its
own scripts, each owner-only; this module holds what they share:

    opened (owner = the replica at work, due = now + its lease) ──▶ the owner works on it
        ──▶ SET (owner only): new due, owner kept or released ("") │ DONE (owner only): forgotten
    due (its owner died, was too slow, or released it after a refusal) ──▶ CLAIM, any replica:
        the oldest due entry gets owner = the claimer, due = now + the claimer's lease
    an owner overtaken (its entry claimed) finds its SET / DONE refused (``Write.NOT_OWNER``) and
        does nothing more: the claimer carries on
    Slack refused a post: due again after ``retry_ms`` (Retry-After, or a backoff), at most
        MAX_TRIES times; Redis unreachable: an owner keeps trying for REDIS_PATIENCE (``patient``)

Crash windows: an owner dying between a side effect (a post) and its SET / DONE leaves the entry
due once the lease runs out, so the claimer does that side effect again; a lease shorter than the
work it covers lets two replicas do it at once (the owner-only writes keep one result).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import redis

from bot.core.slack_out import Answer

MAX_TRIES = 20             # refused posts, then the entry is given up, with an error in the log
REDIS_PATIENCE = 15.0      # seconds an owner keeps trying Redis (a restart takes a few)
NOW_LUA = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"


class Write(IntEnum):
    """What an owner-only script did (the scripts return these numbers)."""

    NOT_OWNER = 0    # the entry is gone or another owner holds it: nothing changed
    WRITTEN = 1
    AUDIT_LOST = 2   # written, but the audit entry riding on it was refused (bot.flow.audit)


@dataclass(frozen=True)
class Claimed:
    id: str
    entry: str       # its JSON, the claimer as its owner (re-encoded by the script's cjson)


class Lease:
    """The CLAIM of one zset + hash pair of leased entries."""

    # Take the oldest due entry, as ``owner``, for ``lease`` ms.
    # KEYS[1] zset, KEYS[2] hash; ARGV[1] new owner, ARGV[2] lease ms
    # returns {id, entry JSON} | nil when nothing is due (a zset member without an entry is
    # dropped)
    CLAIM = NOW_LUA + """
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

    def __init__(self, client: redis.Redis, keys: Sequence[str]) -> None:
        """``keys``: the zset and the hash (bot.core.keys, one hash tag)."""
        self.keys = list(keys[:2])
        self._claim = client.register_script(self.CLAIM)

    def claim(self, owner: str, lease_ms: int) -> Claimed | None:
        """The oldest due entry, now ``owner``'s for ``lease_ms``; None when none is due."""
        got = self._claim(keys=self.keys, args=[owner, lease_ms])
        if not got:
            return None
        cid, raw = (v.decode() if isinstance(v, bytes) else v for v in got)
        return Claimed(cid, raw)


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


def retry_ms(answer: Answer, tries: int) -> int:
    """Slack's Retry-After for a 429, else an exponential backoff (1 s .. 60 s)."""
    if answer.retry_after is not None:
        return int(answer.retry_after * 1000) + 1
    return min(60_000, 1000 * 2 ** min(tries, 6))
