"""Real containers run by the operator on the dev cluster's real node: exit codes, results written
by the program, logs kept in status, retries that start a new container, cancel delivering
SIGTERM, and the deletion of a run whose real Dask cluster is up."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devcluster import node as devcluster_node
from devcluster.pytest_plugin import KubeCluster, RealNode, wait_for
from tests.e2e.helpers import (
    FlowRuns,
    Operator,
    Watch,
    WatchRecorder,
    real_dask_example,
    real_task,
    task,
)

pytestmark = pytest.mark.e2e


def test_a_container_that_exits_non_zero_fails_its_task_with_the_exit_code_and_logs(
    real_node: RealNode, operator: Operator, flowruns: FlowRuns
) -> None:
    script = 'echo "reading input"; echo "disk full" >&2; printf "no space left" > /dev/termination-log; exit 3'
    flowruns.create({"metadata": {"name": "exits"}, "spec": {"tasks": [real_task(real_node, "a", script)]}})
    run = flowruns.wait_phase("exits", "Failed", timeout=90)
    a = task(run, "a")
    assert (a["phase"], a["exitCode"], a["attempts"]) == ("Failed", 3, 1), a
    assert "no space left" in a["message"], a
    # Both streams of the real process, kept in status (the pod may be gone later).
    assert "reading input" in a["logs"] and "disk full" in a["logs"], a
    flowruns.delete_and_check_nothing_leaked("exits")


def test_a_result_is_what_the_program_wrote_to_its_termination_log(
    real_node: RealNode, operator: Operator, flowruns: FlowRuns
) -> None:
    # The shell computes the values: the result can only come from the running program.
    produce = real_task(real_node, "produce", 'printf "%s" "$((6 * 7))" > /dev/termination-log')
    consume = real_task(real_node, "consume", 'printf "got %s, %s" "$1" "$(($1 + 1))" > /dev/termination-log')
    consume["runAfter"] = ["produce"]
    consume["template"]["spec"]["containers"][0]["args"] = ["sh", "$(tasks.produce.result)"]
    flowruns.create({"metadata": {"name": "results"}, "spec": {"tasks": [produce, consume]}})
    run = flowruns.wait_phase("results", ("Succeeded", "Failed"), timeout=90)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert task(run, "produce")["result"] == "42"
    assert task(run, "consume")["result"] == "got 42, 43"
    flowruns.delete_and_check_nothing_leaked("results")


def test_retries_start_a_new_container_for_each_attempt(
    real_node: RealNode, operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    pods = watch("pods")
    # The attempt number is the end of the pod's name, which is the container's host name.
    script = (
        'case "$(hostname)" in *-1|*-2) echo "attempt $(hostname) fails"; exit 7;; esac; '
        "printf ok > /dev/termination-log"
    )
    flaky = real_task(real_node, "flaky", script)
    flaky["retries"] = {"limit": 2, "backoffSeconds": 0}
    flowruns.create({"metadata": {"name": "retries"}, "spec": {"tasks": [flaky]}})
    run = flowruns.wait_phase("retries", ("Succeeded", "Failed"), timeout=120)
    flaky_state = task(run, "flaky")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert (flaky_state["attempts"], flaky_state["result"]) == (3, "ok"), flaky_state
    for attempt, code in ((1, 7), (2, 7), (3, 0)):
        terminated = final_container_state(pods, f"retries-flaky-{attempt}")
        assert terminated["exitCode"] == code, (attempt, terminated)
    assert not pods.duplicated_names(), "a pod name was created twice"
    flowruns.delete_and_check_nothing_leaked("retries")


def final_container_state(pods: WatchRecorder, name: str) -> dict[str, Any]:
    """The terminated state of a pod's first container, as the kubelet last reported it."""

    def terminated() -> dict[str, Any] | None:
        for _, pod in reversed(pods.snapshot()):
            if pod["metadata"]["name"] != name:
                continue
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                state = (status.get("state") or {}).get("terminated")
                if state:
                    return dict(state)
        return None

    found: dict[str, Any] = wait_for(f"pod {name}'s container to terminate", terminated, timeout=60)
    return found


