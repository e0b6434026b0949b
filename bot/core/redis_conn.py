"""The bot's Redis client, from settings: one server, a Redis Cluster, or the primary that
Sentinels name, each with TLS (``rediss://``, REDIS_CA_FILE) and an ACL user (``user:password@``
in REDIS_URL).

Every topology gets the same short timeouts and one quick retry: a dead Redis must cost a user
seconds, not tens. The keys are Cluster-safe by construction (bot/core/keys.py).

Each client remembers the Lua scripts registered on it (``registered``), so that ``/readyz`` can
ask Redis whether it holds them all (``ensure_scripts``). ``where`` names the server for a log
line or a probe's answer: host and port only, never the user or password of REDIS_URL.
"""

from __future__ import annotations

import functools
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.connection import parse_url
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from bot.core.settings import Settings, sentinel_addresses

Client = redis.Redis | RedisCluster

TIMEOUTS: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 1}


def quick_retry() -> Retry:
    """One retry after 50-200 ms: enough for a dropped connection or a failover's new primary."""
    return Retry(ExponentialBackoff(cap=0.2, base=0.05), 1)


UNREACHABLE = "Redis Cluster cannot be connected"


def _unreachable_is_connection_error(call):
    """RedisCluster says "no node answers" with RedisClusterException, which is no RedisError:
    raise the ConnectionError the other topologies raise, so that the flows' ``except RedisError``
    tells the user. Any other RedisClusterException (keys in two slots: a bug) stays as it is."""
    @functools.wraps(call)
    def wrapped(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        except RedisClusterException as exc:
            if isinstance(exc, redis.RedisError) or UNREACHABLE not in str(exc):
                raise
            raise redis.ConnectionError(UNREACHABLE) from exc
    return wrapped


class RemembersScripts:
    """A client mixin that keeps every script registered on it, by sha (``registered``)."""

    def register_script(self, script):
        got = super().register_script(script)
        self.__dict__.setdefault("bot_scripts", {})[got.sha] = got
        return got


class Client1(RemembersScripts, redis.Redis):
    """One server (or the primary that Sentinels name)."""


def registered(client: object) -> list[Script]:
    """The scripts registered on ``client`` (none for a client not made here, e.g. a test's)."""
    return list(getattr(client, "bot_scripts", {}).values())


def ensure_scripts(client: object) -> int:
    """Check (SCRIPT EXISTS, one round trip; on a Cluster, every primary) that Redis holds every
    script registered on ``client``, and load (SCRIPT LOAD) those it lost, say to a restart or a
    failover: redis-py would load one on its first NOSCRIPT anyway, but a server that refuses
    scripts (an ACL without @scripting, Lua disabled) shows here, not in a user's click. Returns
    how many were loaded; RedisError propagates."""
    scripts = registered(client)
    if not scripts:
        return 0
    held = client.script_exists(*[s.sha for s in scripts])
    missing = [s for s, ok in zip(scripts, held, strict=True) if not ok]
    for script in missing:
        client.script_load(script.script)
    return len(missing)


def host_port(url: str) -> str:
    """``host:port`` of a redis:// or rediss:// URL (the socket path of unix://), without the
    user or password."""
    try:
        parts = urlsplit(url)
        if parts.scheme == "unix":
            return parts.path
        host = parts.hostname or "localhost"
        port = parts.port or 6379
    except ValueError:
        return "REDIS_URL's host"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def where(settings: Settings) -> str:
    """The Redis the bot uses, for a log line or a probe's answer (no secret in it)."""
    match topology(settings):
        case "cluster":
            return f"cluster via {host_port(settings.REDIS_URL)}"
        case "sentinel":
            nodes = ",".join(f"{h}:{p}" for h, p in sentinel_addresses(settings.REDIS_SENTINELS
                                                                        or ""))
            return f"sentinel master {settings.REDIS_SENTINEL_MASTER} via {nodes}"
        case _:
            return host_port(settings.REDIS_URL)


class ClusterClient(RemembersScripts, RedisCluster):
    """RedisCluster whose unreachable cluster is a ``redis.ConnectionError``, in commands,
    scripts and pipelines alike."""

    __init__ = _unreachable_is_connection_error(RedisCluster.__init__)
    execute_command = _unreachable_is_connection_error(RedisCluster.execute_command)

    def pipeline(self, transaction=None, shard_hint=None):
        pipe = super().pipeline(transaction, shard_hint)
        pipe.execute = _unreachable_is_connection_error(pipe.execute)
        return pipe


def topology(settings: Settings) -> str:
    if settings.REDIS_CLUSTER:
        return "cluster"
    return "sentinel" if settings.REDIS_SENTINELS else "standalone"


def connect(settings: Settings) -> Client:
    """The client for REDIS_URL's topology. A Cluster client asks a start-up node for the slot
    map here, so it raises redis.ConnectionError when none answers; the others connect on first
    use."""
    tls = {"ssl_ca_certs": settings.REDIS_CA_FILE} if settings.REDIS_CA_FILE else {}
    match topology(settings):
        case "cluster":
            return ClusterClient.from_url(settings.REDIS_URL, retry=quick_retry(),
                                          health_check_interval=30, **TIMEOUTS, **tls)
        case "sentinel":
            return _sentinel_master(settings, tls)
        case _:
            return Client1.from_url(settings.REDIS_URL, retry=quick_retry(),
                                    health_check_interval=30, **TIMEOUTS, **tls)


def _sentinel_master(settings: Settings, tls: dict[str, Any]) -> redis.Redis:
    """REDIS_URL gives the primary's user, password, database and TLS (its host is not used);
    the Sentinels are asked with the same TLS and REDIS_SENTINEL_PASSWORD."""
    url = parse_url(settings.REDIS_URL)
    if url.pop("connection_class", None) is redis.SSLConnection:
        tls = {**tls, "ssl": True}
    node = {k: v for k, v in url.items() if k not in ("host", "port", "path")}
    secret = settings.REDIS_SENTINEL_PASSWORD
    asking = {**TIMEOUTS, **tls, "retry": quick_retry(),
              "password": secret.get_secret_value() if secret else None}
    sentinel = Sentinel(sentinel_addresses(settings.REDIS_SENTINELS or ""),
                        sentinel_kwargs=asking, **TIMEOUTS)
    return sentinel.master_for(settings.REDIS_SENTINEL_MASTER or "", redis_class=Client1,
                               retry=quick_retry(), health_check_interval=30, **node, **tls)


def describe(client: Client) -> str:
    """Which topology ``client`` reached, for doctor; asks Redis, so it raises like a command."""
    if isinstance(client, RedisCluster):
        client.ping(target_nodes=RedisCluster.PRIMARIES)
        return f"cluster with {len(client.get_primaries())} masters"
    client.ping()
    pool = client.connection_pool
    if isinstance(pool, SentinelConnectionPool):
        host, port = pool.get_master_address()
        return f"sentinel master {pool.service_name} at {host}:{port}"
    return "standalone"
