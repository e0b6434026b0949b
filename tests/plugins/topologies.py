"""Fixtures for Redis as production runs it (botdev/standin/topologies.py): a TLS server with an
ACL user, a 3-master Cluster, a primary + replica behind Sentinels. Each is started once per
session (tests keep apart by their key prefix) and skipped, saying why, only where
``redis-server`` or ``redis-cli`` is absent."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from botdev.standin.topologies import (
    Cluster,
    Procs,
    Sentineled,
    TlsRedis,
    start_cluster,
    start_sentinel,
    start_tls,
)


def _need(*programs: str) -> None:
    for program in programs:
        if not shutil.which(program):
            pytest.skip(f"{program} is not installed: the Redis topology tests need it")


# -- fixtures -------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def tls_redis(tmp_path_factory) -> Iterator[TlsRedis]:
    """A TLS-only redis-server with an ACL user (the default user is off)."""
    _need("redis-server")
    procs = Procs(tmp_path_factory.mktemp("redis-tls"))
    try:
        yield start_tls(procs)
    finally:
        procs.close()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory) -> Iterator[Cluster]:
    """A 3-master Redis Cluster (no replicas)."""
    _need("redis-server", "redis-cli")
    procs = Procs(tmp_path_factory.mktemp("redis-cluster"))
    try:
        yield start_cluster(procs)
    finally:
        procs.close()


@pytest.fixture(scope="session")
def redis_sentinel(tmp_path_factory) -> Iterator[Sentineled]:
    """A primary and a replica watched by two Sentinels (quorum 1), master name ``modelarts``."""
    _need("redis-server")
    procs = Procs(tmp_path_factory.mktemp("redis-sentinel"))
    try:
        yield start_sentinel(procs)
    finally:
        procs.close()
