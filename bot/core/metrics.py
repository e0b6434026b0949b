"""Prometheus metrics: the metric objects and the small API the rest of the bot calls.

The API (each call is a few microseconds, never raises, never does I/O):

  observe_modelarts(api, operation, seconds, error_code=None)
      one HTTP call to ModelArts (or IAM) that took ``seconds``; ``error_code`` is ModelArts'
      ``error_code`` ("ModelArts.0104", "APIGW.0301") or the client's own ("BOT.TIMEOUT",
      "BOT.CONNECTION_REFUSED") when the call failed, None when it succeeded.
  observe_slack(method, seconds, error=None)
      one Slack Web API call ("chat.postMessage"); ``error`` is Slack's error string
      ("ratelimited", "channel_not_found") or "http_<status>"/"network", None on success.
  stop_request(api, result)
      one stop call sent to ModelArts; ``result`` is "accepted", "refused" (ModelArts answered
      with an error) or "unknown" (timeout, dropped connection: it may have stopped).
  decision(event, outcome=None)
      one decision of the stop flow (bot.core.logs.decision calls it: do not call both).
  ack(kind, seconds)
      one Slack request answered: ``kind`` "command" or "click", from receipt to the response.
  audit_write_error()
      one audit entry that could not be written (bot.flow.audit calls it).
  alerts_refused(reason, count)
      ``count`` alerts of one ``POST /alerts`` refused because a queue cap was reached;
      ``reason`` is "channel_cap" or "total_cap" (bot.alerts.intake calls it).
  roles_loaded(sha256, at, replaced=None)
      this worker now holds the roles file whose content has ``sha256``, loaded at ``at``
      (epoch s); ``replaced``: the sha256 it held before (bot.flow.roles_watch calls it).
  roles_refused()
      one reload of the roles file refused (unreadable or invalid): the old one is kept.

Labels are bounded: ``api`` is "v1"/"v2"; ``sha256`` is 64 hex digits; every other label value
must look like a code (letters, digits, ``._-``, at most 40 characters, starting with a letter)
and anything else becomes "other". That check is a second guard only: never pass an id, a user,
a job name or a secret (a numeric job id is refused, but a job name may look like a code).

Multiprocess: under gunicorn, bot.app.serve calls ``use_multiprocess_dir`` in the arbiter before
the fork; each worker then writes its values to files there and ``GET /metrics`` sums them
(bot.app.metrics_web). The metric objects are module-level on purpose: that is how prometheus-client
shares them between threads and (through those files) between processes.
"""

from __future__ import annotations

import os
import re

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics, values

disable_created_metrics()   # no *_created series: one process shows what many workers show
_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,39}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
APIS = frozenset({"v1", "v2"})
RESULTS = frozenset({"accepted", "refused", "unknown"})
REFUSALS = frozenset({"channel_cap", "total_cap"})

# Upper bounds, seconds. ModelArts and Slack: up to the 10 s timeout; acks: Slack's 3 s deadline.
REMOTE_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
ACK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0)

# ``project``: a MODELARTS_PROJECTS name (bounded by the configuration), "default" otherwise.
STOPS = Counter("modelarts_bot_stop_requests", "Stop calls made to ModelArts, by result.",
                ["api", "result", "project"])
DECISIONS = Counter("modelarts_bot_decisions", "Decisions of the stop flow (the decision log).",
                    ["event", "outcome"])
MODELARTS_SECONDS = Histogram("modelarts_bot_modelarts_request_seconds",
                              "ModelArts HTTP calls, seconds.", ["api", "operation", "project"],
                              buckets=REMOTE_BUCKETS)
MODELARTS_ERRORS = Counter("modelarts_bot_modelarts_errors", "ModelArts calls that failed.",
                           ["api", "operation", "code", "project"])
SLACK_SECONDS = Histogram("modelarts_bot_slack_request_seconds", "Slack Web API calls, seconds.",
                          ["method"], buckets=REMOTE_BUCKETS)
SLACK_ERRORS = Counter("modelarts_bot_slack_errors", "Slack Web API calls that failed.",
                       ["method", "error"])
ACKS = Histogram("modelarts_bot_ack_seconds", "Slack requests, receipt to response, seconds.",
                 ["kind"], buckets=ACK_BUCKETS)

# Sampled from Redis by bot.app.metrics_sample. Every worker samples the same shared state, so the
# freshest sample of a living worker is the value ("livemostrecent"), not a sum over workers.
ALERTS_QUEUED = Gauge("modelarts_bot_alerts_queued", "Alerts waiting to be posted to Slack.",
                      multiprocess_mode="livemostrecent")
OWED_PENDING = Gauge("modelarts_bot_owed_replies_pending",
                     "Outcome replies owed (a stop in flight, or its reply not yet posted).",
                     multiprocess_mode="livemostrecent")
