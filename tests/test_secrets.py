"""No secret ever appears in a log line, a Slack call or an HTTP answer: distinctive values for
every secret, flows that succeed, fail and error, and every record scanned, both as logged (JSON
and scrubbed) and raw, before the scrub filter, to show the code never logs them at all."""

from __future__ import annotations

import io
import json
import logging
import time

import pytest
import requests

from bot.core.logs import JsonFormatter, ScrubSecrets
from bot.flow.blocks import CONFIRM
from bot.modelarts.refs import V1Job
from botdev.emulator import (
    EMULATOR_DOMAIN,
    EMULATOR_PROJECT_NAME,
    EMULATOR_USERNAME,
    Emulator,
    User,
)
from botdev.standin.slack import SlackStandIn
from tests.plugins.alerts import AlertBot
from tests.test_stop_flow import JOB, VERSION, request_message

BOT_TOKEN = "xoxb-secret-bot-4c7d9e1f2a"           # noqa: S105 - distinctive test values
SIGNING = "secret-signing-8b3f0e6d17"               # noqa: S105
SK = "secret-modelarts-sk-51a9c2e7"                 # noqa: S105
PASSWORD = "secret-iam-password-d06e3b92"           # noqa: S105
ALERTS = "secret-alerts-token-7f2c8a14"             # noqa: S105
SECRETS = (BOT_TOKEN, SIGNING, SK, PASSWORD, ALERTS)


@pytest.fixture
def slack_api():
    standin = SlackStandIn(tokens=(BOT_TOKEN,))
    standin.start()
    yield standin
    standin.close()


@pytest.fixture
def emulator():
    emu = Emulator(sk=SK, stop_delay=0.5,
                   users=[User(EMULATOR_USERNAME, PASSWORD, EMULATOR_DOMAIN)])
    emu.start("127.0.0.1", 0)
    yield emu
    emu.close()


