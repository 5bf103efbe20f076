"""The cleanup of a resource block, step by step. CLEANUP_ORDER below is the order, in one place:
stop the setup job, run the cleanup job with retries, then delete what setup created and wait
until it is gone. A block in CleaningUp keeps its current step in `reason`, and every step is
idempotent, so a pass after a restart picks up where the last one stopped. The users' contract:
docs/semantics.md, "Resource blocks" (cleanup) and "Deadlines"."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from flowrun import manifests, names
from flowrun.api import (
    CLEANED_UP,
    CLEANING_UP,
    CLEANUP_BACKOFF_SECONDS,
    CLEANUP_FAILED,
    CLEANUP_JOB_BACKOFF,
    CLEANUP_JOB_RUNNING,
    CREATE_REFUSED,
    DELETING_OBJECTS,
    NAMESPACE_DELETED,
    PODS_REFUSED,
    SETUP_FAILED,
    STOPPING_SETUP,
)
from flowrun.engine.blocks import job_message, setup_job, setup_job_running, setup_objects, with_setup_error
from flowrun.engine.children import ObjectRef
from flowrun.engine.clock import after
from flowrun.engine.context import PassContext, refusal
from flowrun.engine.interface import Action, CreateObject, DeleteObject
from flowrun.engine.state import ResourceState
from flowrun.lenient import as_map
from flowrun.model import ResourceSpec
from flowrun.references import Context


class CleanupStep(NamedTuple):
    what: str
    reasons: tuple[str, ...]  # the block's `reason` while this is its current step
    # Decides from the observed children; may move the block on to a later step (or end it).
    advance: Callable[[PassContext, ResourceSpec, ResourceState], None]
    # What the pass does while the block is at this step.
    actions: Callable[[PassContext, ResourceSpec, ResourceState, Context], list[Action]]


def _stop_setup(ctx: PassContext, resource: ResourceSpec, rs: ResourceState) -> None:
    if setup_job_running(ctx, resource):
        rs.message = with_setup_error(rs, "stopping the setup job")
    elif resource.cleanup.job_template is not None:
        rs.reason, rs.cleanup_attempts = CLEANUP_JOB_RUNNING, max(1, rs.cleanup_attempts)
    else:
        rs.reason = DELETING_OBJECTS


def _delete_running_setup_job(ctx: PassContext, resource: ResourceSpec, rs: ResourceState, _: Context) -> list[Action]:
    job = setup_job(ctx, resource)
    if job is not None and not job.deleting and setup_job_running(ctx, resource):
        return [DeleteObject("batch/v1", "Job", job.name)]
    return []


def _run_cleanup_job(ctx: PassContext, resource: ResourceSpec, rs: ResourceState) -> None:
    """One Job per attempt; after a failed attempt the next follows CLEANUP_BACKOFF_SECONDS later,
    up to `retries` more. When none is left the objects are still deleted, then CleanupFailed."""
    if rs.reason == CLEANUP_JOB_BACKOFF:
        if rs.next_cleanup_attempt_at is not None and ctx.now < rs.next_cleanup_attempt_at:
            return
        rs.reason, rs.cleanup_attempts, rs.next_cleanup_attempt_at = CLEANUP_JOB_RUNNING, rs.cleanup_attempts + 1, None
    rs.message = with_setup_error(rs, f"cleanup job attempt {rs.cleanup_attempts} running")
    name = names.cleanup_job_name(ctx.run.name, resource.name, rs.cleanup_attempts)
    job = ctx.children.jobs.get(name)
    refused = refusal(ctx, ObjectRef("batch/v1", "Job", name)) if job is None else None
    if refused is not None and ctx.run.namespace_terminating:
        # Nothing can be created in the namespace any more: the job can never run. What setup made
        # in the namespace goes with it; the Warning event of this transition names what was skipped.
        rs.phase, rs.reason, rs.next_cleanup_attempt_at = CLEANUP_FAILED, NAMESPACE_DELETED, None
        rs.cleanup_error = rs.message = (
            f"cleanup job not run: namespace {ctx.run.namespace} is being deleted ({refused}); what the job"
            " would have removed outside the cluster may remain, the objects in the namespace go with it"
        )
        return
    cause = _attempt_failure(ctx, resource, rs.cleanup_attempts)
    if job is not None and job.complete:
        rs.reason = DELETING_OBJECTS
    elif cause is not None or refused is not None:
        cause = cause or f"{CREATE_REFUSED}: {refused}"
        what = f"cleanup job attempt {rs.cleanup_attempts} failed ({cause})"
        if rs.cleanup_attempts < 1 + resource.cleanup.retries:
            rs.reason = CLEANUP_JOB_BACKOFF
            rs.message = with_setup_error(rs, f"{what}; retrying in {CLEANUP_BACKOFF_SECONDS}s")
            rs.next_cleanup_attempt_at = after(ctx.now, CLEANUP_BACKOFF_SECONDS)
        else:
            rs.reason, rs.cleanup_error = DELETING_OBJECTS, f"{what}, no retries left"


def _attempt_failure(ctx: PassContext, resource: ResourceSpec, attempt: int) -> str | None:
    """Why cleanup job attempt `attempt` failed (its Failed condition and its pod's termination
    message, or why its pod cannot be created), from the observed Job; None if it did not fail."""
    name = names.cleanup_job_name(ctx.run.name, resource.name, attempt)
    job = ctx.children.jobs.get(name)
    if job is None:
        return None
    failed = job.failed_condition
    if failed is not None:
        cause = f"{failed.reason or 'Failed'}: {failed.message}"
        template = resource.cleanup.job_template
        message = job_message(ctx, name, template, "Failed") if template is not None else None
        return f"{cause}; termination message: {message}" if message else cause
    if job.pod_create_failure and not job.complete:
        return f"{PODS_REFUSED}: its pod cannot be created: {job.pod_create_failure}"
    return None


def _refused_cleanup_jobs(ctx: PassContext, resource: ResourceSpec, rs: ResourceState) -> list[Action]:
    """Delete the Jobs of failed attempts whose pod was refused: each still waits for its pod, and
    must never start late (when the quota frees, say) beside a later attempt. Only once the status
    says that attempt failed: until then the Job is what says so, and an operator that lost the
    status write (and then the Job) would take the attempt for running and create its Job again."""
    return [
        DeleteObject("batch/v1", "Job", name)
        for attempt, name in _refused_cleanup_job_names(ctx, resource, rs)
        if not ctx.children.jobs[name].deleting and _recorded_as_failed(ctx, resource, attempt)
    ]


def _refused_cleanup_job_names(ctx: PassContext, resource: ResourceSpec, rs: ResourceState) -> list[tuple[int, str]]:
    """The attempts, and their Jobs, that wait for a pod that was refused."""
    found = []
    for attempt in range(1, rs.cleanup_attempts + 1):
        name = names.cleanup_job_name(ctx.run.name, resource.name, attempt)
        job = ctx.children.jobs.get(name)
        if job is not None and job.pod_create_failure and not job.finished:
            found.append((attempt, name))
    return found


def _recorded_as_failed(ctx: PassContext, resource: ResourceSpec, attempt: int) -> bool:
    """Whether the previous status (the last one written) has the block past cleanup attempt `attempt`."""
    recorded = as_map(as_map(ctx.prev.get("resources")).get(resource.name))
    attempts = recorded.get("cleanupAttempts")
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempt > attempts:
        return False
    running = recorded.get("phase") == CLEANING_UP and recorded.get("reason") == CLEANUP_JOB_RUNNING
    return attempt < attempts or not running


def _create_cleanup_job(ctx: PassContext, resource: ResourceSpec, rs: ResourceState, values: Context) -> list[Action]:
    if rs.reason != CLEANUP_JOB_RUNNING:
        return _refused_cleanup_jobs(ctx, resource, rs)  # between attempts
    name = names.cleanup_job_name(ctx.run.name, resource.name, rs.cleanup_attempts)
    if name in ctx.children.jobs:
        return []
    job = manifests.build_cleanup_job(ctx.identity, ctx.spec, resource, rs.cleanup_attempts, values, rs.value or "")
    return [*_refused_cleanup_jobs(ctx, resource, rs), CreateObject(job)]


def _wait_until_gone(ctx: PassContext, resource: ResourceSpec, rs: ResourceState) -> None:
    remaining = [str(ref) for ref in setup_objects(ctx, resource) if ctx.children.find(ref) is not None]
    remaining += [f"Pod/{p.name}" for p in ctx.children.block_pods(resource.name)]
    remaining += [f"Job/{name}" for _, name in _refused_cleanup_job_names(ctx, resource, rs)]
    if remaining:
        rs.message = with_setup_error(rs, "waiting for deletion of " + ", ".join(remaining))
    elif rs.cleanup_error:
        rs.phase, rs.reason, rs.message = CLEANUP_FAILED, "CleanupJobFailed", rs.cleanup_error
    else:
        # The reason keeps a failed setup visible after its cleanup.
        rs.phase, rs.cleaned_up_at = CLEANED_UP, ctx.now
        rs.reason = SETUP_FAILED if rs.setup_error else CLEANED_UP
        rs.message = with_setup_error(rs, "cleaned up")


def _delete_setup_objects(ctx: PassContext, resource: ResourceSpec, rs: ResourceState, _: Context) -> list[Action]:
    """What setup created, and cleanup Jobs still waiting for a refused pod."""
    deletes = _refused_cleanup_jobs(ctx, resource, rs)
    for ref in setup_objects(ctx, resource):
        obj = ctx.children.find(ref)
        if obj is not None and not obj.deleting:
            deletes.append(DeleteObject(ref.api_version, ref.kind, ref.name))
    return deletes


CLEANUP_ORDER = (
    CleanupStep("stop the setup job if it still runs", (STOPPING_SETUP,), _stop_setup, _delete_running_setup_job),
    CleanupStep(
        "run the cleanup job, with retries",
        (CLEANUP_JOB_BACKOFF, CLEANUP_JOB_RUNNING),
        _run_cleanup_job,
        _create_cleanup_job,
    ),
    CleanupStep(
        "delete what setup created, and wait until it and the block's pods are gone",
        (DELETING_OBJECTS,),
        _wait_until_gone,
        _delete_setup_objects,
    ),
)


def progress_cleanup(ctx: PassContext, resource: ResourceSpec, rs: ResourceState) -> None:
    """Take every step of CLEANUP_ORDER the observed children allow, then apply the timeout."""
    for step in CLEANUP_ORDER:
        if rs.reason in step.reasons:
            step.advance(ctx, resource, rs)
    started = rs.cleanup_started_at or ctx.now
    timeout = resource.cleanup.timeout_seconds
    if rs.phase == CLEANING_UP and ctx.now >= after(started, timeout):
        # Whatever is left is deleted best-effort (cleanup_actions); the block stays CleanupFailed.
        error = f"cleanup did not finish within timeoutSeconds={timeout}"
        # Say why it did not finish: a failed cleanup job attempt (e.g. timed out in backoff).
        cause = rs.cleanup_error or _last_cleanup_job_failure(ctx, resource, rs)
        if cause:
            error = f"{cause}; {error}"
        rs.phase, rs.reason, rs.message, rs.cleanup_error = CLEANUP_FAILED, "CleanupTimeout", error, error
        rs.next_cleanup_attempt_at = None


def _last_cleanup_job_failure(ctx: PassContext, resource: ResourceSpec, rs: ResourceState) -> str | None:
    """Why the latest failed cleanup job attempt failed, from the observed Jobs; else None."""
    for attempt in range(rs.cleanup_attempts, 0, -1):
        cause = _attempt_failure(ctx, resource, attempt)
        if cause is not None:
            return f"cleanup job attempt {attempt} failed ({cause})"
    return None


def cleanup_actions(ctx: PassContext, resource: ResourceSpec, rs: ResourceState, values: Context) -> list[Action]:
    """The actions of the block's current cleanup step. A CleanupFailed block is final, but what
    setup created and is left keeps being deleted, so nothing in the cluster leaks."""
    if rs.phase == CLEANUP_FAILED:
        return _delete_setup_objects(ctx, resource, rs, values)
    if rs.phase != CLEANING_UP:
        return []
    for step in CLEANUP_ORDER:
        if rs.reason in step.reasons:
            return step.actions(ctx, resource, rs, values)
    return []
