"""Flows: a FlowRun spec kept for reuse, and runs that refer to one with `spec.flowRef`. Pure code.

`resolve_flow` turns a run's spec and its Flow into the spec the run executes (a `Snapshot`,
stored in the run's status on its first pass, so that editing or deleting the Flow never changes a
run that started). `check_flow` validates a Flow as a run's spec is validated, and `flow_status`
is what the operator writes on the Flow. The users' contract: docs/api.md ("Flow") and
docs/semantics.md ("Flows").
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowrun import api
from flowrun.conditions import condition, health
from flowrun.engine import RunInput, ValidateObjects, decide
from flowrun.lenient import as_map, conditions_by_type
from flowrun.model import SpecError, parse_spec
from flowrun.observed import observed_from_objects
from flowrun.schema import kinds
from flowrun.schema.nodes import mapping

# How long a run waits for a Flow that does not exist (one GitOps sync may apply the run first).
FLOW_NOT_FOUND_SECONDS = 60
FLOW_NOT_FOUND = "FlowNotFound"
# A value for a param without default while a Flow is validated on its own: digits, so that
# `replicas: $(params.n)` passes as it would with any integer a run gives.
PLACEHOLDER_VALUE = "1"


@dataclass(frozen=True)
class Snapshot:
    """The spec a run executes (without `cancel`, which is always read from the run's own spec),
    and where it was copied from. Stored in status as resolvedSpec and resolvedFrom."""

    spec: dict[str, Any]
    kind: str  # Flow (spec.flowRef) or FlowRun (spec.rerunOf)
    name: str
    uid: str
    resource_version: str

    def status(self) -> dict[str, Any]:
        return {
            "resolvedSpec": copy.deepcopy(self.spec),
            "resolvedFrom": {
                "kind": self.kind,
                "name": self.name,
                "uid": self.uid,
                "resourceVersion": self.resource_version,
            },
        }


def snapshot_from_status(status: object) -> Snapshot | None:
    """The snapshot a previous pass stored, or None (never raises on a damaged status)."""
    status = as_map(status)
    spec, source = status.get("resolvedSpec"), as_map(status.get("resolvedFrom"))
    if not isinstance(spec, Mapping) or not spec:
        return None
    return Snapshot(
        spec=dict(spec),
        kind=str(source.get("kind") or ""),
        name=str(source.get("name") or ""),
        uid=str(source.get("uid") or ""),
        resource_version=str(source.get("resourceVersion") or ""),
    )


def run_spec(snapshot: Snapshot, live_spec: object) -> dict[str, Any]:
    """What the engine executes: the snapshot, with `cancel` from the run's spec (the one field
    that may change after creation)."""
    spec = copy.deepcopy(snapshot.spec)
    cancel = as_map(live_spec).get("cancel")
    if cancel is not None:
        spec["cancel"] = cancel
    return spec


@dataclass(frozen=True)
class FlowParam:
    name: str
    default: str | None
    description: str = ""


def flow_params(flow_spec: Mapping[str, Any]) -> tuple[FlowParam, ...]:
    """The param declarations of a Flow's spec that passed `checked_flow_spec`."""
    return tuple(
        FlowParam(item["name"], item.get("default"), item.get("description", ""))
        for item in flow_spec.get("params") or []
    )


def checked_flow_spec(flow_spec: object) -> dict[str, Any]:
    """A Flow's spec as given, once each field passed its declaration's checks (SpecError if not)."""
    kinds.SCHEMAS.flow.spec.check(flow_spec, "spec")
    return dict(mapping(flow_spec, "spec"))


def resolve_flow(spec: object, flow: Mapping[str, Any], namespace: str | None = None) -> Snapshot:
    """The snapshot for a run whose spec has flowRef, given the Flow object (as the API returns
    it). Raises SpecError naming the field: a param the Flow does not declare, a declared param
    without default the run does not give, or (in the Flow) anything a run's spec may not hold."""
    run = _run_with_flow_ref(spec)
    metadata = as_map(flow.get("metadata"))
    flow_name = str(metadata.get("name") or "")
    try:
        source = checked_flow_spec(flow.get("spec"))
        declared = flow_params(source)
    except SpecError as error:
        raise SpecError("spec.flowRef.name", f"Flow {flow_name!r} is invalid: {error}") from None
    given = _given_params(run, declared, flow_name)
    resolved: dict[str, Any] = {}
    params = [{"name": p.name, "value": given.get(p.name, p.default or "")} for p in declared]
    if params:
        resolved["params"] = params
    # The run's settings (flowrun.schema marks them) override the Flow's; `cancel` is never part of
    # a snapshot (see run_spec).
    overrides = kinds.SCHEMAS.settings
    for field in kinds.SCHEMAS.flow.spec.fields:
        if field == "params":
            continue
        value = run.get(field) if field in overrides and run.get(field) is not None else source.get(field)
        if value is not None:
            resolved[field] = copy.deepcopy(value)
    try:
        parse_spec(resolved, namespace)
    except SpecError as error:
        top = error.field.removeprefix("spec.").split(".")[0].split("[")[0]
        where = "spec" if top in overrides and top in run else f"Flow {flow_name!r}"
        raise SpecError(error.field, f"{error.message} (in {where})") from None
    return Snapshot(
        spec=resolved,
        kind=api.FLOW_KIND,
        name=flow_name,
        uid=str(metadata.get("uid") or ""),
        resource_version=str(metadata.get("resourceVersion") or ""),
    )


