"""Events: the differences between the previous and the new status, one per transition (a task
started, retrying, finished; a block set up, ready, cleaned up; the run started, stopping,
finished), so a repeated pass with the recorded status posts none. The users' contract:
docs/api.md, "Events"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowrun.engine.interface import Event
from flowrun.engine.lenient import as_map, conditions_by_type
from flowrun.engine.phases import (
    CANCELLED,
    CLEANED_UP,
    CLEANING_UP,
    CLEANUP_BLOCKED,
    CLEANUP_FAILED,
    CLEANUP_JOB_BACKOFF,
    FAILED,
    PENDING,
    READY,
    RETRY_BACKOFF,
    RUNNING,
    SETTING_UP,
    SKIPPED,
    STOP_DEADLINE,
    SUCCEEDED,
    TRIGGER_NOT_MET,
)

_TASK_EVENTS = {
    RUNNING: ("Normal", "TaskStarted"),
    SUCCEEDED: ("Normal", "TaskSucceeded"),
    FAILED: ("Warning", "TaskFailed"),
    SKIPPED: ("Normal", "TaskSkipped"),
    CANCELLED: ("Normal", "TaskCancelled"),
}
_RESOURCE_EVENTS = {
    SETTING_UP: ("Normal", "SetupStarted"),
    READY: ("Normal", "ResourceReady"),
    CLEANING_UP: ("Normal", "CleanupStarted"),
    CLEANED_UP: ("Normal", "CleanedUp"),
    CLEANUP_FAILED: ("Warning", "CleanupFailed"),
}
# Succeeded=Unknown reasons that announce a stage of the run
_RUN_EVENTS = {
    RUNNING: "Started",
    "Cancelling": "Cancelling",
    "Deleting": "Deleting",
    STOP_DEADLINE: "DeadlineExceeded",
    "CleaningUp": "CleaningUp",
}


def events(prev: Mapping[str, Any], status: Mapping[str, Any]) -> list[Event]:
    events: list[Event] = []
    prev_conds, conds = conditions_by_type(prev), conditions_by_type(status)
    prev_tasks, prev_resources = as_map(prev.get("tasks")), as_map(prev.get("resources"))
    for name, task in status["tasks"].items():
        old = as_map(prev_tasks.get(name))
        backoff = task["phase"] == RUNNING and task["reason"] == RETRY_BACKOFF
        was_backoff = old.get("phase") == RUNNING and old.get("reason") == RETRY_BACKOFF
        if task["phase"] == PENDING or (old.get("phase"), old.get("attempts"), was_backoff) == (
            task["phase"],
            task["attempts"],
            backoff,
        ):
            continue
        kind, reason = ("Warning", "TaskRetrying") if backoff else _TASK_EVENTS[task["phase"]]
        if task["phase"] == SKIPPED and task["reason"] != TRIGGER_NOT_MET:
            kind = "Warning"
        if backoff:
            message = f"task {name}: {task['message']}; next attempt at {task['nextAttemptAt']}"
        elif task["phase"] == RUNNING:
            message = f"task {name}: attempt {task['attempts']} started (pod {task['podName']})"
            if task["attempts"] > 1:
                message += f" after {task['message']}"
        elif task["phase"] == SUCCEEDED:
            message = f"task {name} succeeded"
        else:
            message = f"task {name}: {task['reason']}: {task['message']}"
        events.append(Event(kind, reason, message))
    for name, resource in status["resources"].items():
        old = as_map(prev_resources.get(name))
        # A failed setup may already be cleaning up within the same pass: report the failure itself.
        if resource["setupError"] and resource["setupError"] != old.get("setupError"):
            events.append(Event("Warning", "SetupFailed", f"resource {name}: {resource['setupError']}"))
        if old.get("phase") != resource["phase"] and resource["phase"] in _RESOURCE_EVENTS:
            kind, reason = _RESOURCE_EVENTS[resource["phase"]]
            detail = f": {resource['message']}" if resource["message"] else ""
            events.append(Event(kind, reason, f"resource {name}{detail}"))
        elif resource["reason"] == CLEANUP_JOB_BACKOFF and (old.get("reason"), old.get("cleanupAttempts")) != (
            resource["reason"],
            resource["cleanupAttempts"],
        ):
            events.append(Event("Warning", "CleanupRetrying", f"resource {name}: {resource['message']}"))
    succeeded, old_succeeded = conds["Succeeded"], as_map(prev_conds.get("Succeeded"))
    if (succeeded["status"], succeeded["reason"]) != (old_succeeded.get("status"), old_succeeded.get("reason")):
        reason = succeeded["reason"]
        if succeeded["status"] == "True":
            events.append(Event("Normal", "Succeeded", succeeded["message"]))
        elif succeeded["status"] == "False":
            kind, name = ("Normal", "Cancelled") if reason == "Cancelled" else ("Warning", "Failed")
            events.append(Event(kind, name, succeeded["message"]))
        elif reason in _RUN_EVENTS:
            kind = "Warning" if reason == STOP_DEADLINE else "Normal"
            events.append(Event(kind, _RUN_EVENTS[reason], succeeded["message"]))
    released, old_released = conds["ResourcesReleased"], as_map(prev_conds.get("ResourcesReleased"))
    if released["reason"] == CLEANUP_BLOCKED and old_released.get("reason") != CLEANUP_BLOCKED:
        events.append(Event("Warning", CLEANUP_BLOCKED, released["message"]))
    return events
