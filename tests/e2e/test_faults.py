"""Faults while runs are active: the API server, or etcd behind it, stopped and started again; the
operator SIGKILLed at random moments. Every run ends in the right phase with the right results,
no pod, Job or Deployment name is created twice (tracked by watches), nothing leaks, and an outage
floods neither the log nor the API server."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from devcluster import cluster as devcluster
from flowrun import api
from tests.e2e.helpers import FlowRuns, Operator, StartOperator, Watch, WatchRecorder, deployment, sim_task

pytestmark = pytest.mark.e2e

# How long the control plane stays down; longer outages for the figures of docs/reliability.md.
OUTAGE_SECONDS = float(os.environ.get("FLOWRUN_TEST_OUTAGE_SECONDS", "15"))
RUNS = 4


def warnings(operator: Operator) -> list[str]:
    """The operator's log records at WARNING and above (its log is JSON, one record a line)."""
    records = [json.loads(line) for line in operator.log_path.read_text().splitlines() if line.startswith("{")]
    return [
        f"{r['level']} {r['logger']}: {r['message']}" for r in records if r["level"] in ("warning", "error", "critical")
    ]


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

    lines_before = len(warnings(operator))
    requests_before = requests_sent(operator.scrape_metrics())
    with devcluster.stopped(component):
        time.sleep(OUTAGE_SECONDS)  # the outage itself: what is measured is what happens during it
        requests_during = requests_sent(operator.scrape_metrics()) - requests_before
        lines_during = warnings(operator)[lines_before:]
    print(f"{component} down {OUTAGE_SECONDS:.0f}s: {requests_during:.0f} requests, {len(lines_during)} log lines")
    # Passes pause behind one probe (or back off per run): a handful of requests and lines, not
    # one per run and retry.
    assert requests_during <= 2 * RUNS + OUTAGE_SECONDS, requests_during
    assert len(lines_during) <= 2 * RUNS + 6, "\n".join(lines_during)

    for name in names:
        run = flowruns.wait_phase(name, ("Succeeded", "Failed"), timeout=120)
        assert run["status"]["phase"] == "Succeeded", run["status"]
        assert {t["attempts"] for t in run["status"]["tasks"].values()} == {1}
    assert all(len(uids) == 1 for uids in pods.uids_by_name().values()), pods.uids_by_name()
    assert sorted(pods.uids_by_name()) == sorted(f"{n}-{t}-1" for n in names for t in "abc")
    for name in names:
        flowruns.delete_and_check_nothing_leaked(name)


KILLED_RUNS = 20
KILLS = 6


def flow_with_two_blocks_and_retries(name: str) -> dict[str, Any]:
    """Two resource blocks (a Deployment each), a task in each, a join, and a task that fails
    every attempt with one retry: the run ends Failed, deterministically, after cleanup."""
    return {
        "metadata": {"name": name},
        "spec": {
            "resources": [
                {"name": "db", "setup": {"deployments": [deployment("pg")]}},
                {"name": "cache", "setup": {"deployments": [deployment("redis")]}},
            ],
            "tasks": [
                sim_task("load", resources=["db"], duration="1s", message="L"),
                sim_task("warm", resources=["cache"], duration="500ms"),
                sim_task("report", run_after=["load", "warm"], args=["$(tasks.load.result)"], duration="300ms"),
                sim_task(
                    "flaky",
                    run_after=["load"],
                    outcome="fail",
                    duration="300ms",
                    retries={"limit": 1, "backoffSeconds": 1},
                ),
            ],
        },
    }


def progressed(created: Callable[[], int], since: int, _: object) -> bool:
    return created() > since


def test_sigkill_at_random_moments_during_20_runs_duplicates_nothing_and_loses_nothing(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    recorders = {kind: watch(kind) for kind in ("pods", "jobs", "deployments")}
    names = [f"k{i:02d}" for i in range(KILLED_RUNS)]
    for name in names:
        flowruns.create(flow_with_two_blocks_and_retries(name))
    chance = random.Random(20)  # a fixed seed: a failure can be replayed

    def created() -> int:
        return sum(len(r.uids_by_name()) for r in recorders.values())

    for _ in range(KILLS):
        before = created()
        # Some progress between kills, then a kill at a random moment.
        recorders["pods"].wait("progress since the last kill", partial(progressed, created, before), timeout=60)
        time.sleep(chance.uniform(0.0, 1.5))  # a random instant is the point of the test
        operator.kill()
        operator.start()
    for name in names:
        run = flowruns.wait_phase(name, ("Succeeded", "Failed"), timeout=180)
        tasks = run["status"]["tasks"]
        assert run["status"]["phase"] == "Failed", run["status"]
        assert {t: tasks[t]["phase"] for t in tasks} == {
            "load": "Succeeded",
            "warm": "Succeeded",
            "report": "Succeeded",
            "flaky": "Failed",
        }
        assert {t: tasks[t]["attempts"] for t in tasks} == {"load": 1, "warm": 1, "report": 1, "flaky": 2}
        assert tasks["load"]["result"] == "L"
        assert {r: b["phase"] for r, b in run["status"]["resources"].items()} == {
            "db": "CleanedUp",
            "cache": "CleanedUp",
        }
    for kind, recorder in recorders.items():
        assert recorder.gaps == 0, f"the {kind} watch missed events: the proof is incomplete"
        assert not recorder.duplicated_names(), f"{kind} created twice: {recorder.duplicated_names()}"
    latest = recorders["pods"].latest()
    pods = [name for name, pod in latest.items() if api.LABEL_TASK in pod["metadata"]["labels"]]
    assert sorted(pods) == sorted(
        f"{n}-{t}" for n in names for t in ("load-1", "warm-1", "report-1", "flaky-1", "flaky-2")
    ), sorted(pods)
    assert all(latest[f"{n}-report-1"]["spec"]["containers"][0]["args"] == ["L"] for n in names)
    for name in names:
        flowruns.delete_and_check_nothing_leaked(name)


def running(pod: str, recorder: WatchRecorder) -> bool:
    return recorder.phase(pod) == "Running"


def test_a_task_pod_deleted_by_someone_else_is_retried_or_fails_with_the_reason(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    pods = watch("pods")
    retried = sim_task("work", duration="1h", retries={"limit": 1, "backoffSeconds": 0})
    flowruns.create({"metadata": {"name": "again"}, "spec": {"tasks": [retried]}})
    flowruns.create({"metadata": {"name": "once"}, "spec": {"tasks": [sim_task("work", duration="1h")]}})
    core = client.CoreV1Api(flowruns.api_client)
    for name in ("again", "once"):
        pods.wait(f"the pod of {name}", partial(running, f"{name}-work-1"))
        core.delete_namespaced_pod(f"{name}-work-1", flowruns.namespace, grace_period_seconds=0)
    # With a retry left, a new attempt (a new pod, a new name); without, the task fails saying why.
    pods.wait("the second attempt", partial(running, "again-work-2"))
    failed = flowruns.wait_phase("once", "Failed")
    work = failed["status"]["tasks"]["work"]
    assert (work["phase"], work["reason"], work["attempts"]) == ("Failed", "PodDeleted", 1), work
    assert "disappeared" in work["message"]
    again = flowruns.get("again") or {}
    assert again["status"]["tasks"]["work"]["attempts"] == 2
    assert not pods.duplicated_names()
    for name in ("again", "once"):
        flowruns.delete_and_check_nothing_leaked(name)
