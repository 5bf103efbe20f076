"""The status of a run as typed, mutable records: read leniently from the previous status, moved
forward by each step of a pass, and written back in full (every key present, None when unset, so
a merge patch of the status also clears)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from flowrun.api import (
    CLEANING_UP,
    CLEANUP_STEPS,
    MAX_ITEMS,
    PENDING,
    RESOURCE_PHASES,
    RUN_FINAL,
    RUNNING,
    STOPPING_SETUP,
    TASK_PHASES,
)
from flowrun.lenient import as_map, as_str, count, opt_str
from flowrun.model import FlowSpec, instance_name
from flowrun.timestamps import format_time, parse_time


@dataclass
class TaskState:
    phase: str = PENDING
    reason: str = ""
    message: str = ""
    attempts: int = 0
    pod_name: str | None = None
    exit_code: int | None = None  # of the main container of the latest finished attempt
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: str | None = None
    # Where the result is when the status could not hold it: "ConfigMap/<name>" (engine/budget.py).
    result_from: str | None = None
    logs: str | None = None
    next_attempt_at: datetime | None = None
    # "attempt N failed (REASON: detail)": shown as the message while the next attempt has nothing
    # of its own to say, so that a pod's waiting reason never hides it for good.
    last_failure: str | None = None
    instances: int | None = None  # a forEach task: how many instances its list gave, once known
    instance_of: str | None = None  # an instance: its forEach task ...
    index: int | None = None  # ... and the index of its item


@dataclass
class ResourceState:
    phase: str = PENDING
    reason: str = ""
    message: str = ""
    value: str | None = None
    objects: list[str] = field(default_factory=list)
    setup_started_at: datetime | None = None
    ready_at: datetime | None = None
    cleanup_started_at: datetime | None = None
    cleaned_up_at: datetime | None = None
    cleanup_attempts: int = 0
    next_cleanup_attempt_at: datetime | None = None
    setup_error: str | None = None  # why setup failed: kept through cleanup
    cleanup_error: str | None = None  # why cleanup failed, as soon as it is known


@dataclass
class RunState:
    tasks: dict[str, TaskState]
    resources: dict[str, ResourceState]
    phase: str = PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None

    def copied(self) -> RunState:
        """A copy a step may change without changing this one: what copy.deepcopy gives, at a
        fraction of its cost (a record's fields are immutable values but for a block's objects)."""
        return RunState(
            tasks={name: copy.copy(ts) for name, ts in self.tasks.items()},
            resources={name: replace(rs, objects=list(rs.objects)) for name, rs in self.resources.items()},
            phase=self.phase,
            started_at=self.started_at,
            finished_at=self.finished_at,
        )


def load_state(spec: FlowSpec, prev: Mapping[str, Any]) -> RunState:
    """The previous status as records, one per task and block of the spec, and one per instance of
    a forEach task the status records (recovery from the observed children comes after: see
    tasks.recover_task and blocks.recover_resource)."""
    raw_tasks, raw_resources = as_map(prev.get("tasks")), as_map(prev.get("resources"))
    phase = as_str(prev.get("phase"))
    tasks: dict[str, TaskState] = {}
    for task in spec.tasks:
        tasks[task.name] = load_task(raw_tasks.get(task.name))
        if task.for_each is not None:
            tasks.update(load_instances(task.name, raw_tasks))
    return RunState(
        tasks=tasks,
        resources={r.name: load_resource(raw_resources.get(r.name)) for r in spec.resources},
        phase=phase if phase in (PENDING, RUNNING, *RUN_FINAL) else PENDING,
        started_at=parse_time(prev.get("startedAt")),
        finished_at=parse_time(prev.get("finishedAt")),
    )


def load_instances(task: str, raw_tasks: Mapping[str, Any]) -> dict[str, TaskState]:
    """The records of the instances of forEach task `task`, in index order: the entries that say
    they are, under the name they must have."""
    found: dict[int, TaskState] = {}
    for name, raw in raw_tasks.items():
        entry = as_map(raw)
        index = entry.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_ITEMS:
            continue
        if entry.get("instanceOf") == task and name == instance_name(task, index):
            found[index] = load_task(entry)
    return {instance_name(task, i): found[i] for i in sorted(found)}


def load_task(raw: object) -> TaskState:
    raw = as_map(raw)
    phase = raw.get("phase")
    instances = raw.get("instances")
    index = raw.get("index")
    return TaskState(
        phase=phase if phase in TASK_PHASES else PENDING,
        reason=as_str(raw.get("reason")),
        message=as_str(raw.get("message")),
        attempts=count(raw.get("attempts")),
        pod_name=opt_str(raw.get("podName")),
        exit_code=raw.get("exitCode") if isinstance(raw.get("exitCode"), int) else None,
        started_at=parse_time(raw.get("startedAt")),
        finished_at=parse_time(raw.get("finishedAt")),
        result=opt_str(raw.get("result")),
        result_from=opt_str(raw.get("resultFrom")),
        logs=opt_str(raw.get("logs")),
        next_attempt_at=parse_time(raw.get("nextAttemptAt")),
        last_failure=opt_str(raw.get("lastFailure")),
        instances=count(instances) if instances is not None else None,
        instance_of=opt_str(raw.get("instanceOf")),
        index=index if isinstance(index, int) and not isinstance(index, bool) else None,
    )


def load_resource(raw: object) -> ResourceState:
    raw = as_map(raw)
    phase = raw.get("phase")
    objects = raw.get("objects")
    state = ResourceState(
        phase=phase if phase in RESOURCE_PHASES else PENDING,
        reason=as_str(raw.get("reason")),
        message=as_str(raw.get("message")),
        value=opt_str(raw.get("value")),
        objects=[o for o in objects if isinstance(o, str)] if isinstance(objects, list) else [],
        setup_started_at=parse_time(raw.get("setupStartedAt")),
        ready_at=parse_time(raw.get("readyAt")),
        cleanup_started_at=parse_time(raw.get("cleanupStartedAt")),
        cleaned_up_at=parse_time(raw.get("cleanedUpAt")),
        cleanup_attempts=count(raw.get("cleanupAttempts")),
        next_cleanup_attempt_at=parse_time(raw.get("nextCleanupAttemptAt")),
        setup_error=opt_str(raw.get("setupError")),
        cleanup_error=opt_str(raw.get("cleanupError")),
    )
    if state.phase == CLEANING_UP and state.reason not in CLEANUP_STEPS:
        state.reason = STOPPING_SETUP  # unknown step: start over, every step is idempotent
    return state


def time_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def dump_task(state: TaskState) -> dict[str, Any]:
    return {
        "phase": state.phase,
        "reason": state.reason,
        "message": state.message,
        "attempts": state.attempts,
        "podName": state.pod_name,
        "exitCode": state.exit_code,
        "startedAt": time_or_none(state.started_at),
        "finishedAt": time_or_none(state.finished_at),
        "result": state.result,
        "resultFrom": state.result_from,
        "logs": state.logs,
        "nextAttemptAt": time_or_none(state.next_attempt_at),
        "lastFailure": state.last_failure,
        "instances": state.instances,
        "instanceOf": state.instance_of,
        "index": state.index,
    }


def dump_resource(state: ResourceState) -> dict[str, Any]:
    return {
        "phase": state.phase,
        "reason": state.reason,
        "message": state.message,
        "value": state.value,
        "objects": list(state.objects),
        "setupStartedAt": time_or_none(state.setup_started_at),
        "readyAt": time_or_none(state.ready_at),
        "cleanupStartedAt": time_or_none(state.cleanup_started_at),
        "cleanedUpAt": time_or_none(state.cleaned_up_at),
        "cleanupAttempts": state.cleanup_attempts,
        "nextCleanupAttemptAt": time_or_none(state.next_cleanup_attempt_at),
        "setupError": state.setup_error,
        "cleanupError": state.cleanup_error,
    }
