"""Resource blocks up to their cleanup: when setup starts, when it is Ready or has failed, the
block's value, and the objects setup creates. Cleanup is in cleanup.py. The users' contract:
docs/semantics.md, "Resource blocks" and "Refused creates"."""

from __future__ import annotations

from typing import Any

from flowrun import api, manifests, names
from flowrun.api import (
    CLEANED_UP,
    CLEANING_UP,
    CLEANUP_JOB_RUNNING,
    CREATE_REFUSED,
    DELETING_OBJECTS,
    NOT_NEEDED,
    OBJECT_DELETED,
    PENDING,
    PODS_REFUSED,
    READY,
    SETTING_UP,
    SETUP_FAILED,
    SETUP_JOB_COMPLETE,
    SETUP_JOB_DELETED,
    SETUP_JOB_RUNNING,
    STOPPING_SETUP,
)
from flowrun.engine.children import ObjectRef, result, termination, why_waiting
from flowrun.engine.clock import after
from flowrun.engine.context import PassContext, refusal, substitutions
from flowrun.engine.dag import after_succeeded, blocked, consumers_done, wanted
from flowrun.engine.interface import Action, CreateObject
from flowrun.engine.state import ResourceState, RunState
from flowrun.model import MAX_COUNT, DeploymentSpec, ResourceSpec, main_container_name
from flowrun.observed import ObservedJob
from flowrun.references import Context, substitute

# (reason, message) of a failed setup, or None.
Failure = tuple[str, str] | None


