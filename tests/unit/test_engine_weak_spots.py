"""The engine when a block's children are deleted or refused by someone else after the dry run:
a Ready block broken by a deletion, a setup Job that vanished, pods refused by admission, a
failed cleanup job's termination message, and a namespace being deleted."""

from dataclasses import replace
from typing import Any

import pytest

from flowrun.api import POD_REFUSAL_RECHECK_SECONDS
from flowrun.engine import decide
from tests.unit.builders import (
    Sim,
    at,
    creates,
    deletes,
    deployment,
    flow,
    job,
    resource,
    succeed,
    task,
)

SETUP_JOB = "demo-r-setup"
DB = "demo-r-db"
CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "r-config"}, "data": {"k": "v"}}
SA_MISSING = 'Error creating: pods "demo-r-setup-" is forbidden: serviceaccount "robot" not found'


def two_tasks(**fields: Any) -> dict[str, Any]:
    """Block `r` used by `first` and then `second` (which runs after it)."""
    fields.setdefault("cleanup", {"job": job("teardown")})
    return flow(
        task("first", resources=["r"]),
        task("second", "first", resources=["r"]),
        resources=[resource("r", **fields)],
    )


def ready(spec: dict[str, Any]) -> Sim:
    sim = Sim(spec)
    sim.step(at(0))
    if sim.cluster.has("Job", SETUP_JOB):
        sim.cluster.finish_job(SETUP_JOB, message="vm-1")
    if sim.cluster.has("Deployment", DB):
        sim.cluster.make_available(DB)
    sim.step(at(1))
    assert sim.res("r")["phase"] == "Ready", sim.res("r")
    return sim


# -- a Ready block whose objects are deleted ----------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), [("Deployment", DB), ("Service", DB), ("ConfigMap", "r-config")], ids=str)
@pytest.mark.parametrize("how", ["deleted", "being deleted"])
def test_a_ready_block_whose_object_is_deleted_fails_and_no_task_starts_into_it(kind: str, name: str, how: str) -> None:
    sim = ready(two_tasks(setup={"deployments": [deployment("db")], "manifests": [CONFIG]}))
    assert sim.task("first")["phase"] == "Running"
    if how == "deleted":
        sim.cluster.objects.pop((kind, name))
    else:
        sim.cluster.get(kind, name)["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:02Z"
    succeed(sim, "first")
    outcome = sim.step(at(3))
    # Neither recreated nor used: `second` is skipped, and cleanup runs in the same pass.
    assert creates(outcome) == ["Job/demo-r-cleanup-1"], creates(outcome)
    r = sim.res("r")
    what = "was deleted" if how == "deleted" else "is being deleted"
    assert r["setupError"] == (
        f"ObjectDeleted: {kind}/{name} {what} while the block was Ready (by someone else); it is not created again"
    )
    assert (sim.task("second")["phase"], sim.task("second")["reason"]) == ("Skipped", "SetupFailed")
    assert ("Warning", "SetupFailed", f"resource r: {r['setupError']}") in sim.events


def test_a_task_running_in_a_broken_block_runs_on_and_cleanup_waits_for_it() -> None:
    sim = ready(two_tasks())
    sim.cluster.objects.pop(("Deployment", DB))
    outcome = sim.step(at(2))
    assert sim.res("r")["phase"] == "SetupFailed" and sim.task("first")["phase"] == "Running"
    assert creates(outcome) == [] and deletes(outcome) == []
    succeed(sim, "first")
    assert creates(sim.step(at(3))) == ["Job/demo-r-cleanup-1"]


def test_a_run_whose_ready_block_broke_is_failed_even_when_its_tasks_all_succeed() -> None:
    sim = ready(flow(task("only", resources=["r"]), resources=[resource("r")]))
    sim.cluster.delete("Deployment", DB)  # with its pods
    sim.step(at(2))
    succeed(sim, "only")
    for moment in (3, 4, 5):
        sim.step(at(moment))
    assert sim.task("only")["phase"] == "Succeeded" and sim.res("r")["phase"] == "CleanedUp"
    assert sim.status["phase"] == "Failed"
    assert sim.condition("Succeeded")["reason"] == "SetupFailed"


def test_a_task_waiting_to_retry_in_a_broken_block_fails() -> None:
    spec = two_tasks()
    spec["tasks"][0]["retries"] = {"limit": 2, "backoffSeconds": 30}
    sim = ready(spec)
    sim.cluster.set_pod("demo-first-1", "Failed")
    sim.step(at(2))
    assert sim.task("first")["reason"] == "RetryBackoff"
    sim.cluster.objects.pop(("Service", DB))
    outcome = sim.step(at(3))
    first = sim.task("first")
    assert (first["phase"], first["reason"]) == ("Failed", "SetupFailed")
    assert (
        "no next attempt: resource r is not available (SetupFailed: Service/demo-r-db was deleted" in first["message"]
    )
    assert creates(outcome) == ["Job/demo-r-cleanup-1"]


def test_a_completed_setup_job_deleted_after_ready_does_not_break_the_block() -> None:
    sim = ready(two_tasks(setup={"job": job(), "deployments": [deployment("db")]}))
    sim.cluster.delete("Job", SETUP_JOB)
    sim.step(at(2))
    assert (sim.res("r")["phase"], sim.res("r")["value"]) == ("Ready", "vm-1")


# -- a setup Job that vanishes ------------------------------------------------------------------


def test_a_setup_job_deleted_while_it_runs_is_a_setup_failure_and_never_created_again() -> None:
    sim = Sim(two_tasks(setup={"job": job("create-vm")}))
    assert creates(sim.step(at(0))) == [f"Job/{SETUP_JOB}"]
    sim.cluster.start_job(SETUP_JOB)
    sim.step(at(1))
    assert sim.res("r")["reason"] == "SetupJobRunning"
    sim.cluster.delete("Job", SETUP_JOB)
    outcome = sim.step(at(2))
    assert f"Job/{SETUP_JOB}" not in creates(outcome)
    r = sim.res("r")
    assert r["setupError"] == (
        f"SetupJobDeleted: setup job {SETUP_JOB} was deleted before the block was Ready (by someone else);"
        " it is not created again, as it may have done part of its work"
    )
    # Its cleanup job still runs: what the setup job created outside may need removing.
    assert creates(outcome) == ["Job/demo-r-cleanup-1"]
    assert [t["phase"] for t in sim.status["tasks"].values()] == ["Skipped", "Skipped"]
    sim.cluster.finish_job("demo-r-cleanup-1")
    for second in range(3, 6):
        assert f"Job/{SETUP_JOB}" not in creates(sim.step(at(second)))
    assert sim.cluster.created.count(f"Job/{SETUP_JOB}") == 1


def test_a_setup_job_never_seen_is_created_again_under_its_name() -> None:
    # Created, then gone before the operator saw it (a lost create): nothing can have run yet.
    sim = Sim(two_tasks(setup={"job": job()}))
    sim.step(at(0))
    sim.cluster.delete("Job", SETUP_JOB)
    assert creates(sim.step(at(1))) == [f"Job/{SETUP_JOB}"]
    assert sim.res("r")["phase"] == "SettingUp"


# -- pods refused after the dry run -------------------------------------------------------------


def test_a_deployment_whose_pods_are_refused_fails_setup_at_once_quoting_why() -> None:
    sim = Sim(two_tasks(setup={"deployments": [deployment("db")]}))
    sim.step(at(0))
    refusal = 'pods "demo-r-db-6d4f-" is forbidden: violates PodSecurity "restricted:latest": privileged'
    sim.cluster.get("Deployment", DB)["status"] = {
        "conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": refusal}]
    }
    outcome = sim.step(at(2))
    r = sim.res("r")
    assert r["setupError"] == f"PodsRefused: deployment db: its pods cannot be created: FailedCreate: {refusal}"
    assert creates(outcome) == ["Job/demo-r-cleanup-1"]