def test_cancel_sends_sigterm_to_the_running_container(
    kube_cluster: KubeCluster, real_node: RealNode, operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    pods = watch("pods")
    script = (
        "trap 'echo stopping; printf got-SIGTERM > /dev/termination-log; exit 143' TERM; "
        "echo started; while :; do sleep 0.1; done"
    )
    flowruns.create({"metadata": {"name": "cancelled"}, "spec": {"tasks": [real_task(real_node, "long", script)]}})
    core = kube_cluster.core()
    wait_for(
        "the real container to start",
        lambda: "started" in (core.read_namespaced_pod_log("cancelled-long-1", flowruns.namespace) or ""),
        timeout=60,
    )
    flowruns.patch("cancelled", {"spec": {"cancel": True}})
    run = flowruns.wait_phase("cancelled", "Cancelled", timeout=60)
    long = task(run, "long")
    assert long["phase"] == "Cancelled" and "started" in long["logs"], long
    terminated = final_container_state(pods, "cancelled-long-1")
    # The program's own TERM handler ran: the kubelet delivered SIGTERM, not only SIGKILL.
    assert (terminated["exitCode"], terminated.get("message")) == (143, "got-SIGTERM"), terminated
    flowruns.delete_and_check_nothing_leaked("cancelled")


def block_ready(status: dict[str, Any]) -> bool:
    return bool(((status.get("resources") or {}).get("dask") or {}).get("phase") == "Ready")


def test_deleting_a_run_while_its_real_dask_cluster_runs_cleans_the_cluster_up(
    kube_cluster: KubeCluster, real_node: RealNode, operator: Operator, flowruns: FlowRuns
) -> None:
    kube_cluster.core().patch_namespace(
        flowruns.namespace, {"metadata": {"annotations": devcluster_node.namespace_annotations()}}
    )
    body = real_dask_example(real_node)
    name = body["metadata"]["name"]
    flowruns.create(body)
    # The block is Ready only when the scheduler's readiness probe reached its port for real.
    flowruns.wait_status(name, "the Dask block to be Ready", block_ready, timeout=180)
    scheduler_pods = (
        kube_cluster.core().list_namespaced_pod(flowruns.namespace, label_selector="flowrun.dev/resource=dask").items
    )
    assert scheduler_pods and all(p.spec.node_name == real_node.name for p in scheduler_pods)
    flowruns.delete_and_check_nothing_leaked(name, timeout=180)


def test_the_fan_out_example_computes_each_day_on_a_real_dask_cluster_and_combines_them_in_order(
    kube_cluster: KubeCluster, real_node: RealNode, operator: Operator, flowruns: FlowRuns
) -> None:
    kube_cluster.core().patch_namespace(
        flowruns.namespace, {"metadata": {"annotations": devcluster_node.namespace_annotations()}}
    )
    body = real_dask_example(real_node, "foreach-dask-flowrun.yaml")
    name = body["metadata"]["name"]
    flowruns.create(body)
    run = flowruns.wait_phase(name, ("Succeeded", "Failed"), timeout=300)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    # The list, each day's summary and their sum were computed by the containers, on the workers.
    assert json.loads(task(run, "list-days")["result"]) == ["2026-01-01", "2026-01-02", "2026-01-03"]
    days = [json.loads(task(run, f"summarize-day-{i}")["result"]) for i in range(3)]
    assert all(day["rows"] > 0 for day in days) and len({day["mean"] for day in days}) == 3, days
    assert json.loads(task(run, "combine")["result"]) == {"days": 3, "rows": sum(day["rows"] for day in days)}
    flowruns.delete_and_check_nothing_leaked(name, timeout=180)