def setup_objects(ctx: PassContext, resource: ResourceSpec) -> list[ObjectRef]:
    """Every object setup creates for the block (not the pods those create)."""
    run = ctx.run.name
    refs: list[ObjectRef] = []
    if resource.setup.job is not None:
        refs.append(ObjectRef("batch/v1", "Job", names.setup_job_name(run, resource.name)))
    for deployment in resource.setup.deployments:
        name = names.deployment_name(run, resource.name, deployment.name)
        refs.append(ObjectRef("apps/v1", "Deployment", name))
        if deployment.ports:
            refs.append(ObjectRef("v1", "Service", name))
    for manifest in resource.setup.manifests:
        refs.append(ObjectRef(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"]))
    return refs


def recover_resource(ctx: PassContext, resource: ResourceSpec, rs: ResourceState, state: RunState) -> None:
    """Align a block with its observed objects: what exists wins over what the status claims (a
    lost, garbage or foreign status). A block whose objects exist was started; one claimed
    CleanedUp while its objects remain, or without its cleanup Job having succeeded, is not."""
    if rs.phase == PENDING:
        recover_started(ctx, resource, rs, state)
    elif rs.phase == CLEANED_UP and not cleaned_up(ctx, resource):
        if setup_objects_left(ctx, resource) and not consumers_done(ctx.spec, resource, state):
            # In use (its tasks run in it): it is as set up as its objects show.
            rs.phase, rs.reason, rs.cleaned_up_at = SETTING_UP, SETTING_UP, None
        else:
            restart_cleanup(ctx, resource, rs)
    elif rs.phase == CLEANING_UP and rs.reason == DELETING_OBJECTS and not cleanup_job_done(ctx, resource, rs):
        restart_cleanup(ctx, resource, rs)  # the cleanup job never succeeded: it runs first


def recover_started(ctx: PassContext, resource: ResourceSpec, rs: ResourceState, state: RunState) -> None:
    """A block status does not know about but whose objects exist was started before."""
    if ctx.children.has_block_objects(resource.name, api.ROLE_CLEANUP):
        rs.phase, rs.reason = CLEANING_UP, CLEANUP_JOB_RUNNING
        rs.cleanup_attempts = max(1, ctx.children.max_cleanup_attempt(resource.name))
        rs.setup_started_at = rs.cleanup_started_at = ctx.now
    elif ctx.children.has_block_objects(resource.name, api.ROLE_SETUP):
        rs.phase, rs.reason, rs.setup_started_at = SETTING_UP, SETTING_UP, ctx.now
    else:
        return
    rs.objects = [str(ref) for ref in setup_objects(ctx, resource)]
    state.started_at = state.started_at or ctx.now


def setup_objects_left(ctx: PassContext, resource: ResourceSpec) -> bool:
    """Something setup made exists and is not being deleted."""
    found = [ctx.children.find(ref) for ref in setup_objects(ctx, resource)]
    return any(obj is not None and not obj.deleting for obj in found)


def cleaned_up(ctx: PassContext, resource: ResourceSpec) -> bool:
    """Nothing setup made is left (its pods included), and its cleanup Job, if it has one, succeeded."""
    left = any(ctx.children.find(ref) is not None for ref in setup_objects(ctx, resource))
    return not left and not ctx.children.block_pods(resource.name) and cleanup_job_done(ctx, resource, None)


def cleanup_job_done(ctx: PassContext, resource: ResourceSpec, rs: ResourceState | None) -> bool:
    """The block has no cleanup job, or one of its attempts succeeded, or (`rs` given) every
    attempt failed (its cleanup error says so)."""
    if resource.cleanup.job_template is None or (rs is not None and rs.cleanup_error):
        return True
    attempts = range(1, ctx.children.max_cleanup_attempt(resource.name) + 1)
    jobs = [ctx.children.jobs.get(names.cleanup_job_name(ctx.run.name, resource.name, n)) for n in attempts]
    return any(job is not None and job.complete for job in jobs)


def restart_cleanup(ctx: PassContext, resource: ResourceSpec, rs: ResourceState) -> None:
    """Cleaning up again from its cleanup job (the latest attempt observed, or the first)."""
    rs.phase, rs.cleaned_up_at = CLEANING_UP, None
    rs.cleanup_started_at = rs.cleanup_started_at or ctx.now
    if resource.cleanup.job_template is None:
        rs.reason = DELETING_OBJECTS
        return
    rs.reason = CLEANUP_JOB_RUNNING
    rs.cleanup_attempts = max(1, rs.cleanup_attempts, ctx.children.max_cleanup_attempt(resource.name))


def schedule_resource(
    ctx: PassContext, resource: ResourceSpec, state: RunState, stop: str | None, gated: bool = False
) -> None:
    """Start setup when the block is needed (and the run holds its own lock: not `gated`); start
    cleanup once its consumers are done."""
    rs = state.resources[resource.name]
    spec = ctx.spec
    if rs.phase == PENDING:
        if consumers_done(spec, resource, state):
            rs.reason, rs.message = NOT_NEEDED, "no task needed it: never set up"
        elif (
            stop is None
            and not gated
            and blocked(spec, resource, state) is None
            and after_succeeded(resource, state)
            and all(state.resources[d].phase == READY for d in resource.uses)
            and wanted(spec, resource, state)
        ):
            rs.phase, rs.reason, rs.message, rs.setup_started_at = SETTING_UP, SETTING_UP, "", ctx.now
            rs.objects = [str(ref) for ref in setup_objects(ctx, resource)]
            state.started_at = state.started_at or ctx.now
    elif rs.phase in (SETTING_UP, READY, SETUP_FAILED) and consumers_done(spec, resource, state):
        if rs.value is None:
            rs.value = fallback_value(ctx, resource, state)
        rs.phase, rs.reason, rs.cleanup_started_at = CLEANING_UP, STOPPING_SETUP, ctx.now
        rs.message = with_setup_error(rs, "cleaning up")


def progress_setup(ctx: PassContext, resource: ResourceSpec, rs: ResourceState, state: RunState) -> None:
    """SettingUp to SetupFailed, or to Ready once every part is ready, every Service can be
    reached, and the value is known. The message says why pods wait, or which Services do."""
    failure = setup_failure(ctx, resource, rs, state)
    if failure is not None:
        fail_setup(rs, failure)
        return
    rs.message = why_pods_wait(ctx, resource)
    job = setup_job(ctx, resource)
    if job is not None and not job.deleting:
        # Recorded, so that a Job that vanishes from now on is known to have existed.
        rs.reason = SETUP_JOB_COMPLETE if job.complete else SETUP_JOB_RUNNING
    if not parts_ready(ctx, resource):
        return
    unreachable = services_without_ready_endpoints(ctx, resource)
    if unreachable:
        rs.message = waiting_for_endpoints(unreachable)
        return
    value = static_value(ctx, resource, state)
    if value is None:
        value = setup_job_message(ctx, resource, "Succeeded")
        if value is None:
            return  # the Job is Complete but its pod is not observed yet
    rs.phase, rs.reason, rs.message, rs.value, rs.ready_at = READY, READY, "", value, ctx.now


def parts_ready(ctx: PassContext, resource: ResourceSpec) -> bool:
    """Every object setup creates exists (not being deleted), the setup Job is Complete, and every
    Deployment is rolled out."""
    for ref in setup_objects(ctx, resource):
        obj = ctx.children.find(ref)
        if obj is None or obj.deleting:
            return False
    job = setup_job(ctx, resource)
    if resource.setup.job is not None and (job is None or not job.complete):
        return False
    for deployment in resource.setup.deployments:
        observed = ctx.children.deployment(deployment_name(ctx, resource, deployment))
        rolled_out = min(observed.available_replicas, observed.updated_replicas) if observed else -1
        if observed is None or rolled_out < observed.replicas:
            return False
    return True


def services_without_ready_endpoints(ctx: PassContext, resource: ResourceSpec) -> list[str]:
    """The Services of the block's Deployments (those of at least one replica) that have no ready
    endpoint yet. A Deployment is Available when its pods are Ready, but the Service in front of
    it routes to them only once the EndpointSlice controller has listed them as ready: until
    then a connection to it is refused or hangs."""
    waiting = []
    for deployment in resource.setup.deployments:
        name = deployment_name(ctx, resource, deployment)
        observed = ctx.children.deployment(name)
        serves = bool(deployment.ports) and observed is not None and observed.replicas > 0
        if serves and ctx.children.ready_endpoints(name) == 0:
            waiting.append(name)
    return waiting


def waiting_for_endpoints(services: list[str]) -> str:
    return f"waiting for ready endpoints of Service{'s' if len(services) > 1 else ''} {', '.join(services)}"


def waiting_for_services(ctx: PassContext, resource: ResourceSpec) -> str:
    """What setup waits for when every other part is ready but a Service has no ready endpoint;
    else empty."""
    unreachable = services_without_ready_endpoints(ctx, resource) if parts_ready(ctx, resource) else []
    return waiting_for_endpoints(unreachable) if unreachable else ""


def fail_setup(rs: ResourceState, failure: tuple[str, str]) -> None:
    rs.phase, (rs.reason, rs.message) = SETUP_FAILED, failure
    rs.setup_error = f"{rs.reason}: {rs.message}"


def check_ready(ctx: PassContext, resource: ResourceSpec, rs: ResourceState) -> None:
    """A Ready block whose Deployment, Service or manifest is gone (or being deleted) is broken:
    SetupFailed (ObjectDeleted), so no task starts into it, and cleanup follows once its running
    tasks end. It is not recreated: a PVC or a Dask scheduler made anew would silently have lost
    what the tasks before put in it. The setup Job is not looked at: once Ready its work is done
    and its result recorded, whether the Job object is kept or not."""
    job = ObjectRef("batch/v1", "Job", names.setup_job_name(ctx.run.name, resource.name))
    gone = []
    for ref in setup_objects(ctx, resource):
        obj = ctx.children.find(ref)
        if ref != job and (obj is None or obj.deleting):
            gone.append(f"{ref} was deleted" if obj is None else f"{ref} is being deleted")
    if gone:
        why = ", ".join(gone) + " while the block was Ready (by someone else); it is not created again"
        fail_setup(rs, (OBJECT_DELETED, why))


def setup_failure(
    ctx: PassContext, resource: ResourceSpec, rs: ResourceState, state: RunState
) -> tuple[str, str] | None:
    """(reason, message) if setup failed, checked in a fixed order; else None."""
    for check in (_invalid_replicas, _refused, _setup_job_failure, _deployment_failure, _timed_out):
        failure = check(ctx, resource, rs, state)
        if failure is not None:
            return failure
    return None


def _invalid_replicas(ctx: PassContext, resource: ResourceSpec, _: ResourceState, state: RunState) -> Failure:
    values = substitutions(ctx, state)
    for deployment in resource.setup.deployments:
        if replicas(deployment, values) is None:
            return (
                "InvalidValue",
                f"deployment {deployment.name}: replicas {deployment.replicas!r}"
                f" is not an integer from 0 to {MAX_COUNT}",
            )
    return None


def _refused(ctx: PassContext, resource: ResourceSpec, *_: object) -> Failure:
    refusals = [r for r in (refusal(ctx, ref) for ref in setup_objects(ctx, resource)) if r is not None]
    return (CREATE_REFUSED, "; ".join(refusals)) if refusals else None


def _setup_job_failure(ctx: PassContext, resource: ResourceSpec, rs: ResourceState, _: RunState) -> Failure:
    """The setup Job vanished after it was seen, failed, or its pod is refused."""
    job = setup_job(ctx, resource)
    seen = rs.reason in (SETUP_JOB_RUNNING, SETUP_JOB_COMPLETE)
    if resource.setup.job is not None and seen and (job is None or job.deleting):
        name = names.setup_job_name(ctx.run.name, resource.name)
        what = "was deleted" if job is None else "is being deleted"
        return (
            SETUP_JOB_DELETED,
            f"setup job {name} {what} before the block was Ready (by someone else); it is not created"
            " again, as it may have done part of its work",
        )
    failed = job.failed_condition if job is not None else None
    if failed is not None:
        details = [d for d in (failed.reason, failed.message, setup_job_message(ctx, resource, "Failed")) if d]
        return "SetupJobFailed", "setup job failed: " + "; ".join(details)
    if job is not None and job.pod_create_failure and not job.finished:
        return PODS_REFUSED, f"setup job {job.name}: its pod cannot be created: {job.pod_create_failure}"
    return None


def _deployment_failure(ctx: PassContext, resource: ResourceSpec, *_: object) -> Failure:
    """A Deployment whose pods are refused, or whose rollout failed."""
    for deployment in resource.setup.deployments:
        observed = ctx.children.deployment(deployment_name(ctx, resource, deployment))
        for cond in observed.conditions if observed is not None else ():
            if cond.type == "ReplicaFailure" and cond.status == "True":
                # The Deployment shows its ReplicaSet's refusal (a quota, Pod Security, a missing
                # ServiceAccount): it would only end in SetupTimeout.
                why = f"{cond.reason}: {cond.message}" if cond.reason else cond.message
                return PODS_REFUSED, f"deployment {deployment.name}: its pods cannot be created: {why}"
            if cond.type == "Progressing" and cond.status == "False":
                return "DeploymentFailed", f"deployment {deployment.name}: {cond.reason}: {cond.message}"
    return None


def _timed_out(ctx: PassContext, resource: ResourceSpec, rs: ResourceState, _: RunState) -> Failure:
    started = rs.setup_started_at or ctx.now
    if ctx.now >= after(started, resource.setup.timeout_seconds):
        why = why_pods_wait(ctx, resource, routine=True) or waiting_for_services(ctx, resource)
        return "SetupTimeout", f"not Ready within timeoutSeconds={resource.setup.timeout_seconds}" + (
            f": {why}" if why else ""
        )
    return None


def why_pods_wait(ctx: PassContext, resource: ResourceSpec, *, routine: bool = False) -> str:
    """Why pods of the block (of its Deployments, its setup Job) have not started, e.g.
    `deployment db: pod demo-r-db-5d9f-x2v: container db: ImagePullBackOff: ...` (what
    children.why_waiting says of each); empty when none waits."""
    found = []
    for pod in ctx.children.block_pods(resource.name):
        why = "" if pod.finished or pod.deleting else why_waiting(pod, routine=routine)
        if why:
            deployment = pod.labels.get(api.LABEL_DEPLOYMENT)
            found.append((f"deployment {deployment}: " if deployment else "") + f"pod {pod.name}: {why}")
    return "; ".join(found)


def deployment_name(ctx: PassContext, resource: ResourceSpec, deployment: DeploymentSpec) -> str:
    return names.deployment_name(ctx.run.name, resource.name, deployment.name)


def setup_job(ctx: PassContext, resource: ResourceSpec) -> ObservedJob | None:
    return ctx.children.jobs.get(names.setup_job_name(ctx.run.name, resource.name))


def setup_job_message(ctx: PassContext, resource: ResourceSpec, phase: str | None) -> str | None:
    """The termination message of the setup job's main container (of a pod in `phase`)."""
    job = resource.setup.job
    if job is None:
        return None
    return job_message(ctx, names.setup_job_name(ctx.run.name, resource.name), job.template, phase)


def job_message(ctx: PassContext, job: str, template: dict[str, Any], phase: str | None) -> str | None:
    """The termination message of the main container of a pod of Job `job` (one in `phase`)."""
    container = main_container_name(template)
    for pod in ctx.children.job_pods(job):
        term = termination(pod, container)
        if term is not None and (phase is None or pod.phase == phase):
            return result(term)[0]
    return None


def setup_job_running(ctx: PassContext, resource: ResourceSpec) -> bool:
    job = setup_job(ctx, resource)
    if job is not None and not job.deleting and not job.complete and job.failed_condition is None:
        return True
    return any(not p.finished for p in ctx.children.job_pods(names.setup_job_name(ctx.run.name, resource.name)))


def static_value(ctx: PassContext, resource: ResourceSpec, state: RunState) -> str | None:
    """The block's value when it does not depend on the setup job's result, else None."""
    if resource.value is not None:
        return substitute(resource.value, substitutions(ctx, state))
    if resource.setup.job is not None:
        return None
    with_service = next((d for d in resource.setup.deployments if d.ports), None)
    if with_service is not None:
        return names.service_dns_name(ctx.run.name, resource.name, with_service.name, ctx.run.namespace)
    return resource.name


def fallback_value(ctx: PassContext, resource: ResourceSpec, state: RunState) -> str:
    """The value handed to the cleanup of a block that never became Ready: what is known,
    else whatever the setup job wrote (e.g. the id of a half-created VM), else empty."""
    value = static_value(ctx, resource, state)
    if value is None:
        value = setup_job_message(ctx, resource, None)
    return value or ""


def with_setup_error(rs: ResourceState, text: str) -> str:
    return f"setup failed ({rs.setup_error}); {text}" if rs.setup_error else text


def replicas(deployment: DeploymentSpec, values: Context) -> int | None:
    if isinstance(deployment.replicas, int):
        return deployment.replicas
    value = substitute(deployment.replicas, values).strip()
    if not (value.isascii() and value.isdigit()) or int(value) > MAX_COUNT:
        return None
    return int(value)


def setup_manifests(
    ctx: PassContext, resource: ResourceSpec, state: RunState, values: Context, *, dry_run: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """(spec field, manifest) of every object setup creates."""
    identity, spec = ctx.identity, ctx.spec
    value = None if dry_run else static_value(ctx, resource, state)
    path = f"spec.resources[{spec.resources.index(resource)}].setup"
    built: list[tuple[str, dict[str, Any]]] = []
    if resource.setup.job is not None:
        job = manifests.build_setup_job(identity, spec, resource, values, value)
        built.append((f"{path}.job.template", job))
    for j, deployment in enumerate(resource.setup.deployments):
        count = replicas(deployment, values)
        if count is None and not dry_run:
            continue  # reported as InvalidValue by setup_failure
        # A count that is not known before the run (a placeholder) is dry-run as 0.
        deployment_manifest = manifests.build_deployment(
            identity, spec, resource, deployment, 0 if count is None else count, values, value
        )
        built.append((f"{path}.deployments[{j}]", deployment_manifest))
        if deployment.ports:
            built.append((f"{path}.deployments[{j}]", manifests.build_service(identity, resource, deployment)))
    for j, manifest in enumerate(resource.setup.manifests):
        built.append((f"{path}.manifests[{j}]", manifests.build_manifest(identity, resource, manifest)))
    return built


def setup_actions(ctx: PassContext, resource: ResourceSpec, state: RunState, values: Context) -> list[Action]:
    """Create what setup needs and does not exist yet, while the block is SettingUp."""
    if state.resources[resource.name].phase != SETTING_UP:
        return []
    creates: list[Action] = []
    for _, manifest in setup_manifests(ctx, resource, state, values):
        ref = ObjectRef(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])
        if ctx.children.find(ref) is None:
            creates.append(CreateObject(manifest))
    return creates
