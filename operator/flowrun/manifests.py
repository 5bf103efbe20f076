"""Pure builders of the Kubernetes objects a FlowRun creates (docs/api.md, "Children").

Every child lives in the FlowRun's namespace, is owned by the FlowRun (garbage collection is the
second line of defence) and carries the labels the operator finds its children by. The user's
template labels and annotations are kept (ours win on a clash), so annotations on a pod template
reach the pods. References are substituted in container image, command, args and env values.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from flowrun import api, names
from flowrun.model import DeploymentSpec, FlowSpec, Lock, ResourceSpec, RunIdentity, TaskSpec
from flowrun.references import Context, substitute

Manifest = dict[str, Any]


def owner_reference(run: RunIdentity) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": run.name,
        "uid": run.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def child_labels(
    run: RunIdentity, role: str, *, task: str | None = None, resource: str | None = None
) -> dict[str, str]:
    labels = {
        api.LABEL_FLOWRUN: names.label_value(run.name),
        api.LABEL_UID: run.uid,
        api.LABEL_ROLE: role,
        api.LABEL_MANAGED_BY: api.MANAGED_BY,
    }
    if task is not None:
        labels[api.LABEL_TASK] = task
    if resource is not None:
        labels[api.LABEL_RESOURCE] = resource
    return labels


def resource_env_name(resource: str) -> str:
    """`FLOWRUN_RESOURCE_<NAME>`: the env var a block's pods receive its value in."""
    return "FLOWRUN_RESOURCE_" + resource.upper().replace("-", "_")


def _metadata(
    run: RunIdentity, name: str, labels: Mapping[str, str], user: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    user = user or {}
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": run.namespace,
        "labels": {**(user.get("labels") or {}), **labels},
        "ownerReferences": [owner_reference(run)],
    }
    if user.get("annotations"):
        metadata["annotations"] = dict(user["annotations"])
    return metadata


def _pod_template(
    template: Mapping[str, Any],
    spec: FlowSpec,
    context: Context,
    labels: Mapping[str, str],
    env: Mapping[str, str],
    *,
    restart_never: bool,
) -> dict[str, Any]:
    """A copy of a PodTemplateSpec with references substituted, our labels and env added."""
    result = copy.deepcopy(dict(template))
    metadata = dict(result.get("metadata") or {})
    metadata["labels"] = {**(metadata.get("labels") or {}), **labels}
    result["metadata"] = metadata
    pod_spec = result["spec"]
    for group in ("initContainers", "containers"):
        for container in pod_spec.get(group) or []:
            if isinstance(container.get("image"), str):
                container["image"] = substitute(container["image"], context)
            for key in ("command", "args"):
                if container.get(key):
                    container[key] = [substitute(text, context) for text in container[key]]
            user_env = [
                {**item, "value": substitute(item["value"], context)} if "value" in item else item
                for item in container.get("env") or []
                if item.get("name") not in env
            ]
            added = [{"name": key, "value": value} for key, value in env.items()]
            if user_env or added:
                container["env"] = user_env + added
    if restart_never:
        pod_spec["restartPolicy"] = "Never"
    # The run-wide service account applies unless the template chose its own.
    if spec.service_account_name and not pod_spec.get("serviceAccountName"):
        pod_spec["serviceAccountName"] = spec.service_account_name
    return result


def task_pod_labels(run: RunIdentity, task: TaskSpec, attempt: int) -> dict[str, str]:
    """The operator's labels of the pod of `attempt` of a task (or instance of a forEach task)."""
    labels = {**child_labels(run, api.ROLE_TASK, task=task.name), api.LABEL_ATTEMPT: str(attempt)}
    if task.instance is not None:
        labels[api.LABEL_INSTANCE_OF] = task.instance.of
    return labels


def build_task_pod(run: RunIdentity, spec: FlowSpec, task: TaskSpec, attempt: int, context: Context) -> Manifest:
    """The pod of `attempt` of a task, or of an instance of a forEach task: its item is $(item)."""
    labels = task_pod_labels(run, task, attempt)
    if task.instance is not None:
        context = replace(context, item=task.instance.item)
    env = {resource_env_name(r): context.resource_values.get(r, "") for r in task.resources}
    template = _pod_template(task.template, spec, context, labels, env, restart_never=True)
    pod_spec = template["spec"]
    if task.active_deadline_seconds is not None:
        pod_spec["activeDeadlineSeconds"] = task.active_deadline_seconds
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(run, task.pod_name(run.name, attempt), labels, template.get("metadata")),
        "spec": pod_spec,
    }


def _value_env(resource: ResourceSpec, value: str | None) -> dict[str, str]:
    return {} if value is None else {resource_env_name(resource.name): value}


def build_setup_job(
    run: RunIdentity, spec: FlowSpec, resource: ResourceSpec, context: Context, value: str | None
) -> Manifest:
    """The setup Job; `value` is the block's value if known before setup (it is not when the
    value comes from this Job's result)."""
    assert resource.setup.job is not None
    labels = child_labels(run, api.ROLE_SETUP, resource=resource.name)
    template = _pod_template(
        resource.setup.job.template, spec, context, labels, _value_env(resource, value), restart_never=True
    )
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(run, names.setup_job_name(run.name, resource.name), labels),
        "spec": {"backoffLimit": resource.setup.job.backoff_limit, "template": template},
    }


