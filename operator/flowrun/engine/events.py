"""Events: the differences between the previous and the new status that a person may act on, one
per transition (a task retrying, failed or skipped for a failure; a block set up, ready, cleaned
up; the run waiting for its lock, stopping and finished), so a repeated pass with the recorded status posts none. What
every task does (started, succeeded) is in the status, not in an event: an event per task start
and end would double the operator's requests on a big run. The users' contract: docs/api.md,
"Events"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowrun.api import (
    CLEANED_UP,
    CLEANING_UP,
    CLEANUP_BLOCKED,
    CLEANUP_FAILED,
    CLEANUP_JOB_BACKOFF,
    CONDITION_TTL_HELD,
    FAILED,
    READY,
    RETRY_BACKOFF,
    RUNNING,
    SETTING_UP,
    SKIPPED,
    STOP_DEADLINE,
    TRIGGER_NOT_MET,
    WAITING_LOCK,
    WHEN_FALSE,
)
from flowrun.engine.interface import Event
from flowrun.lenient import as_map, conditions_by_type, count

_RESOURCE_EVENTS = {
    SETTING_UP: ("Normal", "SetupStarted"),
    READY: ("Normal", "ResourceReady"),
    CLEANING_UP: ("Normal", "CleanupStarted"),
    CLEANED_UP: ("Normal", "CleanedUp"),
    CLEANUP_FAILED: ("Warning", "CleanupFailed"),
}
# Succeeded=Unknown reasons that announce a stage of the run (its start is no news: its status says it).
# WaitingForLock: the run waits for another to finish, which a person may have to see to (a holder
# stuck); taking and releasing a lock, like a task's start and end, is in the status only.
_RUN_EVENTS = {
    "Cancelling": "Cancelling",
    "Deleting": "Deleting",
    STOP_DEADLINE: "DeadlineExceeded",
    "CleaningUp": "CleaningUp",
    WAITING_LOCK: WAITING_LOCK,
}


def events(prev: Mapping[str, Any], status: Mapping[str, Any]) -> list[Event]:
    """Every transition between `prev` and `status`: tasks, then blocks, then the run."""
    prev_tasks, prev_resources = as_map(prev.get("tasks")), as_map(prev.get("resources"))
    # An instance of a forEach task posts none: its task's failure says it once for them all.
    found = [
        event
        for name, task in status["tasks"].items()
        if not task.get("instanceOf") and (event := task_event(name, as_map(prev_tasks.get(name)), task)) is not None
    ]
    for name, resource in status["resources"].items():
        found.extend(resource_events(name, as_map(prev_resources.get(name)), resource))
    found.extend(run_events(conditions_by_type(prev), conditions_by_type(status)))
    return found


def _in_backoff(task: Mapping[str, Any]) -> bool:
    return task.get("phase") == RUNNING and task.get("reason") == RETRY_BACKOFF


def task_event(name: str, old: Mapping[str, Any], task: Mapping[str, Any]) -> Event | None:
    """A task is retrying, failed, or was skipped because something failed; None otherwise (a task
    that started, succeeded, was cancelled with its run or skipped by its trigger is no news)."""
    backoff = _in_backoff(task)
    same = (old.get("phase"), old.get("attempts"), _in_backoff(old)) == (task["phase"], task["attempts"], backoff)
    if same:
        return None
    if backoff:
        next_at = task["nextAttemptAt"]
        return Event("Warning", "TaskRetrying", f"task {name}: {task['message']}; next attempt at {next_at}")
    retried = task["phase"] == RUNNING and task["attempts"] > max(1, count(old.get("attempts")))
    if retried and not _in_backoff(old):
        # Retried at once (no backoff): the only sign of the failed attempt.
        started = f"task {name}: attempt {task['attempts']} started (pod {task['podName']})"
        return Event("Warning", "TaskRetrying", f"{started} after {task['message']}")
    if task["phase"] == FAILED:
        return Event("Warning", "TaskFailed", f"task {name}: {task['reason']}: {task['message']}")
    if task["phase"] == SKIPPED and task["reason"] not in (TRIGGER_NOT_MET, WHEN_FALSE):
        return Event("Warning", "TaskSkipped", f"task {name}: {task['reason']}: {task['message']}")
    return None


def resource_events(name: str, old: Mapping[str, Any], resource: Mapping[str, Any]) -> list[Event]:
    """A block's setup failed, its phase changed, or its cleanup job is retried."""
    found: list[Event] = []
    # A failed setup may already be cleaning up within the same pass: report the failure itself.
    if resource["setupError"] and resource["setupError"] != old.get("setupError"):
        found.append(Event("Warning", "SetupFailed", f"resource {name}: {resource['setupError']}"))
    if old.get("phase") != resource["phase"] and resource["phase"] in _RESOURCE_EVENTS:
        kind, reason = _RESOURCE_EVENTS[resource["phase"]]
        detail = f": {resource['message']}" if resource["message"] else ""
        found.append(Event(kind, reason, f"resource {name}{detail}"))
    elif resource["reason"] == CLEANUP_JOB_BACKOFF and (old.get("reason"), old.get("cleanupAttempts")) != (
        resource["reason"],
        resource["cleanupAttempts"],
    ):
        found.append(Event("Warning", "CleanupRetrying", f"resource {name}: {resource['message']}"))
    return found


def run_events(prev_conds: Mapping[str, Mapping[str, Any]], conds: Mapping[str, Mapping[str, Any]]) -> list[Event]:
    """The run started a stage or ended (condition Succeeded), its cleanup blocks its deletion, or its
    TTL is held (declared in Git)."""
    found: list[Event] = []
    succeeded, old_succeeded = conds["Succeeded"], as_map(prev_conds.get("Succeeded"))
    if (succeeded["status"], succeeded["reason"]) != (old_succeeded.get("status"), old_succeeded.get("reason")):
        reason = succeeded["reason"]
        if succeeded["status"] == "True":
            found.append(Event("Normal", "Succeeded", succeeded["message"]))
        elif succeeded["status"] == "False":
            kind, name = ("Normal", "Cancelled") if reason == "Cancelled" else ("Warning", "Failed")
            found.append(Event(kind, name, succeeded["message"]))
        elif reason in _RUN_EVENTS:
            kind = "Warning" if reason == STOP_DEADLINE else "Normal"
            found.append(Event(kind, _RUN_EVENTS[reason], succeeded["message"]))
    released, old_released = conds["ResourcesReleased"], as_map(prev_conds.get("ResourcesReleased"))
    if released["reason"] == CLEANUP_BLOCKED and old_released.get("reason") != CLEANUP_BLOCKED:
        found.append(Event("Warning", CLEANUP_BLOCKED, released["message"]))
    held = conds.get(CONDITION_TTL_HELD)
    if held is not None and CONDITION_TTL_HELD not in prev_conds:
        found.append(Event("Warning", CONDITION_TTL_HELD, held["message"]))
    return found
