"""The status a pass writes: phase, message, progress and the conditions Succeeded,
ResourcesReleased and SpecValid, then Ready, Reconciling and Stalled (conditions.py: what kstatus
and Argo CD read) and TTLHeld when it applies, for a run and for a spec that cannot run. The fields
are the users' contract: docs/api.md (status) and docs/semantics.md ("The run", "Bad input")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowrun import api
from flowrun.api import (
    CANCELLED,
    CLEANED_UP,
    CLEANING_UP,
    CLEANUP_BLOCKED,
    CLEANUP_FAILED,
    CONDITION_READY,
    CONDITION_RECONCILING,
    CONDITION_STALLED,
    CONDITION_TTL_HELD,
    DECLARED_IN_GIT,
    FAILED,
    INVALID_SPEC,
    PENDING,
    READY,
    RETRY_BACKOFF,
    RUN_FINAL,
    RUNNING,
    SETTING_UP,
    SETUP_FAILED,
    SKIPPED,
    SPEC_VALID_PARSED,
    SPEC_VALID_VALIDATED,
    STOP_CANCELLED,
    STOP_DEADLINE,
    STOP_DELETED,
    SUCCEEDED,
    TERMINAL,
    WAITING_LOCK,
)
from flowrun.conditions import condition, health
from flowrun.engine.context import PassContext
from flowrun.engine.dag import is_failure
from flowrun.engine.interface import Event, Outcome, RunInput
from flowrun.engine.locks import gate, lock_status
from flowrun.engine.run import holds_finalizer, stop_reason, ttl_held
from flowrun.engine.state import RunState, TaskState, dump_resource, dump_task, time_or_none
from flowrun.lenient import as_map, conditions_by_type
from flowrun.merge_patch import changes
from flowrun.timestamps import format_time, parse_time


def render(ctx: PassContext, state: RunState, validated: bool) -> dict[str, Any]:
    """The complete new status of a run whose spec is valid."""
    conds = conditions_by_type(ctx.prev)
    gen, now = ctx.run.generation, ctx.now
    message = run_message(ctx, state)
    succeeded = succeeded_condition(ctx, state)
    released = released_condition(ctx, state)
    spec_valid = (
        ("True", SPEC_VALID_VALIDATED, "the API server accepted every child in a dry run")
        if validated
        else ("True", SPEC_VALID_PARSED, "the spec is valid; children are dry-run before the first is created")
    )
    work = units(state)
    terminal = sum(ts.phase in TERMINAL for ts in work)
    held = [condition(conds, CONDITION_TTL_HELD, "True", DECLARED_IN_GIT, ttl_held_message(ctx), now, gen)]
    return {
        "phase": state.phase,
        "startedAt": time_or_none(state.started_at),
        "finishedAt": time_or_none(state.finished_at),
        # Only once finished: a duration that grows with `now` would change status every pass.
        "duration": duration(state.started_at, state.finished_at),
        "observedGeneration": gen,
        "progress": f"{terminal}/{len(work)}",
        "message": message,
        "conditions": [
            condition(conds, "Succeeded", *succeeded, message if succeeded[1] != "Pending" else "", now, gen),
            condition(conds, "ResourcesReleased", *released, now, gen),
            condition(conds, "SpecValid", *spec_valid, now, gen),
            *health(conds, *run_health(state, succeeded[1], released, message), now, gen),
            *(held if ttl_held(ctx) else []),
        ],
        "tasks": {name: dump_task(ts) for name, ts in entries(ctx, state)},
        "resources": {r.name: dump_resource(state.resources[r.name]) for r in ctx.spec.resources},
        "locks": lock_status(ctx, state, stop_reason(ctx, state)),
    }


def run_health(state: RunState, reason: str, released: tuple[str, str, str], message: str) -> tuple[str, str, str]:
    """Which of Ready, Reconciling and Stalled is True, with the reason and message: Ready once
    Succeeded; Stalled once Failed or Cancelled, or while a failed cleanup holds the finalizer of a
    run being deleted (CleanupBlocked, which only a person can resolve); Reconciling before, `reason`
    being Succeeded's (Pending, WaitingForLock, Running, CleaningUp, Cancelling, Deleting,
    RunDeadlineExceeded)."""
    if released[1] == CLEANUP_BLOCKED:
        return CONDITION_STALLED, CLEANUP_BLOCKED, released[2]
    if state.phase == SUCCEEDED:
        return CONDITION_READY, reason, message
    if state.phase in RUN_FINAL:
        return CONDITION_STALLED, reason, message
    return CONDITION_RECONCILING, reason, message


def ttl_held_message(ctx: PassContext) -> str:
    return (
        f"ttlSecondsAfterFinished={ctx.spec.ttl_seconds_after_finished} is not applied: the FlowRun is declared in "
        f"Git ({ctx.run.declared_in_git}), and deleted it would be created again and run again; "
        "remove it from Git to delete it"
    )


def entries(ctx: PassContext, state: RunState) -> list[tuple[str, TaskState]]:
    """The task records in spec order, each forEach task followed by its instances."""
    found: list[tuple[str, TaskState]] = []
    for task in ctx.spec.tasks:
        found.append((task.name, state.tasks[task.name]))
        if task.for_each is not None:
            found += [(name, ts) for name, ts in state.tasks.items() if ts.instance_of == task.name]
    return found


def units(state: RunState) -> list[TaskState]:
    """What progress counts: each task, but a forEach task whose list gave instances counts as
    them."""
    return [ts for ts in state.tasks.values() if not ts.instances]


MESSAGE_NAMES = 10  # tasks named in a run's progress message, at most


def final_reason(state: RunState) -> str:
    """Succeeded=False reason: the first that applies."""
    if state.phase == CANCELLED:
        return "Cancelled"
    if any(ts.reason == STOP_DEADLINE for ts in state.tasks.values()):
        return "DeadlineExceeded"
    if any(ts.phase == FAILED for ts in state.tasks.values()):
        return "TasksFailed"
    if any(rs.setup_error for rs in state.resources.values()):
        return "SetupFailed"
    if any(rs.phase == CLEANUP_FAILED for rs in state.resources.values()):
        return "CleanupFailed"
    return "TasksFailed"


def succeeded_condition(ctx: PassContext, state: RunState) -> tuple[str, str]:
    if state.phase == SUCCEEDED:
        return "True", "Succeeded"
    if state.phase in RUN_FINAL:
        return "False", final_reason(state)
    stop = stop_reason(ctx, state)
    if stop is not None:
        return "Unknown", {STOP_DELETED: "Deleting", STOP_CANCELLED: "Cancelling"}.get(stop, stop)
    if all(ts.phase in TERMINAL for ts in state.tasks.values()):
        return "Unknown", "CleaningUp"
    held_back = gate(ctx, state, stop)
    if state.started_at is None and held_back is not None and held_back.slot is None:
        return "Unknown", WAITING_LOCK  # (a run taking its lock now is no news)
    return "Unknown", RUNNING if state.started_at else PENDING


def released_condition(ctx: PassContext, state: RunState) -> tuple[str, str, str]:
    phases = {name: rs.phase for name, rs in state.resources.items()}
    failed = [n for n, p in phases.items() if p == CLEANUP_FAILED]
    if failed:
        message = "cleanup failed for " + ", ".join(failed) + ": " + state.resources[failed[0]].message
        if (
            ctx.run.deleting
            and not ctx.run.skip_cleanup
            and any(holds_finalizer(ctx, state.resources[n]) for n in failed)
        ):
            message += f'; the finalizer stays until annotation {api.SKIP_CLEANUP_ANNOTATION}="true" is set'
            return "False", CLEANUP_BLOCKED, message
        return "False", "CleanupFailed", message
    held = [n for n, p in phases.items() if p in (SETTING_UP, READY, SETUP_FAILED, CLEANING_UP)]
    if held:
        return "False", "ResourcesInUse", "set up and not yet cleaned up: " + ", ".join(held)
    if any(p == CLEANED_UP for p in phases.values()):
        return "True", "Released", "every resource that was set up is cleaned up"
    return "True", "NothingToRelease", "no resource was set up"


def run_message(ctx: PassContext, state: RunState) -> str:
    if state.phase == SUCCEEDED:
        counts = [f"{sum(ts.phase == p for ts in units(state))} {p.lower()}" for p in (SUCCEEDED, SKIPPED)]
        return ", ".join(c for c in counts if not c.startswith("0 "))
    if state.phase == CANCELLED:
        stopped = "cancelled" if ctx.spec.cancel or not ctx.run.deleting else "stopped: the FlowRun is being deleted"
        return "; ".join([stopped, *_cleanup_failures(state)])
    if state.phase == FAILED:
        return _failure_message(ctx, state)
    return _progress_message(ctx, state)


def _cleanup_failures(state: RunState) -> list[str]:
    failed = [(n, rs) for n, rs in state.resources.items() if rs.phase == CLEANUP_FAILED]
    return [f"cleanup of resource {n} failed: {rs.message}" for n, rs in failed]


def _failure_message(ctx: PassContext, state: RunState) -> str:
    """Why a Failed run failed: its deadline, else the first failed task (in dependency order, failed
    before skipped before cancelled), else its failed cleanups."""
    if final_reason(state) == "DeadlineExceeded":
        return f"the run's activeDeadlineSeconds={ctx.spec.active_deadline_seconds} was exceeded"
    for phase in (FAILED, SKIPPED, CANCELLED):
        for task in ctx.order:
            ts = state.tasks[task.name]
            if ts.phase == phase and is_failure(ts):
                return f"task {task.name} {phase.lower()}: {ts.reason}: {ts.message}"
    return "; ".join(_cleanup_failures(state))


def _progress_message(ctx: PassContext, state: RunState) -> str:
    """What a run that is not finished is doing: stopping, running, retrying, setting up, cleaning up."""
    tasks = {n: ts for n, ts in entries(ctx, state) if not ts.instances}
    resources = state.resources
    parts = []
    for label, names_ in (
        ("running", [n for n, ts in tasks.items() if ts.phase == RUNNING and ts.reason != RETRY_BACKOFF]),
        ("retrying", [n for n, ts in tasks.items() if ts.phase == RUNNING and ts.reason == RETRY_BACKOFF]),
        ("setting up", [n for n, rs in resources.items() if rs.phase == SETTING_UP]),
        ("cleaning up", [n for n, rs in resources.items() if rs.phase == CLEANING_UP]),
    ):
        if names_:
            more = f" and {len(names_) - MESSAGE_NAMES} more" if len(names_) > MESSAGE_NAMES else ""
            parts.append(f"{label}: {', '.join(names_[:MESSAGE_NAMES])}{more}")
    stop = stop_reason(ctx, state)
    if stop is not None:
        parts.insert(0, {STOP_DELETED: "deleting", STOP_CANCELLED: "cancelling"}.get(stop, "run deadline exceeded"))
    held_back = gate(ctx, state, stop)
    if held_back is not None:
        parts.append(held_back.message)
    return "; ".join(parts) or "waiting to start"


def duration(start: datetime | None, end: datetime | None) -> str | None:
    """`1h2m3s` style, like Kubernetes printer columns show durations."""
    if start is None or end is None:
        return None
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if hours or minutes else "", f"{seconds}s"]
    return "".join(parts)


def validated(status: object) -> bool:
    """Whether the run's status says the API server accepted every child in a dry run."""
    spec_valid = as_map(conditions_by_type(as_map(status)).get("SpecValid"))
    return spec_valid.get("status") == "True" and spec_valid.get("reason") == SPEC_VALID_VALIDATED


