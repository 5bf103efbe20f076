"""The dependency graph at run time: triggers, skip reasons, and when a resource block is needed,
blocked or finished with. Triggers and skip reasons are the users' contract: docs/semantics.md,
"Triggers and skip reasons" and "Resource blocks"."""

from __future__ import annotations

from typing import Literal

from flowrun.api import (
    CANCELLED,
    CLEANED_UP,
    CLEANING_UP,
    CLEANUP_FAILED,
    FAILED,
    PENDING,
    READY,
    RUNNING,
    SETTING_UP,
    SETUP_FAILED,
    SKIPPED,
    SUCCEEDED,
    TERMINAL,
    TRIGGER_NOT_MET,
    UPSTREAM_FAILED,
    WHEN_FALSE,
)
from flowrun.engine.state import RunState, TaskState
from flowrun.model import FlowSpec, ResourceSpec, TaskSpec, instance_name

Skip = tuple[str, str]  # (reason, message) of a task that is skipped
BY_DESIGN = (TRIGGER_NOT_MET, WHEN_FALSE)  # skip reasons that are no failure
Trigger = Literal["go", "wait"] | Skip


def is_failure(state: TaskState) -> bool:
    """Failed, Cancelled, or skipped for any reason but the design of the flow (its trigger, its
    conditions)."""
    return state.phase in (FAILED, CANCELLED) or (state.phase == SKIPPED and state.reason not in BY_DESIGN)


def passed(state: TaskState) -> bool:
    """What allSucceeded waits for: Succeeded, or skipped by its own condition (a branch not
    taken: its dependants run, as in Argo Workflows and Tekton)."""
    return state.phase == SUCCEEDED or (state.phase == SKIPPED and state.reason == WHEN_FALSE)


def trigger(task: TaskSpec, state: RunState) -> Trigger:
    """ "go", "wait", or (skip reason, message)."""
    ups = [(u, state.tasks[u]) for u in task.run_after]
    ended = [(u, s) for u, s in ups if s.phase in TERMINAL]
    failed = [u for u, s in ended if is_failure(s)]
    if task.trigger == "allSucceeded":
        if all(passed(s) for _, s in ups):
            return "go"
        if failed:
            return UPSTREAM_FAILED, f"upstream {failed[0]} did not succeed ({state.tasks[failed[0]].phase})"
        skipped = [u for u, s in ended if not passed(s)]
        if skipped:
            return TRIGGER_NOT_MET, f"allSucceeded: upstream {skipped[0]} was skipped"
        return "wait"
    if len(ended) < len(ups):
        return "wait"
    if task.trigger == "allDone" or failed:
        return "go"
    return TRIGGER_NOT_MET, "anyFailed: no upstream failed"


def skip_reason(spec: FlowSpec, task: TaskSpec, state: RunState) -> Skip | None:
    """Why a Pending task can never run, in the order docs/semantics.md lists; else None."""
    for name in task.resources:
        rs = state.resources[name]
        if rs.phase in (SETUP_FAILED, CLEANING_UP, CLEANED_UP, CLEANUP_FAILED):
            return SETUP_FAILED, f"resource {name} is not available ({rs.phase}: {rs.message})"
        why = blocked(spec, spec.resource(name), state)
        if why is not None:
            return why
    verdict = trigger(task, state)
    return verdict if isinstance(verdict, tuple) else None


def consumers(spec: FlowSpec, resource: ResourceSpec) -> list[ResourceSpec]:
    """The blocks nested in `resource`: those that use it."""
    return [r for r in spec.resources if resource.name in r.uses]


def blocked(spec: FlowSpec, resource: ResourceSpec, state: RunState) -> Skip | None:
    """Why a Pending block can never be set up, as a skip reason for its tasks; else None."""
    if state.resources[resource.name].phase != PENDING:
        return None
    for name in resource.run_after:
        upstream = state.tasks[name]
        if upstream.phase in TERMINAL and not passed(upstream):
            reason = UPSTREAM_FAILED if is_failure(upstream) else TRIGGER_NOT_MET
            return reason, f"resource {resource.name} runs after {name}, which ended {upstream.phase}"
    for name in resource.result_refs:
        if state.tasks[name].phase == SKIPPED and state.tasks[name].reason == WHEN_FALSE:
            return TRIGGER_NOT_MET, f"resource {resource.name} uses the result of {name}, which its when skipped"
    for name in resource.uses:
        dependency = state.resources[name]
        if dependency.phase not in (PENDING, SETTING_UP, READY):
            return SETUP_FAILED, f"resource {resource.name} uses resource {name}, which is {dependency.phase}"
        why = blocked(spec, spec.resource(name), state)
        if why is not None:
            return why
    return None


def consumers_done(spec: FlowSpec, resource: ResourceSpec, state: RunState) -> bool:
    """Every task of the block is terminal and every block nested in it is finished."""
    return all(state.tasks[t.name].phase in TERMINAL for t in spec.users_of(resource.name)) and all(
        final(spec, c, state) for c in consumers(spec, resource)
    )


def final(spec: FlowSpec, resource: ResourceSpec, state: RunState) -> bool:
    """The block is done with: cleaned up (or failed to be), or never needed."""
    phase = state.resources[resource.name].phase
    return phase in (CLEANED_UP, CLEANUP_FAILED) or (phase == PENDING and consumers_done(spec, resource, state))


def wanted(spec: FlowSpec, resource: ResourceSpec, state: RunState) -> bool:
    """Some consumer could start now if this block were Ready (setup starts only when needed): a
    task, or an instance of a forEach task."""
    for task in spec.users_of(resource.name):
        ts = state.tasks[task.name]
        if ts.phase == PENDING and ts.attempts == 0 and trigger(task, state) == "go":
            return True
        if ts.instances and ts.phase == RUNNING and any(_unstarted(state.tasks[n]) for n in _instances(task, ts)):
            return True
    return any(
        state.resources[c.name].phase == PENDING and after_succeeded(c, state) and wanted(spec, c, state)
        for c in consumers(spec, resource)
    )


def _instances(task: TaskSpec, ts: TaskState) -> list[str]:
    return [instance_name(task.name, i) for i in range(ts.instances or 0)]


def _unstarted(ts: TaskState) -> bool:
    return ts.phase == PENDING and ts.attempts == 0


def after_succeeded(resource: ResourceSpec, state: RunState) -> bool:
    return all(passed(state.tasks[u]) for u in resource.run_after)


def resource_order(spec: FlowSpec) -> list[ResourceSpec]:
    """Resources after the resources they use (the spec is acyclic)."""
    order: list[ResourceSpec] = []
    while len(order) < len(spec.resources):
        placed = {r.name for r in order}
        order.append(next(r for r in spec.resources if r.name not in placed and set(r.uses) <= placed))
    return order
