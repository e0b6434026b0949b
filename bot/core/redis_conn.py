"""The bot's Redis client, from settings: one server, a Redis Cluster, or the primary that
Sentinels name, each with TLS (``rediss://``, REDIS_CA_FILE) and an ACL user (``user:password@``
in REDIS_URL).

Every topology gets the same short timeouts and one quick retry: a dead Redis must cost a user
seconds, not tens. The keys are Cluster-safe by construction (bot/core/keys.py).
"""

from __future__ import annotations

import functools
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
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


class ClusterClient(RedisCluster):
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
            return redis.Redis.from_url(settings.REDIS_URL, retry=quick_retry(),
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
    return sentinel.master_for(settings.REDIS_SENTINEL_MASTER or "", retry=quick_retry(),
                               health_check_interval=30, **node, **tls)


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
