"""The operator runs a FlowRun end to end on the dev cluster."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

import pytest

from devcluster.pytest_plugin import KubeCluster, wait_for
from tests.e2e.conftest import FlowRuns, Operator, sim_task

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


def test_metrics_and_json_logs(kube_cluster: KubeCluster, flowrun_crd: None, namespace: str, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    operator = Operator(
        kube_cluster,
        namespace,
        tmp_path,
        extra_args=(
            "--metrics-port",
            str(port),
            "--metrics-address",
            "127.0.0.1",
            "--log-format",
            "json",
        ),
    )
    operator.start()
    flowruns = FlowRuns(kube_cluster, namespace)
    try:
        flowruns.create(
            {"metadata": {"name": "observed"}, "spec": {"tasks": [sim_task("a"), sim_task("b", outcome="fail")]}}
        )
        flowruns.wait_phase("observed", "Failed")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text: str = response.read().decode()
                return text

        metrics = wait_for(
            "the metrics to show the failed run",
            lambda: text if 'flowrun_runs{phase="Failed"} 1.0' in (text := scrape()) else None,
        )
        assert 'flowrun_task_duration_seconds_count{phase="Succeeded"} 1.0' in metrics
        assert 'flowrun_task_duration_seconds_count{phase="Failed"} 1.0' in metrics
        assert "flowrun_reconcile_duration_seconds_count" in metrics
        flowruns.delete_and_check_nothing_leaked("observed")
        wait_for("the deleted run to leave the gauge", lambda: 'flowrun_runs{phase="Failed"} 0.0' in scrape())
    finally:
        operator.stop()
    lines = [line for line in (tmp_path / "operator-1.log").read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= record.keys() for record in records)


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
