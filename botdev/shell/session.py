"""The shell's in-process wiring: the real bot, served on loopback, and talking to stand-ins.

What is real: ``create_bot`` and ``create_wsgi`` exactly as ``serve`` builds them (Bolt, the
signature check, the stop flow, Redis, the alert intake and its dispatcher thread). What is
stood in: Slack's Web API (``SlackStandIn``, each call shown in the terminal) and, unless
MODELARTS_ENDPOINT is set, ModelArts (the emulator). Each typed line becomes an HTTP request
signed as Slack signs it, sent to the WSGI app on 127.0.0.1, so the path from the socket to the
flow is the production one; ``/alert`` is a POST to the same app's ``/alerts``. With the
emulator, the bot also takes SMN pushes (SMN_TOPICS: the emulator's topic to the shell's channel,
SMN_SIGNING_CERT_FILE: the emulator's signing certificate) and ``/event`` has the emulator
publish a signed ModelArts job event to the app's ``/smn``.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import redis
import requests

from bot.app.httpd import serve_in_thread
from bot.core.errors import ConfigError
from bot.core.settings import Settings, load_settings
from bot.flow.roles import Roles, load_roles, parse_roles
from bot.modelarts.refs import JobRef, V2Job
from botdev.shell.render import Button, Transcript
from botdev.standin import local
from botdev.standin.signing import slack_headers
from botdev.standin.slack import BOT_TOKEN, Call, SlackStandIn

TEAM = "T0SHELL"
DEFAULT_USER = "U0YOU"
DEFAULT_CHANNEL = "C0SHELL"
SAMPLE_ROLES = f"""
roles:
  oncall:
    jobs: ["*"]
  team-a:
    jobs: ["team-a-*"]
  team-b:
    jobs: ["team-b-*"]
  oncall-lead:
    jobs: ["*"]
users:
  {DEFAULT_USER}: [oncall]
  U0ONCALL: [oncall]
  U0ALICE: [team-a]
  U0BOB: [team-b]
  U0LEAD: [oncall-lead]
protected:
  - jobs: ["*-llama-*"]
    approvers: [oncall-lead]
"""
SECOND_PROJECT, SECOND_PROJECT_ID = "ap3", "fedcba9876543210fedcba9876543210"
QUIET_SECONDS = 0.3      # no call for this long, none in flight: the bot is done with a line
SETTLE_LIMIT = 30.0
EVENT_WAIT = 3.0         # an SMN event's alert (or edit), if any, comes within this
Write = Callable[[str], None]


def _running(emulator) -> list[str]:
    """The running jobs of an emulator, as the banner names them."""
    from botdev.emulator import STOPPABLE

    state = emulator.state()
    running = [f"{t['metadata']['name']}" + (
        "" if t["status"]["phase"] == "Running" else f" ({t['status']['phase']})")
        for t in state["training_jobs"] if t["status"]["phase"] in STOPPABLE]
    return running + [f"{j['job_id']} {v['version_id']} {j['job_name']}"
                      for j in state["jobs"] for v in j["versions"] if v["status"] == 8]


class ShellError(Exception):
    """The shell cannot start; the message says what to install or set."""


class Activity:
    """When the bot last did something, and how many outbound HTTP calls are in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inflight = 0
        self.last = time.monotonic()

    def touch(self, delta: int = 0) -> None:
        with self.lock:
            self.inflight += delta
            self.last = time.monotonic()

    def idle_for(self) -> float:
        with self.lock:
            return -1.0 if self.inflight else time.monotonic() - self.last


class CountingSession(requests.Session):
    """The ModelArts client's session: counts calls in flight, so the shell knows to wait."""

    def __init__(self, activity: Activity) -> None:
        super().__init__()
        self.activity = activity

    def request(self, *args, **kwargs):  # type: ignore[override]
        self.activity.touch(+1)
        try:
            return super().request(*args, **kwargs)
        finally:
            self.activity.touch(-1)


@dataclass
class Throwaway:
    """A redis-server of the shell's own, on a free port, deleted at exit."""

    proc: subprocess.Popen
    dir: str
    url: str

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def answers(settings: Settings) -> bool:
    """True when the Redis the settings name (any topology, TLS) answers a PING."""
    from redis.exceptions import RedisClusterException

    from bot.core.redis_conn import connect

    try:
        client = connect(settings)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, RedisClusterException, OSError, ValueError):
        return False


