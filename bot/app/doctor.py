"""``modelarts-bot doctor``: check each configured part, one line a check, never a secret."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import redis
from redis.exceptions import RedisClusterException

from bot.app.wiring import redis_client, slack_client
from bot.core import redis_conn
from bot.core.errors import ConfigError
from bot.core.settings import Settings
from bot.flow.roles import load_roles
from bot.modelarts.client import build_client
from bot.modelarts.models import Failure

Check = tuple[str, Callable[[], str]]


class Problem(Exception):
    """A check failed; the message says what is wrong and how to fix it."""


class Notice(Exception):
    """A check found something worth knowing that does not stop the bot."""


def check_settings(settings: Settings) -> str:
    problems = settings.problems()
    if problems:
        raise Problem("; ".join(problems))
    auth = "AK/SK signing" if settings.uses_aksk else "IAM password token"
    return f"complete (ModelArts auth: {auth})"


def check_redis(settings: Settings) -> str:
    try:
        return f"PING answered ({redis_conn.describe(redis_client(settings))})"
    except (redis.RedisError, RedisClusterException, OSError) as exc:
        where = {"cluster": "REDIS_URL (a Cluster start-up node)",
                 "sentinel": "REDIS_SENTINELS / REDIS_SENTINEL_MASTER"}.get(
                     redis_conn.topology(settings), "REDIS_URL")
        raise Problem(f"no answer from {where} ({type(exc).__name__}: {_reason(exc)}): start "
                      "Redis or fix the settings") from None


def _reason(exc: Exception) -> str:
    """redis-py's message, which names host:port and never the password; cut to one line."""
    return str(exc).splitlines()[0][:200] if str(exc) else "no detail"


def check_modelarts(settings: Settings) -> str:
    """The v2 API (what jobs are today): a search with limit 1. Failing is a failure."""
    found = _client(settings).search_jobs(limit=1)
    if isinstance(found, Failure):
        raise Problem(f"v2 job search failed: {_failed(found)}; check MODELARTS_ENDPOINT, "
                      "MODELARTS_PROJECT_ID and the credentials")
    return "credentials accepted (v2 job search answered)"


def check_modelarts_v1(settings: Settings) -> str:
    """The v1 API (old-version jobs): a job list. Failing is only a warning: it is retired."""
    jobs = _client(settings).list_jobs(per_page=1)
    if isinstance(jobs, Failure):
        raise Notice(f"v1 not available here: old-version training is retired in this region "
                     f"({_failed(jobs)})")
    return "old-version job list answered"


def _client(settings: Settings):
    if not settings.MODELARTS_ENDPOINT or not settings.MODELARTS_PROJECT_ID:
        raise Problem("not configured: set MODELARTS_ENDPOINT and MODELARTS_PROJECT_ID")
    return build_client(settings, redis_client(settings), settings.REDIS_KEY_PREFIX)


def _failed(failure: Failure) -> str:
    status = f" (HTTP {failure.http_status})" if failure.http_status else ""
    return f"{failure.error_code}{status}: {failure.error_msg}"


def check_slack(settings: Settings) -> str:
    if not settings.SLACK_BOT_TOKEN:
        raise Problem("SLACK_BOT_TOKEN is missing")
    from slack_sdk.errors import SlackClientError

    try:
        resp = slack_client(settings).auth_test()
    except SlackClientError as exc:
        error = getattr(exc, "response", {}) or {}
        raise Problem(f"auth.test failed ({error.get('error', type(exc).__name__)}): "
                      "check SLACK_BOT_TOKEN and SLACK_API_URL") from None
    except OSError as exc:
        raise Problem(f"cannot reach SLACK_API_URL ({type(exc).__name__})") from None
    return f"token valid (bot user {resp.get('user_id')}, team {resp.get('team')})"


def check_roles(settings: Settings) -> str:
    if not Path(settings.ROLES_FILE).exists():
        raise Problem(f"ROLES_FILE {settings.ROLES_FILE} does not exist: nobody may stop anything")
    try:
        roles = load_roles(settings.ROLES_FILE)
    except ConfigError as exc:
        raise Problem(str(exc)) from None
    return (f"{len(roles.jobs)} roles, {len(roles.users)} users, "
            f"{len(roles.usergroups)} usergroups")


def check_smn(settings: Settings) -> str:
    """POST /smn: the topics it takes, and the certificate it trusts."""
    topics = settings.smn_topics
    if not topics:
        return "off (SMN_TOPICS unset): POST /smn answers 404"
    names = ", ".join(sorted(urn.rsplit(":", 1)[-1] for urn in topics))
    if not settings.SMN_SIGNING_CERT_FILE:
        return (f"{len(topics)} topics ({names}); certificates fetched from "
                f"{settings.SMN_CERT_HOSTS} (pin one with SMN_SIGNING_CERT_FILE)")
    from cryptography import x509
    try:
        cert = x509.load_pem_x509_certificate(Path(settings.SMN_SIGNING_CERT_FILE).read_bytes())
    except (OSError, ValueError):
        raise Problem(f"SMN_SIGNING_CERT_FILE {settings.SMN_SIGNING_CERT_FILE} is not a PEM "
                      "certificate") from None
    until = cert.not_valid_after_utc.date().isoformat()
    return f"{len(topics)} topics ({names}); pinned certificate valid until {until}"


def run(settings: Settings, out=print) -> int:
    checks: list[Check] = [
        ("settings", lambda: check_settings(settings)),
        ("redis", lambda: check_redis(settings)),
        ("modelarts", lambda: check_modelarts(settings)),
        ("modelarts-v1", lambda: check_modelarts_v1(settings)),
        ("slack", lambda: check_slack(settings)),
        ("roles", lambda: check_roles(settings)),
        ("smn", lambda: check_smn(settings)),
    ]
    failed = 0
    for name, check in checks:
        try:
            out(f"OK    {name}: {check()}")
        except Notice as exc:
            out(f"WARN  {name}: {exc}")
        except Problem as exc:
            failed += 1
            out(f"FAIL  {name}: {exc}")
    out("all checks passed" if not failed else f"{failed} check(s) failed")
    return 1 if failed else 0
