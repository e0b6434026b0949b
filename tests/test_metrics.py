"""GET /metrics end to end: the served app over real HTTP, real Redis, the emulator and the Slack
stand-in; two gunicorn workers summed; the alert rules and dashboard name only exported metrics."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis
import requests
import yaml
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from bot.app.metrics_sample import Sampler
from bot.app.metrics_web import kind_of
from bot.core import metrics
from bot.core.keys import Keys
from bot.flow.blocks import CONFIRM
from bot.modelarts.refs import V1Job
from botdev.emulator import defaults
from botdev.standin.local import free_port, wait_healthy
from botdev.standin.signing import slack_headers
from botdev.standin.slack import BOT_TOKEN
from tests.plugins.alerts import ALERTS_TOKEN, AlertBot, generic
from tests.plugins.slack import SIGNING_SECRET
from tests.test_stop_flow import request_message, stop_and_confirm

ROOT = Path(__file__).resolve().parent.parent
JOB, VERSION = 182626, 278813          # team-a-resnet, RUNNING
METRICS_TOKEN = "metrics-token-5d02c7e9a1"  # noqa: S105 - distinctive, so leaks can be grepped

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def scrape(server, token: str | None = None) -> Samples:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    resp = server.http.get(server.url + "/metrics", headers=headers, timeout=10)
    assert resp.status_code == 200, resp.text
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(resp.text)


def exported_names() -> set[str]:
    """Every sample name the bot's /metrics can show: bot.core.metrics' objects and process_*."""
    names = {"process_cpu_seconds_total", "process_resident_memory_bytes",
             "process_virtual_memory_bytes", "process_start_time_seconds", "process_open_fds",
             "process_max_fds"}
    for obj in vars(metrics).values():
        if not isinstance(obj, MetricWrapperBase):
            continue
        base = obj._name
        names |= {"counter": {base + "_total"},
                  "histogram": {base + "_bucket", base + "_sum", base + "_count"},
                  "gauge": {base}}[obj._type]
    return names


_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
             "unless", "offset", "inf", "nan", "le"}


def promql_metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression, simply: strings, label sets, ranges and grouping
    clauses removed, then every word that is not a function, a keyword or a number."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])[A-Za-z_:][\w:]*", text):
        if not text[m.end():].lstrip().startswith("(") and m.group().lower() not in _KEYWORDS:
            names.add(m.group())
    return names


@pytest.fixture
def serve_bot(bot_settings, slack_api):
    """A replica served as ``serve`` composes it (bot.app.serve.application), with the alert intake
    on and its dispatcher stopped, so queued alerts stay queued."""
    from bot.app.serve import application
    from bot.app.wiring import create_bot

    servers: list[AlertBot] = []

    def make(**overrides) -> AlertBot:
        settings = bot_settings(**{"ALERTS_TOKEN": ALERTS_TOKEN, "METRICS_OPEN": True,
                                   **overrides})
        bot = create_bot(settings, session=requests.Session())
        server = AlertBot(application(bot), slack_api)
        server.bot = bot
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def full_stop(server, slack_api) -> None:
    msg = stop_and_confirm(server, slack_api)
    slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
    slack_api.wait_for(lambda: "Stop requested" in msg.text)


class TestExposition:
    def test_metrics_parse_and_name_every_required_family(self, serve_bot):
        samples = scrape(serve_bot())
        names = {name for name, _ in samples}
        for family in ("modelarts_bot_alerts_queued", "modelarts_bot_owed_replies_pending",
                       "modelarts_bot_confirmations_pending", "process_cpu_seconds_total",
                       "process_resident_memory_bytes"):
            assert family in names, family
        assert names <= exported_names() | {n for n in names if n.startswith("python_")}

    def test_a_full_stop_moves_each_decision_and_ack_by_exactly_one(self, serve_bot, slack_api):
        server = serve_bot()
        before = scrape(server)
        full_stop(server, slack_api)
        after = scrape(server)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        decisions = "modelarts_bot_decisions_total"
        assert moved(decisions, event="requested", outcome="none") == 1
        assert moved(decisions, event="confirmed", outcome="none") == 1
        assert moved(decisions, event="stopped", outcome="stop_requested") == 1
        assert moved(decisions, event="failed", outcome="stop_failed") == 0
        assert moved("modelarts_bot_ack_seconds_count", kind="command") == 1
        assert moved("modelarts_bot_ack_seconds_count", kind="click") == 1

    def test_a_full_stop_counts_one_accepted_stop_call(self, serve_bot, slack_api):
        server = serve_bot()
        before = scrape(server)
        full_stop(server, slack_api)
        after = scrape(server)
        stops = "modelarts_bot_stop_requests_total"
        one = {"project": "default"}    # the single project's name
        assert value(after, stops, api="v1", result="accepted", **one) - value(
            before, stops, api="v1", result="accepted", **one) == 1
        calls = "modelarts_bot_modelarts_request_seconds_count"
        assert value(after, calls, api="v1", operation="stop_version", **one) - value(
            before, calls, api="v1", operation="stop_version", **one) == 1

    @pytest.mark.parametrize("fault, options, result, code", [
        ("failure", dict(error_code="ModelArts.0105", error_msg="no", http_status=400),
         "refused", "ModelArts.0105"),
        ("slow", dict(delay=1.5, when="after"), "unknown", "BOT.TIMEOUT"),
    ])
    def test_a_failed_stop_counts_its_result_and_error(self, serve_bot, slack_api, emulator,
                                                        fault, options, result, code):
        server = serve_bot(MODELARTS_TIMEOUT_SECONDS=0.5)
        assert server.command(f"stop {JOB} {VERSION}").status_code == 200
        msg = request_message(slack_api)
        before = scrape(server)
        emulator.set_fault(V1Job(JOB, VERSION), fault, **options)
        assert server.click_button(msg, CONFIRM, "U0ONCALL").status_code == 200
        slack_api.wait_for(lambda: slack_api.thread_replies(msg.channel, msg.ts))
        after = scrape(server)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        stops = "modelarts_bot_stop_requests_total"
        assert moved(stops, api="v1", result=result, project="default") == 1
        assert moved(stops, api="v1", result="accepted", project="default") == 0
        errors = [(dict(labels)["code"], v - value(before, name, **dict(labels)))
                  for (name, labels), v in after.items()
                  if name == "modelarts_bot_modelarts_errors_total"
                  and dict(labels)["operation"] == "stop_version"]
        moved_codes = [c for c, delta in errors if delta]
        assert moved_codes == [code]
        assert moved("modelarts_bot_decisions_total", event="failed", outcome=(
            "stop_failed" if result == "refused" else "unknown")) == 1

    def test_a_full_stop_times_its_slack_posts(self, serve_bot, slack_api):
        server = serve_bot()
        before = scrape(server)
        full_stop(server, slack_api)
        after = scrape(server)
        posts = "modelarts_bot_slack_request_seconds_count"
        assert value(after, posts, method="chat.postMessage") > value(
            before, posts, method="chat.postMessage")

    def test_a_denied_stop_counts_a_denial_and_no_stop(self, serve_bot, slack_api, emulator):
        server = serve_bot()
        before = scrape(server)
        assert server.command(f"stop {JOB} {VERSION}", user="U0BOB").status_code == 200
        slack_api.wait_for(lambda: any("may not stop" in c.params.get("text", "")
                                       for c in slack_api.calls))
        after = scrape(server)
        denied = dict(event="denied", outcome="no_role")
        assert value(after, "modelarts_bot_decisions_total", **denied) - value(
            before, "modelarts_bot_decisions_total", **denied) == 1
        assert value(after, "modelarts_bot_decisions_total", event="requested", outcome="none") \
            == value(before, "modelarts_bot_decisions_total", event="requested", outcome="none")
        assert emulator.stop_count(V1Job(JOB, VERSION)) == 0

    def test_a_forged_request_is_not_an_ack(self, serve_bot):
        server = serve_bot()
        before = scrape(server)
        assert server.command("help", secret="forged").status_code == 401
        after = scrape(server)
        count = "modelarts_bot_ack_seconds_count"
        assert value(after, count, kind="command") == value(before, count, kind="command")

    def test_post_is_refused(self, serve_bot):
        server = serve_bot()
        assert server.http.post(server.url + "/metrics", timeout=10).status_code == 405


class TestGauges:
    def test_queued_alerts_and_owed_replies_are_sampled_from_redis(self, serve_bot,
                                                                   redis_client, key_prefix):
        server = serve_bot()
        for n in range(3):
            assert server.alert(generic(n)).status_code in (200, 202)
        owed = Keys(key_prefix).owed()[0]
        now_ms = int(time.time() * 1000)
        redis_client.zadd(owed, {"c-late": now_ms - 120_000, "c-fresh": now_ms + 30_000})
        samples = scrape(server)
        assert value(samples, "modelarts_bot_alerts_queued") == 3
        assert value(samples, "modelarts_bot_owed_replies_pending") == 2
        assert value(samples, "modelarts_bot_owed_replies_overdue") == 1
        assert value(samples, "modelarts_bot_confirmations_pending") == 0   # none requested

    def test_alerts_refused_at_a_cap_are_counted_by_cap(self, serve_bot):
        server = serve_bot(ALERT_QUEUE_PER_CHANNEL=1, ALERT_QUEUE_TOTAL=2)
        before = scrape(server)
        codes = [server.alert(generic(n, channel=channel)).status_code
                 for n, channel in enumerate(["C0CAPA", "C0CAPA", "C0CAPB", "C0CAPC"])]
        assert codes == [202, 429, 202, 429]
        after = scrape(server)
        name = "modelarts_bot_alerts_refused_total"
        for reason in ("channel_cap", "total_cap"):
            assert value(after, name, reason=reason) - value(before, name, reason=reason) == 1

    def test_samples_are_rate_limited(self, redis_client, key_prefix):
        sampler = Sampler(redis_client, key_prefix, every=60)
        owed = Keys(key_prefix).owed()[0]
        sampler.maybe_sample()
        redis_client.zadd(owed, {"c1": 1})
        sampler.maybe_sample()
        assert metrics.OWED_PENDING._value.get() == 0
        sampler.every = 0
        sampler.maybe_sample()
        assert metrics.OWED_PENDING._value.get() == 1

    def test_redis_down_makes_gauges_unknown_and_is_counted(self, key_prefix):
        dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.5)
        errors = metrics.SAMPLE_ERRORS._value.get()
        Sampler(dead, key_prefix, backlog=lambda: 1).sample()
        assert math.isnan(metrics.OWED_PENDING._value.get())
        assert math.isnan(metrics.ALERTS_QUEUED._value.get())
        assert metrics.SAMPLE_ERRORS._value.get() == errors + 1


class TestToken:
    def test_token_is_required_when_set(self, serve_bot):
        server = serve_bot(METRICS_TOKEN=METRICS_TOKEN)
        url = server.url + "/metrics"
        assert server.http.get(url, timeout=10).status_code == 401
        wrong = {"Authorization": "Bearer wrong-token"}
        assert server.http.get(url, headers=wrong, timeout=10).status_code == 401
        basic = {"Authorization": f"Basic {METRICS_TOKEN}"}
        assert server.http.get(url, headers=basic, timeout=10).status_code == 401
        resp = server.http.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
                               timeout=10)
        assert resp.status_code == 200 and METRICS_TOKEN not in resp.text
        assert "# TYPE modelarts_bot_decisions_total counter" in resp.text

    def test_off_when_unset(self, serve_bot):
        """A missing token never opens /metrics: it takes METRICS_OPEN=true (issue 18)."""
        server = serve_bot(METRICS_OPEN=False)
        resp = server.http.get(server.url + "/metrics", timeout=10)
        assert resp.status_code == 503 and "METRICS_TOKEN" in resp.text

    def test_open_when_unset_and_open_is_chosen(self, serve_bot):
        server = serve_bot(METRICS_OPEN=True)
        assert server.http.get(server.url + "/metrics", timeout=10).status_code == 200


class TestLabels:
    @pytest.mark.parametrize("raw, label", [
        ("ModelArts.0104", "ModelArts.0104"), ("chat.postMessage", "chat.postMessage"),
        ("http_503", "http_503"), ("182626", "other"), ("U0ONCALL is here", "other"),
        ("x" * 41, "other"), (None, "other"), ("", "other"),
    ])
    def test_label_values_are_codes_or_other(self, raw, label):
        assert metrics.code(raw) == label

    def test_unknown_api_and_result_are_other(self):
        before = metrics.STOPS.labels("other", "other", "other")._value.get()
        metrics.stop_request("v9", "maybe", "Not a project!")
        assert metrics.STOPS.labels("other", "other", "other")._value.get() == before + 1

    @pytest.mark.parametrize("body, kind", [
        (b"token=x&command=%2Fmodelarts&text=help", "command"),
        (b"payload=%7B%7D", "click"), (b"ssl_check=1", None), (b"", None),
    ])
    def test_ack_kind_comes_from_the_form_field_names(self, body, kind):
        assert kind_of(body) == kind


class TestRulesAndDashboard:
    def test_name_extraction_sees_every_metric_and_nothing_else(self):
        expr = ('histogram_quantile(0.99, sum by (le, kind) (rate(modelarts_bot_ack_seconds_bucket'
                '{kind="click"}[5m]))) > 0.5 and on() increase(nope_total[10m]) > 0')
        assert promql_metric_names(expr) == {"modelarts_bot_ack_seconds_bucket", "nope_total"}

    def test_every_rule_parses_and_names_exported_metrics(self):
        doc = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
        rules = [r for group in doc["groups"] for r in group["rules"]]
        alerts = {r["alert"] for r in rules}
        assert {"ModelArtsErrorsRising", "SlackPostsFailing", "OwedRepliesStuck",
                "AlertQueueGrowing"} <= alerts
        exported = exported_names()
        for rule in rules:
            names = promql_metric_names(rule["expr"])
            assert names, rule["alert"]
            assert names <= exported, (rule["alert"], names - exported)
            assert rule["annotations"]["summary"] and rule["labels"]["severity"]

    def test_every_dashboard_panel_names_exported_metrics(self):
        board = json.loads((ROOT / "deploy/grafana/modelarts-bot.json").read_text())
        exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
        assert len(exprs) >= 6
        for expr in exprs:
            names = promql_metric_names(expr)
            assert names and names <= exported_names(), (expr, names - exported_names())


class TestStorage:
    def test_files_are_used_even_when_prometheus_client_was_imported_first(self, tmp_path):
        """bench.harness.baseline imports bot.app.web (and so prometheus-client) first."""
        code = ("import os, glob, bot.app.web; from bot.core import metrics; "
                "from bot.app.serve import metrics_dir; path, own = metrics_dir(); "
                "metrics.decision('confirmed'); "
                "metrics.OWED_PENDING.set(3); "
                "print(sorted(os.path.basename(f) for f in glob.glob(path + '/*.db')))")
        (tmp_path / "old_1.db").write_bytes(b"stale")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)},
                              cwd=ROOT, timeout=60)
        assert done.returncode == 0, done.stderr
        files = eval(done.stdout)  # noqa: S307 - our own child's repr of a list of names
        assert [f.split("_")[0] for f in files] == ["counter", "gauge"]
        assert "old_1.db" not in files and files[1].startswith("gauge_livemostrecent_")


def ack_counts(metrics_dir: Path) -> dict[int, float]:
    """Each gunicorn worker's count of command acks, read from its own file."""
    out = {}
    for path in metrics_dir.glob("histogram_*.db"):
        pid = int(path.stem.split("_")[1])
        for family in MultiProcessCollector.merge([str(path)], accumulate=True):
            for s in family.samples:
                if s.name == "modelarts_bot_ack_seconds_count" and s.labels == {"kind": "command"}:
                    out[pid] = out.get(pid, 0) + s.value
    return out


