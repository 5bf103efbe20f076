"""Setup manifests whose names clash with the names of the run's generated children: a spec error
naming the manifest (two manifests of one kind and name are refused by the model already).
Without it, a manifest Pod named like a task's attempt would be taken for that attempt (its
result used, the task's template never run), a manifest Job named like a cleanup Job would count
as the cleanup, and a manifest named like another block's setup Job would be deleted by the wrong
cleanup. The users' contract: docs/semantics.md, "Bad input"."""

from __future__ import annotations

import re

from flowrun import names
from flowrun.api import CONFIG_MAP, MAX_ITEMS
from flowrun.model import FlowSpec, SpecError

Kind = tuple[str, str]  # (apiVersion, kind)
POD, JOB, DEPLOYMENT, SERVICE = ("v1", "Pod"), ("batch/v1", "Job"), ("apps/v1", "Deployment"), ("v1", "Service")


# The end of the name of an instance's pod (-INDEX-ATTEMPT) and of its result's ConfigMap.
INSTANCE_POD = re.compile(r"-([0-9]{1,4})-([0-9]{1,3})$")
INSTANCE_RESULT = re.compile(r"-([0-9]{1,4})-result$")


def generated_names(run: str, spec: FlowSpec) -> dict[Kind, dict[str, str]]:
    """Every name the run's children may be given, by kind: name -> what it is the name of. Finite:
    attempts are bounded by the retries the spec allows. (Not the instances of forEach tasks, up
    to 1000 each: instance_clash recognises those.)"""
    found: dict[Kind, dict[str, str]] = {POD: {}, JOB: {}, DEPLOYMENT: {}, SERVICE: {}, CONFIG_MAP: {}}
    for task in spec.tasks:
        if task.for_each is not None:
            continue
        for attempt in range(1, task.retries.limit + 2):
            found[POD][names.task_pod_name(run, task.name, attempt)] = f"attempt {attempt} of task {task.name}"
        found[CONFIG_MAP][names.result_config_map(run, task.name)] = f"the ConfigMap of task {task.name}'s result"
    for resource in spec.resources:
        if resource.setup.job is not None:
            found[JOB][names.setup_job_name(run, resource.name)] = f"the setup job of resource {resource.name}"
        if resource.cleanup.job_template is not None:
            for attempt in range(1, resource.cleanup.retries + 2):
                what = f"cleanup job attempt {attempt} of resource {resource.name}"
                found[JOB][names.cleanup_job_name(run, resource.name, attempt)] = what
        for deployment in resource.setup.deployments:
            name = names.deployment_name(run, resource.name, deployment.name)
            found[DEPLOYMENT][name] = f"deployment {deployment.name} of resource {resource.name}"
            if deployment.ports:
                found[SERVICE][name] = f"the Service of deployment {deployment.name} of resource {resource.name}"
    return found


def name_clash(run: str, spec: FlowSpec) -> SpecError | None:
    """The first setup manifest (in spec order) named as a generated child of its kind; else None."""
    generated = generated_names(run, spec)
    for i, resource in enumerate(spec.resources):
        for j, manifest in enumerate(resource.setup.manifests):
            kind, name = (manifest["apiVersion"], manifest["kind"]), manifest["metadata"]["name"]
            field = f"spec.resources[{i}].setup.manifests[{j}].metadata.name"
            clash = generated.get(kind, {}).get(name) or instance_clash(run, spec, kind, name)
            if clash is not None:
                return SpecError(field, f"{kind[1]} {name!r} is the name of {clash} in this run: name it otherwise")
    return None


def instance_clash(run: str, spec: FlowSpec, kind: Kind, name: str) -> str | None:
    """What of an instance of a forEach task `name` is the name of (a pod of one of its attempts,
    the ConfigMap of its result), read from the end of the name; else None."""
    pattern = INSTANCE_POD if kind == POD else INSTANCE_RESULT if kind == CONFIG_MAP else None
    found = pattern.search(name) if pattern is not None else None
    if found is None or int(found[1]) >= MAX_ITEMS:
        return None
    index = int(found[1])
    for task in spec.for_each_tasks():
        if kind == CONFIG_MAP and names.result_config_map(run, task.name, index) == name:
            return f"the ConfigMap of the result of instance {index} of task {task.name}"
        attempt = int(found[2]) if kind == POD else 0
        if 1 <= attempt <= task.retries.limit + 1 and names.task_pod_name(run, task.name, attempt, index) == name:
            return f"attempt {attempt} of instance {index} of task {task.name}"
    return None