def invalid_outcome(run: RunInput, prev: Mapping[str, Any], now: datetime, message: str) -> Outcome:
    """A spec that cannot run: Failed, SpecValid=False, nothing created, finalizer free to go."""
    conds = conditions_by_type(prev)
    gen = run.generation
    tasks = as_map(run.spec).get("tasks")
    finished = parse_time(prev.get("finishedAt")) if prev.get("phase") == FAILED else None
    status: dict[str, Any] = {
        "phase": FAILED,
        "startedAt": None,
        "finishedAt": format_time(finished or now),
        "duration": None,
        "observedGeneration": gen,
        "progress": f"0/{len(tasks) if isinstance(tasks, list) else 0}",
        "message": message,
        "conditions": [
            condition(conds, "Succeeded", "False", INVALID_SPEC, message, now, gen),
            condition(conds, "ResourcesReleased", "True", "NothingToRelease", "nothing was created", now, gen),
            condition(conds, "SpecValid", "False", INVALID_SPEC, message, now, gen),
            *health(conds, CONDITION_STALLED, INVALID_SPEC, message, now, gen),
        ],
        "tasks": {},
        "resources": {},
    }
    was_invalid = as_map(conds.get("SpecValid")).get("status") == "False"
    events = () if was_invalid else (Event("Warning", INVALID_SPEC, message),)
    return Outcome(status=status, events=events, finalizer_releasable=run.deleting, done=True)


