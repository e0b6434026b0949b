"""``modelarts-bot doctor``: check each configured part, one line a check, never a secret.

The settings are read leniently (``load_settings_leniently``): a setting that does not parse,
or that holds a placeholder from the examples, or that is missing, gives one ``FAIL  settings:``
line naming it, and the table goes on. Each check names the settings it needs; one that needs a
bad setting prints ``SKIP`` (it would only fail again for the same reason, or worse, use the
default in its place), and every other check still runs::

    settings ──▶ FAIL line per bad setting ──▶ each check: needs a bad one? ── yes ──▶ SKIP
                                                    │ no
                                                    ▼
                                      run it: OK / WARN (Notice) / FAIL (Problem)

Exit status: 0 when no line is FAIL or SKIP, else 1.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import redis
from redis.exceptions import RedisClusterException

from bot.app.wiring import redis_client, slack_client
from bot.core import net, redis_conn
from bot.core.errors import ConfigError
from bot.core.projects import Project
from bot.core.settings import Settings, load_settings_leniently
from bot.flow.roles import load_roles
from bot.modelarts.client import build_client
from bot.modelarts.models import Failure, v1_retired

# The bot token's scopes (manifest.yml, "scopes: bot:"), each needed by a part of the bot.
REQUIRED_SCOPES = ("commands", "chat:write", "usergroups:read")
SCOPES_HEADER = "x-oauth-scopes"   # Slack sends the token's scopes with every Web API answer


class Problem(Exception):
    """A check failed; the message says what is wrong and how to fix it."""


class Notice(Exception):
    """A check found something worth knowing that does not stop the bot."""


@dataclass(frozen=True)
class Check:
    name: str
    needs: tuple[str, ...]             # setting names or prefixes (``MODELARTS_``) it reads
    run: Callable[[Settings], str]

    def needs_any(self, names: set[str]) -> list[str]:
        return sorted(n for n in names if n.startswith(self.needs))


def check_settings(settings: Settings) -> str:
    """The line when no setting is bad (``run`` prints a FAIL line for each bad one)."""
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


def check_modelarts(settings: Settings, project: Project | None = None) -> str:
    """The v2 API (what jobs are today): a search with limit 1, in each workspace of the
    project. Failing is a failure."""
    client = _client(settings, project)
    spaces = project.workspaces if project and project.workspaces else (None,)
    for ws in spaces:
        found = client.search_jobs(limit=1, workspace=ws)
        if isinstance(found, Failure):
            where = f" in workspace {ws}" if ws is not None else ""
            raise Problem(_failed(f"v2 job search{where}", found, settings))
    token = "" if settings.uses_aksk else ", its own IAM token"
    spread = f" in {len(spaces)} workspace(s)" if spaces != (None,) else ""
    return f"credentials accepted (v2 job search answered{spread}{token})"


def check_modelarts_v1(settings: Settings, project: Project | None = None) -> str:
    """The v1 API (old-version jobs): a job list. Failing is only a warning; the answer of a
    region where v1 is retired (404 APIGW.0101) says so, any other failure says its cause."""
    jobs = _client(settings, project).list_jobs(per_page=1)
    if isinstance(jobs, Failure) and v1_retired(jobs):
        raise Notice(f"v1 not available here: old-version training is retired in this region "
                     f"({_code(jobs)})")
    if isinstance(jobs, Failure):
        raise Notice(_failed("v1 job list", jobs, settings) + " (old-version jobs only)")
    return "old-version job list answered"


def _client(settings: Settings, project: Project | None = None):
    if not settings.MODELARTS_PROJECTS and (
            not settings.MODELARTS_ENDPOINT or not settings.MODELARTS_PROJECT_ID):
        raise Problem("not configured: set MODELARTS_ENDPOINT and MODELARTS_PROJECT_ID")
    cache = None if settings.uses_aksk else redis_client(settings)   # the IAM token's cache
    return build_client(settings, cache, settings.REDIS_KEY_PREFIX, project=project)


def _code(failure: Failure) -> str:
    status = f" (HTTP {failure.http_status})" if failure.http_status else ""
    return f"{failure.error_code}{status}: {failure.error_msg}"


def _failed(what: str, failure: Failure, settings: Settings) -> str:
    """No answer: its cause and the endpoint. An answer: its code, and what to check."""
    if failure.http_status is None and failure.error_code.startswith("BOT."):
        return (f"{what}: {failure.error_msg}; check MODELARTS_ENDPOINT "
                f"({settings.MODELARTS_ENDPOINT}) and the network")
    return (f"{what} failed: {_code(failure)}; check MODELARTS_ENDPOINT, MODELARTS_PROJECT_ID "
            "and the credentials")


def check_slack(settings: Settings) -> str:
    """``auth.test``: the URL answers, the token is valid, and it has the bot's scopes."""
    if not settings.SLACK_BOT_TOKEN:
        raise Problem("SLACK_BOT_TOKEN is missing")
    from slack_sdk.errors import SlackApiError, SlackClientError

    url = settings.SLACK_API_URL
    try:
        resp = slack_client(settings).auth_test()
    except SlackApiError as exc:
        error = exc.response.data.get("error") if isinstance(exc.response.data, dict) else None
        if error:
            raise Problem(f"auth.test failed ({error}): check SLACK_BOT_TOKEN") from None
        raise Problem(f"{url} answered HTTP {exc.response.status_code}, not as the Slack API "
                      "does: check SLACK_API_URL") from None
    except (SlackClientError, OSError) as exc:   # urllib's URLError is an OSError
        raise Problem(f"cannot reach {url} ({net.reason(exc)}): check SLACK_API_URL and the "
                      "network") from None
    missing = _missing_scopes(resp.headers)
    if missing:
        raise Problem(missing)
    return (f"token valid (bot user {resp.get('user_id')}, team {resp.get('team')}; scopes "
            f"{', '.join(REQUIRED_SCOPES)})")


