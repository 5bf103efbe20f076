"""Flows and spec.flowRef: resolving a run against its Flow, the snapshot kept in status, the param
rules, waiting for a Flow that does not exist yet, and validating a Flow on its own."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import pytest

from flowrun.flows import (
    FLOW_NOT_FOUND_SECONDS,
    check_flow,
    flow_dry_run,
    flow_status,
    rejected_by_dry_run,
    resolve_flow,
    snapshot_from_status,
)
from flowrun.model import SpecError, parse_spec
from flowrun.resolution import Refused, Resolved, Waiting, needs_lookup, resolve_run
from tests.unit.builders import NS, T0, Sim, at, deployment, resource, task


def flow_object(spec: dict[str, Any], name: str = "summary", version: str = "7") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": NS, "uid": "flow-uid", "resourceVersion": version}, "spec": spec}


FLOW_SPEC: dict[str, Any] = {
    "params": [
        {"name": "n-workers", "default": "2", "description": "Dask workers"},
        {"name": "out-path"},
    ],
    "parallelism": 4,
    "activeDeadlineSeconds": 600,
    "resources": [resource("db", setup={"deployments": [deployment("db", "$(params.n-workers)")]})],
    "tasks": [task("load", resources=["db"], args=["$(params.out-path)"]), task("report", "load")],
}
FLOW = flow_object(FLOW_SPEC)


def run(**fields: Any) -> dict[str, Any]:
    return {"flowRef": {"name": "summary"}, "params": [{"name": "out-path", "value": "/data/x.csv"}], **fields}


# --- resolve_flow --------------------------------------------------------------------------------


def test_resolved_spec_takes_defaults_and_given_values_in_the_flows_order() -> None:
    snapshot = resolve_flow(run(), FLOW)
    assert snapshot.spec["params"] == [
        {"name": "n-workers", "value": "2"},
        {"name": "out-path", "value": "/data/x.csv"},
    ]
    assert snapshot.spec["tasks"] == FLOW_SPEC["tasks"] and snapshot.spec["resources"] == FLOW_SPEC["resources"]
    assert (snapshot.kind, snapshot.name, snapshot.uid, snapshot.resource_version) == (
        "Flow",
        "summary",
        "flow-uid",
        "7",
    )
    parse_spec(snapshot.spec)  # the engine can run it as it is


def test_a_given_value_replaces_the_default() -> None:
    given = run(params=[{"name": "out-path", "value": "o"}, {"name": "n-workers", "value": "5"}])
    assert resolve_flow(given, FLOW).spec["params"][0] == {"name": "n-workers", "value": "5"}


def test_run_settings_override_the_flows_and_cancel_is_never_in_the_snapshot() -> None:
    snapshot = resolve_flow(
        run(parallelism=1, serviceAccountName="runner", ttlSecondsAfterFinished=30, cancel=True), FLOW
    )
    assert snapshot.spec["parallelism"] == 1
    assert snapshot.spec["serviceAccountName"] == "runner"
    assert snapshot.spec["ttlSecondsAfterFinished"] == 30
    assert snapshot.spec["activeDeadlineSeconds"] == 600, "not overridden: the Flow's"
    assert "cancel" not in snapshot.spec and "flowRef" not in snapshot.spec


def test_the_snapshot_does_not_share_objects_with_the_flow() -> None:
    flow = copy.deepcopy(FLOW)
    snapshot = resolve_flow(run(), flow)
    flow["spec"]["tasks"][0]["name"] = "changed"
    assert snapshot.spec["tasks"][0]["name"] == "load"


def test_an_undeclared_param_is_a_spec_error_naming_it() -> None:
    with pytest.raises(SpecError) as error:
        resolve_flow(run(params=[{"name": "out-path", "value": "o"}, {"name": "colour", "value": "red"}]), FLOW)
    assert error.value.field == "spec.params[1].name"
    assert "'colour'" in error.value.message and "n-workers, out-path" in error.value.message


def test_a_missing_param_without_default_is_a_spec_error_naming_it() -> None:
    with pytest.raises(SpecError) as error:
        resolve_flow(run(params=[]), FLOW)
    assert error.value.field == "spec.params"
    assert "'out-path'" in error.value.message and "n-workers" not in error.value.message


def test_every_missing_param_is_named() -> None:
    flow = flow_object({**FLOW_SPEC, "params": [{"name": "a"}, {"name": "b"}]})
    with pytest.raises(SpecError, match="params 'a', 'b'"):
        resolve_flow(run(params=[]), flow)


def test_tasks_beside_flow_ref_are_refused() -> None:
    with pytest.raises(SpecError) as error:
        resolve_flow(run(tasks=[task("x")]), FLOW)
    assert error.value.field == "spec.tasks" and "flowRef excludes" in error.value.message


def test_an_invalid_flow_is_named_in_the_runs_error() -> None:
    broken = flow_object({**FLOW_SPEC, "tasks": [task("load", "nope")]})
    with pytest.raises(SpecError) as error:
        resolve_flow(run(), broken)
    assert error.value.field == "spec.tasks[0].runAfter[0]"
    assert "(in Flow 'summary')" in error.value.message


def test_a_bad_override_is_named_as_the_runs_field() -> None:
    with pytest.raises(SpecError) as error:
        resolve_flow(run(parallelism=0), FLOW)
    assert error.value.field == "spec.parallelism" and "(in spec)" in error.value.message


def test_a_flow_with_cancel_is_invalid() -> None:
    with pytest.raises(SpecError) as error:
        resolve_flow(run(), flow_object({**FLOW_SPEC, "cancel": True}))
    assert error.value.field == "spec.flowRef.name" and "spec.cancel" in error.value.message


# --- resolve_run: first pass, later passes, waiting ----------------------------------------------


def test_first_pass_resolves_and_asks_to_store_the_snapshot() -> None:
    resolution = resolve_run(run(), {}, found=FLOW, name="this", created_at=T0, now=at(1))
    assert isinstance(resolution, Resolved)
    assert resolution.snapshot["resolvedSpec"] == resolution.spec
    assert resolution.snapshot["resolvedFrom"] == {
        "kind": "Flow",
        "name": "summary",
        "uid": "flow-uid",
        "resourceVersion": "7",
    }


def test_later_passes_use_the_snapshot_even_after_the_flow_changed_or_went() -> None:
    first = resolve_run(run(), {}, found=FLOW, name="this", created_at=T0, now=at(1))
    assert isinstance(first, Resolved)
    status = first.written({"phase": "Running"})
    assert needs_lookup(run(), status, "this") is None, "nothing to look up once the snapshot is stored"
    changed = flow_object({**FLOW_SPEC, "tasks": [task("other")]}, version="8")
    for flow in (changed, None):
        later = resolve_run(run(), status, found=flow, name="this", created_at=T0, now=at(3600))
        assert isinstance(later, Resolved)
        assert later.spec == first.spec and later.snapshot == {} and later.seed == {}


def test_cancel_is_read_from_the_runs_spec_on_every_pass() -> None:
    first = resolve_run(run(), {}, found=FLOW, name="this", created_at=T0, now=at(1))
    assert isinstance(first, Resolved)
    later = resolve_run(run(cancel=True), first.written({}), found=None, name="this", created_at=T0, now=at(5))
    assert isinstance(later, Resolved) and later.spec["cancel"] is True


def test_a_missing_flow_waits_then_fails_naming_the_field() -> None:
    waiting = resolve_run(run(), {}, found=None, name="this", created_at=T0, now=at(20))
    assert isinstance(waiting, Waiting)
    assert waiting.status["phase"] == "Pending"
    assert {c["type"]: (c["status"], c["reason"]) for c in waiting.status["conditions"]} == {
        "Succeeded": ("Unknown", "FlowNotFound"),
        "SpecValid": ("Unknown", "FlowNotFound"),
        "Ready": ("False", "FlowNotFound"),
        "Reconciling": ("True", "FlowNotFound"),
        "Stalled": ("False", "FlowNotFound"),
    }
    assert waiting.requeue_after == pytest.approx(FLOW_NOT_FOUND_SECONDS - 20)
    assert [(e.type, e.reason) for e in waiting.events] == [("Normal", "FlowNotFound")]
    still = resolve_run(run(), waiting.status, found=None, name="this", created_at=T0, now=at(40))
    assert isinstance(still, Waiting) and still.events == (), "posted once"
    assert still.status["conditions"] == waiting.status["conditions"], "transition times kept"
    failed = resolve_run(run(), waiting.status, found=None, name="this", created_at=T0, now=at(FLOW_NOT_FOUND_SECONDS))
    assert isinstance(failed, Refused)
    assert failed.error.field == "spec.flowRef.name" and "'summary'" in failed.error.message


def test_a_run_without_a_creation_time_does_not_wait_forever() -> None:
    refused = resolve_run(run(), {}, found=None, name="this", created_at=None, now=at(1))
    assert isinstance(refused, Refused) and refused.error.field == "spec.flowRef.name"


def test_a_flow_that_appears_within_the_wait_is_used() -> None:
    waiting = resolve_run(run(), {}, found=None, name="this", created_at=T0, now=at(10))
    assert isinstance(waiting, Waiting)
    resolved = resolve_run(run(), waiting.status, found=FLOW, name="this", created_at=T0, now=at(30))
    assert isinstance(resolved, Resolved) and resolved.snapshot


def test_param_errors_are_refusals() -> None:
    refused = resolve_run(run(params=[]), {}, found=FLOW, name="this", created_at=T0, now=at(1))
    assert isinstance(refused, Refused) and refused.error.field == "spec.params"


def test_a_run_with_its_own_tasks_is_passed_through() -> None:
    spec = {"tasks": [task("a")]}
    assert needs_lookup(spec, {}, "this") is None
    resolved = resolve_run(spec, {}, found=None, name="this", created_at=T0, now=T0)
    assert isinstance(resolved, Resolved) and resolved.spec == spec and resolved.snapshot == {} and resolved.seed == {}


def test_needs_lookup_names_the_kind_to_read() -> None:
    assert needs_lookup(run(), {}, "this") == "Flow"
    assert needs_lookup({"rerunOf": {"name": "x"}}, {}, "this") == "FlowRun"
    assert needs_lookup(run(), {"resolvedSpec": "garbage"}, "this") == "Flow", "a damaged snapshot is not one"


def test_snapshot_from_a_damaged_status_is_none() -> None:
    damaged: list[object] = [None, [], {"resolvedSpec": []}, {"resolvedSpec": {}}]
    for status in damaged:
        assert snapshot_from_status(status) is None


def test_the_engine_runs_the_resolved_spec() -> None:
    resolved = resolve_run(run(), {}, found=FLOW, name="this", created_at=T0, now=T0)
    assert isinstance(resolved, Resolved)
    sim = Sim(resolved.spec, status=resolved.engine_status({}))
    sim.step(at(0))
    assert sim.res("db")["phase"] == "SettingUp", sim.status["message"]
    assert sim.cluster.get("Deployment", "demo-db-db")["spec"]["replicas"] == 2, "the default of n-workers"


# --- validating a Flow ---------------------------------------------------------------------------


def test_a_valid_flow_reports_spec_valid_and_counts() -> None:
    verdict = check_flow(FLOW_SPEC)
    assert verdict.error is None and (verdict.task_count, verdict.resource_count) == (2, 1)
    status = flow_status(verdict, {}, 3, T0)
    assert status["conditions"][0]["type"] == "SpecValid" and status["conditions"][0]["status"] == "True"
    assert (status["taskCount"], status["resourceCount"], status["observedGeneration"]) == (2, 1, 3)


def test_a_param_without_default_used_as_replicas_is_valid() -> None:
    spec = {**FLOW_SPEC, "params": [{"name": "n-workers"}, {"name": "out-path"}]}
    assert check_flow(spec).error is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"tasks": [task("a", "b")]}, "spec.tasks[0].runAfter[0]"),
        ({"params": [{"name": "p", "value": "v"}]}, "spec.params[0].value"),
        ({"params": [{"name": "p"}, {"name": "p"}]}, "spec.params[1].name"),
        ({"cancel": True}, "spec.cancel"),
        ({"tasks": [task("a", args=["$(params.nope)"])]}, "spec.tasks[0].template.spec.containers[0].args[0]"),
    ],
)
def test_an_invalid_flow_names_the_field(change: dict[str, Any], field: str) -> None:
    verdict = check_flow({**FLOW_SPEC, **change})
    assert verdict.error is not None and verdict.error.field == field
    status = flow_status(verdict, {}, 1, T0)
    assert status["conditions"][0]["status"] == "False" and field in status["message"]


def test_the_valid_condition_keeps_its_transition_time() -> None:
    first = flow_status(check_flow(FLOW_SPEC), {}, 1, T0)
    again = flow_status(check_flow(FLOW_SPEC), first, 2, T0 + timedelta(hours=1))
    assert again["conditions"][0]["lastTransitionTime"] == first["conditions"][0]["lastTransitionTime"]


def test_the_dry_run_of_a_flow_is_the_one_a_run_makes() -> None:
    action = flow_dry_run(FLOW, T0)
    assert action is not None
    kinds = [(m["kind"], m["metadata"]["name"]) for m in action.manifests]
    assert ("Pod", "summary-load-1") in kinds and ("Pod", "summary-report-1") in kinds
    assert ("Deployment", "summary-db-db") in kinds
    assert action.fields[:2] == ("spec.tasks[0].template", "spec.tasks[1].template")
    assert all(field.startswith("spec.") for field in action.fields)


def test_an_invalid_flow_has_no_dry_run() -> None:
    assert flow_dry_run(flow_object({**FLOW_SPEC, "tasks": [task("a", "b")]}), T0) is None


def test_a_rejected_dry_run_makes_the_flow_invalid_naming_the_child() -> None:
    why = 'Pod "x" is invalid: image: Required value'
    verdict = rejected_by_dry_run(check_flow(FLOW_SPEC), f"spec.tasks[0].template: {why}")
    assert verdict.error is not None and verdict.error.field == "spec.tasks[0].template"
    status = flow_status(verdict, {}, 1, T0)
    assert status["conditions"][0]["status"] == "False"
    assert status["message"] == f"spec.tasks[0].template: the API server rejected it: {why}"


def test_a_run_overrides_the_flows_pending_timeout() -> None:
    flow_with_timeout = flow_object({**FLOW_SPEC, "pendingTimeoutSeconds": 600})
    assert resolve_flow(run(), flow_with_timeout).spec["pendingTimeoutSeconds"] == 600
    assert resolve_flow(run(pendingTimeoutSeconds=30), flow_with_timeout).spec["pendingTimeoutSeconds"] == 30
