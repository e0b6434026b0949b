"""Check the bot's promises against what the stand-ins recorded and what the replicas logged.

    1  no stop without a valid confirmation: every stopped job has a "confirmed" decision for a
       confirmation its requester clicked in time with the role held (the driver knows which)
    2  at most one stop call per confirmation: emulator stop count <= confirmed confirmations
    3  every confirmed stop has exactly one outcome reply in its thread
    3b every stop accepted or of unknown outcome has exactly one final watch message in its
       thread (final state, ended on its own, deadline, or "did not take effect")
    4  every accepted alert is posted exactly once
    5  no crash, no 5xx to Slack, no secret in a log line, a Slack call or an HTTP answer
    6  one open request per job: never two confirmation requests for one job; in a "crowd"
       flow (several users asking at once) every user but the one whose request was posted
       is answered, and the answers name who asked ("Already being stopped")
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

OUTCOME = re.compile(r"^(:white_check_mark: Stop requested|:x: Stop failed|"
                     r":warning: Outcome unknown|:x: Not stopped|"
                     r":information_source: \*[^*]+\* was already)")
WATCHED = re.compile(r"^(:white_check_mark: Stop requested|:warning: Outcome unknown|"
                     r":information_source: .* I'll post here when it has stopped)")
# The last message of a watch (bot.flow.blocks: watch_final, watch_deadline, watch_not_taken).
FINAL = re.compile(r"^(:white_check_mark: (The stop did take effect: )?\*[^*]+\* is (KILLED|"
                   r"Terminated)|:information_source: \*[^*]+\* is .*ended on its own|"
                   r":warning: <@\w+> .* so I stopped watching|"
                   r":x: <@\w+> The stop did not take effect)")


def read_logs(paths: list[Path]) -> tuple[list[dict], list[str]]:
    """(JSON records, other lines) of every replica log."""
    records, other = [], []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                other.append(line)
                continue
            (records if isinstance(record, dict) else other).append(record)
    return records, other


Violations = dict[str, list[str]]


def check(flows, standin, stop_counts: dict[str, int], log_paths: list[Path], replicas,
          traffic, secrets: list[str]) -> dict:
    records, other = read_logs(log_paths)
    confirmed = confirmed_decisions(records)
    by_job = {f.job.job_id: f for f in flows}
    violations: Violations = defaultdict(list)
    stops = check_stops(stop_counts, confirmed, by_job, violations)
    replies_total, watched = check_outcome_replies(standin, confirmed, by_job, violations)
    finals_total = check_final_messages(standin, watched, by_job, violations)
    check_alerts(flows, standin, violations)
    told = check_one_request(flows, standin, violations)
    # gunicorn's lines are JSON records too now (bot.app.serve.JsonGunicornLogger)
    server_lines = other + [str(r.get("msg")) for r in records
                            if str(r.get("logger", "")).startswith("gunicorn")]
    crashes = check_crashes(replicas, server_lines, violations)
    slack_5xx = sum(n for code, n in traffic.statuses["slack"].items() if code >= 500)
    if slack_5xx:
        violations["slack_5xx"].append(f"{slack_5xx} answers >= 500")
    check_secrets(standin, log_paths, traffic, secrets, violations)
    counts = {"stops": stops, "confirmed_stops": len(confirmed),
              "outcome_replies": replies_total, "watches": sum(watched.values()),
              "final_messages": finals_total, "crashes": crashes, "slack_5xx": slack_5xx,
              "unhandled_errors_logged": len(unhandled_errors(records)), "crowd_told": told}
    return summary(flows, replicas, traffic, counts, violations)


def confirmed_decisions(records: list[dict]) -> dict[str, int]:
    """Confirmation id -> job id, from the replicas' "confirmed" decisions."""
    confirmed: dict[str, int] = {}
    for r in records:
        if r.get("logger") == "bot.decision" and r.get("event") == "confirmed":
            confirmed[str(r.get("confirmation"))] = int(r.get("job_id") or 0)
    return confirmed


