"""Status written by someone else (through the status subresource): what the children show wins
over what the status claims. A task whose pod runs is running; a result comes from its pod's
termination message while the pod exists; a block is CleanedUp only when none of its objects is
left and its cleanup Job succeeded; a claimed spec error does not stop a run that has children;
and, over random foreign writes, no healthy pod is ever deleted, no name created twice, and the
run ends as it would have without them. (A task that never had a pod is what the status says:
nothing contradicts it; docs/semantics.md says who may write status.)"""

from __future__ import annotations

import copy
import random
from typing import Any

from flowrun.engine import decide
from tests.unit.builders import (
    Sim,
    at,
    creates,
    deletes,
    flow,
    job,
    phases,
    pod_name,
    resource,
    succeed,
    task,
)

BLOCK_SPEC = flow(
    task("a", resources=["r"]),
    task("b", "a", args=["$(tasks.a.result)"]),
    resources=[resource("r", cleanup={"job": job("teardown")})],
)


def in_block_with_a_running() -> Sim:
    """Block r Ready (its Deployment available), task a running in it."""
    sim = Sim(BLOCK_SPEC)
    sim.step(at(0))
    sim.cluster.make_available("demo-r-db")
    sim.step(at(1))
    sim.cluster.run_pod(pod_name("a"), at(1))
    sim.step(at(2))
    assert (sim.res("r")["phase"], sim.task("a")["reason"]) == ("Ready", "PodRunning")
    return sim


def written_by_someone_else(sim: Sim, **fields: Any) -> None:
    """A merge patch of the status, as `kubectl patch --subresource=status` sends it."""
    status = copy.deepcopy(sim.status)
    for path, value in fields.items():
        node = status
        keys = path.split(".")
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    sim.update(status=status)


def test_a_claimed_cleanup_and_a_fake_result_are_overruled_by_the_running_pod_and_the_deployment() -> None:
    sim = in_block_with_a_running()
    written_by_someone_else(
        sim,
        **{"resources.r.phase": "CleanedUp", "tasks.a.phase": "Succeeded", "tasks.a.result": "FAKE"},
    )
    outcome = sim.step(at(3))
    assert deletes(outcome) == []  # a's pod runs on, the Deployment stays
    assert creates(outcome) == []  # b does not start with FAKE, no cleanup job yet
    assert (sim.task("a")["phase"], sim.task("a")["reason"]) == ("Running", "PodRunning")
    assert sim.res("r")["phase"] == "Ready"
    succeed(sim, "a", message="REAL")
    sim.step(at(4))
    assert sim.task("a")["result"] == "REAL"
    assert sim.cluster.get("Pod", pod_name("b"))["spec"]["containers"][0]["args"] == ["REAL"]
    assert sim.cluster.has("Job", "demo-r-cleanup-1")  # the real cleanup runs


def test_a_result_rewritten_after_the_task_succeeded_comes_back_from_the_pod() -> None:
    sim = Sim(flow(task("a"), task("c")))
    sim.step(at(0))
    succeed(sim, "a", message="REAL")
    sim.step(at(1))
    written_by_someone_else(sim, **{"tasks.a.result": "FAKE"})
    sim.step(at(2))
    assert sim.task("a")["result"] == "REAL"


def test_a_claimed_failure_of_a_healthy_run_kills_nothing_and_the_run_succeeds() -> None:
    sim = Sim(flow(task("a")))
    sim.step(at(0))
    sim.cluster.run_pod(pod_name("a"), at(0))
    sim.step(at(1))
    written_by_someone_else(sim, **{"phase": "Failed", "tasks.a.phase": "Failed", "tasks.a.reason": "Error"})
    outcome = sim.step(at(2))
    assert deletes(outcome) == []
    assert sim.status["phase"] == "Running" and sim.task("a")["phase"] == "Running"
    succeed(sim, "a")
    sim.step(at(3))
    assert sim.status["phase"] == "Succeeded"


def test_a_claimed_spec_error_does_not_stop_a_run_whose_children_exist() -> None:
    sim = Sim(flow(task("a"), task("b", "a")))
    sim.step(at(0))
    conditions = [dict(c) for c in sim.status["conditions"]]
    for condition in conditions:
        if condition["type"] == "SpecValid":
            condition.update(status="False", reason="InvalidSpec", message="spec: made up")
    written_by_someone_else(sim, conditions=conditions, phase="Failed")
    succeed(sim, "a")
    sim.step(at(1))
    assert sim.cluster.has("Pod", pod_name("b"))
    succeed(sim, "b")
    sim.step(at(2))
    assert sim.status["phase"] == "Succeeded"


def test_a_block_claimed_cleaned_up_without_a_successful_cleanup_job_is_cleaned_up() -> None:
    sim = in_block_with_a_running()
    succeed(sim, "a", message="x")
    sim.step(at(3))  # a done: r is cleaning up, its cleanup job created
    assert sim.res("r")["phase"] == "CleaningUp" and sim.cluster.has("Job", "demo-r-cleanup-1")
    written_by_someone_else(sim, **{"resources.r.phase": "CleanedUp", "resources.r.reason": "CleanedUp"})
    sim.step(at(4))
    assert sim.res("r")["phase"] == "CleaningUp"  # the Deployment is still there, the job runs
    sim.cluster.finish_job("demo-r-cleanup-1")
    sim.step(at(5))
    sim.step(at(6))
    assert not sim.cluster.has("Deployment", "demo-r-db")
    assert sim.res("r")["phase"] == "CleanedUp"


def test_random_foreign_writes_never_kill_a_healthy_pod_nor_create_a_name_twice() -> None:
    rng = random.Random(18)
    lies: list[dict[str, Any]] = [
        {"phase": "Failed"},
        {"phase": "Succeeded"},
        {"tasks.a.phase": "Failed"},
        {"tasks.a.phase": "Succeeded", "tasks.a.result": "FAKE"},
        {"tasks.a.phase": "Skipped"},
        {"tasks.a.attempts": 7},
        {"resources.r.phase": "CleanedUp"},
        {"resources.r.phase": "Pending"},
    ]
    for case in range(60):
        sim = in_block_with_a_running()
        healthy = {pod_name("a")}
        for moment in range(3, 9):
            if rng.random() < 0.5:
                written_by_someone_else(sim, **rng.choice(lies))
            outcome = sim.step(at(moment))
            assert not healthy & {d.removeprefix("Pod/") for d in deletes(outcome)}, (case, moment, sim.status)
            if moment == 5:
                succeed(sim, "a", message="REAL")
                healthy.clear()
        succeed(sim, "b")
        for moment in range(9, 14):
            sim.step(at(moment))
            for name in [n for k, n in list(sim.cluster.objects) if k == "Job" and "cleanup" in n]:
                sim.cluster.finish_job(name)
        assert phases(sim) == {"a": "Succeeded", "b": "Succeeded"}, (case, sim.status)
        assert sim.status["phase"] == "Succeeded", (case, sim.status)
        assert sim.cluster.get("Pod", pod_name("b"))["spec"]["containers"][0]["args"] == ["REAL"]
        assert len(sim.cluster.created) == len(set(sim.cluster.created))
        assert decide(sim.run, sim.cluster.observed(), at(20)).actions == ()
