"""The bot's settings: one object read from the environment and `.env`, built once at start-up."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.core import console, contact
from bot.core.errors import ConfigError
from bot.core.projects import DEFAULT, Project, parse_projects

# The one list of example values shipped in .env.example and deploy/kubernetes/secret.yaml: none
# is a real value, and a setting that holds one (or REPLACE_ME anywhere) stops `serve` and fails
# `doctor`, naming the variable. tests/test_placeholders.py parses both files against it.
PLACEHOLDERS = frozenset({
    "xoxb-your-bot-token", "your-signing-secret", "xapp-your-app-token", "your-access-key",
    "your-secret-key", "your-iam-user", "your-iam-password", "your-account-name",
    "a-long-random-string", "another-long-random-string", "your-project-id", "xoxb-replace_me",
    "replace_me",
})
PLACEHOLDER_MARK = "replace_me"   # in any value: redis://:REPLACE_ME@host, xoxb-REPLACE_ME...
SECRETS = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "MODELARTS_AK",
           "MODELARTS_SK", "MODELARTS_PASSWORD", "ALERTS_TOKEN", "METRICS_TOKEN",
           "REDIS_SENTINEL_PASSWORD")


def _check_url(name: str, value: str | None, schemes: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        # No part of the value in the message: it may hold a password.
        raise ValueError(f"{name} cannot be read as a URL: percent-encode any / # ? @ : in its "
                         "user name or password (e.g. / as %2F)") from None
    if parts.scheme not in schemes or not parts.netloc:
        raise ValueError(f"{name} is not a valid URL (expected {' or '.join(schemes)}://host...)")
    return value


def is_loopback(host: str | None) -> bool:
    """localhost, 127.0.0.0/8 or ::1: the emulator, the stand-ins and the tests."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _https_unless_loopback(name: str, value: str | None) -> str | None:
    """Credentials go to this URL: https://, or http:// only to a loopback host."""
    if value and urlsplit(value).scheme != "https" and not is_loopback(urlsplit(value).hostname):
        raise ValueError(f"{name} must be https:// (http:// only for a loopback host such as "
                         "the emulator)")
    return value


def _endpoint(name: str, value: str) -> str:
    """A project's endpoint, checked as MODELARTS_ENDPOINT is."""
    return _https_unless_loopback(name, _check_url(name, value, ("http", "https"))) or ""


def is_placeholder(value: str) -> bool:
    return value.strip().lower() in PLACEHOLDERS or PLACEHOLDER_MARK in value.lower()


