"""Every Redis key the bot uses is named here, and nowhere else.

The rule, so that Redis Cluster works by construction: a key is ``{prefix}{<subsystem>}:<name>``,
and every key that a Lua script, a MULTI or a pipeline touches together belongs to one subsystem,
so they share a hash tag and a slot. redis-py's ``RedisCluster`` refuses a script whose keys span
slots; ``tests/test_redis_cluster.py`` runs the flows on a real 3-master cluster to prove it.

  {flow}    confirmations, the jobs' claims, owed replies, watches, the audit stream and the
            usergroup cache: the confirm's one script and pipeline touch all of them
  {alerts}  the alert queue: its scripts span channels
  {iam}     the shared IAM token and its lock

A new key is a new method on ``Keys`` in the subsystem its scripts share; never format a key
elsewhere. REDIS_KEY_PREFIX may not hold ``{`` or ``}`` (settings refuse it).
"""

from __future__ import annotations


class Keys:
    def __init__(self, prefix: str) -> None:
        if "{" in prefix or "}" in prefix:
            raise ValueError("the key prefix may not contain { or }")
        self.prefix = prefix
        self.flow = f"{prefix}{{flow}}:"
        self.alerts = f"{prefix}{{alerts}}:"
        self.iam = f"{prefix}{{iam}}:"

    # -- {flow} -----------------------------------------------------------------------------
    def pending(self, cid: str) -> str:
        """A confirmation waiting for its click (JSON), with the confirmation's TTL."""
        return f"{self.flow}confirm:{cid}"

    def done(self, cid: str) -> str:
        """How a consumed confirmation was handled, remembered for a week."""
        return f"{self.flow}confirm-done:{cid}"

    def owed(self) -> list[str]:
        """Outcome replies owed: the zset by due time, and the hash of entries."""
        return [f"{self.flow}owed", f"{self.flow}owed:rec"]

    def watches(self) -> list[str]:
        """Stops being followed to their end (bot.flow.watches): the zset by next check time,
        and the hash of entries."""
        return [f"{self.flow}watch", f"{self.flow}watch:rec"]

    def confirm_index(self) -> str:
        """Pending confirmations by expiry: a zset cid -> expiry (Redis ms), for a cheap count."""
        return f"{self.flow}confirm-index"

    def expiring(self) -> list[str]:
        """Confirmations waiting for a click, to be edited "Expired" once their time is out
        (bot.flow.expiry): the zset cid -> due (Redis ms), and the hash of leased entries."""
        return [f"{self.flow}expiring", f"{self.flow}expiring:rec"]

    def audit(self) -> str:
        """The audit stream (bot.flow.audit): one entry per decision, trimmed by id to the
        retention."""
        return f"{self.flow}audit"

    def claims(self) -> list[str]:
        """One open stop request per job (bot.flow.claims): the hash job key -> claim, and the
        zset job key -> until (Redis ms)."""
        return [f"{self.flow}claim", f"{self.flow}claim-index"]

    def home_dm(self, user: str) -> str:
        """The channel of a user's direct messages with the bot, from their last
        app_home_opened (bot.flow.home): where a Stop pressed on the Home tab asks to confirm."""
        return f"{self.flow}home-dm:{user}"

    def usergroup(self, group: str) -> str:
        """Cached members of a Slack usergroup."""
        return f"{self.flow}usergroup:{group}"

    # -- {alerts} ---------------------------------------------------------------------------
    def alert(self, *parts: str) -> str:
        """The alert queue's keys: see bot.alerts.queue for each part."""
        return self.alerts + ":".join(parts)

    # -- {iam} ------------------------------------------------------------------------------
    def iam_token(self, scope_hash: str) -> str:
        return f"{self.iam}token:{scope_hash}"