def check_stops(stop_counts: dict[str, int], confirmed: dict[str, int], by_job: dict,
                violations: Violations) -> int:
    """Promises 1 and 2: each stop from a valid, clicked confirmation, at most one per
    confirmation. Returns the number of stop calls."""
    per_job_confirmed: dict[int, list[str]] = defaultdict(list)
    for cid, job in confirmed.items():
        per_job_confirmed[job].append(cid)
    stops = 0
    for key, count in stop_counts.items():
        job = int(key.split("/")[0])
        stops += count
        flow = by_job.get(job)
        if flow is None or not flow.eligible:
            violations["stop_without_valid_confirmation"].append(f"job {job}: {count} stop(s)")
        elif not per_job_confirmed.get(job):
            violations["stop_without_confirmed_decision"].append(f"job {job}")
        if count > max(1, len(per_job_confirmed.get(job, []))):
            violations["duplicate_stops"].append(f"job {job}: {count} stop calls")
    for cid, job in confirmed.items():
        flow = by_job.get(job)
        if flow is None or cid not in flow.confirmed:
            violations["confirmed_without_valid_click"].append(f"{cid} (job {job})")
    return stops


def check_outcome_replies(standin, confirmed: dict[str, int], by_job: dict,
                          violations: Violations) -> tuple[int, dict[tuple[str, str, int], int]]:
    """Promise 3: one outcome reply per confirmed stop. Returns the replies counted and the
    watches expected, (channel, thread, job) -> n."""
    replies_total = 0
    watched: dict[tuple[str, str, int], int] = defaultdict(int)
    for cid, job in confirmed.items():
        posted = standin.by_cid.get(cid)
        if posted is None:
            violations["confirmation_message_not_found"].append(cid)
            continue
        name = by_job[job].job.name if job in by_job else None
        replies = [t for t in standin.thread_texts(posted.channel, posted.thread)
                   if OUTCOME.match(t) and (f"job_id {job}," in t or f"*{name}* was already" in t)]
        replies_total += len(replies)
        watched[(posted.channel, posted.thread, job)] += sum(bool(WATCHED.match(t))
                                                            for t in replies[:1])
        if not replies:
            violations["missing_outcome_replies"].append(f"{cid} (job {job})")
        elif len(replies) > 1:
            violations["duplicate_outcome_replies"].append(f"{cid} (job {job}): {len(replies)}")
    return replies_total, watched


def check_final_messages(standin, watched: dict[tuple[str, str, int], int], by_job: dict,
                         violations: Violations) -> int:
    """Promise 3b: one final watch message per watched stop. Returns the finals counted."""
    finals_total = 0
    for (channel, thread, job), expected in watched.items():
        name = by_job[job].job.name if job in by_job else f"job {job}"
        finals = sum(1 for t in standin.thread_texts(channel, thread)
                     if FINAL.match(t) and f"*{name}*" in t)
        finals_total += finals
        if finals < expected:
            violations["missing_final_messages"].append(f"{name}: {finals} of {expected}")
        elif finals > expected:
            violations["duplicate_final_messages"].append(f"{name}: {finals} for {expected}")
    return finals_total


def check_alerts(flows, standin, violations: Violations) -> None:
    """Promise 4: every accepted alert posted exactly once."""
    for flow in flows:
        if flow.kind != "alert":
            continue
        posts = len(standin.alerts.get(flow.n, []))
        if flow.alert_accepted and posts == 0:
            violations["lost_alerts"].append(f"alert {flow.n}")
        if posts > 1:
            violations["duplicate_alerts"].append(f"alert {flow.n}: {posts} posts")


def check_one_request(flows, standin, violations: Violations) -> int:
    """Promise 6. Returns how many crowd users were told who asked."""
    from bench.chaos.flows import HELD, crowd_reply

    told = 0
    for flow in flows:
        posted = len(standin.requests.get(flow.job.job_id, ()))
        if posted > 1:
            violations["duplicate_requests"].append(f"job {flow.job.job_id}: {posted}")
        if flow.kind != "crowd" or not flow.asker:
            continue
        for user in flow.crowd:
            if user == flow.asker:
                continue
            said = standin.responses(crowd_reply(user, flow))
            if not said:
                violations["crowd_unanswered"].append(f"{user} in flow {flow.n}")
            told += any(HELD in t and f"<@{flow.asker}> asked at" in t for t in said)
    return told