def build_cleanup_job(
    run: RunIdentity, spec: FlowSpec, resource: ResourceSpec, attempt: int, context: Context, value: str
) -> Manifest:
    """One cleanup attempt. backoffLimit is 0: the engine retries with a new Job, so every
    attempt is visible and the backoff is the engine's."""
    assert resource.cleanup.job_template is not None
    labels = {**child_labels(run, api.ROLE_CLEANUP, resource=resource.name), api.LABEL_ATTEMPT: str(attempt)}
    env = {**_value_env(resource, value), "FLOWRUN_RESOURCE_VALUE": value}
    template = _pod_template(resource.cleanup.job_template, spec, context, labels, env, restart_never=True)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": _metadata(run, names.cleanup_job_name(run.name, resource.name, attempt), labels),
        "spec": {"backoffLimit": 0, "template": template},
    }


def _deployment_selector(run: RunIdentity, resource: ResourceSpec, deployment: DeploymentSpec) -> dict[str, str]:
    return {api.LABEL_UID: run.uid, api.LABEL_RESOURCE: resource.name, api.LABEL_DEPLOYMENT: deployment.name}


def build_deployment(
    run: RunIdentity,
    spec: FlowSpec,
    resource: ResourceSpec,
    deployment: DeploymentSpec,
    replicas: int,
    context: Context,
    value: str | None,
) -> Manifest:
    """A setup Deployment with `replicas` already resolved from its (possibly referenced) count."""
    labels = {**child_labels(run, api.ROLE_SETUP, resource=resource.name), api.LABEL_DEPLOYMENT: deployment.name}
    template = _pod_template(
        deployment.template, spec, context, labels, _value_env(resource, value), restart_never=False
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(run, names.deployment_name(run.name, resource.name, deployment.name), labels),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": _deployment_selector(run, resource, deployment)},
            "template": template,
        },
    }


def build_service(run: RunIdentity, resource: ResourceSpec, deployment: DeploymentSpec) -> Manifest:
    """The ClusterIP Service in front of a setup Deployment that declares ports."""
    labels = {**child_labels(run, api.ROLE_SETUP, resource=resource.name), api.LABEL_DEPLOYMENT: deployment.name}
    ports = []
    for port in deployment.ports:
        ports.append(
            {
                "name": port.name,
                "port": port.port,
                "targetPort": port.port if port.target_port is None else port.target_port,
                "protocol": port.protocol,
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(run, names.deployment_name(run.name, resource.name, deployment.name), labels),
        "spec": {"type": "ClusterIP", "selector": _deployment_selector(run, resource, deployment), "ports": ports},
    }


def build_manifest(run: RunIdentity, resource: ResourceSpec, obj: Mapping[str, Any]) -> Manifest:
    """A user manifest as given, placed in the run's namespace, owned and labelled."""
    manifest = copy.deepcopy(dict(obj))
    metadata = dict(manifest["metadata"])
    metadata["namespace"] = run.namespace
    metadata["labels"] = {**(metadata.get("labels") or {}), **child_labels(run, api.ROLE_SETUP, resource=resource.name)}
    metadata["ownerReferences"] = [*(metadata.get("ownerReferences") or []), owner_reference(run)]
    manifest["metadata"] = metadata
    return manifest


def build_result_config_map(run: RunIdentity, task: str, result: str, name: str | None = None) -> Manifest:
    """The ConfigMap a task's result moves to when the run's status is full (engine/budget.py):
    immutable, owned by the run (it goes with it)."""
    labels = child_labels(run, api.ROLE_RESULT, task=task)
    return {
        "apiVersion": api.CONFIG_MAP[0],
        "kind": api.CONFIG_MAP[1],
        "metadata": _metadata(run, name or names.result_config_map(run.name, task), labels),
        "immutable": True,
        "data": {"result": result},
    }


def build_lock_lease(run: RunIdentity, lock: Lock, slot: int, task: str | None, now: str) -> Manifest:
    """The Lease of one slot of a lock held by the run (or one of its tasks): named for the lock
    and slot (every run names it alike: whoever creates it first holds the slot), owned by the run
    (so garbage collection frees the slot of a run that is gone even if the operator is not
    there), labelled with the role `lock`. `now`: the acquireTime, as a MicroTime."""
    metadata = _metadata(run, names.lock_lease(lock.id, slot), child_labels(run, api.ROLE_LOCK, task=task))
    metadata["labels"][api.LABEL_LOCK] = names.lock_label(lock.id)
    metadata["annotations"] = {api.LOCK_ANNOTATION: lock.id, api.SLOT_ANNOTATION: str(slot)}
    return {
        "apiVersion": api.LEASE[0],
        "kind": api.LEASE[1],
        "metadata": metadata,
        "spec": {"holderIdentity": run.name + (f"/{task}" if task else ""), "acquireTime": now},
    }
