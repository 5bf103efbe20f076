"""Ready, Reconciling and Stalled on a FlowRun (what kstatus and Argo CD read), in every phase, and
the TTL of a run declared in Git (TTLHeld). Every pass of every engine test also checks that the
three agree with the phase (builders.assert_health_agrees)."""

from __future__ import annotations

from typing import Any

import pytest

from flowrun import api
from flowrun.conditions import health
from flowrun.engine import DeleteFlowRun, RunInput, decide, run_input_from_object
from flowrun.gitops import declared_in_git
from flowrun.observed import Observed
from tests.unit.builders import (
    T0,
    FakeCluster,
    Sim,
    at,
    fail,
    flow,
    health_of,
    job,
    pod_name,
    resource,
    succeed,
    task,
)


def one_task(**fields: Any) -> dict[str, Any]:
    return flow(task("a"), **fields)


def test_a_running_run_is_reconciling_with_its_progress() -> None:
    sim = Sim(flow(task("a"), task("b", "a")))
    sim.step(at(0))
    assert health_of(sim.status) == {
        "Ready": ("False", "Running"),
        "Reconciling": ("True", "Running"),
        "Stalled": ("False", "Running"),
    }
    assert sim.condition("Ready")["message"] == sim.condition("Reconciling")["message"] == "running: a"
    assert sim.condition("Stalled")["message"] == ""


def test_every_condition_carries_the_generation_it_was_written_for() -> None:
    status = decide(RunInput("r", "ns", "u", one_task(), generation=3, created_at=T0), Observed(), T0).status
    assert status["observedGeneration"] == 3
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])


def test_a_succeeded_run_is_ready() -> None:
    sim = Sim(one_task())
    sim.step(at(0))
    succeed(sim, "a")
    sim.step(at(1))
    assert health_of(sim.status) == {
        "Ready": ("True", "Succeeded"),
        "Reconciling": ("False", "Succeeded"),
        "Stalled": ("False", "Succeeded"),
    }
    assert sim.condition("Ready")["message"] == "1 succeeded"


def test_a_failed_run_is_stalled_with_its_message() -> None:
    sim = Sim(one_task())
    sim.step(at(0))
    fail(sim, "a", message="boom")
    sim.step(at(1))
    assert health_of(sim.status)["Stalled"] == ("True", "TasksFailed")
    stalled = sim.condition("Stalled")
    assert stalled["message"] == sim.status["message"] == sim.condition("Ready")["message"]
    assert stalled["message"].startswith("task a failed")


def test_a_cancelled_run_is_stalled() -> None:
    sim = Sim(one_task(cancel=True))
    sim.step(at(0))
    assert health_of(sim.status)["Stalled"] == ("True", "Cancelled")
    assert sim.condition("Stalled")["message"] == "cancelled"


def test_a_run_past_its_deadline_is_stalled() -> None:
    sim = Sim(one_task(activeDeadlineSeconds=10))
    sim.step(at(0))
    sim.cluster.run_pod(pod_name("a"))
    sim.step(at(10))
    assert health_of(sim.status)["Stalled"] == ("True", "DeadlineExceeded")


def test_an_invalid_spec_is_stalled_and_stays_so() -> None:
    sim = Sim(flow(task("a", "nope")))
    sim.step(at(0))
    assert health_of(sim.status)["Stalled"] == ("True", "InvalidSpec")
    assert sim.condition("Stalled")["message"] == "spec.tasks[0].runAfter[0]: unknown task 'nope'"
    since = sim.condition("Stalled")["lastTransitionTime"]
    sim.step(at(30))
    assert sim.condition("Stalled")["lastTransitionTime"] == since


def test_cleaning_up_and_deleting_are_reconciling() -> None:
    spec = flow(task("use", resources=["r"]), resources=[resource("r", cleanup={"job": job()})])
    sim = Sim(spec, cluster=FakeCluster(graceful=True))
    sim.step(at(0))
    sim.cluster.make_available("demo-r-db")
    sim.step(at(1))
    succeed(sim, "use")
    sim.step(at(2))
    assert health_of(sim.status)["Reconciling"] == ("True", "CleaningUp")
    sim.update(deleting=True)
    sim.step(at(3))
    assert health_of(sim.status)["Reconciling"] == ("True", "Deleting")


def test_a_failed_cleanup_holding_the_finalizer_is_stalled_saying_what_to_do() -> None:
    spec = flow(task("use", resources=["r"]), resources=[resource("r", cleanup={"job": job(), "retries": 0})])
    sim = Sim(spec)
    sim.step(at(0))
    sim.cluster.make_available("demo-r-db")
    sim.step(at(1))
    sim.update(deleting=True)
    sim.step(at(2))
    sim.cluster.finish_job("demo-r-cleanup-1", succeeded=False)
    sim.step(at(3))
    sim.step(at(4))
    assert health_of(sim.status)["Stalled"] == ("True", "CleanupBlocked")
    assert api.SKIP_CLEANUP_ANNOTATION in sim.condition("Stalled")["message"]


