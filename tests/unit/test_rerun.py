"""Reruns (spec.rerunOf): which tasks are reused and which run again, which blocks are set up
anew, what the first pass copies into the new run's status, and when a rerun is refused. The
original runs are produced by the engine itself, on the fake cluster."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flowrun.model import SpecError
from flowrun.rerun import plan_rerun
from flowrun.resolution import Refused, Resolved, needs_lookup, resolve_run
from tests.unit.builders import NS, T0, Sim, at, fail, flow, phases, resource, succeed, task

# prep (outside) -> use (inside block r) -> report (outside, reads prep's result); block q holds
# only prep2, which succeeds.
SPEC = flow(
    task("prep", args=["prep"]),
    task("prep2", resources=["q"]),
    task("use", "prep", resources=["r"]),
    task("report", "use", args=["$(tasks.prep.result)"]),
    resources=[resource("r"), resource("q")],
    ttlSecondsAfterFinished=3600,
)


def finish(sim: Sim, start: int = 0) -> int:
    """Pass until the run is finished, making each block's Deployment available; returns the time."""
    for second in range(start, start + 30):
        sim.step(at(second))
        if sim.status["phase"] in ("Succeeded", "Failed", "Cancelled"):
            return second
        for name in sim.cluster.names("Deployment"):
            sim.cluster.make_available(name)
    raise AssertionError(f"the run did not finish: {sim.status['message']}")


def failed_original(spec: dict[str, Any] = SPEC) -> dict[str, Any]:
    """`use` fails; prep and prep2 succeed, report is skipped."""
    sim = Sim(spec)
    sim.step(at(0))
    succeed(sim, "prep", message="42")
    for second in range(1, 10):
        for name in sim.cluster.names("Deployment"):
            sim.cluster.make_available(name)
        sim.step(at(second))
        if sim.cluster.has("Pod", "demo-use-1"):
            break
    fail(sim, "use")
    if sim.cluster.has("Pod", "demo-prep2-1"):
        succeed(sim, "prep2")
    finish(sim, 10)
    assert sim.status["phase"] == "Failed", sim.status["message"]
    assert phases(sim) == {"prep": "Succeeded", "prep2": "Succeeded", "use": "Failed", "report": "Skipped"}
    return {
        "metadata": {"name": "demo", "namespace": NS, "uid": "uid-original", "resourceVersion": "99"},
        "spec": copy.deepcopy(spec),
        "status": copy.deepcopy(sim.status),
    }


@pytest.fixture(scope="module")
def original() -> dict[str, Any]:
    return failed_original()


RERUN = {"rerunOf": {"name": "demo"}}


# --- planning ------------------------------------------------------------------------------------


def test_succeeded_tasks_are_reused_with_their_result_and_the_rest_runs_again(original: dict[str, Any]) -> None:
    plan = plan_rerun(RERUN, original, "demo")
    assert set(plan.reused) == {"prep", "prep2"}
    assert plan.rerun_tasks == ("use", "report")
    prep = plan.reused["prep"]
    assert (prep["phase"], prep["reason"], prep["attempts"], prep["result"]) == ("Succeeded", "Reused", 0, "42")
    assert "podName" not in prep
    assert prep["finishedAt"] == original["status"]["tasks"]["prep"]["finishedAt"]


def test_blocks_with_a_task_that_runs_again_are_set_up_anew(original: dict[str, Any]) -> None:
    assert plan_rerun(RERUN, original, "demo").fresh_blocks == ("r",), "q only holds a reused task"


def test_the_plan_copies_the_spec_and_where_it_came_from(original: dict[str, Any]) -> None:
    plan = plan_rerun(RERUN, original, "demo")
    status = plan.snapshot.status()
    assert status["resolvedSpec"] == SPEC
    assert status["resolvedFrom"] == {"kind": "FlowRun", "name": "demo", "uid": "uid-original", "resourceVersion": "99"}
    assert set(plan.seed()) == {"tasks"}, "no block state is carried over"
    assert set(plan.seed()["tasks"]) == {"prep", "prep2"}, "no record for a task that runs again: it starts afresh"


def test_ttl_beside_rerun_of_overrides_the_originals(original: dict[str, Any]) -> None:
    plan = plan_rerun({**RERUN, "ttlSecondsAfterFinished": 5}, original, "demo")
    assert plan.snapshot.spec["ttlSecondsAfterFinished"] == 5
    assert plan_rerun(RERUN, original, "demo").snapshot.spec["ttlSecondsAfterFinished"] == 3600


def test_a_cancelled_original_can_be_rerun() -> None:
    sim = Sim(flow(task("a"), task("b", "a")))
    sim.step(at(0))
    succeed(sim, "a", message="done")
    sim.step(at(1))
    sim.set_spec(cancel=True)
    finish(sim, 2)
    assert sim.status["phase"] == "Cancelled"
    cancelled = {"metadata": {"name": "demo"}, "spec": sim.run.spec, "status": sim.status}
    plan = plan_rerun(RERUN, cancelled, "demo")
    assert set(plan.reused) == {"a"} and plan.rerun_tasks == ("b",)
    assert "cancel" not in plan.snapshot.spec, "the rerun is not born cancelled"


