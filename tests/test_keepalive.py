"""The ModelArts client's one ``requests.Session`` keeps its connections: across calls, across
threads (up to requests' pool size per host, 10), and after the server closed an idle one.
Over HTTPS through the benchmark's TLS front, which counts the connections it accepts; the CA
is trusted only through REQUESTS_CA_BUNDLE, as in production."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from pydantic import SecretStr

from bench.harness import fronts as wan
from bot.modelarts.auth import AkSkAuth
from bot.modelarts.client import ModelArtsClient
from bot.modelarts.models import Failure
from botdev.emulator import EMULATOR_AK, EMULATOR_PROJECT_ID, EMULATOR_SK

JOB, VERSION = 182626, 278813  # team-a-resnet in the default jobs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return wan.make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def through_front(emulator, certs, monkeypatch):
    """Make a client that reaches the emulator through a TLS front; yields (make, front)."""
    for name, value in wan.trust_env(certs).items():
        monkeypatch.setenv(name, value)
    fronts = []

    def make(idle_close: float | None = None) -> tuple[ModelArtsClient, object]:
        front = wan.front(emulator.base_url, 0, certs, idle_close)
        fronts.append(front)
        auth = AkSkAuth(EMULATOR_AK, SecretStr(EMULATOR_SK), EMULATOR_PROJECT_ID)
        return ModelArtsClient(front.url, EMULATOR_PROJECT_ID, auth, requests.Session(),
                               5.0), front

    yield make
    for front in fronts:
        front.close()


def looked_up(client: ModelArtsClient) -> bool:
    return not isinstance(client.get_version(JOB, VERSION), Failure)


class TestModelArtsSession:
    def test_calls_one_after_another_share_one_connection(self, through_front):
        client, front = through_front()
        assert all(looked_up(client) for _ in range(5))
        assert len(front.ask("connections", 0)) == 1

    def test_ten_threads_open_at_most_one_connection_each(self, through_front):
        client, front = through_front()
        results: list[bool] = []

        def work() -> None:
            results.extend(looked_up(client) for _ in range(5))

        threads = [threading.Thread(target=work) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert results == [True] * 50
        opened = len(front.ask("connections", 0))
        assert 1 <= opened <= 10
        assert looked_up(client) and len(front.ask("connections", 0)) == opened  # all kept

    def test_a_connection_the_server_closed_while_idle_is_replaced(self, through_front):
        client, front = through_front(idle_close=0.2)
        assert looked_up(client)
        time.sleep(0.6)
        assert looked_up(client)
        assert len(front.ask("connections", 0)) == 2