def with_pods_created(status: Mapping[str, Any], created: set[str]) -> dict[str, Any]:
    """The status a pass writes once its creates are answered: a task whose pod the API server
    accepted is PodPending (created), no longer PodCreating (asked for). A later pass that does not
    see a PodPending pod takes it for deleted (PodDeleted), never for one to create again: a pod
    deleted before any pass saw it must not come back under the same name. A create that failed
    leaves PodCreating, and the next pass sends it again."""
    tasks = as_map(status.get("tasks"))
    confirmed = {
        name: {**entry, "reason": api.POD_PENDING}
        for name, entry in tasks.items()
        if isinstance(entry, Mapping) and entry.get("reason") == api.POD_CREATING and entry.get("podName") in created
    }
    return {**status, "tasks": {**tasks, **confirmed}} if confirmed else dict(status)


def only_pods_started(previous: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
    """Whether the only news of `status` over `previous` is that task pods started running
    (PodPending to PodRunning, nothing else of theirs or of the run changed): news a pass may hold
    back for a moment, since a short task's next news (it ended) comes with it in one write."""
    tasks, before = as_map(status.get("tasks")), as_map(previous.get("tasks"))
    started = [
        name
        for name, entry in tasks.items()
        if as_map(entry).get("reason") == api.POD_RUNNING and as_map(before.get(name)).get("reason") == api.POD_PENDING
    ]
    if not started:
        return False
    as_before = {**tasks, **{name: {**as_map(tasks[name]), "reason": api.POD_PENDING} for name in started}}
    return not changes({**status, "tasks": as_before}, previous)