def test_a_setup_job_whose_pod_is_refused_fails_setup_quoting_the_event_and_is_stopped() -> None:
    sim = Sim(two_tasks(setup={"job": job()}))
    sim.step(at(0))
    sim.step(at(1))  # seen, no pod: look again soon (the handler reads its Event)
    assert sim.outcome is not None and sim.outcome.requeue_after == pytest.approx(POD_REFUSAL_RECHECK_SECONDS, abs=1)
    sim.cluster.pod_create_failures[SETUP_JOB] = SA_MISSING
    outcome = sim.step(at(11))
    r = sim.res("r")
    assert r["setupError"] == f"PodsRefused: setup job {SETUP_JOB}: its pod cannot be created: {SA_MISSING}"
    # The Job would create its pod once the account exists: it is stopped before cleanup runs.
    assert deletes(outcome) == [f"Job/{SETUP_JOB}"]


def test_a_cleanup_job_whose_pod_is_refused_fails_that_attempt_and_is_deleted() -> None:
    sim = ready(two_tasks(cleanup={"job": job(), "retries": 1}))
    succeed(sim, "first")
    sim.step(at(2))
    succeed(sim, "second")
    assert creates(sim.step(at(3))) == ["Job/demo-r-cleanup-1"]
    quota = 'Error creating: pods "demo-r-cleanup-1-" is forbidden: exceeded quota: pods'
    sim.cluster.pod_create_failures["demo-r-cleanup-1"] = quota
    outcome = sim.step(at(14))
    r = sim.res("r")
    assert r["reason"] == "CleanupJobBackoff"
    assert f"cleanup job attempt 1 failed (PodsRefused: its pod cannot be created: {quota})" in r["message"]
    # The refused attempt's Job would start its pod late (once the quota frees): it goes, once the
    # status says that attempt failed (the Job is what says so until then).
    assert deletes(outcome) == []
    assert deletes(sim.step(at(15))) == ["Job/demo-r-cleanup-1"]
    assert creates(sim.step(at(25))) == ["Job/demo-r-cleanup-2"]


