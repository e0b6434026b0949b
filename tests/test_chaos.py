"""A short chaos run (bench/chaos/run.py): two `python -m bot serve` replicas, a Redis of its own
restarted, ModelArts faults, Slack 429s and 5xx, a replica SIGKILLed. Asserts the promises held."""

from __future__ import annotations

import shutil

import pytest


@pytest.mark.slow
def test_smoke_chaos_run_breaks_no_promise(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    from bench.chaos.run import run

    result = run(_args(tmp_path))
    assert result["violations"] == {}, result["violations"]
    assert result["duplicates"] == 0 and result["missing_outcome_replies"] == 0
    assert result["lost_alerts"] == 0 and result["duplicate_alerts"] == 0
    assert result["crashes"] == 0 and result["secret_leaks"] == 0 and result["slack_5xx"] == 0
    assert result["replica_kills"] >= 1 and result["redis_restarts"] >= 1
    assert result["confirmed_stops"] > 0
    # Several users asking at once for one job: one confirmation, the others told who asked.
    assert result["crowd_flows"] >= 1 and result["duplicate_requests"] == 0
    assert result["crowd_told_who_asked"] >= 1 and result["crowd_unanswered"] == 0


def _args(tmp_path):
    import argparse

    return argparse.Namespace(flows=60, seconds=30, replicas=2, concurrency=24, fault_every=3.0,
                              drain=60.0, seed=6, out=str(tmp_path / "chaos.json"), keep=False)
