"""One pass of the engine, in order: check the spec, load the previous status and align it with
the observed children, step to a fixpoint, then derive the actions, the status and the events."""

from __future__ import annotations

from datetime import UTC, datetime

from flowrun.api import CLEANING_UP, READY, RUN_FINAL, SETTING_UP
from flowrun.engine.blocks import check_ready, progress_setup, recover_resource, schedule_resource
from flowrun.engine.children import Children
from flowrun.engine.clashes import name_clash
from flowrun.engine.cleanup import progress_cleanup
from flowrun.engine.context import PassContext, new_pass_context
from flowrun.engine.events import events
from flowrun.engine.instances import advance_for_each, recover_for_each
from flowrun.engine.interface import CreateObject, Outcome, RunInput
from flowrun.engine.locks import gate
from flowrun.engine.plan import dry_run, plan, requeue_after
from flowrun.engine.run import finalizer_releasable, stop_reason, update_run
from flowrun.engine.state import RunState, load_state
from flowrun.engine.status import invalid_outcome, render, validated
from flowrun.engine.tasks import advance_task, live_pods, recover_task
from flowrun.lenient import as_map, as_str, conditions_by_type
from flowrun.model import FlowSpec, SpecError, parse_spec
from flowrun.observed import Observed


class FixpointNotReached(RuntimeError):
    """The steps of a pass kept changing the state past the bound: a bug in the engine."""


def decide(run: RunInput, observed: Observed, now: datetime) -> Outcome:
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    prev = as_map(run.status)
    spec_valid = as_map(conditions_by_type(prev).get("SpecValid"))
    if spec_valid.get("status") == "False" and not Children(observed, run.uid).exist():
        # A rejected spec stays rejected: the run never started and never will. (A run with
        # children was not rejected, whatever its status claims: it goes on.)
        return invalid_outcome(run, prev, now, as_str(spec_valid.get("message")))
    try:
        spec = parse_spec(run.spec, run.namespace)
    except SpecError as err:
        return invalid_outcome(run, prev, now, str(err))
    clash = name_clash(run.name, spec)
    if clash is not None:
        return invalid_outcome(run, prev, now, str(clash))
    if run.dry_run_error is not None:
        return invalid_outcome(run, prev, now, f"the API server rejected a child: {run.dry_run_error}")

    ctx = new_pass_context(run, spec, prev, observed, now)
    state = fixpoint(ctx, load(ctx))
    actions = plan(ctx, state)
    checked = validated(prev)
    if not checked and any(isinstance(a, CreateObject) for a in actions):
        actions.insert(0, dry_run(ctx, state))
        checked = True
    status = render(ctx, state, checked)
    return Outcome(
        status=status,
        actions=tuple(actions),
        events=tuple(events(prev, status)),
        requeue_after=requeue_after(ctx, state),
        finalizer_releasable=finalizer_releasable(ctx, state),
        done=state.phase in RUN_FINAL,
    )


def load(ctx: PassContext) -> RunState:
    """The previous status, merged with what is observed: attempt numbers come from pod labels
    too, and a block whose objects exist is at least SettingUp, so a lost or garbage status never
    makes the engine reuse a name or create a duplicate."""
    state = load_state(ctx.spec, ctx.prev)
    for task in ctx.order:
        if task.for_each is not None:
            recover_for_each(ctx, task, state)
        else:
            recover_task(ctx, task, state.tasks[task.name], state)
    for resource in ctx.spec.resources:
        recover_resource(ctx, resource, state.resources[resource.name], state)
    return state


def step(ctx: PassContext, before: RunState) -> RunState:
    """Every transition the state and the observed children allow, in one sweep: blocks progress
    (or a Ready one is found broken), then tasks (in dependency order; a forEach task with its
    instances), then blocks start setup or cleanup, then the run."""
    state = before.copied()
    stop = stop_reason(ctx, state)
    held_back = gate(ctx, state, stop)
    for resource in ctx.resource_order:
        rs = state.resources[resource.name]
        if rs.phase == SETTING_UP:
            progress_setup(ctx, resource, rs, state)
        elif rs.phase == READY:
            check_ready(ctx, resource, rs)
        elif rs.phase == CLEANING_UP:
            progress_cleanup(ctx, resource, rs)
    live = live_pods(ctx, state)
    for task in ctx.order:
        if task.for_each is not None:
            advance_for_each(ctx, task, state, stop, live, held_back)
        else:
            advance_task(ctx, task, state, stop, live, gate=held_back)
    for resource in ctx.resource_order:
        schedule_resource(ctx, resource, state, stop, held_back is not None)
    update_run(ctx, state)
    return state


def fixpoint_bound(spec: FlowSpec) -> int:
    """Steps one pass may take. Every step only moves tasks and blocks forward through a handful
    of phases, so a pass converges well within this."""
    return 4 * (len(spec.tasks) + len(spec.resources)) + 8


def fixpoint(ctx: PassContext, state: RunState) -> RunState:
    """Step until nothing changes, so one pass takes every decision its inputs allow and a pass
    fed its own status takes none.

    Hitting the bound means a step that never settles: a bug. It raises rather than acting on a
    state the engine has not finished deciding; decide() turns it, like any internal error,
    into status.message plus a Warning event InternalError and a requeue a minute later, so the
    operator neither crashes nor loops hot, and the bug is visible on the run it hit."""
    bound = fixpoint_bound(ctx.spec)
    for _ in range(bound):
        after = step(ctx, state)
        if after == state:
            return state
        state = after
    run = ctx.run
    raise FixpointNotReached(f"run {run.namespace}/{run.name}: no fixpoint within {bound} steps of one pass")