def start_redis() -> Throwaway:
    exe = shutil.which("redis-server")
    if not exe:
        raise ShellError("no Redis answers at REDIS_URL and redis-server is not installed: "
                         "install it (apt-get install redis-server, brew install redis) or set "
                         "REDIS_URL")
    port, workdir = local.free_port(), tempfile.mkdtemp(prefix="modelarts-bot-shell-")
    try:
        proc = local.start_redis(port, workdir)
    except RuntimeError:
        shutil.rmtree(workdir, ignore_errors=True)
        raise ShellError("redis-server did not start") from None
    return Throwaway(proc, workdir, f"redis://127.0.0.1:{port}/0")


class Session:
    """Start with ``start()`` (returns the banner), then ``command``/``click``/``alert``."""

    def __init__(self, write: Write, *, user: str = DEFAULT_USER,
                 channel: str = DEFAULT_CHANNEL, log_level: str = "ERROR") -> None:
        self.write_raw = write
        self.user = user
        self.channel = channel
        self.log_level = log_level
        self.transcript = Transcript()
        self.activity = Activity()
        self.secret = secrets.token_hex(16)
        self.alerts_token = secrets.token_hex(16)
        self.http = requests.Session()
        self._out = threading.Lock()
        self._closers: list[Callable[[], None]] = []
        self.standin = SlackStandIn()
        self.emulator = None
        self.bot = None
        self.url = ""

    # -- life cycle ------------------------------------------------------------------------
    def start(self) -> list[str]:
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> list[str]:
        from bot.app.web import create_wsgi, routes
        from bot.app.wiring import create_bot
        from bot.core.logs import setup

        base = load_settings()
        banner = ["modelarts-bot shell: the real bot in-process; Slack is a local stand-in "
                  "(nothing is sent to Slack)."]
        redis_settings, note = self._redis(base)
        modelarts, line = self._modelarts(base)
        roles, roles_line = self._roles(base)
        self.standin.on_call = self._on_call
        self.standin.start()
        self._closers.append(self.standin.close)
        # A prefix of its own: a production REDIS_URL must not lend the shell its alert queue.
        prefix = f"{base.REDIS_KEY_PREFIX}shell:{secrets.token_hex(4)}:"
        settings = load_settings(
            SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=self.secret, SLACK_APP_TOKEN=None,
            SLACK_API_URL=self.standin.api_url, **redis_settings, REDIS_KEY_PREFIX=prefix,
            ALERTS_TOKEN=self.alerts_token, ALERTS_CHANNEL=self.channel, **modelarts)
        setup(self.log_level, _secret_values(settings))
        self.bot = create_bot(settings, roles=roles, session=CountingSession(self.activity))
        self._closers.append(lambda: _forget(self.bot.redis, prefix))
        self.bot.start_background()
        self._closers.append(self.bot.close)
        httpd = serve_in_thread(create_wsgi(self.bot, routes(self.bot, metrics=False)))
        self._closers.append(lambda: (httpd.shutdown(), httpd.server_close()))
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        if self.emulator is not None:
            topic = self.emulator.smn_subscribe(self.url + "/smn")
            line += (f"\nSMN: the emulator publishes job events (topic {topic}) to the bot's "
                     f"/smn, for {self.channel}: try `/event JobHanged <job>`.")
        return [*banner, line, f"Redis: {note} (keys under {prefix}, removed on exit).",
                roles_line, f"You are {self.user} in channel {self.channel}. "
                "Type `help` for the shell's commands, or try `/modelarts list` and "
                "`/modelarts stop team-a-resnet50`."]

    def close(self) -> None:
        while self._closers:
            closer = self._closers.pop()
            try:
                closer()
            except Exception as exc:  # noqa: BLE001 - tear-down goes on whatever fails
                logging.getLogger(__name__).warning("shell tear-down: %s", exc)
        self.http.close()

    def _redis(self, base: Settings) -> tuple[dict, str]:
        """The Redis settings the shell's bot uses: the configured Redis when it answers (any
        topology), else a throwaway plain redis-server."""
        url = base.REDIS_URL
        if answers(base):
            return {"REDIS_URL": url}, f"{_safe_url(url)}"
        server = start_redis()
        self._closers.append(server.close)
        plain = {"REDIS_URL": server.url, "REDIS_CA_FILE": None, "REDIS_CLUSTER": False,
                 "REDIS_SENTINELS": None, "REDIS_SENTINEL_MASTER": None}
        return plain, (f"none answered at {_safe_url(url)}, so a throwaway redis-server "
                       f"runs on {server.url} for this session")

    def _modelarts(self, base: Settings) -> tuple[dict, str]:
        if base.MODELARTS_ENDPOINT:
            problems = [p for p in base.problems(need_slack=False)]
            if problems:
                raise ConfigError(problems[0])
            return {}, (f"ModelArts: {base.MODELARTS_ENDPOINT} (from MODELARTS_ENDPOINT: "
                        "REAL jobs, a confirmed stop really stops one).")
        from botdev.emulator import (
            EMULATOR_AK,
            EMULATOR_PROJECT_ID,
            EMULATOR_SK,
            Emulator,
        )

        self.emulator = Emulator(stop_delay=5.0)
        self.emulator.start("127.0.0.1", 0)
        self._closers.append(self.emulator.close)
        # A second project, as a second region is: its own emulator, project id and endpoint.
        second = Emulator(stop_delay=5.0, seed_project=SECOND_PROJECT,
                          project_id=SECOND_PROJECT_ID, gate=self.emulator.gate)
        second.start("127.0.0.1", 0)
        self._closers.append(second.close)
        running = _running(self.emulator) + [f"{SECOND_PROJECT}/{name}"
                                             for name in _running(second)]
        projects = [{"name": "default", "project_id": EMULATOR_PROJECT_ID,
                     "endpoint": self.emulator.base_url},
                    {"name": SECOND_PROJECT, "project_id": SECOND_PROJECT_ID,
                     "region": "ap-southeast-3", "endpoint": second.base_url}]
        values = {"MODELARTS_PROJECTS": json.dumps(projects), "MODELARTS_ENDPOINT": None,
                  "MODELARTS_PROJECT_ID": None, "MODELARTS_AK": EMULATOR_AK,
                  "MODELARTS_SK": EMULATOR_SK, "MODELARTS_IAM_ENDPOINT": None,
                  "MODELARTS_USERNAME": None, "MODELARTS_PASSWORD": None,
                  "SMN_TOPICS": json.dumps({self.emulator.smn_topic_urn: self.channel}),
                  "SMN_SIGNING_CERT_FILE": str(self.emulator.smn_cert_file)}
        return values, ("*** ModelArts: the BUILT-IN EMULATOR (MODELARTS_ENDPOINT is unset), "
                        f"two projects (default and {SECOND_PROJECT}; team-b-yolov8 runs in "
                        "both), sample jobs; running: " + "; ".join(running) + " ***")

    def _roles(self, base: Settings) -> tuple[Roles, str]:
        if "ROLES_FILE" in base.model_fields_set or Path(base.ROLES_FILE).is_file():
            roles = load_roles(base.ROLES_FILE)
            mapped = "" if roles.users.get(self.user) else (
                f" {self.user} holds no role there: use `/as <user id>`.")
            return roles, f"Roles: {base.ROLES_FILE}.{mapped}"
        return parse_roles(SAMPLE_ROLES, "sample roles"), (
            f"Roles: a sample (no ROLES_FILE): {self.user} and U0ONCALL on-call (any job), "
            "U0ALICE team-a-*, U0BOB team-b-*, U0LEAD oncall-lead (approves the protected "
            "*-llama-* jobs); anyone else holds none.")

    # -- output ----------------------------------------------------------------------------
    def write(self, lines: list[str]) -> None:
        if lines:
            with self._out:
                self.write_raw("\n".join(lines) + "\n")

    def _on_call(self, call: Call) -> None:
        self.activity.touch()
        with self._out:   # numbering and printing in one step, in the order calls arrived
            lines = self.transcript.render(call.method, call.params, call.answer, self.user,
                                           call.status)
            if lines:
                self.write_raw("\n".join(lines) + "\n")

    def settle(self, quiet: float = QUIET_SECONDS, limit: float = SETTLE_LIMIT) -> None:
        """Wait until the bot has made no call for ``quiet`` seconds and has none in flight."""
        deadline = time.monotonic() + limit
        while self.activity.idle_for() < quiet and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- what a line can do ----------------------------------------------------------------
    def command(self, command: str, text: str) -> None:
        """A slash command, as Slack sends it (form-encoded, signed)."""
        body = urlencode({
            "token": "unused", "team_id": TEAM, "team_domain": "shell",
            "channel_id": self.channel, "channel_name": "shell", "user_id": self.user,
            "user_name": self.user.lower(), "command": command, "text": text,
            "api_app_id": "A0SHELL", "trigger_id": f"{time.time()}.shell",
            "response_url": self.standin.response_url(f"cmd-{self.user}"),
        })
        self._slack(body)

    def home(self) -> None:
        """Open the Home tab: app_home_opened for the current user, signed JSON as the Events
        API sends it; the view is printed as the bot publishes it (views.publish)."""
        before = self._publishes()
        self._slack(json.dumps({
            "token": "unused", "team_id": TEAM, "api_app_id": "A0SHELL", "type": "event_callback",
            "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time()),
            "event": {"type": "app_home_opened", "user": self.user, "channel": dm(self.user),
                      "tab": "home", "event_ts": f"{time.time():.6f}"}}), "application/json")
        try:
            self.standin.wait_for(lambda: self._publishes() > before)
        except TimeoutError:
            self.write(["! the bot published no Home tab within 10 s"])
        self.settle()

    def _publishes(self) -> int:
        return len([c for c in self.standin.calls_to("views.publish")
                    if c.params.get("user_id") == self.user])

    def click(self, number: int) -> bool:
        """Click button ``number``; False when no such button is on screen any more."""
        button = self.transcript.button(number)
        if button is None:
            return False
        if button.home:
            self._slack(urlencode({"payload": json.dumps(self._home_click(button))}))
            return True
        message = self.standin.messages.get((button.channel, button.ts))
        # A button on an ephemeral message (a list entry): Slack sends no message with it.
        channel = self.channel if button.ephemeral else button.channel
        ts = f"{time.time():.6f}" if button.ephemeral else button.ts
        payload = {
            "type": "block_actions", "api_app_id": "A0SHELL", "token": "unused",
            "team": {"id": TEAM, "domain": "shell"},
            "user": {"id": self.user, "username": self.user.lower(), "team_id": TEAM},
            "container": {"type": "message", "message_ts": ts,
                          "channel_id": channel, "is_ephemeral": button.ephemeral},
            "channel": {"id": channel, "name": "shell"},
            "trigger_id": f"{time.time()}.shell",
            "response_url": self.standin.response_url(f"act-{self.user}"),
            "actions": [{"type": "button", "action_id": button.action_id,
                         "block_id": button.block_id, "value": button.value,
                         "text": {"type": "plain_text", "text": button.label},
                         "action_ts": str(time.time())}],
        }
        if not button.ephemeral:
            payload["message"] = {"type": "message", "ts": ts,
                                  "text": message.text if message else "",
                                  "blocks": (message.blocks if message else None) or []}
        self._slack(urlencode({"payload": json.dumps(payload)}))
        return True

    def _home_click(self, button: Button) -> dict:
        """A click on the Home tab, as Slack sends it: the view, no channel, no message."""
        view = self.standin.views.get(self.user)
        return {
            "type": "block_actions", "api_app_id": "A0SHELL", "token": "unused",
            "team": {"id": TEAM, "domain": "shell"},
            "user": {"id": self.user, "username": self.user.lower(), "team_id": TEAM},
            "container": {"type": "view", "view_id": button.ts},
            "trigger_id": f"{time.time()}.shell",
            "view": {"id": button.ts, "type": "home", "blocks": view.blocks if view else [],
                     "private_metadata": view.private_metadata if view else "",
                     "callback_id": view.callback_id if view else "", "state": {"values": {}}},
            "actions": [{"type": "button", "action_id": button.action_id,
                         "block_id": button.block_id, "value": button.value,
                         "text": {"type": "plain_text", "text": button.label},
                         "action_ts": str(time.time())}],
        }

    def alert(self, ref: JobRef, summary: str) -> None:
        """POST an alert to the bot's own /alerts, as a monitoring system would."""
        name, status = self._job(ref)
        ids = ({"training_job_id": ref.training_job_id} if isinstance(ref, V2Job) else
               {"job_id": ref.job_id, "version_id": ref.version_id})
        body = {"channel": self.channel, **ids, "job_name": name, "status": status,
                "summary": summary, "severity": "critical"}
        posts = len(self.standin.calls_to("chat.postMessage"))
        edits = len(self.standin.calls_to("chat.update"))
        self.activity.touch()
        resp = self.http.post(self.url + "/alerts", json=body, timeout=10,
                              headers={"Authorization": f"Bearer {self.alerts_token}"})
        if resp.status_code != 202:
            self.write([f"! the alert intake answered HTTP {resp.status_code}: "
                        f"{resp.text.strip()}"])
            return
        duplicate = _duplicate(resp)
        if duplicate is not None:
            self._duplicate_alert(duplicate, edits)
            return
        try:   # the dispatcher thread posts it; wait for that, then for the bot to go quiet
            self.standin.wait_for(lambda: len(self.standin.calls_to("chat.postMessage")) > posts)
        except TimeoutError:
            self.write(["! the alert was queued but not posted within 10 s"])
        self.settle()

    def _duplicate_alert(self, count: int, edits: int) -> None:
        """The intake deduplicated it: no new post. Say so now; the first alert's message
        may be edited ("Seen N times", pushed only while none is waiting to be): wait for that
        a moment, quietly."""
        self.write([f"(a duplicate: the bot has had this alert {count} times within "
                    "ALERT_DEDUPE_SECONDS and posts no new message; the first one's message "
                    "counts them)"])
        try:
            self.standin.wait_for(lambda: len(self.standin.calls_to("chat.update")) > edits,
                                  timeout=EVENT_WAIT)
        except TimeoutError:
            pass
        self.settle()

    def event(self, event: str, job: str, fmt: str = "json") -> None:
        """Have the emulator publish one SMN job event to the bot's /smn, as ModelArts would."""
        if self.emulator is None:
            self.write(["! /event needs the built-in emulator (MODELARTS_ENDPOINT is set)"])
            return
        def shown() -> int:   # an alert posted, or an earlier one edited (resolved)
            return len(self.standin.calls_to("chat.postMessage")) + len(
                self.standin.calls_to("chat.update"))

        before = shown()
        self.activity.touch()
        try:
            resp = self.emulator.publish_event(job, event, fmt)
        except KeyError:
            self.write([f"! the emulator has no v2 training job named or with the id `{job}`"])
            return
        except ValueError as exc:
            self.write([f"! {exc}"])
            return
        except requests.RequestException as exc:
            self.write([f"! the bot's /smn did not answer: {type(exc).__name__}"])
            return
        self.activity.touch()
        if not 200 <= resp.status_code < 300:
            self.write([f"! the bot's /smn answered HTTP {resp.status_code}: "
                        f"{resp.text.strip()[:200]}"])
            return
        try:   # an event the bot does not alert on (SMN_EVENTS) posts nothing
            self.standin.wait_for(lambda: shown() > before, timeout=EVENT_WAIT)
        except TimeoutError:
            self.write([f"(the bot took the {event} event, HTTP {resp.status_code}, and posted "
                        "nothing: see SMN_EVENTS)"])
        self.settle()

    def _job(self, ref: JobRef) -> tuple[str, str]:
        """What a monitoring system would know: the job's name and state (looked up)."""
        from bot.modelarts.models import Failure

        found = self.bot.modelarts.lookup(ref)
        if isinstance(found, Failure):
            return "", "UNKNOWN"
        return found.name, found.state

    def _slack(self, body: str, content_type: str | None = None) -> None:
        self.activity.touch()
        headers = slack_headers(self.secret, body)
        if content_type:
            headers["Content-Type"] = content_type
        try:
            resp = self.http.post(self.url + "/slack/events", data=body.encode(), timeout=10,
                                  headers=headers)
        except requests.RequestException as exc:
            self.write([f"! the bot did not answer: {type(exc).__name__}"])
            return
        self.activity.touch()
        self.write(self._ack(resp))
        self.settle()

    def _ack(self, resp: requests.Response) -> list[str]:
        """The HTTP answer to Slack: empty (ack), an ephemeral text, or an error."""
        if resp.status_code != 200:
            return [f"! the bot answered HTTP {resp.status_code}: {resp.text.strip()[:200]}"]
        if not resp.content:
            return []
        try:
            body = resp.json()
        except ValueError:
            body = {"text": resp.text}
        with self._out:
            return self.transcript.ephemeral(body, self.user, self.user)


def dm(user: str) -> str:
    """The shell's id of ``user``'s direct messages with the bot (Slack's start with D)."""
    return "D" + user[1:]


def _duplicate(resp: requests.Response) -> int | None:
    """How often the alert was seen, when the intake's 202 says it is a duplicate; else None."""
    try:
        first = resp.json()["accepted"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    if not isinstance(first, dict) or first.get("status") != "duplicate":
        return None
    count = first.get("count")
    return count if isinstance(count, int) else 2


def _safe_url(url: str) -> str:
    """REDIS_URL without a password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return parts._replace(netloc=netloc).geturl()
    return url


def _secret_values(settings: Settings) -> list[str]:
    from bot.app.serve import secret_values

    return secret_values(settings)


def _forget(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=prefix + "*", count=500))
    if keys:
        client.delete(*keys)