# --- refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "says"),
    [
        ("Running", "has not finished"),
        ("Pending", "has not finished"),
        (None, "has not finished"),
        ("Succeeded", "nothing to rerun"),
    ],
)
def test_an_original_that_is_running_or_succeeded_is_refused(
    original: dict[str, Any], phase: str | None, says: str
) -> None:
    other = copy.deepcopy(original)
    other["status"]["phase"] = phase
    with pytest.raises(SpecError) as error:
        plan_rerun(RERUN, other, "demo")
    assert error.value.field == "spec.rerunOf.name" and says in error.value.message and "'demo'" in error.value.message


def test_a_missing_original_is_refused() -> None:
    with pytest.raises(SpecError) as error:
        plan_rerun(RERUN, None, "gone")
    assert error.value.field == "spec.rerunOf.name" and "'gone' does not exist" in error.value.message


def test_an_original_whose_spec_was_invalid_is_refused() -> None:
    sim = Sim(flow(task("a", "missing")))
    sim.step(at(0))
    with pytest.raises(SpecError) as error:
        plan_rerun(RERUN, {"metadata": {"name": "demo"}, "spec": sim.run.spec, "status": sim.status}, "demo")
    assert error.value.field == "spec.rerunOf.name"
    # Its own message is not quoted: it may quote the run that one reruns, and so on.
    assert error.value.message == "FlowRun 'demo' never started: its spec is invalid (its status says why)"


def test_a_run_that_reruns_itself_is_refused_without_looking_itself_up() -> None:
    assert needs_lookup(RERUN, {}, "demo") is None
    refused = resolve_run(RERUN, {}, found=None, name="demo", created_at=T0, now=T0)
    assert isinstance(refused, Refused)
    assert str(refused.error) == "spec.rerunOf.name: names this FlowRun itself ('demo'): rerun another run"


def test_an_original_that_never_resolved_its_flow_is_refused() -> None:
    never = {"metadata": {"name": "demo"}, "spec": {"flowRef": {"name": "f"}}, "status": {"phase": "Failed"}}
    with pytest.raises(SpecError, match="never resolved") as error:
        plan_rerun(RERUN, never, "demo")
    assert error.value.field == "spec.rerunOf.name"


@pytest.mark.parametrize("field", ["params", "tasks", "parallelism", "flowRef"])
def test_fields_beside_rerun_of_are_refused_naming_them(original: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as error:
        plan_rerun({**RERUN, field: []}, original, "demo")
    assert error.value.field == f"spec.{field}"


# --- the rerun, run by the engine -----------------------------------------------------------------


def test_the_rerun_reuses_results_sets_the_block_up_anew_and_succeeds(original: dict[str, Any]) -> None:
    assert needs_lookup(RERUN, {}, "this") == "FlowRun"
    first = resolve_run(RERUN, {}, found=original, name="this", created_at=T0, now=T0)
    assert isinstance(first, Resolved)
    sim = Sim(first.spec, status=first.engine_status({}))
    sim.step(at(0))
    assert sim.task("prep")["reason"] == "Reused" and sim.task("prep")["phase"] == "Succeeded"
    assert sim.res("r")["phase"] == "SettingUp", "set up anew: use runs again"
    assert sim.res("q")["reason"] == "NotNeeded", "only a reused task is inside"
    for second in range(1, 5):
        for name in sim.cluster.names("Deployment"):
            sim.cluster.make_available(name)
        sim.step(at(second))
        if sim.cluster.has("Pod", "demo-use-1"):
            break
    succeed(sim, "use")
    sim.step(at(6))
    report = sim.cluster.get("Pod", "demo-report-1")
    assert report["spec"]["containers"][0]["args"] == ["42"], "the reused result is substituted"
    succeed(sim, "report")
    finish(sim, 7)
    assert sim.status["phase"] == "Succeeded", sim.status["message"]
    pods = sim.cluster.names("Pod")
    assert not any(name.startswith(("demo-prep-", "demo-prep2-")) for name in pods), "no pod for a reused task"
    assert sim.task("use")["attempts"] == 1, "from attempt 1"

    # The original may go: later passes use what the first copied.
    written = first.written(sim.status)
    assert set(written["tasks"]) == {"prep", "prep2", "use", "report"}, "the engine's records, reused ones too"
    assert written["tasks"]["prep"]["reason"] == "Reused"
    later = resolve_run(RERUN, written, found=None, name="this", created_at=T0, now=at(99))
    assert isinstance(later, Resolved) and later.spec == first.spec


def test_a_rerun_of_a_rerun_keeps_the_results_reused_before(original: dict[str, Any]) -> None:
    first = resolve_run(RERUN, {}, found=original, name="this", created_at=T0, now=T0)
    assert isinstance(first, Resolved)
    sim = Sim(first.spec, status=first.engine_status({}))
    for second in range(0, 6):
        for name in sim.cluster.names("Deployment"):
            sim.cluster.make_available(name)
        sim.step(at(second))
        if sim.cluster.has("Pod", "demo-use-1"):
            break
    fail(sim, "use")
    finish(sim, 7)
    assert sim.status["phase"] == "Failed"
    rerun = {"metadata": {"name": "demo-rerun"}, "spec": RERUN, "status": first.written(sim.status)}
    plan = plan_rerun({"rerunOf": {"name": "demo-rerun"}}, rerun, "demo-rerun")
    assert plan.reused["prep"]["result"] == "42"
    assert plan.snapshot.spec == SPEC


def test_refusals_reach_the_handler_as_refused(original: dict[str, Any]) -> None:
    refused = resolve_run(RERUN, {}, found=None, name="this", created_at=T0, now=T0)
    assert isinstance(refused, Refused) and refused.error.field == "spec.rerunOf.name"
