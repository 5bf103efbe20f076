"""The run as a whole: what stops it (cancel, deletion, its deadline), when it is finished and
in which phase, its TTL and its finalizer. The users' contract: docs/semantics.md, "The run",
"Deadlines", "Cancel" and "Deletion and the finalizer"."""

from __future__ import annotations

from datetime import datetime

from flowrun.api import (
    CANCELLED,
    CLEANUP_FAILED,
    FAILED,
    NAMESPACE_DELETED,
    PENDING,
    RUN_FINAL,
    RUNNING,
    STOP_CANCELLED,
    STOP_DEADLINE,
    STOP_DELETED,
    SUCCEEDED,
    TERMINAL,
)
from flowrun.engine.clock import after
from flowrun.engine.context import PassContext
from flowrun.engine.dag import final, is_failure
from flowrun.engine.state import ResourceState, RunState
from flowrun.model import FlowSpec


def stop_reason(ctx: PassContext, state: RunState) -> str | None:
    """Why nothing new may start and unfinished tasks end: deletion, cancel, the run deadline."""
    if ctx.run.deleting:
        return STOP_DELETED
    if ctx.spec.cancel:
        return STOP_CANCELLED
    deadline = run_deadline(ctx, state)
    if deadline is not None and ctx.now >= deadline:
        return STOP_DEADLINE
    return None


def run_deadline(ctx: PassContext, state: RunState) -> datetime | None:
    base = state.started_at or ctx.run.created_at
    if ctx.spec.active_deadline_seconds is None or base is None:
        return None
    return after(base, ctx.spec.active_deadline_seconds)


def done(spec: FlowSpec, state: RunState) -> bool:
    """Every task is terminal and every block is cleaned up, failed to be, or never needed."""
    return all(ts.phase in TERMINAL for ts in state.tasks.values()) and all(
        final(spec, r, state) for r in spec.resources
    )


def update_run(ctx: PassContext, state: RunState) -> None:
    if done(ctx.spec, state):
        # Derived again on every pass, never taken from the status (someone else may write it);
        # a cancel that came after the run finished changes nothing.
        late = state.phase in RUN_FINAL and state.phase != CANCELLED
        state.phase = final_phase(ctx.spec, state, cancelled=ctx.spec.cancel and not late)
        state.finished_at = state.finished_at or ctx.now
    else:
        state.phase, state.finished_at = (RUNNING if state.started_at else PENDING), None


def final_phase(spec: FlowSpec, state: RunState, cancelled: bool) -> str:
    # A cancelled run stays Cancelled even if a cleanup failed (ResourcesReleased=False shows it).
    if cancelled or any(ts.phase == CANCELLED for ts in state.tasks.values()):
        return CANCELLED
    failed = any(is_failure(ts) for ts in state.tasks.values())
    # A block that broke (its setup failed, or someone deleted what it was made of while it was
    # Ready) fails the run, even if its tasks completed: the user must learn the resource broke.
    broken = any(rs.setup_error or rs.phase == CLEANUP_FAILED for rs in state.resources.values())
    if failed or broken:
        return FAILED
    return SUCCEEDED


def ttl_held(ctx: PassContext) -> bool:
    """The run has a TTL and is declared in Git (gitops.py): deleting it would make the GitOps tool
    create it again, and it would run again, for ever. Its TTL is never applied (TTLHeld says so)."""
    return ctx.spec.ttl_seconds_after_finished is not None and ctx.run.declared_in_git is not None


def ttl_expiry(ctx: PassContext, state: RunState) -> datetime | None:
    ttl = ctx.spec.ttl_seconds_after_finished
    if ttl is None or ttl_held(ctx) or state.phase not in RUN_FINAL or state.finished_at is None:
        return None
    return after(state.finished_at, ttl)


def ttl_expired(ctx: PassContext, state: RunState) -> bool:
    expiry = ttl_expiry(ctx, state)
    return expiry is not None and ctx.now >= expiry and not ctx.run.deleting


def holds_finalizer(ctx: PassContext, rs: ResourceState) -> bool:
    """A failed cleanup holds the finalizer (a person decides: flowrun.dev/skip-cleanup), unless
    its namespace is being deleted: what it left in the namespace goes with the namespace, and
    holding the run would hold the namespace for ever."""
    return rs.phase == CLEANUP_FAILED and rs.reason != NAMESPACE_DELETED and not ctx.run.namespace_terminating


def finalizer_releasable(ctx: PassContext, state: RunState) -> bool:
    if not ctx.run.deleting:
        return False
    if ctx.run.skip_cleanup:
        return True
    return (
        state.phase in RUN_FINAL
        and all(not holds_finalizer(ctx, rs) for rs in state.resources.values())
        and all(p.finished for p in ctx.children.pods)
    )
