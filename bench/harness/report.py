"""One table for people, the targets checked, and the JSON for machines."""

from __future__ import annotations

import json
from pathlib import Path

TARGETS = {
    "ack_p99_at_50_ms": 50.0,
    "ack_p50_ratio_to_baseline": 1.3,
    "idle_ack_p50_ratio_to_baseline": 1.3,
    "click_to_stop_p50_ms": 5.0,
    "answer_to_reply_p50_ms": 5.0,
    "redis_round_trips_per_flow": 4,
    "rss_mb_per_worker": 120.0,
    "startup_seconds": 2.0,
}


LABELS = {"command_to_confirmation": "command -> confirmation posted",
          "click_to_stop": "click -> stop call", "click_to_reply": "click -> thread reply",
          "alert_to_post": "alert intake -> alert posted"}


def targets(r: dict) -> dict[str, dict]:
    """Each target: the measured value and whether it is met."""
    top = max(r["levels"])
    acks = [r["acks"][kind][str(top)]["bot"]["p99"] for kind in ("command", "confirm")]
    ratios = [lvl["ratio_p50"] for kind in ("command", "confirm")
              for lvl in r["acks"][kind].values()]
    seq = r["flows"]["direct"]["added"]
    flow = r["flows"]["direct"]
    idle = [flow["ack_idle"][kind]["p50"] / flow["baseline_ack_idle"][kind]["p50"]
            for kind in ("command", "confirm")]
    got = {
        "ack_p99_at_50_ms": max(acks),
        "ack_p50_ratio_to_baseline": max(ratios),
        "idle_ack_p50_ratio_to_baseline": round(max(idle), 2),
        "click_to_stop_p50_ms": seq["click_to_stop"]["p50"],
        "answer_to_reply_p50_ms": seq["answer_to_reply"]["p50"],
        "redis_round_trips_per_flow": max(f["redis"]["total_per_flow"]
                                          for f in r["flows"].values()),
        "rss_mb_per_worker": max(v for k, v in r["rss_mb"].items() if k != "master"),
        "startup_seconds": r["startup_seconds"]["bot"],
    }
    return {k: {"value": v, "target": TARGETS[k], "met": v <= TARGETS[k]} for k, v in got.items()}


def _row(name: str, c: str, lvl: dict) -> str:
    bot, base, dflt = lvl["bot"], lvl["baseline"], lvl["bolt_default"]
    return (f"{name:<16}{c:>4} | {bot['p50']:>7.2f} {bot['p95']:>7.2f} {bot['p99']:>7.2f} | "
            f"{base['p50']:>7.2f} {base['p95']:>7.2f} {base['p99']:>7.2f} | "
            f"{lvl['ratio_p50']:>5.2f} | {bot['per_second']:>6.0f} {base['per_second']:>6.0f} | "
            f"{dflt['p50']:>7.2f} {dflt['p99']:>7.2f}")


def table(r: dict) -> str:
    m = r["machine"]
    lines = [
        f"modelarts-bot benchmark: {m['nproc']} cores ({m['cpu']}), Python {m['python']}, "
        f"gunicorn gthread {r['server']['workers']} workers x {r['server']['threads']} threads"
        f"{' (quick)' if r['quick'] else ''}; load average before "
        f"{m['load_before'][0]:.2f}, after {m['load_after'][0]:.2f}; {r['seconds']} s",
        "",
        f"{'ack latency, ms':<16}{'c':>4} | {'bot p50':>7} {'p95':>7} {'p99':>7} | "
        f"{'base p50':>7} {'p95':>7} {'p99':>7} | {'ratio':>5} | {'bot/s':>6} {'base/s':>6} | "
        f"{'dflt p50':>7} {'p99':>7}",
    ]
    lines += _ack_rows(r)
    lines += _flow_rows(r)
    lines += _resource_rows(r)
    for k, t in r["targets"].items():
        lines.append(f"  {'met   ' if t['met'] else 'MISSED'} {k}: {t['value']:g} "
                     f"(target <= {t['target']:g})")
    return "\n".join(lines)


def _ack_rows(r: dict) -> list[str]:
    """Ack latency at each level and idle, then what the bot adds to a click and an answer."""
    lines = []
    for kind, name in (("command", "/modelarts stop"), ("confirm", "confirm click")):
        for c, lvl in r["acks"][kind].items():
            lines.append(_row(name, c, lvl))
    flow = r["flows"]["direct"]
    for kind, name in (("command", "/modelarts stop"), ("confirm", "confirm click")):
        idle, base = flow["ack_idle"][kind], flow["baseline_ack_idle"][kind]
        lines.append(f"{name:<16}{'idle':>4} | {idle['p50']:>7.2f} {idle['p95']:>7.2f} "
                     f"{idle['p99']:>7.2f} | {base['p50']:>7.2f} {base['p95']:>7.2f} "
                     f"{base['p99']:>7.2f} | {idle['p50'] / base['p50']:>5.2f} |")
    lines.append("  (c: concurrent clients, each sending as soon as it has its answer; idle: one "
                 "request at a time on a new connection, the bot otherwise idle)")
    lines += ["", f"{'added by the bot, ms':<36}{'p50':>8} {'p99':>8}"]
    for who, f in r["flows"].items():
        for key, label in (("click_to_stop", "click -> stop request"),
                           ("answer_to_reply", "ModelArts answer -> thread reply")):
            s = f["added"][key]
            lines.append(f"{label + f' ({who}, c=1)':<36}{s['p50']:>8.2f} {s['p99']:>8.2f}")
    for c, lvl in r["acks"]["confirm"].items():
        a = lvl["added"]
        lines.append(f"{f'click -> stop request (c={c})':<36}{a['click_to_stop']['p50']:>8.2f} "
                     f"{a['click_to_stop']['p99']:>8.2f}")
    return lines


