"""Builds the bot from settings; every collaborator can be injected instead (tests, the shell)."""

from __future__ import annotations

from dataclasses import dataclass

import redis
import requests
from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)

from bot.flow.confirmations import ConfirmationStore
from bot.flow.roles import RoleChecker, Roles, load_roles
from bot.flow.stop import StopFlow
from bot.modelarts.client import ModelArtsClient, build_client
from bot.settings import Settings
from bot.slack.app import create_app


@dataclass
class Bot:
    settings: Settings
    app: App
    slack: WebClient
    redis: redis.Redis
    modelarts: ModelArtsClient
    flow: StopFlow


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=2,
                                health_check_interval=30)


def slack_client(settings: Settings) -> WebClient:
    token = settings.SLACK_BOT_TOKEN.get_secret_value() if settings.SLACK_BOT_TOKEN else None
    return WebClient(token=token, base_url=settings.SLACK_API_URL, timeout=10,
                     retry_handlers=[ConnectionErrorRetryHandler(),
                                     RateLimitErrorRetryHandler(max_retry_count=2)])


def create_bot(settings: Settings, *, slack: WebClient | None = None,
               redis: redis.Redis | None = None, modelarts: ModelArtsClient | None = None,
               roles: Roles | None = None, session: requests.Session | None = None) -> Bot:
    slack = slack or slack_client(settings)
    redis = redis or redis_client(settings.REDIS_URL)
    prefix = settings.REDIS_KEY_PREFIX
    modelarts = modelarts or build_client(settings, redis, prefix, session=session)
    roles = roles or load_roles(settings.ROLES_FILE)
    checker = RoleChecker(roles, slack, redis, prefix, settings.USERGROUP_CACHE_SECONDS)
    store = ConfirmationStore(redis, prefix, settings.CONFIRM_TTL_SECONDS)
    flow = StopFlow(slack, modelarts, checker, store)
    secret = settings.SLACK_SIGNING_SECRET
    socket_mode = settings.SLACK_APP_TOKEN is not None
    app = create_app(flow, slack, None if socket_mode or not secret else secret.get_secret_value())
    return Bot(settings, app, slack, redis, modelarts, flow)
