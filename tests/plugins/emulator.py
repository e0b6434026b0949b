"""Fixtures: the ModelArts emulator on a loopback port, and clients pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis
import requests
from pydantic import SecretStr

from bot.modelarts.auth import AkSkAuth, IamTokenAuth
from bot.modelarts.client import ModelArtsClient
from botdev.emulator import (
    EMULATOR_AK,
    EMULATOR_DOMAIN,
    EMULATOR_PASSWORD,
    EMULATOR_PROJECT_ID,
    EMULATOR_SK,
    EMULATOR_USERNAME,
    Emulator,
)

CLIENT_TIMEOUT = 5.0


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    """The emulator with the default jobs, served on a free loopback port for this test."""
    emu = Emulator(stop_delay=1.0)
    emu.start("127.0.0.1", 0)
    yield emu
    emu.close()


@pytest.fixture
def http_session() -> Iterator[requests.Session]:
    """A requests.Session of this test's own."""
    with requests.Session() as session:
        yield session


@pytest.fixture
def modelarts_client(emulator: Emulator, http_session: requests.Session) -> ModelArtsClient:
    """An AK/SK client for the emulator."""
    auth = AkSkAuth(EMULATOR_AK, SecretStr(EMULATOR_SK), EMULATOR_PROJECT_ID)
    return ModelArtsClient(emulator.base_url, EMULATOR_PROJECT_ID, auth, http_session,
                           CLIENT_TIMEOUT)


@pytest.fixture
def make_iam_client(
    emulator: Emulator, redis_client: redis.Redis, key_prefix: str
) -> Iterator[Callable[..., ModelArtsClient]]:
    """Build IAM-token clients for the emulator (scoped by project id unless given a name), each
    with its own session, sharing Redis."""
    sessions: list[requests.Session] = []

    def make(password: str = EMULATOR_PASSWORD, timeout: float = CLIENT_TIMEOUT,
             store: redis.Redis | None = None, project_id: str = EMULATOR_PROJECT_ID,
             project_name: str | None = None) -> ModelArtsClient:
        session = requests.Session()
        sessions.append(session)
        auth = IamTokenAuth(emulator.base_url, EMULATOR_USERNAME, SecretStr(password),
                            EMULATOR_DOMAIN, project_id, session, store or redis_client,
                            key_prefix, timeout, project_name=project_name)
        return ModelArtsClient(emulator.base_url, EMULATOR_PROJECT_ID, auth, session, timeout)

    yield make
    for session in sessions:
        session.close()


@pytest.fixture
def emulator_env(emulator: Emulator) -> dict[str, str]:
    """Settings values (environment names) for an AK/SK bot pointed at the emulator."""
    return {
        "MODELARTS_ENDPOINT": emulator.base_url,
        "MODELARTS_PROJECT_ID": EMULATOR_PROJECT_ID,
        "MODELARTS_AK": EMULATOR_AK,
        "MODELARTS_SK": EMULATOR_SK,
    }