OWED_OVERDUE = Gauge("modelarts_bot_owed_replies_overdue",
                     "Owed replies due for more than a minute that no replica has taken.",
                     multiprocess_mode="livemostrecent")
CONFIRMATIONS_PENDING = Gauge("modelarts_bot_confirmations_pending",
                              "Confirmations waiting for a click.",
                              multiprocess_mode="livemostrecent")
SAMPLE_ERRORS = Counter("modelarts_bot_sample_errors", "Gauge samples that failed (Redis down).")
AUDIT_WRITE_ERRORS = Counter("modelarts_bot_audit_write_errors",
                             "Audit entries that could not be written (bot.flow.audit).")
ALERTS_REFUSED = Counter("modelarts_bot_alerts_refused",
                         "Alerts refused at POST /alerts because a queue cap was reached.",
                         ["reason"])

# The roles file each living worker holds: value = its load time (epoch s), per content hash.
# A worker that moves to a new file sets the old hash to 0 (multiprocess files cannot drop a
# series), so the series > 0 are the files in use; two of them: the workers disagree.
ROLES_LOADED = Gauge("modelarts_bot_roles_loaded",
                     "The roles file in use, by sha256 of its content: its load time (epoch s); "
                     "0 once replaced.", ["sha256"], multiprocess_mode="livemax")
ROLES_REFUSED = Counter("modelarts_bot_roles_reloads_refused",
                        "Reloads of the roles file refused (unreadable or invalid): the old one "
                        "was kept.")

SMN_MESSAGES = Counter("modelarts_bot_smn_messages",
                       "Messages at POST /smn, by SMN type and what was done with them.",
                       ["type", "result"])
SMN_TYPES = ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation",
             "HttpSubscriptionUserConfirm", "HttpSubscriptionUserUnsubscribe")


def code(value: object) -> str:
    """A bounded label value: ``value`` when it looks like a code, else "other"."""
    text = str(value) if value is not None else ""
    return text if _CODE.fullmatch(text) else "other"


def _api(api: str) -> str:
    return api if api in APIS else "other"


def observe_modelarts(api: str, operation: str, seconds: float,
                      error_code: str | None = None, project: str = "default") -> None:
    MODELARTS_SECONDS.labels(_api(api), code(operation), code(project)).observe(seconds)
    if error_code is not None:
        MODELARTS_ERRORS.labels(_api(api), code(operation), code(error_code),
                                code(project)).inc()


def observe_slack(method: str, seconds: float, error: str | None = None) -> None:
    SLACK_SECONDS.labels(code(method)).observe(seconds)
    if error is not None:
        SLACK_ERRORS.labels(code(method), code(error)).inc()


def stop_request(api: str, result: str, project: str = "default") -> None:
    STOPS.labels(_api(api), result if result in RESULTS else "other", code(project)).inc()


def decision(event: str, outcome: object = None) -> None:
    DECISIONS.labels(code(event), "none" if outcome is None else code(outcome)).inc()


def ack(kind: str, seconds: float) -> None:
    ACKS.labels(code(kind)).observe(seconds)


def audit_write_error() -> None:
    AUDIT_WRITE_ERRORS.inc()


def alerts_refused(reason: str, count: int) -> None:
    ALERTS_REFUSED.labels(reason if reason in REFUSALS else "other").inc(count)


def smn_message(kind: object, result: str) -> None:
    """``result``: handled, duplicate, refused_<reason>, invalid, redis_unavailable, full."""
    SMN_MESSAGES.labels(kind if kind in SMN_TYPES else "other", code(result)).inc()


def _sha256(value: str) -> str:
    return value if _SHA256.fullmatch(value) else "other"


def roles_loaded(sha256: str, at: float, replaced: str | None = None) -> None:
    if replaced and replaced != sha256:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            ROLES_LOADED.labels(_sha256(replaced)).set(0)
        else:
            ROLES_LOADED.remove(_sha256(replaced))
    ROLES_LOADED.labels(_sha256(sha256)).set(at)


def roles_refused() -> None:
    ROLES_REFUSED.inc()


def use_multiprocess_dir(path: str) -> None:
    """Keep values in files under ``path`` from now on, whatever imported prometheus-client
    first. Call it before anything is counted in this process (gunicorn: in the arbiter).

    prometheus-client picks its value storage when it is imported, and a metric without labels
    takes its storage when it is created; labelled children take theirs at ``.labels()``. So the
    storage is picked again, and the metrics without labels get a new value."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    values.ValueClass = values.get_value_class()
    for metric in (ALERTS_QUEUED, OWED_PENDING, OWED_OVERDUE, CONFIRMATIONS_PENDING,
                   SAMPLE_ERRORS, AUDIT_WRITE_ERRORS, ROLES_REFUSED):
        metric._metric_init()
