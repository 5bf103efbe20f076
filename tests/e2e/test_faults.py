"""Faults of the control plane while runs are active: the API server, or etcd behind it, stopped
and started again. The operator notices, backs off without flooding its log or the API server,
and every run completes correctly once the control plane is back: no pod created twice, nothing
leaked."""

from __future__ import annotations

import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devcluster import cluster as devcluster
from tests.e2e.helpers import FlowRuns, StartOperator, Watch, sim_task

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 15.0
RUNS = 4


def requests_sent(metrics: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(metrics)
        if family.name == "flowrun_api_requests"
        for sample in family.samples
        if sample.name == "flowrun_api_requests_total"
    )


@pytest.mark.parametrize("component", ["kube-apiserver", "etcd"])
def test_runs_complete_after_the_control_plane_was_down_and_nothing_floods(
    component: str, start_operator: StartOperator, flowruns: FlowRuns, watch: Watch
) -> None:
    operator = start_operator("--log-format", "json", metrics=True)
    pods = watch("pods")
    names = [f"chain-{i}" for i in range(RUNS)]
    for name in names:
        tasks = [sim_task("a", duration="4s"), sim_task("b", run_after=["a"]), sim_task("c", run_after=["b"])]
        flowruns.create({"metadata": {"name": name}, "spec": {"tasks": tasks}})
    for name in names:
        flowruns.wait_status(name, "a running", lambda status: "a" in (status.get("tasks") or {}))

    lines_before = len(operator.log_path.read_text().splitlines())
    requests_before = requests_sent(operator.scrape_metrics())
    with devcluster.stopped(component):
        time.sleep(OUTAGE_SECONDS)  # the outage itself: what is measured is what happens during it
        requests_during = requests_sent(operator.scrape_metrics()) - requests_before
        lines_during = len(operator.log_path.read_text().splitlines()) - lines_before
    print(f"{component} down {OUTAGE_SECONDS:.0f}s: {requests_during:.0f} requests, {lines_during} log lines")
    # Passes pause behind one probe: a handful of requests, not one per run per retry.
    assert requests_during <= 2 * RUNS + OUTAGE_SECONDS, requests_during
    assert lines_during <= 4 * RUNS + 20, operator.log_tail(60)

    for name in names:
        run = flowruns.wait_phase(name, ("Succeeded", "Failed"), timeout=120)
        assert run["status"]["phase"] == "Succeeded", run["status"]
        assert {t["attempts"] for t in run["status"]["tasks"].values()} == {1}
    assert all(len(uids) == 1 for uids in pods.uids_by_name().values()), pods.uids_by_name()
    assert sorted(pods.uids_by_name()) == sorted(f"{n}-{t}-1" for n in names for t in "abc")
    for name in names:
        flowruns.delete_and_check_nothing_leaked(name)