def test_ready_moves_its_transition_time_only_when_its_status_changes() -> None:
    sim = Sim(flow(task("a"), task("b", "a")))
    sim.step(at(0))
    started = sim.condition("Ready")["lastTransitionTime"]
    succeed(sim, "a")
    sim.step(at(5))
    assert sim.condition("Ready")["lastTransitionTime"] == started  # still False, another message
    succeed(sim, "b")
    sim.step(at(9))
    assert sim.condition("Ready")["lastTransitionTime"] == "2024-05-01T12:00:09Z"


def test_health_names_one_state_of_three() -> None:
    with pytest.raises(ValueError, match="unknown health state"):
        health({}, "Healthy", "R", "m", T0, 1)


# -- objects declared in Git -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}}, "Flux: label kustomize.toolkit.fluxcd.io/name=apps"),
        ({"labels": {"helm.toolkit.fluxcd.io/name": "r"}}, "Flux: label helm.toolkit.fluxcd.io/name=r"),
        (
            {"annotations": {"argocd.argoproj.io/tracking-id": "app:flowrun.dev/FlowRun:ns/x"}},
            "Argo CD: annotation argocd.argoproj.io/tracking-id=app:flowrun.dev/FlowRun:ns/x",
        ),
        ({"labels": {"argocd.argoproj.io/instance": "app"}}, "Argo CD: label argocd.argoproj.io/instance=app"),
        ({"annotations": {"flowrun.dev/declared-in-git": "true"}}, 'annotation flowrun.dev/declared-in-git="true"'),
        ({"annotations": {"flowrun.dev/declared-in-git": "false"}}, None),
        ({"annotations": {"kustomize.toolkit.fluxcd.io/name": "apps"}}, None),  # a label, not an annotation
        ({"labels": {"kustomize.toolkit.fluxcd.io/name": ""}}, None),
        ({"labels": {"app.kubernetes.io/instance": "release"}}, None),  # Helm's too: says nothing
        ({"labels": None, "annotations": "junk"}, None),
        ({}, None),
    ],
)
def test_what_declares_an_object_in_git(metadata: dict[str, Any], expected: str | None) -> None:
    assert declared_in_git(metadata) == expected


def test_run_input_reads_whether_the_run_is_declared_in_git() -> None:
    body = {"metadata": {"name": "x", "labels": {"kustomize.toolkit.fluxcd.io/name": "apps"}}, "spec": {}}
    assert run_input_from_object(body).declared_in_git == "Flux: label kustomize.toolkit.fluxcd.io/name=apps"
    assert run_input_from_object({"metadata": {"name": "x"}, "spec": {}}).declared_in_git is None


FLUX = "Flux: label kustomize.toolkit.fluxcd.io/name=apps"


def test_a_run_declared_in_git_is_never_deleted_by_its_ttl() -> None:
    sim = Sim(one_task(ttlSecondsAfterFinished=100), declared_in_git=FLUX)
    sim.step(at(0))
    held = sim.condition("TTLHeld")
    assert (held["status"], held["reason"]) == ("True", "DeclaredInGit")
    assert held["message"] == (
        "ttlSecondsAfterFinished=100 is not applied: the FlowRun is declared in Git "
        f"({FLUX}), and deleted it would be created again and run again; remove it from Git to delete it"
    )
    assert [e for e in sim.events if e.reason == "TTLHeld"] == [("Warning", "TTLHeld", held["message"])]
    succeed(sim, "a")
    finished = sim.step(at(10))
    assert finished.requeue_after is None, "no TTL timer"
    for moment in (110, 10_000):
        outcome = sim.step(at(moment))
        assert DeleteFlowRun() not in outcome.actions and outcome.events == ()
    assert sim.status["phase"] == "Succeeded" and health_of(sim.status)["Ready"][0] == "True"
    assert [e.reason for e in sim.events].count("TTLHeld") == 1


def test_a_run_declared_in_git_without_a_ttl_has_no_ttl_held() -> None:
    sim = Sim(one_task(), declared_in_git=FLUX)
    sim.step(at(0))
    assert "TTLHeld" not in {c["type"] for c in sim.status["conditions"]}


def test_the_ttl_of_a_run_not_declared_in_git_still_deletes_it() -> None:
    sim = Sim(one_task(ttlSecondsAfterFinished=100))
    sim.step(at(0))
    succeed(sim, "a")
    sim.step(at(10))
    assert "TTLHeld" not in {c["type"] for c in sim.status["conditions"]}
    assert sim.step(at(110)).actions == (DeleteFlowRun(),)
