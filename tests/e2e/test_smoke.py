"""The operator runs a FlowRun end to end on the dev cluster."""

from __future__ import annotations

import json
import re

import pytest

from devcluster.pytest_plugin import wait_for
from tests.e2e.helpers import FlowRuns, Operator, StartOperator, sim_task

pytestmark = pytest.mark.e2e


def test_linear_flow_passes_results_along(operator: Operator, flowruns: FlowRuns) -> None:
    flowruns.create(
        {
            "metadata": {"name": "line"},
            "spec": {
                "tasks": [
                    sim_task("a", message="from-a"),
                    sim_task("b", run_after=["a"], args=["--input", "$(tasks.a.result)"]),
                ]
            },
        }
    )
    run = flowruns.wait_phase("line", "Succeeded")
    assert run["status"]["tasks"]["a"]["result"] == "from-a"
    assert run["status"]["progress"] == "2/2"
    flowruns.delete_and_check_nothing_leaked("line")


def test_metrics_and_json_logs(start_operator: StartOperator, flowruns: FlowRuns) -> None:
    operator = start_operator("--log-format", "json", metrics=True)
    flowruns.create(
        {"metadata": {"name": "observed"}, "spec": {"tasks": [sim_task("a"), sim_task("b", outcome="fail")]}}
    )
    flowruns.wait_phase("observed", "Failed")
    metrics = wait_for(
        "the metrics to show the failed run",
        lambda: text if 'flowrun_runs{phase="Failed"} 1.0' in (text := operator.scrape_metrics()) else None,
    )
    assert 'flowrun_task_duration_seconds_count{phase="Succeeded"} 1.0' in metrics
    assert 'flowrun_task_duration_seconds_count{phase="Failed"} 1.0' in metrics
    assert "flowrun_reconcile_duration_seconds_count" in metrics
    flowruns.delete_and_check_nothing_leaked("observed")
    wait_for(
        "the deleted run to leave the gauge", lambda: 'flowrun_runs{phase="Failed"} 0.0' in operator.scrape_metrics()
    )
    operator.stop()  # every line written
    lines = [line for line in operator.log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert records and all({"time", "level", "logger", "message"} <= record.keys() for record in records)


def throttled_seconds(metrics: str) -> float:
    found = re.search(r"^flowrun_api_throttled_seconds_total (\S+)$", metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_low_rate_limit_paces_the_operator_and_its_runs_still_succeed(
    start_operator: StartOperator, flowruns: FlowRuns
) -> None:
    """`--qps 2 --burst 1`: the informers' lists and watches, then the passes' creates and patches,
    wait their turn (the operator's metric says how long), and the run goes on to succeed."""
    operator = start_operator("--qps", "2", "--burst", "1", metrics=True)
    flowruns.create(
        {
            "metadata": {"name": "paced"},
            "spec": {"tasks": [sim_task("a"), sim_task("b", run_after=["a"]), sim_task("c", run_after=["b"])]},
        }
    )
    run = flowruns.wait_phase("paced", "Succeeded", timeout=120)
    assert run["status"]["progress"] == "3/3"
    assert throttled_seconds(operator.scrape_metrics()) > 1.0
    flowruns.delete_and_check_nothing_leaked("paced")


def test_finished_run_is_deleted_after_its_ttl(operator: Operator, flowruns: FlowRuns) -> None:
    flowruns.create(
        {"metadata": {"name": "short-lived"}, "spec": {"ttlSecondsAfterFinished": 2, "tasks": [sim_task("a")]}}
    )
    run = flowruns.wait_phase("short-lived", "Succeeded")
    uid = run["metadata"]["uid"]
    # Still there right after finishing: the TTL counts from finishedAt.
    assert flowruns.get("short-lived") is not None
    wait_for("the TTL to delete the run", lambda: flowruns.get("short-lived") is None, timeout=30)
    wait_for("its pods to be garbage-collected", lambda: not flowruns.children(uid), timeout=30)
