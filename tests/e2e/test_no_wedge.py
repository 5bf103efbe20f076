"""No wedge: the operator resumes after an API server outage that passes run into, its liveness
answer tells the truth, and children whose labels someone edits neither hang a run nor its
deletion (docs/reliability.md, "No wedge")."""

from __future__ import annotations

import hashlib
import json
import time
from functools import partial
from typing import Any

import pytest
from kubernetes import client

from devcluster import cluster as devcluster
from devcluster.pytest_plugin import RealNode, wait_for
from tests.e2e.helpers import (
    FlowRuns,
    Operator,
    StartOperator,
    Watch,
    WatchRecorder,
    deployment,
    job,
    pod_phase,
    real_task,
    sim_task,
    task,
)

pytestmark = pytest.mark.e2e

OUTAGE_SECONDS = 20.0


def has_phase(name: str, phase: tuple[str, str], status: dict[str, Any]) -> bool:
    """A wait_status check: the task's (phase, reason)."""
    entry = (status.get("tasks") or {}).get(name) or {}
    return (entry.get("phase"), entry.get("reason")) == phase


def created(recorder: WatchRecorder, name: str) -> bool:
    return name in recorder.uids_by_name()


def test_passes_due_during_an_api_server_outage_resume_within_seconds_of_its_return(
    start_operator: StartOperator, flowruns: FlowRuns, watch: Watch
) -> None:
    # A short stall bound: the liveness answer must stay 200 through the outage all the same.
    operator = start_operator("--liveness-stall-seconds", "5", liveness=True)
    pods, jobs = watch("pods"), watch("jobs")
    block = {"name": "r", "setup": {"deployments": [deployment("db")]}, "cleanup": {"job": job(duration="6s")}}
    flowruns.create(
        {
            "metadata": {"name": "in-block"},
            "spec": {"resources": [block], "tasks": [sim_task("work", resources=["r"], duration="12s")]},
        }
    )
    flowruns.create(
        {
            "metadata": {"name": "deleted"},
            "spec": {"resources": [block], "tasks": [sim_task("work", resources=["r"], duration="1h")]},
        }
    )
    retried = sim_task("flaky", outcome="fail", duration="500ms", retries={"limit": 1, "backoffSeconds": 12})
    for name in ("in-block", "deleted"):
        flowruns.wait_status(name, "work running", partial(has_phase, "work", ("Running", "PodRunning")))
    flowruns.create({"metadata": {"name": "retry"}, "spec": {"tasks": [retried]}})
    flowruns.wait_status("retry", "in its retry backoff", partial(has_phase, "flaky", ("Running", "RetryBackoff")))
    flowruns.delete("deleted")
    jobs.wait("the cleanup job of deleted", partial(created, name="deleted-r-cleanup-1"))

    # Due while the API server is down: the retry (12 s backoff), the task in the block and the
    # cleanup job finishing, the resync of every running run, the deleted run's finalizer.
    with devcluster.stopped("kube-apiserver"):
        time.sleep(OUTAGE_SECONDS / 2)
        code, answer = operator.health()
        time.sleep(OUTAGE_SECONDS / 2)
    back = time.monotonic()
    assert code == 200, answer  # an outage is no wedge: the liveness answer holds

    flowruns.create({"metadata": {"name": "after"}, "spec": {"tasks": [sim_task("first")]}})
    pods.wait("the first pod of the run created after the outage", partial(created, name="after-first-1"), timeout=60)
    resumed = time.monotonic() - back
    print(f"first pod of a new run {resumed:.1f}s after the API server was back")
    assert resumed < 10.0, resumed
    # The retry fell due during the outage, and only the operator acts on it (the other passes
    # due wait for KWOK to report their pods too): its pass resumes as soon.
    pods.wait("the retry due during the outage", partial(created, name="retry-flaky-2"), timeout=60)
    retried_after = time.monotonic() - back
    print(f"the retry due during the outage created {retried_after:.1f}s after the API server was back")
    assert retried_after < 10.0, retried_after

    retry = flowruns.wait_phase("retry", "Failed", timeout=60)
    assert (retry["status"]["tasks"]["flaky"]["attempts"], task(retry, "flaky")["phase"]) == (2, "Failed")
    in_block = flowruns.wait_phase("in-block", "Succeeded", timeout=60)
    assert in_block["status"]["resources"]["r"]["phase"] == "CleanedUp"
    wait_for("the deleted run to be gone", lambda: flowruns.get("deleted") is None, timeout=60)
    flowruns.wait_phase("after", "Succeeded", timeout=60)
    assert not pods.duplicated_names() and not jobs.duplicated_names()
    for name in ("retry", "in-block", "after"):
        flowruns.delete_and_check_nothing_leaked(name)
    assert operator.health()[0] == 200


