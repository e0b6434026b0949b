"""The figures in README.md and docs/, from bench/results/*.json: ``python -m bench figures``.

A table or list of figures in a Markdown file sits between two markers,

    <!-- figures:NAME -->

    ...what BLOCKS[NAME] writes from its results file...

    <!-- /figures -->

and this command rewrites every such block from the committed results; ``--check`` rewrites
nothing and exits 1, naming the blocks, when a file differs from what the results say
(tests/test_figures.py runs it, so CI fails when a table and its results drift apart). After a
benchmark writes new results, run ``python -m bench figures`` and commit both.

Only what a results file holds goes inside the markers: prose that interprets a run, and figures
of older runs kept for comparison, stay outside, written by hand.
"""

from __future__ import annotations

import argparse
import json
import re
import textwrap
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import NamedTuple

from bench.harness import report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
FILES = ["README.md", "docs/benchmark.md", "docs/deploy.md", "docs/reliability.md"]
WIDTH = 100   # the docs' line length
# A marker is a line of its own (one quoted in the text, in backticks, is not a marker).
BLOCK = re.compile(r"^(<!-- figures:(?P<name>[\w-]+) -->\n)(?P<body>.*?)^(<!-- /figures -->)$",
                   re.DOTALL | re.MULTILINE)
OPENING = re.compile(r"^<!-- figures:([\w-]+) -->$", re.MULTILINE)
CLOSING = re.compile(r"^<!-- /figures -->$", re.MULTILINE)


class Block(NamedTuple):
    results: str                   # a file of bench/results/
    render: Callable[[dict], str]  # its JSON -> the Markdown between the markers


# -- the loopback benchmark (bench/results/latest.json) -------------------------------------

def loopback_acks(r: dict) -> str:
    """The ack table of `python -m bench loopback`, as it prints it."""
    lines = report.table(r).splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("ack latency"))
    end = next(i for i, line in enumerate(lines) if line.startswith("  (c:"))
    return fence(lines[start:end])


def loopback_report(r: dict) -> str:
    """Everything `python -m bench loopback` prints."""
    return fence(report.table(r).splitlines())


def bullets(items: list[str]) -> str:
    return "".join(textwrap.fill(item, WIDTH, initial_indent="- ", subsequent_indent="  ") + "\n"
                   for item in items)


def loopback_summary(r: dict) -> str:
    direct, group = r["flows"]["direct"], r["flows"]["usergroup"]
    added = direct["added"]
    workers = r["server"]["workers"]
    worker_rss = max(v for k, v in r["rss_mb"].items() if k.startswith("worker"))
    t = r["targets"]["ack_p99_at_50_ms"]
    return bullets([
        f"Added by the bot, p50: click → stop request at ModelArts "
        f"**{added['click_to_stop']['p50']:.1f} ms**; ModelArts' answer → thread reply at Slack "
        f"**{added['answer_to_reply']['p50']:.1f} ms**.",
        f"Per full flow (command, confirm, stop, reply): "
        f"**{direct['redis']['total_per_flow']:.0f} Redis round trips** for a directly mapped "
        f"user, {group['redis']['total_per_flow']:.0f} for a usergroup member; then, following "
        f"the stop to its end, {sum(direct['redis']['follow_up_per_flow'].values()):g} more. "
        f"Calls per flow in all: {sum(direct['modelarts_calls'].values()):g} ModelArts, "
        f"{sum(direct['slack_calls'].values()):g} Slack.",
        f"Background polling (alert dispatcher, owed replies, watches), flow or no flow: "
        f"**{direct['redis']['background_per_second']:.0f} Redis round trips/s per pod** "
        f"({workers} workers).",
        f"Peak RSS per worker {worker_rss:.0f} MB (gunicorn master {r['rss_mb']['master']:.0f}"
        f" MB); start-up to the first `/healthz` 200 is {r['startup_seconds']['bot']:.1f} s.",
        f"{'Met' if t['met'] else 'Missed'}: acks under {t['target']:.0f} ms p99 at "
        f"{max(r['levels'])} concurrent clients ({t['value']:.0f} ms).",
    ])


NOTES = {
    "ack_p99_at_50_ms": "the slower of `/modelarts stop` and the confirm click",
    "ack_p50_ratio_to_baseline": "under the closed loop (the bot runs each flow, the baseline "
                                 "nothing)",
    "idle_ack_p50_ratio_to_baseline": "one request at a time, the bot otherwise idle",
    "click_to_stop_p50_ms": "includes the consume script",
    "answer_to_reply_p50_ms": "",
    "redis_round_trips_per_flow": "the larger of a directly mapped user and a usergroup member",
    "rss_mb_per_worker": "",
    "startup_seconds": "median of 3 launches",
}


def loopback_targets(r: dict) -> str:
    rows = ["| target | result | |", "| --- | --- | --- |"]
    for name, t in r["targets"].items():
        verdict = "met" if t["met"] else "**missed**"
        rows.append(f"| {name} <= {t['target']:g} | {t['value']:g} {verdict} | "
                    f"{NOTES.get(name, '')} |")
    return "\n".join(rows) + "\n"


