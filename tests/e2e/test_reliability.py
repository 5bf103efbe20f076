"""Reliability end to end (docs/reliability.md): a block's children deleted or refused by someone
else after the dry run, a namespace deleted with live FlowRuns, and a FlowRun deleted in each of
its phases, on the dev cluster with the real operator. Each test runs its cases side by side, so
the suite stays fast; every run ends with nothing labelled with its UID left."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.pytest_plugin import KubeCluster, fresh_namespace, wait_for
from flowrun import api
from tests.e2e.helpers import (
    FlowRuns,
    Operator,
    Watch,
    WatchRecorder,
    deployment,
    job,
    res,
    sim_task,
    task,
)

pytestmark = pytest.mark.e2e

NOBODY = "nobody"  # a ServiceAccount that does not exist
CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"k": "v"}}


def block_run(
    name: str, setup: dict[str, Any], *, cleanup: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """Block `r` used by task `first` (5 s) and then `second`."""
    tasks = fields.pop("tasks", None) or [
        sim_task("first", resources=["r"], duration="5s"),
        sim_task("second", run_after=["first"], resources=["r"]),
    ]
    block = {"name": "r", "setup": setup, "cleanup": cleanup if cleanup is not None else {"job": job()}}
    return {"metadata": {"name": name}, "spec": {"resources": [block], "tasks": tasks, **fields}}


def without_service_account(template: dict[str, Any]) -> dict[str, Any]:
    refused = copy.deepcopy(template)
    refused["spec"]["serviceAccountName"] = NOBODY
    return refused


def task_running(name: str) -> Any:
    """A wait_status check: the task's pod runs."""
    return lambda status: ((status.get("tasks") or {}).get(name) or {}).get("reason") == "PodRunning"


def added(recorder: WatchRecorder, name: str) -> int:
    """How many objects of that name were created (by uid: a second create is a second uid)."""
    return len(recorder.uids_by_name().get(name, set()))


def release(flowruns: FlowRuns, name: str) -> None:
    """Delete a run whose cleanup failed on purpose: the annotation releases its finalizer."""
    flowruns.patch(name, {"metadata": {"annotations": {api.SKIP_CLEANUP_ANNOTATION: "true"}}})
    flowruns.delete_and_check_nothing_leaked(name)


# -- children deleted or refused by someone else --------------------------------------------------


