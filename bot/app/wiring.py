"""Builds the bot from settings: the one place its collaborators are made (below ``create_bot``
every collaborator is a required argument); the outer ones can be injected instead (tests, the
shell)."""

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

from bot.alerts.dispatcher import Dispatcher
from bot.alerts.lookup import JobLookup
from bot.alerts.messages import AlertMessages
from bot.alerts.queue import AlertQueue
from bot.core import redis_conn
from bot.core.outage import Outage
from bot.core.settings import Settings
from bot.core.slack_out import SlackOut
from bot.flow.admission import ListSlots
from bot.flow.audit import Audit
from bot.flow.claims import HOLD_MARGIN
from bot.flow.confirmations import ConfirmationStore
from bot.flow.expiry import Expiry
from bot.flow.finder import Finder
from bot.flow.history import History
from bot.flow.home import Home
from bot.flow.outcomes import OwedReplies
from bot.flow.roles import RoleChecker, Roles
from bot.flow.roles_watch import Loaded, RolesWatch, load
from bot.flow.stop import StopFlow
from bot.flow.watches import Watches
from bot.modelarts.client import build_fleet
from bot.modelarts.fleet import Fleet
from bot.slack.app import create_app
from bot.slack.client import POOL_SIZE, PooledWebClient
from bot.slack.later import Later


@dataclass
class Bot:
    settings: Settings
    app: App
    slack: WebClient
    redis: redis.Redis
    modelarts: Fleet
    flow: StopFlow
    alerts: AlertQueue | None = None
    dispatcher: Dispatcher | None = None
    owed: OwedReplies | None = None
    watches: Watches | None = None
    outage: Outage | None = None
    roles_watch: RolesWatch | None = None
    home: Home | None = None
    expiry: Expiry | None = None

    def start_background(self) -> None:
        """Start the alert dispatcher threads, the owed-replies recovery, the watches, the
        expired requests' sweeper and the roles file's (once per process; gunicorn: per
        worker)."""
        if self.roles_watch:
            self.roles_watch.start()
        if self.dispatcher:
            self.dispatcher.start()
        if self.owed:
            self.owed.start()
        if self.watches:
            self.watches.start()
        if self.expiry:
            self.expiry.start()

    def close(self) -> None:
        if self.dispatcher:
            self.dispatcher.stop()
        if self.owed:
            self.owed.stop()
        if self.watches:
            self.watches.stop()
        if self.expiry:
            self.expiry.stop()
        if self.roles_watch:
            self.roles_watch.stop()
        if self.home:
            self.home.close()
        self.modelarts.close()


def redis_client(settings: Settings) -> redis.Redis:
    """Standalone, Cluster or Sentinel (bot/core/redis_conn.py), with short timeouts and one quick
    retry in each: a dead Redis must cost a user seconds, not tens."""
    return redis_conn.connect(settings)  # type: ignore[return-value] - RedisCluster: same API


def slack_client(settings: Settings, *, retry_429: bool = True) -> WebClient:
    """``retry_429=False`` for the alert dispatcher: it must see each 429 and its Retry-After."""
    token = settings.SLACK_BOT_TOKEN.get_secret_value() if settings.SLACK_BOT_TOKEN else None
    retries = [ConnectionErrorRetryHandler()]
    if retry_429:
        retries.append(RateLimitErrorRetryHandler(max_retry_count=2))
    # Connections kept alive: one pool per client, sized for the threads that share it.
    return PooledWebClient(token=token, base_url=settings.SLACK_API_URL, timeout=10,
                           retry_handlers=retries, pool_size=max(POOL_SIZE, settings.WEB_THREADS))


