"""forEach tasks: their list of items, known once the task is ready; their instances (a task each,
NAME-INDEX, with the item for $(item)); and the task's own phase, derived from its instances on
every pass. The users' contract: docs/semantics.md, "Fan-out: forEach".

A forEach task is Pending like any task until it is ready (its runAfter, trigger and `when`
hold). Then its list is resolved and checked (a JSON list, the caps, the fields its template
reads) and, in the same step, its instances are made (Pending, each recovered from the pods it
may already have) and advanced like tasks. The list is resolved again on later passes from the
same sources (params and the results of succeeded upstream tasks, which do not change), never
stored: the status holds one entry per instance, not the items.
"""

from __future__ import annotations

from typing import Any

from flowrun.api import (
    CANCELLED,
    FAILED,
    FOR_EACH_INVALID,
    INSTANCES_FAILED,
    INSTANCES_RUNNING,
    MAX_INSTANCES,
    NO_ITEMS,
    RESULT_LOST,
    RETRY_BACKOFF,
    RUNNING,
    STOP_DEADLINE,
    SUCCEEDED,
    TERMINAL,
)
from flowrun.engine.context import PassContext, substitutions
from flowrun.engine.dag import is_failure
from flowrun.engine.state import RunState, TaskState
from flowrun.items import ItemsError, missing_field, parse_items
from flowrun.model import TaskSpec, instance_name
from flowrun.references import substitute

# The item of an instance whose list can no longer be resolved (a result it came from is lost):
# such an instance starts no attempt (tasks.advance_task fails it, RESULT_LOST).
LOST: Any = object()


def task_path(ctx: PassContext, task: TaskSpec) -> str:
    return f"spec.tasks[{ctx.spec.tasks.index(task)}]"


def resolve_items(ctx: PassContext, task: TaskSpec, state: RunState) -> list[Any] | str:
    """The items of a ready forEach task, or why its list is not one (the message names the
    field). Cached for the pass: the sources of a ready task's list no longer change."""
    cached: list[Any] | str | None = ctx.items.get(task.name)
    if cached is not None:
        return cached
    assert task.for_each is not None
    path = task_path(ctx, task)
    text = substitute(task.for_each, substitutions(ctx, state))
    outcome: list[Any] | str
    try:
        outcome = parse_items(text)
        missing = missing_field(outcome, task.template)
        if missing is not None:
            outcome = f"{path}.template.{missing[0]}: {missing[1]}"
    except ItemsError as err:
        outcome = f"{path}.forEach: {task.for_each!r} {err}"
    ctx.items[task.name] = outcome
    return outcome


def instance_specs(ctx: PassContext, task: TaskSpec, state: RunState) -> list[TaskSpec]:
    """The specs of the instances of an expanded forEach task, in index order (none before its
    list is known); an instance whose item is lost gets LOST."""
    count = state.tasks[task.name].instances
    if not count:
        return []
    items = resolve_items(ctx, task, state)
    return [
        task.instance_spec(i, items[i] if isinstance(items, list) and i < len(items) else LOST) for i in range(count)
    ]


def instance_states(task: TaskSpec, state: RunState) -> list[TaskState]:
    return [state.tasks[instance_name(task.name, i)] for i in range(state.tasks[task.name].instances or 0)]


def expand(ctx: PassContext, task: TaskSpec, ts: TaskState, state: RunState) -> list[TaskSpec]:
    """A ready forEach task's list becomes its instances (Pending; an instance that already has
    pods is recovered from them by the caller); a bad list, or one over the run's cap on
    instances, fails the task before anything is created; an empty one succeeds it. Returns the
    instances' specs."""
    items = resolve_items(ctx, task, state)
    if isinstance(items, list):
        others = sum(s.instances or 0 for name, s in state.tasks.items() if name != task.name)
        if others + len(items) > MAX_INSTANCES:
            items = (
                f"{task_path(ctx, task)}.forEach: {len(items)} items would make {others + len(items)} instances in "
                f"the run: at most {MAX_INSTANCES}"
            )
    if isinstance(items, str):
        ts.phase, ts.reason, ts.message, ts.finished_at = FAILED, FOR_EACH_INVALID, items, ctx.now
        drop_instances(task.name, 0, state)
        return []
    ts.instances = len(items)
    drop_instances(task.name, len(items), state)
    for i in range(len(items)):
        state.tasks.setdefault(instance_name(task.name, i), TaskState(instance_of=task.name, index=i))
    if not items:
        ts.phase, ts.reason, ts.finished_at = SUCCEEDED, NO_ITEMS, ctx.now
        ts.message = "the list is empty: no instance to run"
        return []
    ts.phase, ts.reason, ts.started_at = RUNNING, INSTANCES_RUNNING, ts.started_at or ctx.now
    return instance_specs(ctx, task, state)