def _flow_rows(r: dict) -> list[str]:
    """Per flow: Redis round trips and commands, ModelArts and Slack calls, CPU."""
    lines = [""]
    for who, f in r["flows"].items():
        steps = ", ".join(f"{k} {v:g}" for k, v in f["redis"]["commands_per_flow"].items())
        lines.append(f"per flow ({who} role): Redis round trips {f['redis']['total_per_flow']:g},"
                     f" commands {f['redis']['commands_total_per_flow']:g}: {steps}")
        follow = f["redis"].get("follow_up_per_flow") or {}
        if follow:
            lines.append(f"  then following the stop to its end (watches): {_kv(follow)}")
        lines.append(f"  ModelArts calls {sum(f['modelarts_calls'].values()):g} "
                     f"({_kv(f['modelarts_calls'])}); Slack calls "
                     f"{sum(f['slack_calls'].values()):g} ({_kv(f['slack_calls'])})")
    for who, f in r["flows"].items():
        lines.append(f"  CPU per flow ({who}), ms: {_kv(f['cpu_ms_per_flow'])} "
                     "(bot includes its background polling)")
    bg = r["flows"]["direct"]["redis"]["background_per_second"]
    lines.append("  background polling, all workers (alert dispatcher, owed replies, watches): "
                 f"{bg} Redis round trips/s")
    return lines


def _resource_rows(r: dict) -> list[str]:
    """Peak RSS, start-up, alert intake and storm, then the heading of the targets."""
    rss = ", ".join(f"{k} {v:g}" for k, v in r["rss_mb"].items())
    base_rss = ", ".join(f"{k} {v:g}" for k, v in r["baseline_rss_mb"].items())
    lines = ["", f"peak RSS, MB: bot {rss}; baseline {base_rss}",
             f"start-up to first /healthz 200, s: bot {r['startup_seconds']['bot']} "
             f"(runs {r['startup_seconds']['bot_runs']}), "
             f"baseline {r['startup_seconds']['baseline']}"]
    a, s = r["alerts"]["intake"], r["alerts"]["storm"]
    lines += [f"alerts: {a['accepted_per_second']:.0f} accepted/s ({a['alerts']} alerts, "
              f"c={a['concurrency']}, p99 {a['latency_ms']['p99']} ms); storm of {s['alerts']} "
              f"on {s['channels']} channels at 1 post/s/channel drained in "
              f"{s['time_to_drain_seconds']} s (ideal {s['ideal_drain_seconds']} s, "
              f"{s['429s_met']} 429s)", "", "targets:"]
    return lines


def _kv(d: dict) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in d.items())


def write(r: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")


def wan_table(r: dict) -> str:
    """The WAN run: each flow kind against its floor, and the connections it opened."""
    m = r["machine"]
    lines = [f"modelarts-bot WAN benchmark: {m['nproc']} cores, Python {m['python']}, gunicorn "
             f"gthread {r['server']['workers']} workers x {r['server']['threads']} threads"
             f"{' (quick)' if r['quick'] else ''}; Slack and ModelArts over HTTPS (test CA) "
             f"behind the same RTT; load average before {m['load_before'][0]:.2f}, after "
             f"{m['load_after'][0]:.2f}; {r['seconds']} s"]
    for run in r["runs"]:
        lines += ["", f"{'RTT ' + format(run['rtt_ms'], 'g') + ' ms, ms':<32}{'p50':>8} "
                  f"{'p99':>8} {'floor':>8} {'p50/floor':>10}"]
        for kind, k in run["kinds"].items():
            lines.append(f"{LABELS[kind]:<32}{k['p50']:>8.1f} {k['p99']:>8.1f} "
                         f"{k['floor_ms']:>8.1f} {k['p50_over_floor']:>10.2f}")
        per = run["new_connections_per_flow"]
        lines.append("  new TLS connections per flow after warm-up: stop flow "
                     f"{_kv(per['stop_flow'])}; alert {_kv(per['alert'])}")
        lines.append(f"  ({run['flows']} flows and {run['flows']} alerts after "
                     f"{run['warm_up_flows']} of each to warm up; steady run opened "
                     f"{_kv(run['new_connections_steady'])}; warm-up opened "
                     f"{_kv(run['connections_warm_up'])})")
        for host, kinds in run.get("opened_by", {}).items():
            if kinds:
                lines.append(f"  opened after warm-up to {host} by: {_kv(kinds)}")
        for name, t in wan_targets(run, r["server"]["workers"]).items():
            lines.append(f"  {'met   ' if t['met'] else 'MISSED'} {name}: {t['value']:g} "
                         f"(target <= {t['target']:g})")
    return "\n".join(lines)


def wan_targets(run: dict, workers: int) -> dict[str, dict]:
    """Each flow's p50 within 1.25 x its floor; at most one new connection per worker per host
    over the steady run."""
    got = {f"{kind}_p50_over_floor": (k["p50_over_floor"], 1.25)
           for kind, k in run["kinds"].items()}
    got.update({f"new_{host}_connections_per_worker": (round(n / workers, 2), 1.0)
                for host, n in run["new_connections_steady"].items()})
    return {k: {"value": v, "target": t, "met": v <= t} for k, (v, t) in got.items()}
