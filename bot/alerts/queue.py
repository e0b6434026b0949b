"""The alert queue in Redis: one list per channel, a sorted set of channels with work, a lease per
channel, and a "not before" time per channel. Every replica's dispatcher drains the same queue.

Keys, all from ``Keys.alert`` (bot/core/keys.py): ``{prefix}{alerts}:<part>``. The one ``{alerts}``
hash tag puts every key of the queue on one Redis Cluster slot, so each script below and each
MULTI may touch any of them (the scripts span channels and identities).
  q:{channel}          list of queued items (JSON), oldest first: the channel's order
  ready                zset channel -> earliest time (Redis ms) it may be worked on
  lease:{channel}      the dispatcher thread working on the channel (SET NX PX, token value)
  nb:{channel}         "not before" (Redis ms): Retry-After, or the pacing after a post
  dup:{identity}       dedupe window (hash: id of the first item, count, bump flag), EX window
  posted:{item id}     the ts Slack gave a posted item, written before the item leaves the queue
  msg:{channel}:{ts}   what an alert message shows (hash), kept RECORD_TTL from its last change
  queued               how many items all q:* hold together (the total cap is checked on it)
  last:{identity}      "{channel} {ts}" of the latest message for an alert identity, RECORD_TTL
  dead                 items Slack refused for good (channel_not_found...), newest last, capped
  once:{message id}    a message delivered at least once (SMN) was queued, for its window

Times come from Redis (``TIME``) inside scripts, so replicas with skewed clocks still agree on
when a channel may be called again.

Caps: a channel's list holds at most ``per_channel`` items and all lists together ``total``
(ALERT_QUEUE_PER_CHANNEL, ALERT_QUEUE_TOTAL), checked in the enqueue script, so two replicas
taking alerts at once cannot pass them. A body whose alerts do not fit is refused whole
(``Full``). ``queued`` is kept by the scripts that push and pop; items queued before it existed
are not in it, so it may count low until the queue first drains, when it is set to 0 again.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

import redis

from bot.alerts.blocks import Shown
from bot.alerts.parse import Alert
from bot.core.keys import Keys

# What reads a msg:{channel}:{ts} record: a click on the alert's Stop button (the job it was
# posted for, AlertMessages.ref), a duplicate's "seen N times" and a resolve (the dispatcher),
# and the stop's outcome shown on it (AlertMessages.show). An alert may resolve, or be clicked,
# days after it was posted (a weekend), so a week from its last change; docs/alerts.md says the
# button's value is used only after that.
RECORD_TTL = 7 * 24 * 3600
POSTED_TTL = 24 * 3600
DEAD_KEEP = 1000

_NOW = "local t = redis.call('TIME'); local now = t[1] * 1000 + math.floor(t[2] / 1000)\n"

# Accept a body's alerts, all or none, within the caps (a POST is all-or-nothing: a sender
# retries the whole body, so a partial accept would count its first alerts twice).
# KEYS[1] ready, KEYS[2] queued (counter of the items in every q:*), then for alert i = 0..n-1:
#   KEYS[3+2i] dup:{identity}, KEYS[4+2i] q:{channel}
# ARGV[1] dedupe window seconds, ARGV[2] cap per channel, ARGV[3] cap in total, then for alert i:
#   ARGV[4+5i] kind ("post"|"resolve"), ARGV[5+5i] item, ARGV[6+5i] bump item, ARGV[7+5i] item
#   id, ARGV[8+5i] channel
# Optional last: KEYS[3+2n] once:{message id} and ARGV[4+5n] its seconds: a message delivered
#   at least once (SMN) is queued once; a second delivery returns {"seen"}, changing nothing.
# returns {"full", "channel"|"total", channel (or ""), items queued now, items the body would
#   add, cap}, having changed nothing, when the items it would queue do not fit under a cap;
#   else, per alert, {"queued", 1, id} | {"duplicate", count, id of the first item}.
# An item counts when it is pushed: a new alert or a resolve. A duplicate only counts (HINCRBY)
# and is never refused; its bump ("seen N times") is pushed only while there is room, else the
# next duplicate pushes it (the count is kept meanwhile).
ENQUEUE = _NOW + """
local window, per, most = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local n = math.floor((#KEYS - 2) / 2)
local once = (#KEYS % 2 == 1) and KEYS[#KEYS] or nil
if once and redis.call('EXISTS', once) == 1 then return {'seen'} end
local open, adds, firsts, added = {}, {}, {}, 0
for i = 0, n - 1 do
  local dup, q = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  if open[dup] == nil then open[dup] = redis.call('EXISTS', dup) == 1 end
  local pushes = true
  if ARGV[4 + 5 * i] == 'resolve' then open[dup] = false
  elseif window > 0 then
    if open[dup] then pushes = false else open[dup] = true end
  end
  if pushes then
    if not adds[q] then adds[q] = 0; table.insert(firsts, i) end
    adds[q] = adds[q] + 1
    added = added + 1
  end
end
for _, i in ipairs(firsts) do
  local q = KEYS[4 + 2 * i]
  local has = redis.call('LLEN', q)
  if has + adds[q] > per then return {'full', 'channel', ARGV[8 + 5 * i], has, adds[q], per} end
end
local total = math.max(0, tonumber(redis.call('GET', KEYS[2]) or '0'))
if added > 0 and total + added > most then return {'full', 'total', '', total, added, most} end
local out = {}
for i = 0, n - 1 do
  local dup, q = KEYS[3 + 2 * i], KEYS[4 + 2 * i]
  local kind, id, channel = ARGV[4 + 5 * i], ARGV[7 + 5 * i], ARGV[8 + 5 * i]
  local status, count, first, push = 'queued', 1, id, ARGV[5 + 5 * i]
  if kind == 'resolve' then
    redis.call('DEL', dup)
  elseif window > 0 then
    if redis.call('EXISTS', dup) == 1 then
      status, push = 'duplicate', false
      count = redis.call('HINCRBY', dup, 'count', 1)
      first = redis.call('HGET', dup, 'id')
      local room = redis.call('LLEN', q) + (adds[q] or 0) < per and total + added < most
      if room and redis.call('HSETNX', dup, 'bump', 1) == 1 then push = ARGV[6 + 5 * i] end
    else
      redis.call('HSET', dup, 'id', id, 'count', 1, 'first_at', now)
      redis.call('EXPIRE', dup, window)
    end
  end
  if push then
    if status == 'queued' then adds[q] = adds[q] - 1; added = added - 1 end
    redis.call('RPUSH', KEYS[4 + 2 * i], push)
    total = redis.call('INCR', KEYS[2])
    redis.call('ZADD', KEYS[1], 'NX', now, channel)
  end
  table.insert(out, status); table.insert(out, count); table.insert(out, first)
end
if once then redis.call('SET', once, 1, 'EX', tonumber(ARGV[4 + 5 * n])) end
return out
"""

# Change fields of a message record, only if it still exists (an expired record is not made
# again without its alert, and never without a TTL), and keep it RECORD_TTL from now.
# KEYS[1] msg:{channel}:{ts}; ARGV[1] ttl seconds, ARGV[2..] field, value, field, value...
# returns 1 when the record was changed, 0 when there is none
MARK = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""

# Channels whose time has come.
# KEYS[1] ready; ARGV[1] how many
# returns {channels..., ms until the next channel is due (-1 when none)} as the last element
DUE = _NOW + """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if first[2] then wait = math.max(0, tonumber(first[2]) - now) end
table.insert(due, tostring(wait))
return due
"""

# Take a channel's head item under its lease.
# KEYS[1] lease, KEYS[2] nb, KEYS[3] q, KEYS[4] ready, KEYS[5] queued; ARGV[1] token,
# ARGV[2] lease ms, ARGV[3] channel
# returns {"busy", ""} another holder | {"wait", ms} not before | {"empty", ""} | {"item", raw}
# An empty queue and no channel left in ready: no item is queued anywhere, so the counter is set
# to 0 (it heals itself if items were ever removed by hand).
CLAIM = _NOW + """
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return {'busy', ''} end
local nb = tonumber(redis.call('GET', KEYS[2]) or '0')
if nb > now then
  redis.call('ZADD', KEYS[4], 'XX', nb, ARGV[3])
  if owner then redis.call('DEL', KEYS[1]) end
  return {'wait', tostring(nb - now)}
end
local item = redis.call('LINDEX', KEYS[3], 0)
if not item then
  redis.call('ZREM', KEYS[4], ARGV[3])
  if redis.call('ZCARD', KEYS[4]) == 0 then redis.call('SET', KEYS[5], 0) end
  if owner then redis.call('DEL', KEYS[1]) end
  return {'empty', ''}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
return {'item', item}
"""

# The head item is done (posted, updated or dropped): remove it, pace the channel, free the lease.
# KEYS[1] lease, KEYS[2] nb, KEYS[3] q, KEYS[4] ready, KEYS[5] queued
# ARGV[1] token, ARGV[2] raw item, ARGV[3] pacing ms (0: none), ARGV[4] channel
# returns the number of items left in the channel's queue
# The counter goes down with the item, never below 0, and is 0 once no channel has work.
FINISH = _NOW + """
if redis.call('LINDEX', KEYS[3], 0) == ARGV[2] then
  redis.call('LPOP', KEYS[3])
  if redis.call('DECR', KEYS[5]) < 0 then redis.call('SET', KEYS[5], 0) end
end
local pace = tonumber(ARGV[3])
if pace > 0 then
  local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
  if cur < now + pace then redis.call('SET', KEYS[2], now + pace, 'PX', pace) end
end
local left = redis.call('LLEN', KEYS[3])
if left == 0 then
  redis.call('ZREM', KEYS[4], ARGV[4])
  if redis.call('ZCARD', KEYS[4]) == 0 then redis.call('SET', KEYS[5], 0) end
else redis.call('ZADD', KEYS[4], now + pace, ARGV[4]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return left
"""

# Slack said wait (429 Retry-After) or failed for now: keep the item, call again no sooner.
# KEYS[1] lease, KEYS[2] nb, KEYS[3] ready; ARGV[1] token, ARGV[2] delay ms, ARGV[3] channel
# returns the Redis ms before which the channel will not be called
DEFER = _NOW + """
local later = now + tonumber(ARGV[2])
local cur = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur < later then redis.call('SET', KEYS[2], later, 'PX', tonumber(ARGV[2])) end
redis.call('ZADD', KEYS[3], math.max(cur, later), ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return math.max(cur, later)
"""


@dataclass(frozen=True)
class Accepted:
    status: str          # "queued" | "duplicate"
    id: str              # this item's id, or the first item's for a duplicate
    count: int


@dataclass(frozen=True)
class Full:
    """The body's alerts do not fit under a cap: nothing of the body was queued."""

    cap: str             # "channel" | "total"
    channel: str | None  # the channel whose cap it is (None for the total)
    queued: int          # items queued now, in that channel or in all
    adding: int          # items the body would have added there
    limit: int

    @property
    def never_fits(self) -> bool:
        """More than the cap in one body: sending it again cannot help."""
        return self.adding > self.limit

    @property
    def excess(self) -> int:
        return self.queued + self.adding - self.limit


@dataclass(frozen=True)
class Once:
    """A message that may be delivered more than once (SMN): its id, remembered ``seconds``."""

    id: str
    seconds: int


@dataclass(frozen=True)
class Seen:
    """``enqueue_all`` with a ``Once`` already queued: nothing was changed."""


@dataclass(frozen=True)
class Item:
    raw: str
    id: str
    kind: str            # "post" | "bump" | "resolve"
    identity: str
    alert: Alert | None

    @classmethod
    def load(cls, raw: str) -> Item:
        data = json.loads(raw)
        alert = Alert.from_dict(data["alert"]) if data.get("alert") else None
        return cls(raw, data["id"], data["kind"], data["identity"], alert)


def _item(kind: str, identity: str, alert: Alert | None) -> tuple[str, str]:
    item_id = uuid.uuid4().hex
    body = {"id": item_id, "kind": kind, "identity": identity,
            "alert": json.loads(alert.to_json()) if alert else None}
    return item_id, json.dumps(body, separators=(",", ":"))


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class AlertQueue:
    """Every method is a few Redis round trips; RedisError propagates to the caller. Works on a
    ``redis.Redis`` and a ``RedisCluster`` alike: every key shares the ``{alerts}`` slot."""

    def __init__(self, client: redis.Redis, prefix: str, dedupe_seconds: int, *,
                 per_channel: int = 200, total: int = 2000) -> None:
        self.redis = client
        self.keys = Keys(prefix)
        self.dedupe_seconds = dedupe_seconds
        self.per_channel = per_channel
        self.total = total
        self._enqueue = client.register_script(ENQUEUE)
        self._mark = client.register_script(MARK)
        self._due = client.register_script(DUE)
        self._claim = client.register_script(CLAIM)
        self._finish = client.register_script(FINISH)
        self._defer = client.register_script(DEFER)

    def key(self, *parts: str) -> str:
        return self.keys.alert(*parts)

    def _channel_keys(self, channel: str) -> list[str]:
        return [self.key("lease", channel), self.key("nb", channel), self.key("q", channel)]

    def _step_keys(self, channel: str) -> list[str]:
        return [*self._channel_keys(channel), self.key("ready"), self.key("queued")]

    # -- intake ------------------------------------------------------------------------------
    def enqueue(self, alert: Alert) -> Accepted | Full:
        got = self.enqueue_all([alert])
        return got if isinstance(got, Full) else got[0]

    def enqueue_all(self, alerts: list[Alert], once: Once | None = None,
                    ) -> list[Accepted] | Full | Seen:
        """Queue every alert, in order, or none of them (``Full``): one script call. ``once``:
        queue them only if that message was never queued before (else ``Seen``)."""
        keys = [self.key("ready"), self.key("queued")]
        args: list[str | int] = [self.dedupe_seconds, self.per_channel, self.total]
        for alert in alerts:
            kind = "resolve" if alert.resolved else "post"
            item_id, item = _item(kind, alert.identity, alert)
            _, bump = _item("bump", alert.identity, None)
            keys += [self.key("dup", alert.identity), self.key("q", alert.channel)]
            args += [kind, item, bump, item_id, alert.channel]
        if once:
            keys.append(self.key("once", once.id))
            args.append(once.seconds)
        got = [_text(v) if isinstance(v, bytes) else v for v in self._enqueue(keys=keys, args=args)]
        if got and got[0] == "seen":
            return Seen()
        if got and got[0] == "full":
            return Full(str(got[1]), str(got[2]) or None, int(got[3]), int(got[4]), int(got[5]))
        return [Accepted(str(got[n]), str(got[n + 2]), int(got[n + 1]))
                for n in range(0, len(got), 3)]

    # -- the dispatcher's steps ----------------------------------------------------------------
    def due(self, limit: int = 16) -> tuple[list[str], float | None]:
        """Channels that may be worked on now, and seconds until the next one is due."""
        got = [_text(v) or "" for v in self._due(keys=[self.key("ready")], args=[limit])]
        wait = int(got.pop())
        return got, None if wait < 0 else wait / 1000

    def claim(self, channel: str, token: str, lease_ms: int) -> tuple[str, str]:
        kind, value = self._claim(keys=self._step_keys(channel), args=[token, lease_ms, channel])
        return _text(kind) or "", _text(value) or ""

    def finish(self, channel: str, token: str, raw: str, pace_ms: int = 0) -> int:
        return int(self._finish(keys=self._step_keys(channel),
                                args=[token, raw, pace_ms, channel]))

    def defer(self, channel: str, token: str, delay_ms: int) -> None:
        lease, nb, _ = self._channel_keys(channel)
        self._defer(keys=[lease, nb, self.key("ready")], args=[token, delay_ms, channel])

    def bury(self, channel: str, token: str, item: Item, error: str) -> None:
        """Slack refused the item for good: keep it in ``dead`` for inspection, move on."""
        record = json.dumps({"channel": channel, "error": error, "item": json.loads(item.raw),
                             "at": time.time()})
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self.key("dead"), record).ltrim(self.key("dead"), -DEAD_KEEP, -1).execute()
        self.finish(channel, token, item.raw)

    # -- what was posted -----------------------------------------------------------------------
    def posted_ts(self, item_id: str) -> str | None:
        return _text(self.redis.get(self.key("posted", item_id)))

    def first_seen(self, identity: str, item_id: str) -> tuple[int, float | None]:
        """(count, first seen) for the item that opened the dedupe window; (1, None) otherwise."""
        got = self.redis.hmget(self.key("dup", identity), ["id", "count", "first_at"])
        if _text(got[0]) != item_id:
            return 1, None
        return int(got[1] or 1), int(got[2]) / 1000 if got[2] else None

    def record_post(self, item: Item, channel: str, ts: str, count: int,
                    first_at: float | None, alert: Alert | None = None) -> None:
        """Write what was posted in one transaction (MULTI: every key is in the {alerts} slot,
        which a ClusterPipeline with ``transaction=True`` requires), before the item leaves the
        queue."""
        msg = self.key("msg", channel, ts)
        alert = alert or item.alert    # ``alert``: as posted, after the dispatcher's look-up
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.key("posted", item.id), f"{channel} {ts}", ex=POSTED_TTL)
            pipe.hset(msg, mapping={"alert": alert.to_json() if alert else "{}",
                                    "count": count, "first_at": first_at or time.time()})
            pipe.expire(msg, RECORD_TTL)
            pipe.set(self.key("last", item.identity), f"{channel} {ts}", ex=RECORD_TTL)
            if alert and alert.ref:   # the newest alert about a job, per channel (``about``)
                pipe.set(self.key("job", channel, alert.ref.key), ts, ex=RECORD_TTL)
            pipe.execute()

    def about(self, channel: str, ref_key: str) -> str | None:
        """The ts of the newest alert message about the job ``ref_key`` in ``channel``."""
        return _text(self.redis.get(self.key("job", channel, ref_key)))

    def take_bump(self, identity: str) -> int | None:
        """Clear the bump flag (so later duplicates queue a new bump) and read the count."""
        with self.redis.pipeline(transaction=True) as pipe:
            _, count = pipe.hdel(self.key("dup", identity), "bump").hget(
                self.key("dup", identity), "count").execute()
        return int(count) if count else None

    def last(self, identity: str) -> tuple[str, str] | None:
        got = _text(self.redis.get(self.key("last", identity)))
        if not got:
            return None
        channel, ts = got.split(" ", 1)
        return channel, ts

    def message(self, channel: str, ts: str) -> tuple[Alert, Shown] | None:
        data = {_text(k): _text(v) for k, v in
                self.redis.hgetall(self.key("msg", channel, ts)).items()}
        if not data.get("alert") or data["alert"] == "{}":
            return None
        shown = Shown(int(data.get("count") or 1),
                      float(data["first_at"]) if data.get("first_at") else None,
                      data.get("outcome") or None,
                      float(data["resolved_at"]) if data.get("resolved_at") else None,
                      data.get("pending") or None)
        return Alert.from_json(data["alert"]), shown

    def mark(self, channel: str, ts: str, **fields: str | int | float) -> bool:
        """Set fields of a message record (count, outcome, resolved_at, pending) and keep it
        RECORD_TTL from now; False (and nothing written) when the record is gone."""
        pairs = [v for item in fields.items() for v in item]
        return bool(self._mark(keys=[self.key("msg", channel, ts)], args=[RECORD_TTL, *pairs]))

    # -- for people and tests ------------------------------------------------------------------
    def backlog(self) -> int:
        channels = [_text(c) or "" for c in self.redis.zrange(self.key("ready"), 0, -1)]
        with self.redis.pipeline(transaction=False) as pipe:
            for channel in channels:
                pipe.llen(self.key("q", channel))
            return sum(pipe.execute())

    def dead(self) -> list[dict]:
        return [json.loads(v) for v in self.redis.lrange(self.key("dead"), 0, -1)]
