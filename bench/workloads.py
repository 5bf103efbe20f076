"""The shapes the benchmarks run (a chain, a fan-out and join) and the same shape written for each
driver: a FlowRun, an Argo Workflow, or the bare client's pods.

Every pod, whoever creates it, carries the labels bench.flowrun.dev/run and bench.flowrun.dev/task
(the benchmark's clock finds pods by them) and the dev cluster's sim.flowrun.dev/duration
annotation (how long KWOK runs it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flowrun import api

RUN_LABEL = "bench.flowrun.dev/run"
TASK_LABEL = "bench.flowrun.dev/task"
IMAGE = "busybox"


@dataclass(frozen=True)
class Task:
    name: str
    after: tuple[str, ...] = ()


Shape = tuple[Task, ...]


def chain(length: int) -> Shape:
    """`length` tasks, each after the one before."""
    return tuple(Task(f"t{index}", (f"t{index - 1}",) if index else ()) for index in range(length))


def fan_out_and_join(width: int) -> Shape:
    """One task, then `width` tasks after it, then one task after all of them."""
    middle = tuple(Task(f"f{index}", ("root",)) for index in range(width))
    return (Task("root"), *middle, Task("join", tuple(task.name for task in middle)))


def pod_metadata(run: str, task: str, duration: str) -> dict[str, Any]:
    return {"labels": {RUN_LABEL: run, TASK_LABEL: task}, "annotations": {"sim.flowrun.dev/duration": duration}}


def flowrun(name: str, shape: Shape, duration: str) -> dict[str, Any]:
    tasks: list[dict[str, Any]] = []
    for task in shape:
        entry: dict[str, Any] = {
            "name": task.name,
            "template": {
                "metadata": pod_metadata(name, task.name, duration),
                "spec": {"containers": [{"name": "main", "image": IMAGE}]},
            },
        }
        if task.after:
            entry["runAfter"] = list(task.after)
        tasks.append(entry)
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": name}, "spec": {"tasks": tasks}}


ARGO_GROUP, ARGO_VERSION, ARGO_PLURAL = "argoproj.io", "v1alpha1", "workflows"


def argo_workflow(name: str, shape: Shape, duration: str) -> dict[str, Any]:
    """The same DAG as an Argo Workflow: one container template per task (each with its pod labels),
    a dag template with the tasks' dependencies."""
    templates: list[dict[str, Any]] = [
        {
            "name": "main",
            "dag": {
                "tasks": [
                    {
                        "name": task.name,
                        "template": f"run-{task.name}",
                        **({"dependencies": list(task.after)} if task.after else {}),
                    }
                    for task in shape
                ]
            },
        }
    ]
    templates += [
        {
            "name": f"run-{task.name}",
            "metadata": pod_metadata(name, task.name, duration),
            "container": {"image": IMAGE, "command": ["true"]},
        }
        for task in shape
    ]
    return {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}",
        "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"entrypoint": "main", "templates": templates},
    }


def bare_pod(run: str, task: str, duration: str) -> dict[str, Any]:
    return {
        "metadata": {"name": f"{run}-{task}", **pod_metadata(run, task, duration)},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": IMAGE}]},
    }
