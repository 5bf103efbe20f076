"""The actions of a pass, derived from its final state and the observed children only ("this pod
should exist and does not: create it"), so that each is idempotent and safe to repeat after a
crash; the dry run of every child before the first is created; and when to look again."""

from __future__ import annotations

from datetime import datetime

from flowrun import manifests
from flowrun.api import (
    CLEANING_UP,
    DRY_RUN_PLACEHOLDER,
    POD_REFUSAL_RECHECK_SECONDS,
    RETRY_BACKOFF,
    RUN_FINAL,
    RUNNING,
    SETTING_UP,
)
from flowrun.engine.blocks import setup_actions, setup_manifests
from flowrun.engine.cleanup import cleanup_actions
from flowrun.engine.clock import after
from flowrun.engine.context import PassContext, substitutions
from flowrun.engine.interface import Action, DeleteFlowRun, DeleteObject, ValidateObjects
from flowrun.engine.locks import lock_actions
from flowrun.engine.run import run_deadline, stop_reason, ttl_expired, ttl_expiry
from flowrun.engine.state import RunState
from flowrun.engine.tasks import expected_pods, pod_tasks, start_due, task_actions
from flowrun.observed import ObservedJob
from flowrun.references import AnyItem


def plan(ctx: PassContext, state: RunState) -> list[Action]:
    """Log captures first (before their pods are deleted), then deletes (the Leases of the locks the
    run is done with among them), then creates and the slots of locks it takes; the FlowRun's own
    deletion (TTL) last."""
    values = substitutions(ctx, state)
    captures, deletes, creates = task_actions(ctx, state, values)
    for resource in ctx.resource_order:
        rs = state.resources[resource.name]
        for action in [*setup_actions(ctx, resource, state, values), *cleanup_actions(ctx, resource, rs, values)]:
            (deletes if isinstance(action, DeleteObject) else creates).append(action)
    releases, takes = lock_actions(ctx, state, stop_reason(ctx, state))
    actions = captures + deletes + releases + creates + takes
    if ttl_expired(ctx, state):
        actions.append(DeleteFlowRun())
    return actions


def dry_run(ctx: PassContext, state: RunState) -> ValidateObjects:
    """Every child this run may create, with results and values as placeholders."""
    identity, spec = ctx.identity, ctx.spec
    values = substitutions(ctx, state, placeholder=DRY_RUN_PLACEHOLDER)
    # A forEach task's pods are dry-run as its first instance's, with a placeholder item.
    tasks = [t if t.for_each is None else t.instance_spec(0, AnyItem(DRY_RUN_PLACEHOLDER)) for t in spec.tasks]
    built = [
        (f"spec.tasks[{i}].template", manifests.build_task_pod(identity, spec, t, 1, values))
        for i, t in enumerate(tasks)
    ]
    for k, resource in enumerate(spec.resources):
        built += setup_manifests(ctx, resource, state, values, dry_run=True)
        if resource.cleanup.job_template is not None:
            job = manifests.build_cleanup_job(identity, spec, resource, 1, values, DRY_RUN_PLACEHOLDER)
            built.append((f"spec.resources[{k}].cleanup.job.template", job))
    return ValidateObjects(tuple(m for _, m in built), tuple(f for f, _ in built))


def requeue_after(ctx: PassContext, state: RunState) -> float | None:
    """Seconds until the next decision that depends on time alone."""
    moments: list[datetime | None] = [ttl_expiry(ctx, state)]
    if state.phase not in RUN_FINAL:
        moments.append(run_deadline(ctx, state))
    moments += task_moments(ctx, state)
    if any(waits_for_pod(job) for job in ctx.children.jobs.values()):
        # Its pod may be refused, which only an Event tells (the pass reads it): look again.
        moments.append(after(ctx.now, POD_REFUSAL_RECHECK_SECONDS))
    for resource in ctx.spec.resources:
        rs = state.resources[resource.name]
        if rs.phase == SETTING_UP and rs.setup_started_at is not None:
            moments.append(after(rs.setup_started_at, resource.setup.timeout_seconds))
        if rs.phase == CLEANING_UP and rs.cleanup_started_at is not None:
            moments.append(after(rs.cleanup_started_at, resource.cleanup.timeout_seconds))
            moments.append(rs.next_cleanup_attempt_at)
    future = [m for m in moments if m is not None and m > ctx.now]
    if not future:
        return None
    return max(0.0, (min(future) - ctx.real_now).total_seconds())


def task_moments(ctx: PassContext, state: RunState) -> list[datetime | None]:
    """When a task's next attempt may start, its pod's deadline passes, or its pod's time to start
    runs out."""
    moments: list[datetime | None] = []
    expected = expected_pods(state)
    for task in pod_tasks(ctx, state):
        ts = state.tasks[task.name]
        if ts.phase == RUNNING and ts.reason == RETRY_BACKOFF:
            moments.append(ts.next_attempt_at)
        pod = ctx.children.pod(ts.pod_name) if ts.pod_name in expected else None
        if pod is None:
            continue
        if pod.start_time is not None and task.active_deadline_seconds is not None:
            moments.append(after(pod.start_time, task.active_deadline_seconds))
        moments.append(start_due(ctx, task, pod))
    return moments


def waits_for_pod(job: ObservedJob) -> bool:
    """A Job that runs and has never had a pod, and no known reason why."""
    unstarted = not (job.active or job.succeeded or job.failed)
    return unstarted and not job.finished and not job.deleting and not job.pod_create_failure