class Settings(BaseSettings):
    """Every setting the bot reads. Secrets are SecretStr and never printed."""

    # An empty value (`VAR=` in .env, `-e VAR=`, an empty key in a Kubernetes Secret) is unset,
    # for every setting: it never switches a check off (``_empty_is_unset`` covers arguments).
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=True,
                                      env_ignore_empty=True)

    SLACK_BOT_TOKEN: SecretStr | None = None
    SLACK_SIGNING_SECRET: SecretStr | None = None
    SLACK_APP_TOKEN: SecretStr | None = None
    SLACK_API_URL: str = "https://slack.com/api/"

    MODELARTS_ENDPOINT: str | None = None
    MODELARTS_PROJECT_ID: str | None = None
    # Several projects, regions and workspaces (bot/core/projects.py): a JSON list; when set,
    # MODELARTS_ENDPOINT and MODELARTS_PROJECT_ID stay unset.
    MODELARTS_PROJECTS: str | None = None
    MODELARTS_AK: SecretStr | None = None
    MODELARTS_SK: SecretStr | None = None
    MODELARTS_IAM_ENDPOINT: str | None = None
    MODELARTS_USERNAME: str | None = None
    MODELARTS_PASSWORD: SecretStr | None = None
    MODELARTS_DOMAIN: str | None = None
    # The IAM token is scoped by MODELARTS_PROJECT_ID; a project name here scopes it by name.
    MODELARTS_PROJECT_NAME: str | None = None
    MODELARTS_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=120)
    # A job's page in the console, linked from every message naming the job (bot/core/console.py):
    # templates for v2 and v1 jobs; empty or "off" turns the links off.
    MODELARTS_CONSOLE_URL: str = console.V2_DEFAULT
    MODELARTS_CONSOLE_URL_V1: str = console.V1_DEFAULT

    REDIS_URL: str = "redis://localhost:6379/0"
    REDIS_KEY_PREFIX: str = "modelarts-bot:"
    # Production Redis (bot/core/redis_conn.py): a CA bundle for rediss://, a Cluster (REDIS_URL
    # is a start-up node), or Sentinels (host:port,...) that name the primary REDIS_SENTINEL_MASTER.
    REDIS_CA_FILE: str | None = None
    REDIS_CLUSTER: bool = False
    REDIS_SENTINELS: str | None = None
    REDIS_SENTINEL_MASTER: str | None = None
    REDIS_SENTINEL_PASSWORD: SecretStr | None = None
    ROLES_FILE: str = "roles.yml"
    CONFIRM_TTL_SECONDS: int = Field(default=120, ge=5, le=86400)
    USERGROUP_CACHE_SECONDS: int = Field(default=60, ge=0, le=86400)
    # After a stop, the bot follows the job to its final state (bot/flow/watches.py): a status
    # look-up every interval, until the deadline (a shorter one when the stop's outcome is unknown).
    STOP_VERIFY_INTERVAL_SECONDS: float = Field(default=5.0, gt=0, le=300)
    STOP_VERIFY_SECONDS: float = Field(default=600.0, gt=0, le=86400)
    STOP_UNKNOWN_VERIFY_SECONDS: float = Field(default=120.0, gt=0, le=86400)
    # Who a user is told to ask for a role or for help (bot/core/contact.py): a channel, a user,
    # a user group or a URL; unset, "the platform team".
    SUPPORT_CONTACT: str | None = None
    # The audit stream (bot/flow/audit.py) keeps this many days of entries, trimmed at each write.
    AUDIT_RETENTION_DAYS: int = Field(default=90, ge=1, le=3650)

    ALERTS_TOKEN: SecretStr | None = None
    ALERTS_CHANNEL: str | None = None
    ALERT_DEDUPE_SECONDS: int = Field(default=600, ge=0, le=86400)
    # Gap the alert dispatcher keeps between two posts to one channel (Slack: about 1/s).
    ALERT_POST_INTERVAL_SECONDS: float = Field(default=1.0, ge=0, le=60)
    # Bearer token of GET /metrics. Unset, /metrics answers 503, unless METRICS_OPEN is true (a
    # private port): a missing token never opens it.
    METRICS_TOKEN: SecretStr | None = None
    METRICS_OPEN: bool = False
    # Cap on queued alerts per channel and in all (POST /alerts answers 429 beyond it).
    ALERT_QUEUE_PER_CHANNEL: int = Field(default=200, ge=1, le=100_000)
    ALERT_QUEUE_TOTAL: int = Field(default=2000, ge=1, le=1_000_000)
    # response_url is answered only on https://hooks.slack.com/ and SLACK_API_URL's host; more
    # URL prefixes (GovSlack, tests), comma-separated.
    SLACK_RESPONSE_URLS: str | None = None
    # Confirm, cancel and the stop run on their own pool, never behind lists and look-ups.
    STOP_WORKERS: int = Field(default=4, ge=1, le=64)
    LOOKUP_WORKERS: int = Field(default=8, ge=1, le=64)
    # Lists running at once, per user and in all (more get "busy, try again in a moment"); lists
    # arriving within LIST_SHARE_SECONDS of each other share one scan of the running jobs.
    LISTS_PER_USER: int = Field(default=1, ge=1, le=64)
    LISTS_MAX_CONCURRENT: int = Field(default=4, ge=1, le=256)
    LIST_SHARE_SECONDS: float = Field(default=5.0, ge=0, le=300)
    # A client must send its whole request (headers and body) within this, or it is dropped.
    WEB_REQUEST_TIMEOUT_SECONDS: float = Field(default=10.0, gt=0, le=300)

    # POST /smn (bot/alerts/smn/): Huawei Cloud SMN pushes, off (404) unless SMN_TOPICS is set.
    # SMN_TOPICS: JSON {topic URN: channel id}. SMN_SIGNING_CERT_FILE: the one certificate to
    # trust (signing_cert_url is then never fetched). *_HOSTS: host suffixes signing_cert_url and
    # subscribe_url may name. SMN_EVENTS: the ModelArts events that post an alert.
    SMN_TOPICS: str | None = None
    SMN_SIGNING_CERT_FILE: str | None = None
    SMN_CERT_HOSTS: str = "myhuaweicloud.com,myhuaweicloud.cn,myhuaweicloud.eu"
    SMN_CONFIRM_HOSTS: str = "myhuaweicloud.com,myhuaweicloud.cn,myhuaweicloud.eu"
    SMN_MAX_AGE_SECONDS: int = Field(default=86400, ge=60, le=30 * 86400)
    SMN_EVENTS: str = "JobHanged,JobFailed,JobPreempted,JobRestarted"

    HOST: str = "0.0.0.0"  # noqa: S104 - a server in a container listens on all interfaces
    PORT: int = Field(default=3000, ge=0, le=65535)
    WEB_CONCURRENCY: int = Field(default=2, ge=1, le=64)
    WEB_THREADS: int = Field(default=8, ge=1, le=256)
    LOG_LEVEL: str = "INFO"

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                   dotenv_settings, file_secret_settings):
        """As pydantic-settings has them, with one more after the arguments: the link settings
        set to "" (``_EmptyTurnsOff``)."""
        return (init_settings, _EmptyTurnsOff(settings_cls, dotenv_settings), env_settings,
                dotenv_settings, file_secret_settings)

    @model_validator(mode="before")
    @classmethod
    def _empty_is_unset(cls, values: object) -> object:
        """Every empty value is unset, but a link setting's, which turns links off."""
        if not isinstance(values, dict):
            return values
        return {k: console.OFF if k in EMPTY_TURNS_OFF and _blank(v) else v
                for k, v in values.items() if k in EMPTY_TURNS_OFF or not _blank(v)}

    @field_validator("MODELARTS_CONSOLE_URL", "MODELARTS_CONSOLE_URL_V1")
    @classmethod
    def _console_url(cls, value: str, info) -> str:
        return console.check_template(value, "v1" if info.field_name.endswith("_V1") else "v2")

    @property
    def console_templates(self) -> dict[str, str]:
        """The link template of each API ("" = no links), MODELARTS_CONSOLE_URL off: none."""
        if self.MODELARTS_CONSOLE_URL == console.OFF:
            return {"v2": "", "v1": ""}
        v1 = self.MODELARTS_CONSOLE_URL_V1
        return {"v2": self.MODELARTS_CONSOLE_URL, "v1": "" if v1 == console.OFF else v1}

    @field_validator("SLACK_API_URL", "MODELARTS_ENDPOINT", "MODELARTS_IAM_ENDPOINT")
    @classmethod
    def _http_url(cls, value: str | None, info) -> str | None:
        return _check_url(info.field_name, value, ("http", "https"))

    @field_validator("MODELARTS_ENDPOINT", "MODELARTS_IAM_ENDPOINT")
    @classmethod
    def _https(cls, value: str | None, info) -> str | None:
        return _https_unless_loopback(info.field_name, value)

    @field_validator("SUPPORT_CONTACT")
    @classmethod
    def _contact(cls, value: str | None) -> str | None:
        if value:
            contact.parse(value)
        return value

    @property
    def support_contact(self) -> str:
        """SUPPORT_CONTACT as Slack text ("the platform team" when unset)."""
        return contact.contact_text(self.SUPPORT_CONTACT)

    @field_validator("MODELARTS_PROJECTS")
    @classmethod
    def _projects(cls, value: str | None) -> str | None:
        if value is not None:
            parse_projects(value, _endpoint)
        return value

    @property
    def projects(self) -> tuple[Project, ...]:
        """The projects to serve: MODELARTS_PROJECTS, or the one the old settings name."""
        if self.MODELARTS_PROJECTS:
            return parse_projects(self.MODELARTS_PROJECTS, _endpoint)
        return (Project(DEFAULT, self.MODELARTS_PROJECT_ID or "",
                        (self.MODELARTS_ENDPOINT or "").rstrip("/")),)

    @field_validator("SLACK_RESPONSE_URLS")
    @classmethod
    def _response_urls(cls, value: str | None, info) -> str | None:
        for url in (value or "").split(","):
            if url.strip():
                _check_url(info.field_name, url.strip(), ("http", "https"))
        return value

    @property
    def response_url_prefixes(self) -> tuple[str, ...]:
        """Where a ``response_url`` may point: Slack's hooks host, SLACK_API_URL's origin, and
        SLACK_RESPONSE_URLS. Compared as prefixes of the whole URL."""
        api = urlsplit(self.SLACK_API_URL)
        extra = [u.strip() for u in (self.SLACK_RESPONSE_URLS or "").split(",") if u.strip()]
        return ("https://hooks.slack.com/", f"{api.scheme}://{api.netloc}/",
                *(u if u.endswith("/") else u + "/" for u in extra))

    @field_validator("REDIS_KEY_PREFIX")
    @classmethod
    def _no_hash_tag(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError("REDIS_KEY_PREFIX may not contain { or }: the bot adds its own "
                             "hash tags (bot/core/keys.py)")
        return value

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: str, info) -> str:
        return _check_url(info.field_name, value, ("redis", "rediss", "unix"))

    @field_validator("REDIS_SENTINELS")
    @classmethod
    def _sentinels(cls, value: str | None) -> str | None:
        if value:
            sentinel_addresses(value)
        return value or None

    @model_validator(mode="after")
    def _redis_topology(self) -> Settings:
        if self.REDIS_CLUSTER and self.REDIS_SENTINELS:
            raise ValueError("REDIS_CLUSTER and REDIS_SENTINELS are both set: choose one topology")
        if bool(self.REDIS_SENTINELS) != bool(self.REDIS_SENTINEL_MASTER):
            missing = "REDIS_SENTINEL_MASTER" if self.REDIS_SENTINELS else "REDIS_SENTINELS"
            raise ValueError(f"{missing} is missing: REDIS_SENTINELS and REDIS_SENTINEL_MASTER "
                             "go together")
        if self.REDIS_CLUSTER and urlsplit(self.REDIS_URL).path.strip("/") not in ("", "0"):
            raise ValueError("REDIS_URL names a database other than 0: a Redis Cluster has only 0")
        if self.REDIS_CA_FILE and not self.REDIS_URL.startswith("rediss://"):
            raise ValueError("REDIS_CA_FILE is set but REDIS_URL is not rediss:// (TLS)")
        if self.REDIS_CA_FILE and not Path(self.REDIS_CA_FILE).is_file():
            raise ValueError(f"REDIS_CA_FILE {self.REDIS_CA_FILE} is not a readable file")
        return self

    @field_validator("SMN_TOPICS")
    @classmethod
    def _smn_topics(cls, value: str | None) -> str | None:
        if value:
            smn_topics(value)
        return value or None

    @field_validator("SMN_SIGNING_CERT_FILE")
    @classmethod
    def _smn_cert(cls, value: str | None) -> str | None:
        if value and not Path(value).is_file():
            raise ValueError(f"{value} is not a readable file")
        return value or None

    @field_validator("SMN_EVENTS")
    @classmethod
    def _smn_events(cls, value: str) -> str:
        unknown = set(csv(value)) - set(SMN_JOB_EVENTS)
        if unknown:
            raise ValueError(f"unknown events {', '.join(sorted(unknown))}: choose among "
                             f"{', '.join(SMN_JOB_EVENTS)}")
        return value

    @property
    def smn_topics(self) -> dict[str, str]:
        return smn_topics(self.SMN_TOPICS) if self.SMN_TOPICS else {}

    @field_validator("SLACK_API_URL")
    @classmethod
    def _trailing_slash(cls, value: str) -> str:
        return value if value.endswith("/") else value + "/"

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if bool(self.MODELARTS_AK) != bool(self.MODELARTS_SK):
            missing = "MODELARTS_SK" if self.MODELARTS_AK else "MODELARTS_AK"
            raise ValueError(f"{missing} is missing: MODELARTS_AK and MODELARTS_SK go together")
        if self.MODELARTS_PROJECTS and (self.MODELARTS_ENDPOINT or self.MODELARTS_PROJECT_ID):
            raise ValueError("MODELARTS_PROJECTS is set: unset MODELARTS_ENDPOINT and "
                             "MODELARTS_PROJECT_ID (each project names its own)")
        if self.MODELARTS_PROJECTS and self.MODELARTS_PROJECT_NAME:
            raise ValueError("MODELARTS_PROJECT_NAME scopes the one project's IAM token: with "
                             "MODELARTS_PROJECTS each token is scoped by its project_id; unset it")
        return self

    @property
    def socket_mode(self) -> bool:
        """The one place the mode is decided: Socket Mode with an app token, else HTTP (signed)."""
        return self.SLACK_APP_TOKEN is not None

    def secret_values(self) -> list[str]:
        """Every secret the settings hold, for the log scrubber: the SecretStr settings and the
        password in REDIS_URL."""
        values = [v.get_secret_value() for v in (getattr(self, n) for n in SECRETS) if v]
        password = urlsplit(self.REDIS_URL).password
        if password:
            values += [password, unquote(password)]
        return values

    @property
    def uses_aksk(self) -> bool:
        return self.MODELARTS_AK is not None

    def problems(self, *, need_slack: bool = True) -> list[str]:
        """What stops the bot from serving, one line a problem, each naming its variable."""
        return [text for _, text in self.named_problems(need_slack=need_slack)]

    def named_problems(self, *, need_slack: bool = True) -> list[tuple[str, str]]:
        """``problems()`` as (the variable, the line): doctor skips the checks that need it."""
        return [(_first_name(text), text) for text in self._problems(need_slack=need_slack)]

    def _problems(self, *, need_slack: bool) -> list[str]:
        out: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            text = value.get_secret_value() if isinstance(value, SecretStr) else value
            if not isinstance(text, str) or not is_placeholder(text) or (
                    name == "MODELARTS_PROJECTS"):     # each project's, below
                continue
            if name == "REDIS_URL":
                out.append("REDIS_URL holds a placeholder (REPLACE_ME): set the real password")
            else:
                out.append(f"{name} is a placeholder from the examples: set the real value")
        if need_slack and not self.SLACK_BOT_TOKEN:
            out.append("SLACK_BOT_TOKEN is missing: set the bot token (xoxb-...)")
        if need_slack and not self.socket_mode and not self.SLACK_SIGNING_SECRET:
            out.append("SLACK_SIGNING_SECRET is missing: HTTP mode needs it to verify requests")
        for p in self.projects if self.MODELARTS_PROJECTS else ():
            if is_placeholder(p.project_id):
                out.append(f"MODELARTS_PROJECTS ({p.name}): project_id is a placeholder from the "
                           "examples: set the real id")
        if not self.MODELARTS_PROJECTS and not self.MODELARTS_ENDPOINT:
            out.append("MODELARTS_ENDPOINT is missing: e.g. https://modelarts.cn-north-4.myhuaweicloud.com")
        if not self.MODELARTS_PROJECTS and not self.MODELARTS_PROJECT_ID:
            out.append("MODELARTS_PROJECT_ID is missing: the project id of your region")
        iam = [self.MODELARTS_IAM_ENDPOINT, self.MODELARTS_USERNAME, self.MODELARTS_PASSWORD,
               self.MODELARTS_DOMAIN]
        if not self.uses_aksk:
            if not any(iam):
                out.append("MODELARTS_AK/MODELARTS_SK are missing: set them, or the IAM user "
                           "(MODELARTS_IAM_ENDPOINT, MODELARTS_USERNAME, MODELARTS_PASSWORD, "
                           "MODELARTS_DOMAIN)")
            else:
                names = ["MODELARTS_IAM_ENDPOINT", "MODELARTS_USERNAME", "MODELARTS_PASSWORD",
                         "MODELARTS_DOMAIN"]
                out.extend(f"{n} is missing: the IAM token needs it" for n, v in zip(names, iam,
                           strict=True) if not v)
        elif any(iam[1:3]):
            out.append("MODELARTS_USERNAME/MODELARTS_PASSWORD are set together with MODELARTS_AK: "
                       "choose one way to authenticate")
        return out