def test_children_deleted_or_refused_after_the_dry_run_fail_the_block_with_the_cause(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    deployments, jobs = watch("deployments"), watch("jobs")
    apps, batch = client.AppsV1Api(flowruns.api_client), client.BatchV1Api(flowruns.api_client)
    ns = flowruns.namespace
    flowruns.create(block_run("broken", {"deployments": [deployment("db", ports=True)], "manifests": [CONFIG]}))
    flowruns.create(block_run("vanish", {"job": job(duration="60s", message="vm-3")}))
    flowruns.create(block_run("sa-job", {"job": {"template": without_service_account(job()["template"])}}))
    refused_deployment = deployment("db")
    refused_deployment["template"] = without_service_account(refused_deployment["template"])
    flowruns.create(block_run("sa-deploy", {"deployments": [refused_deployment]}))
    teardown = {"job": job(outcome="fail", message="vm-9 could not be deleted"), "retries": 0}
    flowruns.create(block_run("teardown", {"deployments": [deployment("db")]}, cleanup=teardown))

    # (a) A Ready block's Deployment deleted while its first task runs: the block fails, the next
    # task is skipped rather than started into it, and the Deployment is not created again.
    flowruns.wait_status("broken", "first task running", task_running("first"))
    assert res(flowruns.get("broken") or {}, "r")["phase"] == "Ready"
    apps.delete_namespaced_deployment("broken-r-db", ns)
    # (b) A running setup Job deleted: a setup failure, never created again.
    wait_for("the setup pod of vanish to run", lambda: job_pod_running(flowruns, "vanish-r-setup"))
    assert (flowruns.get("vanish") or {})["status"]["resources"]["r"]["reason"] == "SetupJobRunning"
    batch.delete_namespaced_job("vanish-r-setup", ns, propagation_policy="Background")

    broken = flowruns.wait_phase("broken", "Failed", timeout=60)
    assert res(broken, "r")["setupError"] == (
        "ObjectDeleted: Deployment/broken-r-db was deleted while the block was Ready (by someone else);"
        " it is not created again"
    )
    assert (task(broken, "second")["phase"], task(broken, "second")["reason"]) == ("Skipped", "SetupFailed")
    assert task(broken, "second")["attempts"] == 0
    assert res(broken, "r")["phase"] == "CleanedUp"
    vanish = flowruns.wait_phase("vanish", "Failed", timeout=60)
    assert res(vanish, "r")["setupError"].startswith(
        "SetupJobDeleted: setup job vanish-r-setup was deleted before the block was Ready (by someone else);"
    )
    assert res(vanish, "r")["phase"] == "CleanedUp"  # its cleanup job ran all the same
    assert added(deployments, "broken-r-db") == 1 and added(jobs, "vanish-r-setup") == 1

    # (c) Pods refused after the dry run: the block fails long before its 600 s timeout, quoting why.
    for name, what in (("sa-job", "setup job sa-job-r-setup: its pod"), ("sa-deploy", "deployment db: its pods")):
        run = flowruns.wait_phase(name, "Failed", timeout=45)
        error = res(run, "r")["setupError"]
        assert error.startswith(f"PodsRefused: {what} cannot be created: "), error
        assert f'serviceaccount "{NOBODY}" not found' in error, error
        assert [task(run, t)["reason"] for t in ("first", "second")] == ["SetupFailed", "SetupFailed"]

    # (d) A failed cleanup job: cleanupError quotes its pod's termination message.
    teardown_run = flowruns.wait_phase("teardown", "Failed", timeout=60)
    assert res(teardown_run, "r")["phase"] == "CleanupFailed"
    assert "termination message: vm-9 could not be deleted" in res(teardown_run, "r")["cleanupError"]

    for name in ("broken", "vanish", "sa-job", "sa-deploy"):
        flowruns.delete_and_check_nothing_leaked(name)
    release(flowruns, "teardown")


def job_pod_running(flowruns: FlowRuns, job_name: str) -> bool:
    pods = client.CoreV1Api(flowruns.api_client).list_namespaced_pod(
        flowruns.namespace, label_selector=f"job-name={job_name}"
    )
    return any(p.status.phase == "Running" for p in pods.items)


# -- a namespace deleted with live FlowRuns -------------------------------------------------------


def test_a_namespace_deleted_with_live_flowruns_goes_and_an_event_names_the_skipped_cleanup(
    kube_cluster: KubeCluster, flowrun_crd: None, tmp_path: Path
) -> None:
    core = kube_cluster.core()
    with fresh_namespace(kube_cluster, "ns-deleted") as ns:
        running = Operator(kube_cluster, ns, tmp_path)
        running.start()
        try:
            flowruns = FlowRuns(kube_cluster, ns)
            long_tasks = [sim_task("first", resources=["r"], duration="60s")]
            flowruns.create(block_run("with-teardown", {"deployments": [deployment("db")]}, tasks=long_tasks))
            flowruns.create(block_run("plain", {"deployments": [deployment("db")]}, cleanup={}, tasks=long_tasks))
            for name in ("with-teardown", "plain"):
                flowruns.wait_status(name, "first running", task_running("first"))
            core.delete_namespace(ns)
            wait_for(f"namespace {ns} to be gone", lambda: namespace_gone(core, ns), timeout=90)

            # The cleanup job could not run: a Warning event on the Namespace says so, and the log.
            events = wait_for(
                "the event naming the skipped cleanup job",
                lambda: [e for e in namespace_events(core, ns) if "cleanup job not run" in (e.message or "")],
            )
            assert [(e.type, e.reason) for e in events] == [("Warning", "CleanupFailed")]
            assert events[0].message.startswith(
                f"FlowRun {ns}/with-teardown: resource r: cleanup job not run: namespace {ns} is being deleted"
            ), events[0].message
            assert "cleanup job not run" in running.log_path.read_text()
            assert running.running(), running.log_tail()
        finally:
            running.stop()


def test_a_namespace_deleted_with_a_run_whose_cleanup_failed_goes_and_an_event_says_what_may_remain(
    kube_cluster: KubeCluster, flowrun_crd: None, tmp_path: Path
) -> None:
    # A failed cleanup holds the finalizer of a deleted run for a person to decide (CleanupBlocked);
    # deleting its namespace must not wait on that decision for ever.
    core = kube_cluster.core()
    with fresh_namespace(kube_cluster, "ns-blocked") as ns:
        running = Operator(kube_cluster, ns, tmp_path)
        running.start()
        try:
            flowruns = FlowRuns(kube_cluster, ns)
            failing = {"job": job(outcome="fail"), "retries": 0}
            tasks = [sim_task("first", resources=["r"])]
            flowruns.create(
                block_run("teardown-failed", {"deployments": [deployment("db")]}, cleanup=failing, tasks=tasks)
            )
            flowruns.wait_phase("teardown-failed", "Failed")
            core.delete_namespace(ns)
            wait_for(f"namespace {ns} to be gone", lambda: namespace_gone(core, ns), timeout=60)
            events = wait_for(
                "the event naming what may remain",
                lambda: [e for e in namespace_events(core, ns) if "released with its namespace" in (e.message or "")],
            )
            assert [(e.type, e.reason) for e in events] == [("Warning", "CleanupFailed")]
            assert events[0].message.startswith(
                f"FlowRun {ns}/teardown-failed: released with its namespace; what its failed cleanup would have"
            ), events[0].message
            assert running.running(), running.log_tail()
        finally:
            running.stop()


def namespace_gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def namespace_events(core: client.CoreV1Api, name: str) -> list[client.CoreV1Event]:
    selector = f"involvedObject.kind=Namespace,involvedObject.name={name}"
    events: list[client.CoreV1Event] = core.list_namespaced_event("default", field_selector=selector).items
    return events


# -- a FlowRun deleted in each phase ----------------------------------------------------------------


def phase_run(
    name: str, *, setup: str = "300ms", work: str = "300ms", cleanup: str = "300ms", **extra: Any
) -> dict[str, Any]:
    block = {
        "name": "env",
        "setup": {"job": job(duration=setup, message="env-1"), "deployments": [deployment("api")]},
        "cleanup": {"job": job(duration=cleanup)},
    }
    work_task = sim_task("work", resources=["env"], duration=work, **extra)
    return {"metadata": {"name": name}, "spec": {"resources": [block], "tasks": [work_task]}}


def env_is(key: str, value: str) -> Any:
    return lambda status: ((status.get("resources") or {}).get("env") or {}).get(key) == value


# name -> (the run, the state to delete it in: a check of its status, whether its block was set up)
PHASES: dict[str, tuple[dict[str, Any], Any, bool]] = {
    # Pending: its Flow does not exist yet, so nothing is created.
    "pending": (
        {"metadata": {"name": "pending"}, "spec": {"flowRef": {"name": "not-there"}}},
        lambda s: s.get("phase") == "Pending",
        False,
    ),
    "setting-up": (phase_run("setting-up", setup="60s"), env_is("phase", "SettingUp"), True),
    "running": (
        phase_run("running", work="60s"),
        task_running("work"),
        True,
    ),
    "cleaning-up": (phase_run("cleaning-up", cleanup="4s"), env_is("reason", "CleanupJobRunning"), True),
    "succeeded": (phase_run("succeeded"), lambda s: s.get("phase") == "Succeeded", True),
    "failed": (phase_run("failed", outcome="fail"), lambda s: s.get("phase") == "Failed", True),
}


@pytest.mark.parametrize("phase", list(PHASES))
def test_a_flowrun_deleted_in_each_phase_is_cleaned_up_and_released(
    operator: Operator, flowruns: FlowRuns, watch: Watch, phase: str
) -> None:
    runs, jobs = watch("flowruns"), watch("jobs")
    body, in_phase, _ = PHASES[phase]
    uid = flowruns.create(copy.deepcopy(body))["metadata"]["uid"]
    flowruns.wait_status(phase, f"in phase {phase}", in_phase, timeout=60)
    flowruns.delete(phase)
    assert_released(flowruns, runs, jobs, phase, uid)
    # No name was created twice.
    assert not jobs.duplicated_names(), jobs.duplicated_names()


def assert_released(flowruns: FlowRuns, runs: WatchRecorder, jobs: WatchRecorder, name: str, uid: str) -> None:
    """Gone (the finalizer released), nothing of it left, and cleanup done before the finalizer went:
    the block cleaned up, its one cleanup job completed."""
    wait_for(f"FlowRun {name} to be gone", lambda: flowruns.get(name) is None, timeout=60)
    wait_for(f"every child of {name} to be gone", lambda: not flowruns.children(uid), timeout=60)
    final: dict[str, Any] = wait_for(f"the DELETED event of {name}", lambda: runs.first(name, "DELETED"))
    status = final.get("status") or {}
    if not PHASES[name][2]:
        assert not status.get("resources"), status
        return
    assert res(final, "env")["phase"] == "CleanedUp", (name, status)
    cleanup_job = f"{name}-env-cleanup-1"
    assert added(jobs, cleanup_job) == 1, name
    assert any(
        kind == "MODIFIED" and obj["metadata"]["name"] == cleanup_job and job_complete(obj)
        for kind, obj in jobs.snapshot()
    ), f"{name}: the cleanup job never completed"


def job_complete(obj: dict[str, Any]) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions)


def test_a_run_whose_ready_block_broke_is_failed_even_when_its_tasks_complete(
    operator: Operator, flowruns: FlowRuns
) -> None:
    flowruns.create(
        block_run(
            "alone", {"deployments": [deployment("db")]}, tasks=[sim_task("only", resources=["r"], duration="5s")]
        )
    )
    flowruns.wait_status("alone", "its task running", task_running("only"))
    client.AppsV1Api(flowruns.api_client).delete_namespaced_deployment("alone-r-db", flowruns.namespace)
    run = flowruns.wait_phase("alone", ("Succeeded", "Failed"), timeout=60)
    assert task(run, "only")["phase"] == "Succeeded"  # it ran to its end in the broken block
    assert run["status"]["phase"] == "Failed", run["status"]  # and the user learns the block broke
    succeeded = next(c for c in run["status"]["conditions"] if c["type"] == "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("False", "SetupFailed")
    flowruns.delete_and_check_nothing_leaked("alone")
