"""Check the bot's promises against what the stand-ins recorded and what the replicas logged.

    1  no stop without a valid confirmation: every stopped job has a "confirmed" decision for a
       confirmation its requester clicked in time with the role held (the driver knows which)
    2  at most one stop call per confirmation: emulator stop count <= confirmed confirmations
    3  every confirmed stop has exactly one outcome reply in its thread
    3b every stop accepted or of unknown outcome has exactly one final watch message in its
       thread (final state, ended on its own, deadline, or "did not take effect")
    4  every accepted alert is posted exactly once
    5  no crash, no 5xx to Slack, no secret in a log line, a Slack call or an HTTP answer
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

OUTCOME = re.compile(r"^(:white_check_mark: Stop requested|:x: Stop failed|"
                     r":warning: Outcome unknown|:x: Not stopped)")
WATCHED = re.compile(r"^(:white_check_mark: Stop requested|:warning: Outcome unknown)")
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


def check(flows, standin, stop_counts: dict[str, int], log_paths: list[Path], replicas,
          traffic, secrets: list[str]) -> dict:
    records, other = read_logs(log_paths)
    confirmed: dict[str, int] = {}          # cid -> job id, from the "confirmed" decisions
    for r in records:
        if r.get("logger") == "bot.decision" and r.get("event") == "confirmed":
            confirmed[str(r.get("confirmation"))] = int(r.get("job_id") or 0)
    by_job = {f.job.job_id: f for f in flows}
    per_job_confirmed: dict[int, list[str]] = defaultdict(list)
    for cid, job in confirmed.items():
        per_job_confirmed[job].append(cid)

    violations: dict[str, list[str]] = defaultdict(list)
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

    replies_total = 0
    watched: dict[tuple[str, str, int], int] = defaultdict(int)  # (channel, thread, job) -> n
    for cid, job in confirmed.items():
        posted = standin.by_cid.get(cid)
        if posted is None:
            violations["confirmation_message_not_found"].append(cid)
            continue
        replies = [t for t in standin.thread_texts(posted.channel, posted.thread)
                   if OUTCOME.match(t) and f"job_id {job}," in t]
        replies_total += len(replies)
        watched[(posted.channel, posted.thread, job)] += sum(bool(WATCHED.match(t))
                                                            for t in replies[:1])
        if not replies:
            violations["missing_outcome_replies"].append(f"{cid} (job {job})")
        elif len(replies) > 1:
            violations["duplicate_outcome_replies"].append(f"{cid} (job {job}): {len(replies)}")

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

    accepted = [f for f in flows if f.kind == "alert" and f.alert_accepted]
    for flow in flows:
        if flow.kind != "alert":
            continue
        posts = len(standin.alerts.get(flow.n, []))
        if flow.alert_accepted and posts == 0:
            violations["lost_alerts"].append(f"alert {flow.n}")
        if posts > 1:
            violations["duplicate_alerts"].append(f"alert {flow.n}: {posts} posts")

    kills = sum(r.kills for r in replicas)
    starts = sum(r.starts for r in replicas)
    booted = sum("Booting worker" in line for line in other)
    timeouts = [line for line in other if "WORKER TIMEOUT" in line or "was sent SIG" in line]
    exits = [code for r in replicas for code in r.unexpected_exits]
    crashes = len(exits) + len(timeouts) + max(0, booted - starts)
    if crashes:
        violations["crashes"].append(f"exits {exits}, worker timeouts {len(timeouts)}, "
                                     f"workers booted {booted} for {starts} starts")
    unhandled = [r for r in records if r.get("level") == "error" and "unhandled" in
                 str(r.get("msg"))]
    slack_5xx = sum(n for code, n in traffic.statuses["slack"].items() if code >= 500)
    if slack_5xx:
        violations["slack_5xx"].append(f"{slack_5xx} answers >= 500")

    with standin._lock:
        calls = [json.dumps(c.params, default=str) for c in standin.calls]
    haystacks = {"log": "\n".join(p.read_text(errors="replace") for p in log_paths
                                  if p.exists()),
                 "slack_calls": "\n".join(calls), "http_answers": "\n".join(traffic.bodies)}
    for where, text in haystacks.items():
        for n, secret in enumerate(secrets):
            if secret in text:
                violations["secret_leaks"].append(f"secret #{n} in {where}")

    kinds: dict[str, int] = defaultdict(int)
    for flow in flows:
        kinds[flow.kind] += 1
    ack = sorted(traffic.ack_ms)
    return {
        "flows": len(flows),
        "flows_by_kind": dict(sorted(kinds.items())),
        "faults_injected": dict(sorted(traffic.faults.items())),
        "faults_total": sum(traffic.faults.values()),
        "stops": stops,
        "confirmed_stops": len(confirmed),
        "outcome_replies": replies_total,
        "duplicates": len(violations["duplicate_stops"]),
        "missing_outcome_replies": len(violations["missing_outcome_replies"]),
        "duplicate_outcome_replies": len(violations["duplicate_outcome_replies"]),
        "watches": sum(watched.values()),
        "final_messages": finals_total,
        "missing_final_messages": len(violations["missing_final_messages"]),
        "duplicate_final_messages": len(violations["duplicate_final_messages"]),
        "alerts_accepted": len(accepted),
        "lost_alerts": len(violations["lost_alerts"]),
        "duplicate_alerts": len(violations["duplicate_alerts"]),
        "stops_outside_the_rules": len(violations["stop_without_valid_confirmation"])
        + len(violations["confirmed_without_valid_click"])
        + len(violations["stop_without_confirmed_decision"]),
        "crashes": crashes,
        "replica_kills": kills,
        "unhandled_errors_logged": len(unhandled),
        "slack_5xx": slack_5xx,
        "http_status": {k: dict(sorted(v.items())) for k, v in traffic.statuses.items()},
        "unrouted_requests": traffic.unrouted,
        "ack_ms_p50_p99_max": [round(ack[len(ack) // 2], 1), round(ack[int(len(ack) * .99)], 1),
                               round(ack[-1], 1)] if ack else [],
        "secret_leaks": len(violations["secret_leaks"]),
        "peak_memory_mib": {r.name: {"rss_total": round(r.peak_rss_kib / 1024, 1),
                                     "max_process_hwm": round(r.peak_worker_hwm_kib / 1024, 1)}
                            for r in replicas},
        "violations": {k: v[:20] for k, v in violations.items() if v},
        "violation_count": sum(len(v) for v in violations.values()),
    }