def serve_env(slack_api, emulator, redis_url, key_prefix, roles_file, **extra: str) -> dict:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    return {**keep, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack_api.api_url, "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": key_prefix, "ROLES_FILE": str(roles_file),
            "MODELARTS_ENDPOINT": emulator.base_url,
            "MODELARTS_PROJECT_ID": defaults.EMULATOR_PROJECT_ID,
            "MODELARTS_AK": defaults.EMULATOR_AK, "MODELARTS_SK": defaults.EMULATOR_SK,
            "HOST": "127.0.0.1", **extra}


@pytest.mark.slow
class TestGunicorn:
    def test_own_metrics_dir_is_removed_at_exit(self, tmp_path, slack_api, emulator, redis_url,
                                                key_prefix, roles_file):
        port, temp = free_port(), tmp_path / "tmp"
        temp.mkdir()
        env = serve_env(slack_api, emulator, redis_url, key_prefix, roles_file,
                        PORT=str(port), WEB_CONCURRENCY="1", TMPDIR=str(temp))
        proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_healthy(f"http://127.0.0.1:{port}", proc)
            assert [p.name.startswith("modelarts-bot-metrics-") for p in temp.iterdir()] == [True]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        assert list(temp.iterdir()) == []

    def test_two_workers_counts_add_up(self, tmp_path, slack_api, emulator, redis_url,
                                        key_prefix, roles_file):
        port, metrics_dir = free_port(), tmp_path / "prom"
        metrics_dir.mkdir()
        (metrics_dir / "counter_1.db").write_bytes(b"stale")   # a previous run's file
        env = serve_env(slack_api, emulator, redis_url, key_prefix, roles_file,
                        PORT=str(port), WEB_CONCURRENCY="2", WEB_THREADS="4",
                        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir), METRICS_TOKEN=METRICS_TOKEN)
        proc = subprocess.Popen([sys.executable, "-m", "bot", "serve"], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        base = f"http://127.0.0.1:{port}"
        body = urlencode({"command": "/modelarts", "text": "help", "user_id": "U0ONCALL",
                          "channel_id": "C0INCIDENT", "team_id": "T0STANDIN",
                          "response_url": slack_api.response_url("serve")})

        def command(_: int) -> int:
            return requests.post(base + "/slack/events", data=body, timeout=10,
                                 headers=slack_headers(SIGNING_SECRET, body)).status_code

        sent = 0
        try:
            wait_healthy(base, proc)
            assert not (metrics_dir / "counter_1.db").exists()
            deadline = time.monotonic() + 60
            with ThreadPoolExecutor(8) as pool:
                while len(ack_counts(metrics_dir)) < 2 and time.monotonic() < deadline:
                    assert set(pool.map(command, range(16))) == {200}
                    sent += 16
            per_worker = ack_counts(metrics_dir)
            assert len(per_worker) == 2 and all(v > 0 for v in per_worker.values())
            got = requests.get(base + "/metrics", timeout=10,
                               headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
            assert got.status_code == 200
            assert requests.get(base + "/metrics", timeout=10).status_code == 401
            total = value(parse(got.text), "modelarts_bot_ack_seconds_count", kind="command")
            assert total == sent == sum(per_worker.values())
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=30)[0]
        assert METRICS_TOKEN not in out and SIGNING_SECRET not in out
