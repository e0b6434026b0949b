"""Shared fixtures: a real Redis, and the stand-ins from tests/plugins."""

from __future__ import annotations

import os
import uuid

import pytest
import redis
from hypothesis import HealthCheck, settings

# The machines are shared and noisy: no per-example deadline, no "generation is slow" failure.
settings.register_profile("shared", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("shared")

pytest_plugins = ["tests.plugins.emulator", "tests.plugins.slack", "tests.plugins.alerts",
                  "tests.plugins.topologies", "tests.plugins.smn"]


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis the tests use; the test command starts one where none answers."""
    url = os.environ.get("TEST_REDIS_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    try:
        redis.Redis.from_url(url, socket_timeout=2).ping()
    except redis.RedisError as exc:
        pytest.exit(f"no Redis answers at {url} ({exc}); run the tests with `make test`", 2)
    return url


@pytest.fixture
def key_prefix(redis_url: str):
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=prefix + "*", count=500))
    if keys:
        client.delete(*keys)
    client.close()


@pytest.fixture
def redis_client(redis_url: str, key_prefix: str):
    client = redis.Redis.from_url(redis_url, socket_timeout=5, socket_connect_timeout=2)
    yield client
    client.close()


class OwnRedis:
    """A redis-server of the test's own on a free port, which the test may stop and start."""

    def __init__(self, tmp_path) -> None:
        from botdev.standin.local import free_port

        self.port = free_port()
        self.dir = tmp_path
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc = None

    def start(self) -> None:
        from botdev.standin.local import start_redis

        self.proc = start_redis(self.port, str(self.dir))

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def own_redis(tmp_path):
    import shutil

    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = OwnRedis(tmp_path)
    server.start()
    yield server
    server.stop()
