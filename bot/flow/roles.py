"""Who may stop which jobs: the roles file, and the check against it (deny by default)."""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import redis
import yaml
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.core import contact
from bot.core.errors import ConfigError
from bot.core.keys import Keys
from bot.core.projects import DEFAULT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Protection:
    """A ``protected:`` entry: jobs whose stop needs a second person, and who may be it."""

    jobs: tuple[str, ...]
    approvers: tuple[str, ...] = ()    # roles; () = any role that allows the job

    def covers(self, job_name: str, project: str = DEFAULT) -> bool:
        return any(matches(g, job_name, project) for g in self.jobs)


def matches(glob: str, job_name: str, project: str = DEFAULT) -> bool:
    """A glob with ``/`` matches ``<project>/<name>`` (``bj4/team-a-*``, ``*/team-a-*``); one
    without matches the name in any project, so roles files from before projects keep their
    meaning."""
    if "/" in glob:
        return fnmatch.fnmatchcase(f"{project}/{job_name}", glob)
    return fnmatch.fnmatchcase(job_name, glob)


@dataclass(frozen=True)
class Roles:
    """The parsed roles file: role -> job globs, user -> roles, usergroup -> roles, and the
    protected jobs (the first entry that covers a job decides its approvers)."""

    jobs: dict[str, tuple[str, ...]]
    users: dict[str, tuple[str, ...]]
    usergroups: dict[str, tuple[str, ...]]
    protected: tuple[Protection, ...] = ()

    def roles_allowing(self, job_name: str, project: str = DEFAULT) -> list[str]:
        return [role for role, globs in self.jobs.items()
                if any(matches(g, job_name, project) for g in globs)]

    def protection(self, job_name: str, project: str = DEFAULT) -> Protection | None:
        return next((p for p in self.protected if p.covers(job_name, project)), None)


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


def parse_roles(text: str, source: str = "roles file") -> Roles:
    """Parse and check a roles file; ConfigError says where it is wrong."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{at}") from None
    if not isinstance(data, dict) or not isinstance(data.get("roles"), dict):
        raise ConfigError(f"{source}: needs a 'roles:' mapping")
    unknown = set(data) - {"roles", "users", "usergroups", "protected"}
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {', '.join(sorted(map(str, unknown)))}")
    jobs = {}
    for role, body in data["roles"].items():
        if not isinstance(body, dict) or "jobs" not in body:
            raise ConfigError(f"{source}: roles.{role} needs a 'jobs:' list of globs")
        jobs[str(role)] = _strings(body["jobs"], f"{source}: roles.{role}.jobs")
    maps = {}
    for section in ("users", "usergroups"):
        raw = data.get(section) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: '{section}:' must map ids to lists of roles")
        maps[section] = {}
        for who, roles in raw.items():
            names = _strings(roles, f"{source}: {section}.{who}")
            for name in names:
                if name not in jobs:
                    raise ConfigError(f"{source}: {section}.{who} names role '{name}', "
                                      "which roles: does not define")
            maps[section][str(who)] = names
    return Roles(jobs, maps["users"], maps["usergroups"],
                 _protected(data.get("protected"), jobs, source))


def _protected(raw: object, jobs: dict, source: str) -> tuple[Protection, ...]:
    """``protected:``: a list of {jobs: [globs], approvers: [roles]} (approvers optional)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{source}: 'protected:' must be a list of {{jobs, approvers}}")
    out = []
    for i, entry in enumerate(raw):
        where = f"{source}: protected[{i}]"
        if not isinstance(entry, dict) or "jobs" not in entry:
            raise ConfigError(f"{where} needs a 'jobs:' list of globs")
        extra = set(entry) - {"jobs", "approvers"}
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(map(str, extra)))}")
        approvers = _strings(entry["approvers"], f"{where}.approvers") if (
            "approvers" in entry) else ()
        for name in approvers:
            if name not in jobs:
                raise ConfigError(f"{where}.approvers names role '{name}', which roles: does "
                                  "not define")
        out.append(Protection(_strings(entry["jobs"], f"{where}.jobs"), approvers))
    return tuple(out)