def create_bot(settings: Settings, *, slack: WebClient | None = None,
               redis: redis.Redis | None = None, modelarts: Fleet | None = None,
               roles: Roles | None = None, session: requests.Session | None = None,
               alert_slack: WebClient | None = None, loaded: Loaded | None = None) -> Bot:
    """``roles``: fixed roles (no file is watched); else ROLES_FILE, as ``loaded`` already (the
    gunicorn master's copy) or read here, and watched for changes (bot.flow.roles_watch)."""
    slack = slack or slack_client(settings)
    redis = redis or redis_client(settings)
    prefix = settings.REDIS_KEY_PREFIX
    outage = Outage(redis_conn.where(settings))   # one line per Redis outage, for every loop
    modelarts = modelarts or build_fleet(settings, redis, prefix, session=session)
    watched = None if roles is not None else loaded or load(settings.ROLES_FILE)
    checker = RoleChecker(watched.roles if watched else roles, slack, redis, prefix,
                          settings.USERGROUP_CACHE_SECONDS, settings.support_contact)
    watch = RolesWatch(settings.ROLES_FILE, watched, checker.use) if watched else None
    audit = Audit(redis, prefix, settings.AUDIT_RETENTION_DAYS)
    # A confirmed stop holds its job's claim until its watch ends, at the latest after this.
    hold = (max(settings.STOP_VERIFY_SECONDS, settings.STOP_UNKNOWN_VERIFY_SECONDS)
            + 4 * settings.MODELARTS_TIMEOUT_SECONDS + 30 + HOLD_MARGIN)
    store = ConfirmationStore(redis, prefix, settings.CONFIRM_TTL_SECONDS, audit, hold)
    alerts = AlertQueue(redis, prefix, settings.ALERT_DEDUPE_SECONDS,
                        per_channel=settings.ALERT_QUEUE_PER_CHANNEL,
                        total=settings.ALERT_QUEUE_TOTAL)
    messages = AlertMessages(alerts, SlackOut(slack))
    alert_out = SlackOut(alert_slack or slack_client(settings, retry_429=False))
    # Each stop followed to its end; a look-up (with its token retry) fits in the lease.
    watches = Watches(redis, prefix, modelarts, SlackOut(slack_client(settings, retry_429=False)),
                      interval=settings.STOP_VERIFY_INTERVAL_SECONDS,
                      span=settings.STOP_VERIFY_SECONDS,
                      unknown_span=settings.STOP_UNKNOWN_VERIFY_SECONDS,
                      lease_seconds=2 * settings.MODELARTS_TIMEOUT_SECONDS + 5,
                      alert_final=messages.final_state, audit=audit, outage=outage,
                      contact=settings.support_contact)
    # A living replica goes from the confirm to its reply posted within this (the chat.update
    # before the stop and the stop may take 10 s each); after it, any replica posts
    # "Outcome unknown" in its place.
    owed = OwedReplies(redis, prefix, SlackOut(slack_client(settings, retry_429=False)),
                       2 * settings.MODELARTS_TIMEOUT_SECONDS + 30, watches=watches, audit=audit,
                       outage=outage)
    flow = StopFlow(SlackOut(slack), modelarts, checker, store, messages, owed)
    # Requests nobody clicked lose their buttons (bot.flow.expiry): one sweeper per replica.
    expiry = Expiry(redis, prefix, SlackOut(slack_client(settings, retry_429=False)),
                    settings.CONFIRM_TTL_SECONDS, audit=audit, alerts=messages, outage=outage)
    finder = Finder(flow, slots=ListSlots(settings.LISTS_PER_USER, settings.LISTS_MAX_CONCURRENT),
                    share_seconds=settings.LIST_SHARE_SECONDS)
    # The Home tab reads the running jobs through the finder's shared scan; the flow refreshes
    # it after each outcome.
    home = Home(finder, store.claims, audit, SlackOut(slack), redis, prefix)
    flow.home = home
    secret = settings.SLACK_SIGNING_SECRET
    app = create_app(flow, slack, secret.get_secret_value() if secret else None,
                     response_urls=settings.response_url_prefixes,
                     socket_mode=settings.socket_mode, alert_ids=messages.target,
                     later=Later(stop_workers=settings.STOP_WORKERS,
                                 lookup_workers=settings.LOOKUP_WORKERS),
                     finder=finder, history=History(checker, audit), home=home)
    # Alerts asking for a look-up (by id, by name) get it just before their post.
    dispatcher = Dispatcher(alerts, alert_out, pace_seconds=settings.ALERT_POST_INTERVAL_SECONDS,
                            prepare=JobLookup(modelarts, finder), outage=outage)
    return Bot(settings, app, slack, redis, modelarts, flow, alerts, dispatcher, owed, watches,
               outage, watch, home, expiry)
