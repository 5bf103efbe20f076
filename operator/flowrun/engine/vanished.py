"""Children the run's status vouches for that the observed children lack: a task pod seen pending
or running, the objects of a Ready block, a setup Job seen running. Before a pass takes one for
gone (PodDeleted, ObjectDeleted, SetupJobDeleted), the controller looks it up once by name: an
object whose labels someone edited has left the operator's watch (its label selector) without
being gone, and is still the run's by its owner reference. Such an object gets the operator's
labels back instead of being replaced. Pure: what to look up, and the labels it was created with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flowrun import api
from flowrun.api import POD_PENDING, POD_RUNNING, READY, RUNNING, SETTING_UP, SETUP_JOB_COMPLETE, SETUP_JOB_RUNNING
from flowrun.engine.blocks import setup_manifests
from flowrun.engine.children import ObjectRef
from flowrun.engine.context import PassContext, new_pass_context, substitutions
from flowrun.engine.interface import RunInput
from flowrun.engine.state import RunState, load_state
from flowrun.lenient import as_map
from flowrun.manifests import task_pod_labels
from flowrun.model import SpecError, TaskSpec, parse_spec
from flowrun.observed import Observed


@dataclass(frozen=True)
class Vouched:
    ref: ObjectRef
    labels: dict[str, str]  # the operator's labels it was created with


def operator_labels(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k.startswith(f"{api.GROUP}/") or k == api.LABEL_MANAGED_BY}


def missing_children(run: RunInput, observed: Observed, now: datetime) -> list[Vouched]:
    """The children the status vouches for that are not observed (none for a spec that does not
    parse: such a run has no children to miss)."""
    try:
        spec = parse_spec(run.spec, run.namespace)
    except SpecError:
        return []
    prev = as_map(run.status)
    ctx = new_pass_context(run, spec, prev, observed, now)
    return [*_missing_task_pods(ctx), *_missing_block_objects(ctx)]


def _missing_task_pods(ctx: PassContext) -> list[Vouched]:
    state = load_state(ctx.spec, ctx.prev)
    found: list[Vouched] = []
    for task in _tasks_with_pods(ctx, state):
        ts = state.tasks[task.name]
        if ts.phase != RUNNING or ts.reason not in (POD_PENDING, POD_RUNNING) or not ts.attempts:
            continue  # a pod not observed yet (being created) is not vouched for
        name = task.pod_name(ctx.run.name, ts.attempts)
        if ctx.children.pod(name) is None:
            labels = task_pod_labels(ctx.identity, task, ts.attempts)
            found.append(Vouched(ObjectRef("v1", "Pod", name), operator_labels(labels)))
    return found


def _tasks_with_pods(ctx: PassContext, state: RunState) -> list[TaskSpec]:
    """Every task, and every instance of a forEach task the status records (its item is not
    needed: only its pod's name and labels)."""
    found: list[TaskSpec] = []
    for task in ctx.spec.tasks:
        count = state.tasks[task.name].instances if task.for_each is not None else None
        found += [task.instance_spec(i, None) for i in range(count or 0)] if task.for_each is not None else [task]
    return [t for t in found if t.name in state.tasks]


def _missing_block_objects(ctx: PassContext) -> list[Vouched]:
    state = load_state(ctx.spec, ctx.prev)
    values = substitutions(ctx, state)
    found: list[Vouched] = []
    for resource in ctx.spec.resources:
        rs = state.resources[resource.name]
        job_seen = rs.phase == SETTING_UP and rs.reason in (SETUP_JOB_RUNNING, SETUP_JOB_COMPLETE)
        if rs.phase != READY and not job_seen:
            continue
        for _, manifest in setup_manifests(ctx, resource, state, values):
            ref = ObjectRef(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])
            is_job = (ref.api_version, ref.kind) == ("batch/v1", "Job")
            # Ready: what the block is made of (its setup Job's work is done); setting up: the Job.
            if (is_job if job_seen else not is_job) and ctx.children.find(ref) is None:
                found.append(Vouched(ref, operator_labels(manifest["metadata"]["labels"])))
    return found