def read_roles_file(path: str) -> bytes:
    """The file's bytes; ConfigError when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"ROLES_FILE: cannot read {path} ({exc.strerror})") from None


def parse_roles_bytes(data: bytes, path: str) -> Roles:
    """``data`` (a roles file's bytes) parsed; ConfigError says where it is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    return parse_roles(text, source=path)


def load_roles(path: str) -> Roles:
    return parse_roles_bytes(read_roles_file(path), path)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    via: str | None           # the role that allows it
    would_allow: list[str]    # roles that would allow this job


class RoleChecker:
    """Decides whether a Slack user may stop a job, by name. Anyone unmapped may stop nothing.

    Usergroup membership comes from usergroups.users.list, cached in Redis for ``cache_seconds``.
    ``roles`` may be replaced while the bot runs (``use``, bot.flow.roles_watch): each method
    reads it once, so one check sees one file whole, the old or the new. ``contact``: who maps
    users to roles (SUPPORT_CONTACT as Slack text), named wherever a user is told to ask.
    """

    def __init__(self, roles: Roles, slack: WebClient, redis_client: redis.Redis, prefix: str,
                 cache_seconds: int = 60, contact: str = contact.DEFAULT) -> None:
        self.roles = roles
        self.contact = contact
        self.slack = slack
        self.redis = redis_client
        self.keys = Keys(prefix)
        self.cache_seconds = cache_seconds

    def use(self, roles: Roles) -> None:
        """From now on, check against ``roles`` (one reference assignment: atomic)."""
        self.roles = roles

    def cache_keys(self, user_id: str) -> list[str]:
        """The cache keys ``check`` may read for this user: none when the user holds a role
        directly (a caller may fetch them beforehand, in a round trip it makes anyway)."""
        roles = self.roles
        if not self.cache_seconds or roles.users.get(user_id):
            return []
        return [self._key(g) for g in roles.usergroups]

    def check(self, user_id: str, job_name: str,
              cached: dict[str, bytes | None] | None = None,
              among: tuple[str, ...] = (), project: str = DEFAULT) -> Verdict:
        """``cached``: cache values already fetched (``cache_keys``); others are read here.
        ``among``: only these roles count (an approver's); () = every role. ``project``: the
        job's (globs with ``/`` match ``<project>/<name>``)."""
        roles = self.roles
        allowing = [r for r in roles.roles_allowing(job_name, project)
                    if not among or r in among]
        for role in roles.users.get(user_id, ()):
            if role in allowing:
                return Verdict(True, role, allowing)
        groups = [g for g, held in roles.usergroups.items() if any(r in allowing for r in held)]
        for group, members in zip(groups, self._members(groups, cached), strict=True):
            if user_id in members:
                role = next(r for r in roles.usergroups[group] if r in allowing)
                return Verdict(True, role, allowing)
        return Verdict(False, None, allowing)

    def is_mapped(self, user_id: str) -> bool:
        """True when the user holds any role, directly or through a usergroup."""
        roles = self.roles
        if roles.users.get(user_id):
            return True
        groups = list(roles.usergroups)
        return any(user_id in members for members in self._members(groups))

    def held(self, user_id: str) -> list[tuple[str, str | None]]:
        """Every role the user holds, with how: (role, None) held directly, (role, group id)
        through a usergroup (one MGET of the cache for all groups, Slack for the misses). For
        the Home tab (bot.flow.home); a role held both ways is listed once, directly."""
        roles = self.roles
        out: list[tuple[str, str | None]] = [(r, None) for r in roles.users.get(user_id, ())]
        seen = {role for role, _ in out}
        groups = list(roles.usergroups)
        for group, members in zip(groups, self._members(groups), strict=True):
            if user_id not in members:
                continue
            for role in roles.usergroups[group]:
                if role not in seen:
                    seen.add(role)
                    out.append((role, group))
        return out

    def may_stop_any(self, user_id: str) -> bool:
        """True when a role the user holds, directly or through a usergroup, names at least one
        job glob; otherwise the user is unmapped: they may stop nothing, whatever the job."""
        roles = self.roles
        if any(roles.jobs.get(role) for role in roles.users.get(user_id, ())):
            return True
        groups = [g for g, held in roles.usergroups.items()
                  if any(roles.jobs.get(role) for role in held)]
        return any(user_id in members for members in self._members(groups))

    def _key(self, group: str) -> str:
        return self.keys.usergroup(group)

    def _members(self, groups: list[str],
                 fetched: dict[str, bytes | None] | None = None) -> list[set[str]]:
        """Members of each group: one MGET for all (none if ``fetched`` has them all), Slack
        only for the misses."""
        if not groups:
            return []
        keys = [self._key(g) for g in groups]
        if not self.cache_seconds:
            cached: list = [None] * len(groups)
        elif fetched is not None and all(k in fetched for k in keys):
            cached = [fetched[k] for k in keys]
        else:
            cached = self.redis.mget(keys)
        out = []
        for group, key, value in zip(groups, keys, cached, strict=True):
            if value is not None:
                out.append(set(json.loads(value)))
                continue
            members = self._fetch(group)
            if members is not None and self.cache_seconds:
                self.redis.set(key, json.dumps(sorted(members)), ex=self.cache_seconds)
            out.append(members or set())
        return out

    def _fetch(self, group: str) -> set[str] | None:
        try:
            resp = self.slack.usergroups_users_list(usergroup=group)
        except SlackApiError as exc:
            log.warning("usergroups.users.list failed for %s: %s", group, exc.response.get("error"))
            return None
        return set(resp.get("users") or [])