def check_crashes(replicas, other: list[str], violations: Violations) -> int:
    """Promise 5, crashes: unexpected exits, worker timeouts, workers booted more than started."""
    starts = sum(r.starts for r in replicas)
    booted = sum("Booting worker" in line for line in other)
    timeouts = [line for line in other if "WORKER TIMEOUT" in line or "was sent SIG" in line]
    exits = [code for r in replicas for code in r.unexpected_exits]
    crashes = len(exits) + len(timeouts) + max(0, booted - starts)
    if crashes:
        violations["crashes"].append(f"exits {exits}, worker timeouts {len(timeouts)}, "
                                     f"workers booted {booted} for {starts} starts")
    return crashes


def unhandled_errors(records: list[dict]) -> list[dict]:
    return [r for r in records if r.get("level") == "error" and "unhandled" in
            str(r.get("msg"))]


def check_secrets(standin, log_paths: list[Path], traffic, secrets: list[str],
                  violations: Violations) -> None:
    """Promise 5, secrets: none in a log line, a Slack call or an HTTP answer."""
    haystacks = {"log": "\n".join(p.read_text(errors="replace") for p in log_paths
                                  if p.exists()),
                 "slack_calls": "\n".join(standin.call_params()),
                 "http_answers": "\n".join(traffic.bodies)}
    for where, text in haystacks.items():
        for n, secret in enumerate(secrets):
            if secret in text:
                violations["secret_leaks"].append(f"secret #{n} in {where}")


def summary(flows, replicas, traffic, counts: dict, violations: Violations) -> dict:
    """The figures of the run (bench/results/chaos.json), in their usual order."""
    kinds: dict[str, int] = defaultdict(int)
    for flow in flows:
        kinds[flow.kind] += 1
    ack = sorted(traffic.ack_ms)
    n = {k: len(violations[k]) for k in (
        "duplicate_stops", "missing_outcome_replies", "duplicate_outcome_replies",
        "missing_final_messages", "duplicate_final_messages", "lost_alerts", "duplicate_alerts",
        "stop_without_valid_confirmation", "confirmed_without_valid_click",
        "stop_without_confirmed_decision", "secret_leaks", "duplicate_requests",
        "crowd_unanswered")}
    return {
        "flows": len(flows),
        "flows_by_kind": dict(sorted(kinds.items())),
        "faults_injected": dict(sorted(traffic.faults.items())),
        "faults_total": sum(traffic.faults.values()),
        "stops": counts["stops"],
        "confirmed_stops": counts["confirmed_stops"],
        "outcome_replies": counts["outcome_replies"],
        "duplicates": n["duplicate_stops"],
        "missing_outcome_replies": n["missing_outcome_replies"],
        "duplicate_outcome_replies": n["duplicate_outcome_replies"],
        "watches": counts["watches"],
        "final_messages": counts["final_messages"],
        "missing_final_messages": n["missing_final_messages"],
        "duplicate_final_messages": n["duplicate_final_messages"],
        "duplicate_requests": n["duplicate_requests"],
        "crowd_flows": sum(1 for f in flows if f.kind == "crowd"),
        "crowd_told_who_asked": counts["crowd_told"],
        "crowd_unanswered": n["crowd_unanswered"],
        "alerts_accepted": sum(1 for f in flows if f.kind == "alert" and f.alert_accepted),
        "lost_alerts": n["lost_alerts"],
        "duplicate_alerts": n["duplicate_alerts"],
        "stops_outside_the_rules": n["stop_without_valid_confirmation"]
        + n["confirmed_without_valid_click"] + n["stop_without_confirmed_decision"],
        "crashes": counts["crashes"],
        "replica_kills": sum(r.kills for r in replicas),
        "unhandled_errors_logged": counts["unhandled_errors_logged"],
        "slack_5xx": counts["slack_5xx"],
        "http_status": {k: dict(sorted(v.items())) for k, v in traffic.statuses.items()},
        "unrouted_requests": traffic.unrouted,
        "ack_ms_p50_p99_max": [round(ack[len(ack) // 2], 1), round(ack[int(len(ack) * .99)], 1),
                               round(ack[-1], 1)] if ack else [],
        "secret_leaks": n["secret_leaks"],
        "peak_memory_mib": {r.name: {"rss_total": round(r.peak_rss_kib / 1024, 1),
                                     "max_process_hwm": round(r.peak_worker_hwm_kib / 1024, 1)}
                            for r in replicas},
        "violations": {k: v[:20] for k, v in violations.items() if v},
        "violation_count": sum(len(v) for v in violations.values()),
    }