def test_the_liveness_answer_fails_when_passes_are_due_and_none_finishes_while_the_api_server_answers(
    start_operator: StartOperator, flowruns: FlowRuns
) -> None:
    # The failpoint makes every pass hang: a wedge of a kind no outside action can cause.
    operator = start_operator("--liveness-stall-seconds", "5", liveness=True, env={"FLOWRUN_FAILPOINTS": "pass-hangs"})
    wait_for("the liveness endpoint", lambda: operator.health()[0] == 200, timeout=30)
    flowruns.create({"metadata": {"name": "stuck"}, "spec": {"tasks": [sim_task("a")]}})

    def unhealthy() -> dict[str, Any] | None:
        code, answer = operator.health()
        return answer if code == 500 else None

    answer = wait_for("the liveness answer to fail", unhealthy, timeout=60)
    print(answer)
    operator.stop()  # its passes hang: the run is released by a healthy operator
    start_operator()
    flowruns.delete_and_check_nothing_leaked("stuck")


def test_children_whose_labels_someone_edits_are_still_the_runs_and_nothing_waits_for_ever(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    pods = watch("pods")
    core, apps = client.CoreV1Api(flowruns.api_client), client.AppsV1Api(flowruns.api_client)
    ns = flowruns.namespace
    block = {"name": "r", "setup": {"deployments": [deployment("db")]}}
    flowruns.create(
        {
            "metadata": {"name": "relabelled-block"},
            "spec": {"resources": [block], "tasks": [sim_task("work", resources=["r"], duration="8s")]},
        }
    )
    flowruns.create({"metadata": {"name": "relabelled-pod"}, "spec": {"tasks": [sim_task("work", duration="8s")]}})
    for name in ("relabelled-block", "relabelled-pod"):
        flowruns.wait_status(name, "work running", partial(has_phase, "work", ("Running", "PodRunning")))

    # The run's UID label off the block's Deployment (it stays in the operator's watch, by its
    # owner reference); the operator's label off the running pod (it leaves the watch).
    apps.patch_namespaced_deployment(
        "relabelled-block-r-db", ns, {"metadata": {"labels": {"flowrun.dev/flowrun-uid": None}}}
    )
    core.patch_namespaced_pod(
        "relabelled-pod-work-1", ns, {"metadata": {"labels": {"app.kubernetes.io/managed-by": None}}}
    )
    restored = flowruns.events_when("relabelled-pod", lambda found: any(e.reason == "LabelsRestored" for e in found))
    assert any("Pod/relabelled-pod-work-1" in e.message for e in restored if e.reason == "LabelsRestored")
    pod = core.read_namespaced_pod("relabelled-pod-work-1", ns)
    assert pod.metadata.labels["app.kubernetes.io/managed-by"] == "flowrun-operator"

    block_run = flowruns.wait_phase("relabelled-block", "Succeeded", timeout=60)
    assert block_run["status"]["resources"]["r"]["phase"] == "CleanedUp"
    assert not apps.list_namespaced_deployment(ns).items  # cleanup deleted it, and saw it go
    pod_run = flowruns.wait_phase("relabelled-pod", "Succeeded", timeout=60)
    assert pod_run["status"]["tasks"]["work"]["attempts"] == 1  # the same pod, never a second
    assert "relabelled-pod-work-2" not in pods.uids_by_name()
    for name in ("relabelled-block", "relabelled-pod"):
        started = time.monotonic()
        flowruns.delete_and_check_nothing_leaked(name, timeout=30)
        print(f"{name} deleted in {time.monotonic() - started:.1f}s")


WIDE = 200
FAIL_LOUDLY = (
    "head -c 4000 /dev/zero | tr '\\0' x; echo;"  # 4,000 bytes of output
    " head -c 4000 /dev/zero | tr '\\0' m > /dev/termination-log; exit 1"  # a 4,000-byte message
)


def stored_bytes(run: dict[str, Any]) -> int:
    return len(json.dumps(run, separators=(",", ":")).encode())


def test_200_real_tasks_failing_loudly_end_failed_under_the_size_limit_and_delete_in_seconds(
    real_node: RealNode, operator: Operator, flowruns: FlowRuns
) -> None:
    tasks = [real_task(real_node, f"t{i}", FAIL_LOUDLY) for i in range(WIDE)]
    flowruns.create({"metadata": {"name": "loud"}, "spec": {"parallelism": 40, "tasks": tasks}})
    run = flowruns.wait_phase("loud", ("Succeeded", "Failed"), timeout=600)
    assert run["status"]["phase"] == "Failed"
    assert {t["phase"] for t in run["status"]["tasks"].values()} == {"Failed"}
    assert len(run["status"]["tasks"]) == WIDE
    size = stored_bytes(run)
    assert size <= 1_048_576, size
    started = time.monotonic()
    flowruns.delete_and_check_nothing_leaked("loud", timeout=120)
    print(f"{WIDE} failing tasks: FlowRun of {size} bytes; deleted in {time.monotonic() - started:.1f}s")


def test_200_real_tasks_with_4000_byte_results_hand_one_on_intact(
    real_node: RealNode, operator: Operator, flowruns: FlowRuns
) -> None:
    def produce(i: int) -> str:
        return f"printf '%04d' {i} > /dev/termination-log; head -c 3996 /dev/zero | tr '\\0' r >> /dev/termination-log"

    tasks = [real_task(real_node, f"t{i}", produce(i)) for i in range(WIDE - 1)]  # and `use`: the most a run has
    use = real_task(real_node, "use", 'printf %s "$0" | md5sum | head -c 32 > /dev/termination-log', runAfter=["t7"])
    use["template"]["spec"]["containers"][0]["command"].append("$(tasks.t7.result)")
    flowruns.create({"metadata": {"name": "results"}, "spec": {"parallelism": 40, "tasks": [*tasks, use]}})
    run = flowruns.wait_phase("results", ("Succeeded", "Failed"), timeout=600)
    assert run["status"]["phase"] == "Succeeded", run["status"]["message"]
    expected = "0007" + "r" * 3996
    assert run["status"]["tasks"]["use"]["result"] == hashlib.md5(expected.encode()).hexdigest()
    size = stored_bytes(run)
    assert size <= 1_048_576, size
    started = time.monotonic()
    flowruns.delete_and_check_nothing_leaked("results", timeout=120)
    print(f"{WIDE} results: FlowRun of {size} bytes; deleted in {time.monotonic() - started:.1f}s")


def test_a_status_written_by_someone_else_is_overruled_by_what_the_children_show(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    pods, jobs = watch("pods"), watch("jobs")
    block = {"name": "r", "setup": {"deployments": [deployment("db")]}, "cleanup": {"job": job()}}
    tasks = [
        sim_task("a", resources=["r"], duration="6s", message="REAL"),
        sim_task("b", run_after=["a"], args=["$(tasks.a.result)"]),
    ]
    flowruns.create({"metadata": {"name": "lied-to"}, "spec": {"resources": [block], "tasks": tasks}})
    flowruns.create({"metadata": {"name": "healthy"}, "spec": {"tasks": [sim_task("a", duration="6s")]}})
    for name in ("lied-to", "healthy"):
        flowruns.wait_status(name, "a running", partial(has_phase, "a", ("Running", "PodRunning")))
    custom, ns = flowruns.custom, flowruns.namespace

    def write_status(name: str, status: dict[str, Any]) -> None:
        custom.patch_namespaced_custom_object_status(
            "flowrun.dev", "v1alpha1", ns, "flowruns", name, {"status": status}
        )

    write_status(
        "lied-to",
        {"resources": {"r": {"phase": "CleanedUp"}}, "tasks": {"a": {"phase": "Succeeded", "result": "FAKE"}}},
    )
    write_status("healthy", {"phase": "Failed", "tasks": {"a": {"phase": "Failed", "reason": "Error"}}})

    lied = flowruns.wait_phase("lied-to", "Succeeded", timeout=60)
    b = pods.first("lied-to-b-1")
    assert b is not None and b["spec"]["containers"][0]["args"] == ["REAL"]  # never FAKE
    assert lied["status"]["tasks"]["a"]["result"] == "REAL"
    assert lied["status"]["resources"]["r"]["phase"] == "CleanedUp"
    assert "lied-to-r-cleanup-1" in jobs.uids_by_name()  # the real cleanup ran
    healthy = flowruns.wait_phase("healthy", "Succeeded", timeout=60)
    assert healthy["status"]["tasks"]["a"]["attempts"] == 1
    # Its pod ran to its end (a pod killed by the operator would have failed with exit code 137).
    assert any(o["metadata"]["name"] == "healthy-a-1" and pod_phase(o) == "Succeeded" for _, o in pods.snapshot())
    for name in ("lied-to", "healthy"):
        flowruns.delete_and_check_nothing_leaked(name)


def test_a_stale_copy_of_its_status_written_back_after_the_run_ended_changes_nothing(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    # Found by the soak: once the block is cleaned up its objects are gone, so nothing in the
    # cluster tells a stale "Ready" from the truth. The operator goes on from its own status.
    pods, jobs = watch("pods"), watch("jobs")
    block = {"name": "r", "setup": {"deployments": [deployment("db")]}, "cleanup": {"job": job()}}
    tasks = [sim_task("a", resources=["r"], duration="4s", message="REAL"), sim_task("b", run_after=["a"])]
    flowruns.create({"metadata": {"name": "ended"}, "spec": {"resources": [block], "tasks": tasks}})
    stale = flowruns.wait_status("ended", "a running", partial(has_phase, "a", ("Running", "PodRunning")))["status"]
    assert stale["resources"]["r"]["phase"] == "Ready"
    ended = flowruns.wait_phase("ended", "Succeeded", timeout=60)
    assert ended["status"]["resources"]["r"]["phase"] == "CleanedUp"

    flowruns.custom.patch_namespaced_custom_object_status(
        "flowrun.dev", "v1alpha1", flowruns.namespace, "flowruns", "ended", {"status": stale}
    )

    def as_it_ended(status: dict[str, Any]) -> bool:
        return all(status[key] == ended["status"][key] for key in ("phase", "resources", "tasks"))

    try:
        flowruns.wait_status("ended", "the status as it ended", as_it_ended, timeout=60)
    except AssertionError:
        now = (flowruns.get("ended") or {}).get("status") or {}
        raise AssertionError(f"resources now {now.get('resources')}; tasks now {now.get('tasks')}") from None
    flowruns.events_when("ended", lambda events: any(e.reason == "StatusOverruled" for e in events))
    assert not pods.duplicated_names() and not jobs.duplicated_names()
    assert set(jobs.uids_by_name()) == {"ended-r-cleanup-1"}
    flowruns.delete_and_check_nothing_leaked("ended")
