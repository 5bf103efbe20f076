"""The frozen context of one pass: everything a pass decides from that does not change during
it (the run, its parsed spec, its previous status, the observed children, the time), and the
values `$(...)` references resolve to."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flowrun import names
from flowrun.api import SUCCEEDED
from flowrun.engine.children import Children, ObjectRef, result, termination
from flowrun.engine.dag import resource_order
from flowrun.engine.interface import RunInput
from flowrun.engine.state import RunState, TaskState
from flowrun.locks import LockView
from flowrun.model import FlowSpec, ResourceSpec, RunIdentity, TaskSpec, instance_name, main_container_name
from flowrun.observed import Observed, ObservedObject
from flowrun.references import Context


@dataclass(frozen=True)
class PassContext:
    run: RunInput
    spec: FlowSpec
    prev: Mapping[str, Any]  # the previous status (may be empty or garbage: read leniently)
    children: Children
    # Decisions use whole seconds, the precision of status timestamps, so that a pass fed its
    # own status decides exactly as the pass that wrote it. `real_now` only measures requeues.
    now: datetime
    real_now: datetime
    order: tuple[TaskSpec, ...]  # tasks in dependency order, spec order among independent ones
    resource_order: tuple[ResourceSpec, ...]  # blocks after the blocks they use
    # Each lock the spec names (by id) as the namespace shows it (observed.locks): engine/locks.py.
    locks: Mapping[str, LockView]
    # forEach task -> its items, or why its list is not one: resolved once in a pass, when the
    # task is ready (engine/fanout.py); its sources do not change after that.
    items: dict[str, Any] = field(default_factory=dict)

    @property
    def identity(self) -> RunIdentity:
        return self.run.identity


def new_pass_context(
    run: RunInput, spec: FlowSpec, prev: Mapping[str, Any], observed: Observed, now: datetime
) -> PassContext:
    return PassContext(
        run=run,
        spec=spec,
        prev=prev,
        children=Children(observed, run.uid),
        now=now.replace(microsecond=0),
        real_now=now,
        order=tuple(spec.task_order()),
        resource_order=tuple(resource_order(spec)),
        locks=observed.locks,
    )


def substitutions(ctx: PassContext, state: RunState, placeholder: str | None = None) -> Context:
    """What references resolve to now; with `placeholder`, every task result and resource value
    is that placeholder (for the dry run, before any is known)."""
    run = ctx.run
    services = {
        (r.name, d.name): names.service_dns_name(run.name, r.name, d.name, run.namespace)
        for r in ctx.spec.resources
        for d in r.setup.deployments
        if d.ports
    }
    results = {
        n: placeholder if placeholder is not None else (result_of(ctx, n, ts) or "") for n, ts in state.tasks.items()
    }
    return Context(
        params=ctx.spec.param_values,
        flowrun={"name": run.name, "namespace": run.namespace, "uid": run.uid},
        task_results=results,
        task_results_lists={
            t.name: placeholder if placeholder is not None else results_list(t.name, state, results)
            for t in ctx.spec.for_each_tasks()
        },
        task_phases={n: ts.phase for n, ts in state.tasks.items()},
        resource_values={
            n: placeholder if placeholder is not None else (rs.value or "") for n, rs in state.resources.items()
        },
        services=services,
    )


def results_list(task: str, state: RunState, results: Mapping[str, str]) -> str:
    """$(tasks.TASK.results): the JSON list of the results of its instances, in item order (an
    instance that did not succeed gives "")."""
    count = state.tasks[task].instances or 0
    return json.dumps(
        [results.get(instance_name(task, i), "") for i in range(count)], separators=(",", ":"), ensure_ascii=False
    )


def result_of(ctx: PassContext, task: str, ts: TaskState) -> str | None:
    """A succeeded task's result: as the status holds it, else from the ConfigMap it moved to when
    the status was full (engine/budget.py), else from its pod's termination message; None for a
    task that did not succeed, or whose result is nowhere any more."""
    if ts.phase != SUCCEEDED:
        return None
    if ts.result is not None:
        return ts.result
    if ts.result_from is not None:
        kind, _, name = ts.result_from.partition("/")
        stored = ctx.children.find(ObjectRef("v1", kind, name))
        if isinstance(stored, ObservedObject) and "result" in stored.data:
            return stored.data["result"]
    pod = ctx.children.pod(ts.pod_name)
    if pod is not None and pod.phase == "Succeeded":
        # An instance's pod is made from the template of its forEach task.
        template = ctx.spec.task(ts.instance_of or task).template
        return result(termination(pod, main_container_name(template)))[0]
    return None if ts.result_from is not None else ""


def refusal(ctx: PassContext, ref: ObjectRef) -> str | None:
    """Why the API server refused to create `ref` in the previous pass, if it still does not
    exist: the message names the object and quotes the server."""
    message = ctx.run.refused.get(str(ref))
    if message is None or ctx.children.find(ref) is not None:
        return None
    return f"cannot create {ref.kind} {ref.name}: {message}"
