"""``python -m bench loopback --quick`` and ``python -m bench wan --quick`` run end to end and
write their JSON (no timing is asserted)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("redis-server"), reason="the benchmark starts a redis-server")
def test_quick_benchmark_completes_and_writes_its_results(tmp_path):
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "bench", "loopback", "--quick", "--requests",
                           "20", "--flows", "4", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "ack latency, ms" in done.stdout and "targets:" in done.stdout
    result = json.loads(out.read_text())
    assert {"acks", "flows", "alerts", "rss_mb", "startup_seconds", "targets", "machine",
            "server"} <= set(result)
    assert set(result["acks"]) == {"command", "confirm"}
    for kind in result["acks"].values():
        for level in kind.values():
            assert level["bot"]["errors"] == 0 and level["bot"]["n"] == 20
    # The stop's follow-through: one look-up finds the job KILLED (the emulator's 1 s delay is
    # shorter than the 5 s interval), counted apart from the flow's own calls.
    assert result["flows"]["direct"]["modelarts_calls"] == {
        "GET version": 1.0, "GET version (follow-up)": 1.0, "POST stop": 1.0}
    assert result["alerts"]["storm"]["accepted"] == result["alerts"]["storm"]["alerts"]


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("redis-server"), reason="the benchmark starts a redis-server")
def test_listing_over_several_projects_smoke(tmp_path):
    """``python -m bench listing --projects``: each project its own emulator process; the run
    checks that every project's jobs are listed before it times anything."""
    out = tmp_path / "listing.json"
    done = subprocess.run([sys.executable, "-m", "bench", "listing", "--projects", "2",
                           "--jobs", "30", "--runs", "2", "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["projects"] == 2 and result["running_v2_jobs"] == 60
    assert {u: f["runs"] for u, f in result["list_answer_ms"].items()} == {
        "U0ONCALL": 2, "U0TEAMA": 2}


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("redis-server"), reason="the benchmark starts a redis-server")
def test_quick_wan_benchmark_completes_and_reports(tmp_path):
    """HTTPS stand-ins behind a 20 ms RTT: every flow kind is timed and connections counted."""
    out = tmp_path / "wan.json"
    done = subprocess.run([sys.executable, "-m", "bench", "wan", "--quick",
                           "--rtt-ms", "20", "--out", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "RTT 20 ms" in done.stdout and "new TLS connections" in done.stdout
    (run,) = json.loads(out.read_text())["runs"]
    assert set(run["kinds"]) == {"command_to_confirmation", "click_to_stop", "click_to_reply",
                                 "alert_to_post"}
    assert all(kind["n"] == run["flows"] for kind in run["kinds"].values())
    assert set(run["new_connections_steady"]) == {"slack", "modelarts"}


@pytest.mark.slow
def test_smn_storm_smoke_delivers_each_notification_once_in_order(redis_url):
    """``python -m bench storm --smn``, small: signed notifications, each posted once."""
    env = {**os.environ, "REDIS_URL": redis_url}
    done = subprocess.run([sys.executable, "-m", "bench", "storm", "--smn", "--alerts", "12",
                           "--seconds", "0", "--channels", "3", "--replicas", "2", "--pace", "0"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout[done.stdout.index("{"):])
    assert result["intake_status"] == {"200": 12}
    assert (result["delivered"], result["duplicates"], result["order_violations"]) == (12, 0, 0)
