"""/healthz and /readyz over real HTTP against a redis-server of the test's own: ready only when
Redis answers and holds the bot's scripts; a one-line reason, without a secret, when not."""

from __future__ import annotations

import pytest
import redis
import requests

from bot.app.serve import application
from bot.app.socket_mode import side_wsgi
from bot.app.web import routes
from bot.core import redis_conn
from tests.plugins.slack import BotServer

PASSWORD = "redis-pw-6e1f0b93c2"  # noqa: S105 - distinctive, so leaks can be grepped


@pytest.fixture
def served(make_bot):
    """A bot served as ``serve`` composes it (bot.app.serve.application)."""
    def make(wrap=application, **overrides) -> BotServer:
        return make_bot(wrap=wrap, **overrides)
    return make


def get(server: BotServer, path: str) -> requests.Response:
    return server.http.get(server.url + path, timeout=15)


class TestReadyz:
    def test_ready_when_redis_answers_and_holds_every_script(self, served, own_redis):
        server = served(REDIS_URL=own_redis.url)
        shas = [s.sha for s in redis_conn.registered(server.bot.redis)]
        assert len(shas) >= 10   # the stores' scripts, registered as the bot was built
        resp = get(server, "/readyz")
        assert (resp.status_code, resp.text) == (200, "ready\n")
        assert all(redis.Redis.from_url(own_redis.url).script_exists(*shas))

    def test_scripts_lost_to_a_restart_are_loaded_again(self, served, own_redis):
        server = served(REDIS_URL=own_redis.url)
        assert get(server, "/readyz").status_code == 200
        plain = redis.Redis.from_url(own_redis.url)
        plain.script_flush()
        shas = [s.sha for s in redis_conn.registered(server.bot.redis)]
        assert not any(plain.script_exists(*shas))
        assert get(server, "/readyz").status_code == 200
        assert all(plain.script_exists(*shas))

    def test_redis_down_is_503_naming_the_host_without_the_password(self, served, own_redis):
        url = f"redis://bot:{PASSWORD}@127.0.0.1:{own_redis.port}/0"
        server = served(REDIS_URL=url)
        own_redis.stop()
        resp = get(server, "/readyz")
        assert resp.status_code == 503
        assert resp.text.startswith(f"not ready: Redis at 127.0.0.1:{own_redis.port} did not "
                                    "answer PING (ConnectionError)")
        assert resp.text.count("\n") == 1 and PASSWORD not in resp.text
        assert get(server, "/healthz").status_code == 200   # liveness: the process serves
        own_redis.start()
        admin = redis.Redis.from_url(own_redis.url)
        admin.acl_setuser("bot", enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"],
                          commands=["+@all"])
        assert get(server, "/readyz").status_code == 200

    def test_a_server_that_refuses_scripts_is_not_ready(self, served, own_redis):
        """An ACL without @scripting (a managed Redis may impose one): PING works, scripts do
        not, and every stop would fail at its first script."""
        redis.Redis.from_url(own_redis.url).acl_setuser(
            "bot", enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"],
            commands=["+@all", "-@scripting"])
        server = served(REDIS_URL=f"redis://bot:{PASSWORD}@127.0.0.1:{own_redis.port}/0")
        resp = get(server, "/readyz")
        assert resp.status_code == 503
        assert "could not check or load the bot's Lua scripts (NoPermissionError" in resp.text
        assert resp.text.count("\n") == 1 and PASSWORD not in resp.text

    def test_on_a_cluster_every_master_holds_the_scripts(self, served, redis_cluster):
        """Each master has its own script cache: one that lost it is loaded again."""
        server = served(REDIS_URL=redis_cluster.url, REDIS_CLUSTER=True)
        shas = [s.sha for s in redis_conn.registered(server.bot.redis)]
        assert get(server, "/readyz").status_code == 200
        last = redis.Redis(port=redis_cluster.ports[-1])
        last.script_flush()
        assert not any(last.script_exists(*shas))
        assert get(server, "/readyz").status_code == 200
        for port in redis_cluster.ports:
            assert all(redis.Redis(port=port).script_exists(*shas))

    def test_post_is_refused(self, served):
        server = served()
        assert server.http.post(server.url + "/readyz", timeout=5).status_code == 405

    def test_socket_mode_side_server_answers_readyz(self, served, own_redis):
        server = served(lambda bot: side_wsgi(routes(bot, metrics=False)),
                        REDIS_URL=own_redis.url)
        assert get(server, "/readyz").status_code == 200
        own_redis.stop()
        assert get(server, "/readyz").status_code == 503
        assert get(server, "/healthz").status_code == 200


class TestWhere:
    @pytest.mark.parametrize("url,shown", [
        ("redis://127.0.0.1:6379/0", "127.0.0.1:6379"),
        (f"rediss://bot:{PASSWORD}@redis.example.com:6380/0", "redis.example.com:6380"),
        (f"redis://:{PASSWORD}@[::1]/2", "[::1]:6379"),
        ("unix:///run/redis.sock", "/run/redis.sock"),
    ])
    def test_host_and_port_only(self, url, shown):
        assert redis_conn.host_port(url) == shown

    def test_sentinel_and_cluster_name_their_nodes(self, bot_settings):
        sentinel = bot_settings(REDIS_SENTINELS="10.0.0.1:26379,10.0.0.2:26379",
                                REDIS_SENTINEL_MASTER="bot",
                                REDIS_URL=f"redis://:{PASSWORD}@ignored:6379/0")
        assert redis_conn.where(sentinel) == \
            "sentinel master bot via 10.0.0.1:26379,10.0.0.2:26379"
        cluster = bot_settings(REDIS_CLUSTER=True, REDIS_URL=f"redis://:{PASSWORD}@node1:7000/0")
        assert redis_conn.where(cluster) == "cluster via node1:7000"