def test_a_refused_cleanup_job_stays_until_the_status_says_its_attempt_failed() -> None:
    # Found by the soak: the Job of a refused attempt was deleted by the pass that saw the refusal,
    # that pass's status write was lost (the API server away, the operator killed), and the next
    # operator, reading "attempt 2 running" with no Job of attempt 2, created it again.
    sim = ready(two_tasks(cleanup={"job": job(), "retries": 2}))
    succeed(sim, "first")
    sim.step(at(2))
    succeed(sim, "second")
    assert creates(sim.step(at(3))) == ["Job/demo-r-cleanup-1"]
    running = dict(sim.status)  # "cleanup job attempt 1 running": the last status that landed
    sim.cluster.pod_create_failures["demo-r-cleanup-1"] = "exceeded quota: pods"
    assert deletes(sim.step(at(14))) == []
    assert sim.res("r")["reason"] == "CleanupJobBackoff"
    # That status write is lost: a pass from the older status sees the refused Job again, and
    # neither deletes nor creates a Job of that attempt.
    lost = decide(replace(sim.run, status=running), sim.cluster.observed(), at(15))
    assert (deletes(lost), creates(lost)) == ([], [])
    assert lost.status["resources"]["r"]["reason"] == "CleanupJobBackoff"
    # Once it lands, the Job goes, and the next attempt has a name of its own.
    assert deletes(sim.step(at(15))) == ["Job/demo-r-cleanup-1"]
    assert creates(sim.step(at(25))) == ["Job/demo-r-cleanup-2"]


def test_no_requeue_for_a_job_whose_pod_runs() -> None:
    sim = Sim(two_tasks(setup={"job": job()}, cleanup={}))
    sim.step(at(0))
    sim.cluster.start_job(SETUP_JOB)
    outcome = sim.step(at(1))
    # Only the setup timeout (600 s) is ahead.
    assert outcome.requeue_after is not None and outcome.requeue_after > POD_REFUSAL_RECHECK_SECONDS


# -- a failed cleanup job's termination message -------------------------------------------------


def test_cleanup_error_quotes_the_failed_cleanup_jobs_termination_message() -> None:
    sim = ready(two_tasks(cleanup={"job": job(), "retries": 0}))
    sim.cluster.set_pod("demo-first-1", "Failed")
    sim.step(at(2))
    sim.step(at(3))
    sim.cluster.finish_job("demo-r-cleanup-1", succeeded=False, message="vm-1: permission denied to delete")
    sim.step(at(4))
    r = sim.res("r")
    assert r["cleanupError"] == (
        "cleanup job attempt 1 failed (BackoffLimitExceeded: Job has reached the specified backoff limit;"
        " termination message: vm-1: permission denied to delete), no retries left"
    )


# -- the namespace is being deleted -------------------------------------------------------------


def deleting_with_refused_cleanup(namespace_terminating: bool) -> Sim:
    sim = ready(two_tasks(cleanup={"job": job(), "retries": 3}))
    sim.update(deleting=True)
    sim.cluster.refuse(
        "Job/demo-r-cleanup-",
        "403 Forbidden: unable to create new content in namespace team because it is being terminated",
    )
    sim.step(at(2))  # tasks stopped (their pods deleted), cleanup starts, its Job is refused
    sim.update(namespace_terminating=namespace_terminating)
    sim.step(at(3))
    return sim


def test_in_a_terminating_namespace_a_refused_cleanup_job_is_skipped_and_the_finalizer_released() -> None:
    sim = deleting_with_refused_cleanup(namespace_terminating=True)
    r = sim.res("r")
    assert (r["phase"], r["reason"]) == ("CleanupFailed", "NamespaceDeleted")
    assert r["cleanupError"].startswith(
        "cleanup job not run: namespace team is being deleted (cannot create Job demo-r-cleanup-1: 403 Forbidden:"
    )
    warning = next(e for e in sim.events if e.reason == "CleanupFailed")
    assert warning.type == "Warning" and "cleanup job not run: namespace team is being deleted" in warning.message
    # What setup created is still deleted, as after any failed cleanup; once its pods are gone,
    # the finalizer goes.
    assert sim.outcome is not None and not sim.outcome.finalizer_releasable
    assert {"Deployment/demo-r-db", "Service/demo-r-db"} <= set(deletes(sim.outcome))
    assert sim.step(at(4)).finalizer_releasable
    assert "CleanupBlocked" not in sim.event_reasons()


def test_a_refused_cleanup_job_elsewhere_is_retried_and_holds_the_finalizer() -> None:
    sim = deleting_with_refused_cleanup(namespace_terminating=False)
    assert sim.res("r")["reason"] == "CleanupJobBackoff"
    assert sim.outcome is not None and not sim.outcome.finalizer_releasable


def test_a_namespace_terminating_pass_decides_like_any_other_when_nothing_was_refused() -> None:
    sim = ready(two_tasks())
    outcome = decide(replace(sim.run, namespace_terminating=True), sim.cluster.observed(), at(2))
    assert outcome.status["resources"]["r"]["phase"] == "Ready"