def drop_instances(task: str, keep: int, state: RunState) -> None:
    """Forget the records of instances of `task` from index `keep` on (a status that claims more
    instances than the list gives, or instances of a task that ended before its list was known)."""
    for name in [n for n, s in state.tasks.items() if s.instance_of == task and (s.index or 0) >= keep]:
        del state.tasks[name]


def busy_instances(ctx: PassContext, task: TaskSpec, state: RunState) -> int:
    """Pods of the instances of `task` that hold one of its parallelism slots: expected to run
    (an attempt not waiting out a backoff) or still running (a pod being deleted included)."""
    expected = {
        s.pod_name
        for s in instance_states(task, state)
        if s.phase == RUNNING and s.reason != RETRY_BACKOFF and s.pod_name is not None
    }
    running = {p.name for p in ctx.children.instance_pods(task.name) if not p.finished}
    return len(expected | running)


def conclude(ctx: PassContext, task: TaskSpec, ts: TaskState, state: RunState, stop: str | None) -> None:
    """The phase of an expanded forEach task, derived from its instances on every pass: Running
    until each is terminal; then Cancelled if one was, Failed if one failed, else Succeeded."""
    states = instance_states(task, state)
    done = [s for s in states if s.phase in TERMINAL]
    failed = [s for s in done if is_failure(s)]
    if len(done) < len(states):
        ts.phase, ts.reason, ts.finished_at = RUNNING, INSTANCES_RUNNING, None
        ts.message = f"{len(done)} of {len(states)} instances done" + (f", {len(failed)} failed" if failed else "")
        return
    phase, reason, message = outcome(task, states, stop)
    if ts.phase == phase and ts.finished_at is not None:
        return  # concluded before (a rerun's reused task keeps its reason)
    ts.phase, ts.reason, ts.message = phase, reason, message
    ts.finished_at = max((s.finished_at for s in states if s.finished_at is not None), default=ctx.now)


def outcome(task: TaskSpec, states: list[TaskState], stop: str | None) -> tuple[str, str, str]:
    """(phase, reason, message) of a forEach task whose instances are all terminal."""
    cancelled = next((s for s in states if s.phase == CANCELLED), None)
    if cancelled is not None:
        return CANCELLED, cancelled.reason, cancelled.message
    failed = [s for s in states if is_failure(s)]
    if not failed:
        return SUCCEEDED, SUCCEEDED, f"{len(states)} instances succeeded"
    first = failed[0]
    deadline = stop == STOP_DEADLINE or any(s.reason == STOP_DEADLINE for s in failed)
    name = instance_name(task.name, first.index or 0)
    message = f"{len(failed)} of {len(states)} instances failed; {name}: {first.reason}: {first.message}"
    return FAILED, STOP_DEADLINE if deadline else INSTANCES_FAILED, message


def lost_item(ctx: PassContext, task: TaskSpec, ts: TaskState) -> bool:
    """An instance about to start an attempt whose item is lost fails instead (RESULT_LOST)."""
    if task.instance is None or task.instance.item is not LOST:
        return False
    why = ctx.items.get(task.instance.of)
    ts.phase, ts.reason, ts.finished_at, ts.next_attempt_at = FAILED, RESULT_LOST, ctx.now, None
    ts.message = f"the item of this instance is lost: the list of task {task.instance.of} no longer resolves ({why})"
    return True