def deploy_memory(r: dict) -> str:
    workers = r["server"]["workers"]
    worker = max(v for k, v in r["rss_mb"].items() if k.startswith("worker"))
    pod = r["rss_mb"]["master"] + workers * worker
    cpu = r["flows"]["direct"]["cpu_ms_per_flow"]["bot"]
    return textwrap.fill(
        f"**Resources.** The benchmark (docs/benchmark.md, `bench/results/latest.json`) measured "
        f"a peak RSS of {r['rss_mb']['master']:.0f} MB for the gunicorn master and "
        f"{worker:.0f} MB for the larger of its {workers} workers, about {pod:.0f} MB a pod; "
        f"{cpu:.0f} ms of the bot's CPU per stop flow (its background polling included); and "
        f"{r['startup_seconds']['bot']:.1f} s from launch to the first `/healthz` 200.",
        WIDTH) + "\n"


# -- over a WAN (bench/results/wan.json) ------------------------------------------------------

WAN_FLOWS = {"command_to_confirmation": "command -> confirmation posted",
             "click_to_stop": "click -> stop call at ModelArts",
             "click_to_reply": "click -> outcome reply in the thread",
             "alert_to_post": "alert intake -> alert posted"}


def wan_summary(r: dict) -> str:
    runs = r["runs"]
    head = " | ".join(f"RTT {run['rtt_ms']:g} ms" for run in runs)
    rows = [f"| flow | floor | {head} |", "| --- | --- |" + " --- |" * len(runs)]
    for kind, label in WAN_FLOWS.items():
        floor = runs[0]["kinds"][kind]["floor_rtt"]
        cells = " | ".join(f"{whole(run['kinds'][kind]['p50'])} "
                           f"({run['kinds'][kind]['p50_over_floor']:.2f} x floor)" for run in runs)
        rows.append(f"| {label} | {floor:g} RTT | {cells} |")
    conns = " | ".join(f"{run['new_connections_per_flow']['stop_flow']['slack']:g} (Slack), "
                       f"{run['new_connections_per_flow']['stop_flow']['modelarts']:g} (ModelArts)"
                       for run in runs)
    rows.append(f"| new TLS connections per stop flow, after warm-up | | {conns} |")
    return "\n".join(rows) + "\n"


def wan_report(r: dict) -> str:
    """Everything `python -m bench wan` prints."""
    return fence(report.wan_table(r).splitlines())


# -- the chaos run (bench/results/chaos.json) -------------------------------------------------

FAULTS = [("ModelArts drop after", "modelarts_drop_after"), ("503", "modelarts_failure_503"),
          ("HTML 500", "modelarts_html_500"), ("timeout", "modelarts_timeout"),
          ("slow answer", "modelarts_slow_answer"), ("lookup 500", "modelarts_lookup_500")]
OTHERS_PER_CROWD = 3   # a crowd flow: four users ask, one of them first


def chaos_readme(r: dict) -> str:
    peak = r["peak_memory_mib"].values()
    return "\n".join([
        "| | |", "|---|---|",
        f"| stop calls / confirmed stops | {r['stops']} / {r['confirmed_stops']} (the rest "
        "failed before the stop, as injected) |",
        f"| duplicate stops, stops outside the rules | {r['duplicates']}, "
        f"{r['stops_outside_the_rules']} |",
        f"| outcome replies missing / duplicated | {r['missing_outcome_replies']} / "
        f"{r['duplicate_outcome_replies']} ({r['outcome_replies']} replies, one per confirmed "
        "stop) |",
        f"| stops followed (watches) / final messages missing / duplicated | {r['watches']} / "
        f"{r['missing_final_messages']} / {r['duplicate_final_messages']} |",
        f"| jobs with a second confirmation; crowd users left unanswered | "
        f"{r['duplicate_requests']}; {r['crowd_unanswered']} ({r['crowd_flows']} crowd flows) |",
        f"| alerts accepted / lost / posted twice | {r['alerts_accepted']} / {r['lost_alerts']}"
        f" / {r['duplicate_alerts']} |",
        f"| crashes, 5xx answers to Slack, secrets found | {r['crashes']}, {r['slack_5xx']}, "
        f"{r['secret_leaks']} |",
        f"| peak memory per replica (gunicorn arbiter + worker) | "
        f"{max(p['rss_total'] for p in peak):.0f} MiB (largest process "
        f"{max(p['max_process_hwm'] for p in peak):.0f} MiB) |",
    ]) + "\n"


