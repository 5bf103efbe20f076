"""Reruns: a new FlowRun (`spec.rerunOf`) that continues a finished run which did not succeed.
Pure code.

`plan_rerun` reads the original FlowRun (as the API returns it) once, on the rerun's first pass:
the spec it ran, which tasks succeeded there (reused here with their results: reason Reused, no
pod) and which run again from attempt 1. Nothing of a resource block is carried over: every block
starts Pending, so the engine sets up anew each block a task that runs again needs (the original
cleaned it up). The snapshot (`snapshot.status()`) and the reused tasks (`seed()`) are merged
into the rerun's status before its first engine pass and written with it, so the original can be
deleted at once. The users' contract:
docs/semantics.md ("Reruns").
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flowrun.api import KIND, RERUNNABLE, SUCCEEDED
from flowrun.engine.state import load_instances
from flowrun.flows import Snapshot, snapshot_from_status
from flowrun.lenient import as_map, conditions_by_type
from flowrun.model import FlowSpec, SpecError, parse_spec
from flowrun.schema import kinds
from flowrun.schema.flowrun import BESIDE_RERUN_OF
from flowrun.schema.kinds import and_list
from flowrun.schema.nodes import mapping

REUSED = "Reused"
_FIELD = "spec.rerunOf.name"


@dataclass(frozen=True)
class RerunPlan:
    snapshot: Snapshot  # the spec the rerun executes, copied from the original
    reused: dict[str, dict[str, Any]]  # task -> its status record in the rerun (Succeeded, Reused)
    rerun_tasks: tuple[str, ...]  # tasks that run again from attempt 1, in spec order
    fresh_blocks: tuple[str, ...]  # blocks set up anew: a task inside runs again (or a block they use)

    def seed(self) -> dict[str, Any]:
        """The status records the rerun's first pass starts from: the reused tasks."""
        return {"tasks": copy.deepcopy(self.reused)}


def original_spec(original: Mapping[str, Any]) -> dict[str, Any] | None:
    """The spec the original ran: its snapshot if it had one (flowRef, or a rerun itself), else its
    own spec (without cancel); None if it never resolved one."""
    snapshot = snapshot_from_status(original.get("status"))
    if snapshot is not None:
        return copy.deepcopy(snapshot.spec)
    spec = as_map(original.get("spec"))
    if "flowRef" in spec or "rerunOf" in spec:
        return None
    return {key: copy.deepcopy(value) for key, value in spec.items() if key != "cancel"}


def plan_rerun(spec: object, original: Mapping[str, Any] | None, name: str, namespace: str | None = None) -> RerunPlan:
    """The plan for a run whose spec has rerunOf; `original` is the FlowRun it names (None if it
    does not exist) and `name` its name. Raises SpecError: an original that is missing, has not
    finished, Succeeded, or never had a valid spec names spec.rerunOf.name; a field set beside
    rerunOf other than cancel and ttlSecondsAfterFinished names that field."""
    run = mapping(spec, "spec")
    for key in run:
        if key != "rerunOf" and key not in BESIDE_RERUN_OF:
            raise SpecError(
                f"spec.{key}",
                f"only {and_list(BESIDE_RERUN_OF)} may be set beside rerunOf (the rest is the original's)",
            )
    ttl = kinds.SCHEMAS.flowrun.spec.check(run, "spec").get("ttlSecondsAfterFinished")
    if original is None:
        raise SpecError(_FIELD, f"FlowRun {name!r} does not exist in this namespace")
    status = as_map(original.get("status"))
    phase = str(status.get("phase") or "Pending")
    if phase == SUCCEEDED:
        raise SpecError(_FIELD, f"FlowRun {name!r} Succeeded: there is nothing to rerun")
    if phase not in RERUNNABLE:
        raise SpecError(_FIELD, f"FlowRun {name!r} has not finished (phase {phase}): rerun it once it has")
    if as_map(conditions_by_type(status).get("SpecValid")).get("status") == "False":
        # Not quoted: its message may quote the run it reruns in turn (a chain of reruns).
        raise SpecError(_FIELD, f"FlowRun {name!r} never started: its spec is invalid (its status says why)")
    resolved = original_spec(original)
    if resolved is None:
        raise SpecError(_FIELD, f"FlowRun {name!r} never resolved a spec to rerun")
    if ttl is not None:
        resolved["ttlSecondsAfterFinished"] = ttl
    try:
        flow = parse_spec(resolved, namespace)
    except SpecError as error:
        raise SpecError(_FIELD, f"FlowRun {name!r} has an invalid spec: {error}") from None

    metadata = as_map(original.get("metadata"))
    snapshot = Snapshot(
        spec=resolved,
        kind=KIND,
        name=name,
        uid=str(metadata.get("uid") or ""),
        resource_version=str(metadata.get("resourceVersion") or ""),
    )
    previous = as_map(status.get("tasks"))
    reused = {
        task.name: _reused(as_map(previous.get(task.name)), name)
        for task in flow.tasks
        if as_map(previous.get(task.name)).get("phase") == SUCCEEDED
    }
    reused.update(_reused_instances(flow, previous, name))
    rerun_tasks = tuple(t.name for t in flow.tasks if t.name not in reused)
    return RerunPlan(snapshot, reused, rerun_tasks, fresh_blocks(flow, rerun_tasks))


def _reused(record: Mapping[str, Any], original: str) -> dict[str, Any]:
    """A succeeded task (or instance of a forEach task) as the rerun shows it: its result and
    times, no attempt, no pod."""
    reused = {
        "phase": SUCCEEDED,
        "reason": REUSED,
        "message": f"result reused from FlowRun {original}",
        "attempts": 0,
        "result": str(record.get("result") or ""),
        "startedAt": record.get("startedAt"),
        "finishedAt": record.get("finishedAt"),
    }
    for key in ("instances", "instanceOf", "index"):
        if record.get(key) is not None:
            reused[key] = record[key]
    return reused


def _reused_instances(flow: FlowSpec, previous: Mapping[str, Any], original: str) -> dict[str, dict[str, Any]]:
    """The succeeded instances of the original's forEach tasks: the rerun makes the same list of
    the same items (from the same params and reused results), and runs again only the others."""
    found: dict[str, dict[str, Any]] = {}
    for task in flow.for_each_tasks():
        for name, entry in load_instances(task.name, previous).items():
            if entry.phase == SUCCEEDED:
                found[name] = _reused(as_map(previous[name]), original)
    return found


def fresh_blocks(flow: FlowSpec, rerun_tasks: tuple[str, ...]) -> tuple[str, ...]:
    """Blocks a rerun sets up anew: every block holding a task that runs again, and the blocks
    those use (their values feed its setup), in spec order."""
    needed = {r for t in flow.tasks if t.name in rerun_tasks for r in t.resources}
    grew = True
    while grew:
        more = {u for r in flow.resources if r.name in needed for u in r.uses} - needed
        needed |= more
        grew = bool(more)
    return tuple(r.name for r in flow.resources if r.name in needed)