def _run_with_flow_ref(spec: object) -> Mapping[str, Any]:
    """A run's spec with flowRef: no tasks nor resources (the CRD's CEL rule), every field as declared
    (its settings are checked in the spec they resolve to, which names where a bad one comes from)."""
    run = mapping(spec, "spec")
    for key in ("tasks", "resources"):
        if key in run:
            raise SpecError(f"spec.{key}", "flowRef excludes tasks and resources (the Flow supplies them)")
    own = {key: value for key, value in run.items() if key not in kinds.SCHEMAS.settings}
    kinds.SCHEMAS.flowrun.spec.check(own, "spec")
    return run


def _given_params(run: Mapping[str, Any], declared: tuple[FlowParam, ...], flow_name: str) -> dict[str, str]:
    """The run's spec.params by name: each one the Flow declares (names are unique: their
    declaration says so); every declared param without a default given."""
    given: dict[str, str] = {}
    declared_names = [p.name for p in declared]
    for i, item in enumerate(run.get("params") or []):
        name = item["name"]
        if name not in declared_names:
            known = ", ".join(declared_names) or "none"
            raise SpecError(
                f"spec.params[{i}].name", f"Flow {flow_name!r} declares no param {name!r} (it declares: {known})"
            )
        given[name] = item["value"]
    missing = [p.name for p in declared if p.default is None and p.name not in given]
    if missing:
        raise SpecError(
            "spec.params",
            f"Flow {flow_name!r} needs a value for param{'s' if len(missing) > 1 else ''} "
            + ", ".join(repr(m) for m in missing)
            + " (no default)",
        )
    return given


@dataclass(frozen=True)
class FlowVerdict:
    """The outcome of validating a Flow on its own: valid (no error), or the error."""

    error: SpecError | None
    task_count: int
    resource_count: int


def _as_run_spec(spec: Mapping[str, Any], declared: tuple[FlowParam, ...]) -> dict[str, Any]:
    """A Flow's spec as a run's, each param with its default or the placeholder."""
    as_run = {key: value for key, value in spec.items() if key != "params"}
    if declared:
        as_run["params"] = [
            {"name": p.name, "value": PLACEHOLDER_VALUE if p.default is None else p.default} for p in declared
        ]
    return as_run


def check_flow(flow_spec: object, namespace: str | None = None) -> FlowVerdict:
    """Validate a Flow with the checks a run's spec gets; a param without default stands in with a
    placeholder value. The server-side dry run of its children is the pass's (as for a run)."""
    raw = as_map(flow_spec)
    tasks, resources = raw.get("tasks"), raw.get("resources")
    counts = (len(tasks) if isinstance(tasks, list) else 0, len(resources) if isinstance(resources, list) else 0)
    try:
        spec = checked_flow_spec(flow_spec)
        declared = flow_params(spec)
        placeholders = [p.name for p in declared if p.default is None]
        parse_spec(_as_run_spec(spec, declared), namespace, placeholders)
    except SpecError as error:
        return FlowVerdict(error, *counts)
    return FlowVerdict(None, *counts)


def flow_status(verdict: FlowVerdict, prev_status: object, generation: int, now: datetime) -> dict[str, Any]:
    """The Flow's status after validation (every key present, as a merge patch): SpecValid, and
    Ready (valid) or Stalled (invalid, until the Flow changes)."""
    conds = conditions_by_type(as_map(prev_status))
    if verdict.error is None:
        reason, message = api.FLOW_VALID, "the Flow passes every check of a run's spec"
        valid = condition(conds, "SpecValid", "True", reason, message, now, generation)
        ready = health(conds, api.CONDITION_READY, reason, message, now, generation)
    else:
        message = str(verdict.error)
        valid = condition(conds, "SpecValid", "False", api.INVALID_SPEC, message, now, generation)
        ready = health(conds, api.CONDITION_STALLED, api.INVALID_SPEC, message, now, generation)
    return {
        "observedGeneration": generation,
        "taskCount": verdict.task_count,
        "resourceCount": verdict.resource_count,
        "message": "" if verdict.error is None else message,
        "conditions": [valid, *ready],
    }


def flow_dry_run(flow: Mapping[str, Any], now: datetime) -> ValidateObjects | None:
    """The server-side dry run of every child a run of this Flow may create (named as a run named
    after the Flow would name them), exactly as a run's first pass builds it; None if the Flow is
    invalid or creates nothing. The pass applies it as for a run and reports a rejection with
    `rejected_by_dry_run`."""
    metadata = as_map(flow.get("metadata"))
    namespace = str(metadata.get("namespace") or "")
    if check_flow(flow.get("spec"), namespace or None).error is not None:
        return None
    spec = checked_flow_spec(flow.get("spec"))
    run = RunInput(
        name=str(metadata.get("name") or ""),
        namespace=namespace,
        uid=str(metadata.get("uid") or ""),
        spec=_as_run_spec(spec, flow_params(spec)),
        created_at=now,
    )
    outcome = decide(run, observed_from_objects([]), now)
    return next((a for a in outcome.actions if isinstance(a, ValidateObjects)), None)


def rejected_by_dry_run(verdict: FlowVerdict, message: str) -> FlowVerdict:
    """`verdict` failed by the API server's rejection of a child: `message` is `FIELD: why`, as the
    pass reports a run's dry run (RunInput.dry_run_error)."""
    field, _, why = message.partition(": ")
    error = SpecError(field, f"the API server rejected it: {why}") if why else SpecError("spec", message)
    return FlowVerdict(error, verdict.task_count, verdict.resource_count)
