"""A forEach task through a pass: recovered with its instances from the status and their pods,
expanded once it is ready, its instances advanced as tasks (within its own parallelism), and its
phase concluded from theirs. fanout.py holds its list and instances; tasks.py what every task
and instance does. The users' contract: docs/semantics.md, "Fan-out: forEach"."""

from __future__ import annotations

from flowrun.api import PENDING, RUNNING, TERMINAL
from flowrun.engine.context import PassContext
from flowrun.engine.fanout import LOST, busy_instances, conclude, drop_instances, expand, instance_specs
from flowrun.engine.locks import Turn
from flowrun.engine.state import RunState
from flowrun.engine.tasks import advance_task, recover_task, stop_task, upstream_ready
from flowrun.model import TaskSpec, instance_name


def recover_for_each(ctx: PassContext, task: TaskSpec, state: RunState) -> None:
    """Align a forEach task's instances with their pods (their items are not needed for that, and
    are not known yet: the upstream tasks are judged in the steps that follow)."""
    ts = state.tasks[task.name]
    if ts.instances is None:
        if ts.phase == RUNNING:
            ts.phase, ts.reason = PENDING, ""  # garbage: running without a list; expanded again when ready
        return
    for i in range(ts.instances):
        name = instance_name(task.name, i)
        if name in state.tasks:
            recover_task(ctx, task.instance_spec(i, LOST), state.tasks[name], state)


def advance_for_each(
    ctx: PassContext, task: TaskSpec, state: RunState, stop: str | None, live: set[str], gate: Turn | None = None
) -> None:
    """Move a forEach task as far as the state allows: expand it once ready, advance its instances
    in index order (each start takes a slot of the run's and of the task's parallelism; none starts
    while `gate` says the run waits for its own lock), then derive its phase from theirs."""
    ts = state.tasks[task.name]
    if ts.instances is None:
        if ts.phase not in TERMINAL and stop is not None:
            stop_task(ctx, ts, stop)
        elif ts.phase not in TERMINAL and upstream_ready(ctx, task, ts, state):
            known = set(state.tasks)
            for spec in expand(ctx, task, ts, state):
                if spec.name not in known:
                    recover_task(ctx, spec, state.tasks[spec.name], state)  # its pods may exist: a lost status
        if ts.instances is None:
            if ts.phase in TERMINAL:
                drop_instances(task.name, 0, state)  # ended before its list was known
            return
    busy = busy_instances(ctx, task, state)
    for spec in instance_specs(ctx, task, state):
        limit = task.parallelism
        held = f"waiting for a slot (parallelism {limit} of task {task.name})" if limit and busy >= limit else None
        busy += advance_task(ctx, spec, state, stop, live, held, gate)
    if ts.instances:
        conclude(ctx, task, ts, state, stop)
