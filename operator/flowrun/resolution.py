"""Which spec a FlowRun executes, decided before each engine pass. Pure code.

A run that lists its tasks executes its own spec. A run with `spec.flowRef` or `spec.rerunOf`
executes the snapshot its first pass copied into status (see flows.py and rerun.py): until then,
`resolve_run` copies it from the Flow or the original run the pass looked up, waits up to
FLOW_NOT_FOUND_SECONDS for a Flow that does not exist yet, or refuses the spec naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flowrun.api import CONDITION_RECONCILING, PENDING
from flowrun.conditions import condition, health
from flowrun.engine.interface import Event
from flowrun.flows import FLOW_NOT_FOUND, FLOW_NOT_FOUND_SECONDS, resolve_flow, run_spec, snapshot_from_status
from flowrun.lenient import as_map, conditions_by_type
from flowrun.model import SpecError
from flowrun.rerun import plan_rerun


@dataclass(frozen=True)
class Resolved:
    """Run the engine with `spec` as RunInput.spec and `engine_status(previous status)` as
    RunInput.status, then write `written(the engine's status)`. On the first pass of a run with
    flowRef or rerunOf, `snapshot` holds status.resolvedSpec and status.resolvedFrom to store and
    `seed` the records the pass starts from (a rerun's reused tasks); both are empty afterwards."""

    spec: dict[str, Any]
    snapshot: dict[str, Any] = field(default_factory=dict)
    seed: dict[str, Any] = field(default_factory=dict)

    def engine_status(self, status: object) -> dict[str, Any]:
        return {**as_map(status), **self.snapshot, **self.seed}

    def written(self, engine_status: Mapping[str, Any]) -> dict[str, Any]:
        """The status to write: the engine's (which carries the seeded records on) and the snapshot."""
        return {**engine_status, **self.snapshot}


@dataclass(frozen=True)
class Waiting:
    """The Flow does not exist yet: write `status` (phase Pending, reason FlowNotFound), post
    `events` (once, on the first such pass), create nothing, and pass again after `requeue_after`
    seconds (or when a Flow of that name appears)."""

    status: dict[str, Any]
    requeue_after: float
    events: tuple[Event, ...] = ()


@dataclass(frozen=True)
class Refused:
    """The spec cannot run: report `error` as any invalid spec is (Failed, SpecValid=False,
    naming error.field), creating nothing."""

    error: SpecError


Resolution = Resolved | Waiting | Refused


def ref_name(spec: object, key: str) -> str | None:
    """spec.<key>.name (flowRef or rerunOf), or None when the spec has no such reference."""
    ref = as_map(spec).get(key)
    if ref is None:
        return None
    name = as_map(ref).get("name")
    return name if isinstance(name, str) else ""


def needs_lookup(spec: object, status: object, name: str) -> str | None:
    """What the pass of the run named `name` must look up in its namespace before calling
    resolve_run: "Flow" (spec.flowRef.name), "FlowRun" (spec.rerunOf.name), or None (nothing: own
    tasks, a snapshot already stored, or a rerun of itself, which is refused as it is)."""
    if snapshot_from_status(status) is not None:
        return None
    if ref_name(spec, "flowRef") is not None:
        return "Flow"
    original = ref_name(spec, "rerunOf")
    if original is not None and original != name:
        return "FlowRun"
    return None


def resolve_run(
    spec: object,
    status: object,
    *,
    found: Mapping[str, Any] | None,
    created_at: datetime | None,
    now: datetime,
    name: str,
    generation: int = 0,
    namespace: str | None = None,
) -> Resolution:
    """Decide the spec of one pass of the run named `name`. `found` is the object needs_lookup
    asked for (the Flow or the original FlowRun, as the API returns it), or None if it does not
    exist."""
    snapshot = snapshot_from_status(status)
    if snapshot is not None:
        return Resolved(run_spec(snapshot, spec))
    flow_name, original_name = ref_name(spec, "flowRef"), ref_name(spec, "rerunOf")
    if flow_name is not None and original_name is not None:
        return Refused(SpecError("spec.rerunOf", "rerunOf and flowRef exclude each other"))
    if flow_name is not None:
        return _from_flow(spec, status, flow_name, found, created_at, now, generation, namespace)
    if original_name is not None:
        if original_name == name:
            # Read, the run would be its own original: unfinished on its first pass, then failed
            # by that very refusal, each pass quoting the one before.
            return Refused(SpecError("spec.rerunOf.name", f"names this FlowRun itself ({name!r}): rerun another run"))
        try:
            plan = plan_rerun(spec, found, original_name, namespace)
        except SpecError as error:
            return Refused(error)
        return Resolved(run_spec(plan.snapshot, spec), plan.snapshot.status(), plan.seed())
    return Resolved(dict(as_map(spec)))


def _from_flow(
    spec: object,
    status: object,
    name: str,
    flow: Mapping[str, Any] | None,
    created_at: datetime | None,
    now: datetime,
    generation: int,
    namespace: str | None,
) -> Resolution:
    if flow is None:
        # Without a creation time (a damaged object) there is nothing to wait from: fail at once.
        waited = (now - created_at).total_seconds() if created_at is not None else float(FLOW_NOT_FOUND_SECONDS)
        if waited >= FLOW_NOT_FOUND_SECONDS:
            return Refused(
                SpecError(
                    "spec.flowRef.name",
                    f"Flow {name!r} does not exist in this namespace (waited {FLOW_NOT_FOUND_SECONDS}s)",
                )
            )
        assert created_at is not None
        deadline = created_at + timedelta(seconds=FLOW_NOT_FOUND_SECONDS)
        waiting = _waiting_status(name, status, now, generation)
        already = as_map(conditions_by_type(as_map(status)).get("SpecValid")).get("reason") == FLOW_NOT_FOUND
        events = () if already else (Event("Normal", FLOW_NOT_FOUND, waiting["message"]),)
        return Waiting(waiting, max(1.0, (deadline - now).total_seconds()), events)
    try:
        snapshot = resolve_flow(spec, flow, namespace)
    except SpecError as error:
        return Refused(error)
    return Resolved(run_spec(snapshot, spec), snapshot.status())


def _waiting_status(name: str, status: object, now: datetime, generation: int) -> dict[str, Any]:
    message = f"waiting for Flow {name!r}, which does not exist in this namespace (yet)"
    conds = conditions_by_type(as_map(status))
    return {
        "phase": PENDING,
        "observedGeneration": generation,
        "message": message,
        "conditions": [
            condition(conds, "Succeeded", "Unknown", FLOW_NOT_FOUND, message, now, generation),
            condition(conds, "SpecValid", "Unknown", FLOW_NOT_FOUND, message, now, generation),
            *health(conds, CONDITION_RECONCILING, FLOW_NOT_FOUND, message, now, generation),
        ],
    }