# Settings where an empty value means "off" rather than unset: links (no check depends on them).
EMPTY_TURNS_OFF = ("MODELARTS_CONSOLE_URL", "MODELARTS_CONSOLE_URL_V1")


def _blank(value: object) -> bool:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return isinstance(value, str) and value.strip() == ""


class _EmptyTurnsOff(PydanticBaseSettingsSource):
    """The link settings set to "" in the environment, or else in the .env file, as "off".
    pydantic-settings drops every empty value (``env_ignore_empty``: empty is unset, so that it
    never switches a check off); these two are read again here, where an empty one is kept."""

    def __init__(self, settings_cls: type[BaseSettings], dotenv: PydanticBaseSettingsSource):
        super().__init__(settings_cls)
        self.dotenv = dotenv

    def get_field_value(self, field, field_name):  # the base requires it; __call__ does all
        return None, field_name, False

    def __call__(self) -> dict[str, str]:
        out, files = {}, None
        for name in EMPTY_TURNS_OFF:
            value = os.environ.get(name)
            if value is None:
                files = files if files is not None else self._files()
                value = files.get(name)
            if value is not None and value.strip() == "":
                out[name] = console.OFF
        return out

    def _files(self) -> dict[str, str | None]:
        env_file = getattr(self.dotenv, "env_file", None)
        if not env_file:
            return {}
        return dict(DotEnvSettingsSource(self.settings_cls, env_file=env_file,
                                         env_ignore_empty=False).env_vars)