def chaos_reliability(r: dict) -> str:
    kinds = sorted(r["flows_by_kind"].items(), key=lambda kv: (-kv[1], kv[0]))
    f = r["faults_injected"]
    modelarts = ", ".join(f"{label} {f[key]}" for label, key in FAULTS)
    ack = " / ".join(f"{v:.1f}" for v in r["ack_ms_p50_p99_max"])
    memory = "; ".join(f"{name} {p['rss_total']:.1f} MiB, {p['max_process_hwm']:.1f} MiB"
                       for name, p in r["peak_memory_mib"].items())
    return "\n".join([
        "| Figure | Value |", "|---|---|",
        f"| flows | {r['flows']} ({', '.join(f'{k} {n}' for k, n in kinds)}) |",
        f"| faults injected | {r['faults_total']}: {modelarts}; replica SIGKILL "
        f"{f['replica_kill']}; Redis SIGKILL + restart {f['redis_restart']}; Slack 429 bursts "
        f"{f['slack_429_burst']}, 429 windows {f['slack_429_window']}, 5xx {f['slack_5xx']} |",
        f"| stop calls ModelArts received | {r['stops']} (of {r['confirmed_stops']} confirmed "
        "stops: the rest failed before the work ran, as injected) |",
        f"| outcome replies | {r['outcome_replies']}, one per confirmed stop |",
        f"| duplicate stops | {r['duplicates']} |",
        f"| missing / duplicate outcome replies | {r['missing_outcome_replies']} / "
        f"{r['duplicate_outcome_replies']} |",
        f"| stops followed (watches) / final messages | {r['watches']} / {r['final_messages']} |",
        f"| missing / duplicate final messages | {r['missing_final_messages']} / "
        f"{r['duplicate_final_messages']} |",
        f"| jobs with a second confirmation request | {r['duplicate_requests']} |",
        f"| crowd flows / other users told who asked / unanswered | {r['crowd_flows']} / "
        f"{r['crowd_told_who_asked']} of {r['crowd_flows'] * OTHERS_PER_CROWD} (the rest were "
        f"told Redis or Slack failed, as injected) / {r['crowd_unanswered']} |",
        f"| alerts accepted / lost / posted twice | {r['alerts_accepted']} / {r['lost_alerts']}"
        f" / {r['duplicate_alerts']} |",
        f"| stops outside the rules | {r['stops_outside_the_rules']} |",
        f"| crashes (unexpected exits, worker timeouts or reboots) | {r['crashes']} |",
        f"| 5xx answers to Slack requests | {r['slack_5xx']} |",
        f"| secrets found in logs, Slack calls, HTTP answers | {r['secret_leaks']} |",
        f"| ack time to Slack, p50 / p99 / max | {ack} ms |",
        "| peak memory per replica (arbiter + worker RSS; largest process high-water mark) | "
        f"{memory} |",
        f"| duration | {r['seconds_total']:.1f} s in all |",
    ]) + "\n"


def whole(x: float) -> int:
    """Rounded as people round (160.5 -> 161), not to even as format() does."""
    return int(Decimal(str(x)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def fence(lines: list[str]) -> str:
    return "```\n" + "\n".join(lines) + "\n```\n"


BLOCKS = {
    "loopback-acks": Block("latest.json", loopback_acks),
    "loopback-summary": Block("latest.json", loopback_summary),
    "loopback-report": Block("latest.json", loopback_report),
    "loopback-targets": Block("latest.json", loopback_targets),
    "deploy-memory": Block("latest.json", deploy_memory),
    "wan-summary": Block("wan.json", wan_summary),
    "wan-report": Block("wan.json", wan_report),
    "chaos-readme": Block("chaos.json", chaos_readme),
    "chaos-reliability": Block("chaos.json", chaos_reliability),
}


def rewrite(text: str, results: Path = RESULTS) -> tuple[str, list[str]]:
    """text with every marked block written from its results, and the names of those that
    changed. An unknown name is an error, not a block left alone."""
    loaded: dict[str, dict] = {}
    changed: list[str] = []

    def one(m: re.Match) -> str:
        name = m["name"]
        if name not in BLOCKS:
            raise KeyError(f"unknown figures block {name!r} (bench/figures.py BLOCKS)")
        block = BLOCKS[name]
        if block.results not in loaded:
            loaded[block.results] = json.loads((results / block.results).read_text())
        # Blank lines around the figures: a marker right under a table could read as a row.
        body = "\n" + block.render(loaded[block.results]) + "\n"
        if body != m["body"]:
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return BLOCK.sub(one, text), changed


def used(root: Path = ROOT) -> dict[str, list[str]]:
    """file -> the block names it has."""
    return {f: OPENING.findall((root / f).read_text()) for f in FILES}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench figures", description=__doc__.split("\n")[0])
    p.add_argument("--check", action="store_true",
                   help="change nothing; exit 1 if a marked block differs from its results")
    args = p.parse_args(argv)
    stale = []
    for name in FILES:
        path = ROOT / name
        text, changed = rewrite(path.read_text())
        if changed and not args.check:
            path.write_text(text)
        stale += [f"{name}: {block}" for block in changed]
    for line in stale:
        print(("differs from its results: " if args.check else "rewritten: ") + line)
    return 1 if stale and args.check else 0