class Capture(logging.Handler):
    """Every record at DEBUG: ``raw`` formats it before any filter ran; the scrubbed handler is
    what ``bot.core.logs.setup`` installs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.raw: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.raw.append(JsonFormatter().format(record))


@pytest.fixture
def logs():
    root = logging.getLogger()
    raw, scrubbed = Capture(), io.StringIO()
    handler = logging.StreamHandler(scrubbed)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ScrubSecrets(SECRETS))
    old_level = root.level
    root.addHandler(raw)           # first: it sees each record before the scrub changes it
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield raw, scrubbed
    root.removeHandler(raw)
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.fixture(params=["aksk", "iam"])
def secret_bot(request, bot_settings, slack_api, emulator):
    from bot.alerts.intake import routes
    from bot.app.web import create_wsgi
    from bot.app.wiring import create_bot

    auth = ({"MODELARTS_SK": SK} if request.param == "aksk" else {
        "MODELARTS_AK": None, "MODELARTS_SK": None, "MODELARTS_IAM_ENDPOINT": emulator.base_url,
        "MODELARTS_USERNAME": EMULATOR_USERNAME, "MODELARTS_PASSWORD": PASSWORD,
        "MODELARTS_DOMAIN": EMULATOR_DOMAIN, "MODELARTS_PROJECT_NAME": EMULATOR_PROJECT_NAME})
    settings = bot_settings(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING,
                            ALERTS_TOKEN=ALERTS, ALERTS_CHANNEL="C0ALERTS",
                            ALERT_POST_INTERVAL_SECONDS=0, MODELARTS_TIMEOUT_SECONDS=0.5,
                            STOP_VERIFY_INTERVAL_SECONDS=0.2, **auth)
    bot = create_bot(settings, session=requests.Session())
    server = AlertBot(create_wsgi(bot, routes(bot)), slack_api, secret=SIGNING)
    server.bot = bot
    bot.start_background()
    yield server
    bot.close()
    server.close()


def confirm_with(bot, slack_api, emulator, fault: dict | None, exclude=()) -> None:
    emulator.set_status(V1Job(JOB, VERSION), 8)
    bot.command(f"stop {JOB} {VERSION}")
    msg = request_message(slack_api, exclude)
    if fault:
        emulator.set_fault(V1Job(JOB, VERSION), **fault)
    bot.click_button(msg, CONFIRM, "U0ONCALL")
    replies = slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts),
                                 timeout=15)
    emulator.clear_faults()
    if "Stop failed" not in replies[0].text:   # followed: the job is free once it has ended
        slack_api.wait_for(lambda: len(slack_api.thread_replies(msg.channel, msg.ts)) >= 2,
                           timeout=15)
    return msg


def test_no_secret_in_logs_slack_calls_or_http_answers(secret_bot, slack_api, emulator, logs):
    raw, scrubbed = logs
    bot = secret_bot
    answers: list[requests.Response] = []
    seen = []
    for fault in (None, {"kind": "html_500"}, {"kind": "failure", "http_status": 403,
                                               "error_code": "ModelArts.0108"},
                  {"kind": "slow", "delay": 1.0, "when": "after"}):
        seen.append(confirm_with(bot, slack_api, emulator, fault, tuple(seen)).ts)
    answers += [bot.command("stop x y"), bot.command("help"), bot.command("status 1 2"),
                bot.command(f"stop {JOB} {VERSION}", secret="wrong-secret"),
                bot.post("payload=%5B1%5D"), bot.post("payload=" + "A" * 2000),
                bot.command("", user=""),
                bot.alert({"channel": "C0ALERTS", "job_id": str(JOB), "version_id": str(VERSION),
                           "job_name": "team-a-resnet", "status": "RUNNING",
                           "summary": "loss is NaN"}, token=ALERTS),
                bot.alert({"bad": 1}, token=ALERTS), bot.alert(b"\xff", token="wrong"),
                bot.alert({"bad": 1}, token=ALERTS),
                bot.alert({}, token=None),
                bot.http.get(bot.url + "/healthz", timeout=5),
                bot.http.get(bot.url + "/nowhere", timeout=5)]
    emulator.revoke_tokens()          # IAM: a rejected token, fetched again with the password
    bot.command(f"status {JOB} {VERSION}")
    slack_api.wait_for(lambda: len(slack_api.calls_to("chat.postMessage")) >= 9, timeout=15)
    time.sleep(1.0)   # the alert post, the status answer and the error paths finish now

    assert raw.raw and "bot.decision" in "\n".join(raw.raw)
    haystacks = {
        "log records before the scrub": "\n".join(raw.raw),
        "log lines": scrubbed.getvalue(),
        "Slack calls": "\n".join(json.dumps(c.params, default=str) for c in slack_api.calls),
        "HTTP answers": "\n".join(r.text + json.dumps(dict(r.headers)) for r in answers),
    }
    for where, text in haystacks.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret ({secret[:10]}...) in the {where}"


def test_the_scrub_filter_removes_a_secret_that_was_logged(logs):
    """The safety net itself: a secret that does reach a record is masked in the line."""
    raw, scrubbed = logs
    logging.getLogger("bot.test").warning("token %s", BOT_TOKEN, extra={"detail": SK})
    assert BOT_TOKEN in raw.raw[-1]
    line = scrubbed.getvalue().strip().splitlines()[-1]
    assert BOT_TOKEN not in line and SK not in line and "***" in line


class Vault:
    """An object whose str() holds a secret, as an exception or a request object may."""

    def __str__(self) -> str:
        return f"Vault(sk={SK})"


def test_a_secret_nested_in_an_extra_is_scrubbed(logs):
    """Dicts (keys too), lists, tuples and other objects' str() are scrubbed, not just strings;
    the structure stays JSON."""
    raw, scrubbed = logs
    logging.getLogger("bot.test").warning("nested", extra={
        "d": {"k": SK, "l": [BOT_TOKEN, (PASSWORD, 3)], SIGNING: True}, "o": Vault()})
    assert SK in raw.raw[-1] and BOT_TOKEN in raw.raw[-1]
    line = scrubbed.getvalue().strip().splitlines()[-1]
    for secret in SECRETS:
        assert secret not in line
    got = json.loads(line)
    assert got["d"] == {"k": "***", "l": ["***", ["***", 3]], "***": True}
    assert got["o"] == "Vault(sk=***)"


def test_an_unhandled_error_keeps_its_traceback_scrubbed(logs):
    """"unhandled error <id>" (bot.slack.later) has its traceback behind it in the line, with
    the secret in the exception's text masked."""
    from bot.slack.later import report_error

    raw, scrubbed = logs
    try:
        raise RuntimeError(f"ModelArts said no to {SK}")
    except RuntimeError as exc:
        report_error(exc)
    got = json.loads(scrubbed.getvalue().strip().splitlines()[-1])
    assert got["msg"] == f"unhandled error {got['error_id']}: RuntimeError"
    assert got["exc"].startswith("Traceback (most recent call last):")
    assert "test_an_unhandled_error_keeps_its_traceback_scrubbed" in got["exc"]
    assert "RuntimeError: ModelArts said no to ***" in got["exc"] and SK not in got["exc"]
    assert SK in raw.raw[-1]   # it was there before the scrub