SMN_JOB_EVENTS = ("JobStarted", "JobCompleted", "JobFailed", "JobTerminated", "JobRestarted",
                  "JobHanged", "JobPreempted")
_URN = re.compile(r"\Aurn:smn:[a-z0-9-]+:[A-Za-z0-9]+:[A-Za-z0-9_-]{1,255}\Z")
_CHANNEL = re.compile(r"\A[CGD][A-Z0-9]{2,30}\Z")


def csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def smn_topics(value: str) -> dict[str, str]:
    """SMN_TOPICS: a JSON object topic URN -> channel id; ValueError naming what is wrong."""
    try:
        data = json.loads(value)
    except ValueError:
        raise ValueError("not valid JSON: e.g. {\"urn:smn:cn-north-4:<project>:<topic>\": "
                         "\"C0ALERTS\"}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError("must be a JSON object of topic URN -> Slack channel id")
    for urn, channel in data.items():
        if not _URN.match(urn):
            raise ValueError(f"{urn!r} is not a topic URN (urn:smn:<region>:<project>:<topic>)")
        if not isinstance(channel, str) or not _CHANNEL.match(channel):
            raise ValueError(f"the channel of {urn} must be a channel id (C0...), not a name")
    return data


def sentinel_addresses(value: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` as (host, port) pairs; ValueError for anything else."""
    out = []
    for part in (p.strip() for p in value.split(",")):
        host, _, port = part.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{part!r} is not host:port (e.g. 10.0.0.5:26379)")
        out.append((host.strip("[]"), int(port)))
    return out


_NAME = re.compile(r"\b[A-Z][A-Z0-9_]+\b")


def _first_name(text: str) -> str:
    """The first setting a problem line names (every line starts with one)."""
    return next((n for n in _NAME.findall(text) if n in Settings.model_fields), "settings")


def _invalid(exc: ValidationError) -> list[tuple[tuple[str, ...], str]]:
    """Each error as (the settings it names, one line naming the first of them once)."""
    out = []
    for err in exc.errors(include_input=False, include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        field = ".".join(str(p) for p in err["loc"])
        named = [n for n in _NAME.findall(msg) if n in Settings.model_fields]
        names = tuple(dict.fromkeys([field, *named] if field else named))
        out.append((names, msg if not field or field in msg else f"{field}: {msg}"))
    return out


def load_settings(**overrides: object) -> Settings:
    """Build Settings, turning any validation error into one ConfigError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError("; ".join(line for _, line in _invalid(exc))) from None


def load_settings_leniently(**overrides: object
                            ) -> tuple[Settings, list[tuple[tuple[str, ...], str]]]:
    """For ``doctor``: the settings with every invalid one set back to its default, and each
    error as (the settings it names, one line). A reset setting must not be used: doctor skips
    every check that needs one of them. ConfigError when an error names no setting."""
    errors: list[tuple[tuple[str, ...], str]] = []
    reset: dict[str, object] = {}
    while True:
        try:
            return Settings(**{**overrides, **reset}), errors
        except ValidationError as exc:
            found = _invalid(exc)
            fresh = {n for names, _ in found for n in names} - set(reset)
            if not fresh:
                raise ConfigError("; ".join(line for _, line in found)) from None
            errors += found
            reset.update({n: Settings.model_fields[n].default for n in fresh})