def _missing_scopes(headers) -> str | None:
    """What is wrong with the token's scopes, or None. No header: they cannot be checked."""
    found = next((v for k, v in dict(headers).items() if k.lower() == SCOPES_HEADER), None)
    if found is None:
        return (f"auth.test answered without {SCOPES_HEADER}: the bot token's scopes cannot be "
                "checked (is SLACK_API_URL the Slack API?)")
    granted = {s.strip() for s in str(found).split(",")}
    missing = [s for s in REQUIRED_SCOPES if s not in granted]
    if not missing:
        return None
    return (f"the bot token lacks the scope{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}: add {'them' if len(missing) > 1 else 'it'} under OAuth & "
            "Permissions (or from manifest.yml) and reinstall the app")


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


def checks(settings: Settings) -> list[Check]:
    modelarts = ("MODELARTS_",) if settings.uses_aksk else ("MODELARTS_", "REDIS_")
    # One pair of lines per project with MODELARTS_PROJECTS (each its endpoint, its token).
    several = settings.projects if settings.MODELARTS_PROJECTS else ()
    sources = [Check("modelarts", modelarts, check_modelarts),
               Check("modelarts-v1", modelarts, check_modelarts_v1)] if not several else [
        c for p in several for c in (
            Check(f"modelarts {p.name}", modelarts, partial(check_modelarts, project=p)),
            Check(f"modelarts-v1 {p.name}", modelarts, partial(check_modelarts_v1, project=p)))]
    return [
        Check("redis", ("REDIS_",), check_redis),
        *sources,
        Check("slack", ("SLACK_BOT_TOKEN", "SLACK_API_URL"), check_slack),
        Check("roles", ("ROLES_FILE",), check_roles),
        Check("smn", ("SMN_",), check_smn),
    ]


def run(settings: Settings, out: Callable[[str], None] = print, *,
        invalid: list[tuple[tuple[str, ...], str]] | None = None) -> int:
    """Print the table; 1 when a line is FAIL or SKIP. ``invalid``: the settings that did not
    parse (from ``load_settings_leniently``), each reset to its default in ``settings``."""
    bad = [(set(names), line) for names, line in invalid or []]
    reset = {n for names, _ in bad for n in names}   # back to the default: not "missing" too
    bad += [({name}, line) for name, line in settings.named_problems() if name not in reset]
    for _, line in bad:
        out(f"FAIL  settings: {line}")
    if not bad:
        out(f"OK    settings: {check_settings(settings)}")
    failed, skipped = len(bad), 0
    names = {n for group, _ in bad for n in group}
    for check in checks(settings):
        needed = check.needs_any(names)
        if needed:
            skipped += 1
            out(f"SKIP  {check.name}: not checked: {', '.join(needed)} (see settings)")
            continue
        try:
            out(f"OK    {check.name}: {check.run(settings)}")
        except Notice as exc:
            out(f"WARN  {check.name}: {exc}")
        except (Problem, ConfigError) as exc:
            failed += 1
            out(f"FAIL  {check.name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the table goes on; the type names the cause
            failed += 1
            out(f"FAIL  {check.name}: could not run the check ({net.reason(exc)})")
    if not failed and not skipped:
        out("all checks passed")
        return 0
    out(f"{failed} problem(s), {skipped} check(s) skipped" if skipped else
        f"{failed} problem(s)")
    return 1


def main(out: Callable[[str], None] = print) -> int:
    # The table says what failed and why; the libraries' own warnings would only repeat it.
    logging.disable(logging.WARNING)
    settings, invalid = load_settings_leniently()
    return run(settings, out, invalid=invalid)
