"""Prometheus metrics, derived from what each reconcile pass changed in a run's status.

Transitions are found by comparing the status before and after a pass, so a restarted operator
never counts a finished task twice: it sees no transition for what was already terminal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from flowrun.timestamps import parse_time

TERMINAL_TASK_PHASES = ("Succeeded", "Failed", "Skipped", "Cancelled")
CLEANUP_END_PHASES = ("CleanedUp", "CleanupFailed")
_DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))

RUNS = Gauge("flowrun_runs", "FlowRuns known to this operator, by phase", ["phase"])
TASK_DURATION = Histogram(
    "flowrun_task_duration_seconds",
    "Task duration from first start to finish, by final phase",
    ["phase"],
    buckets=_DURATION_BUCKETS,
)
CLEANUP_DURATION = Histogram(
    "flowrun_cleanup_duration_seconds",
    "Resource block cleanup duration, by outcome",
    ["phase"],
    buckets=_DURATION_BUCKETS,
)
CLEANUP_FAILURES = Counter("flowrun_cleanup_failures_total", "Resource block cleanups that failed")
RECONCILE_DURATION = Histogram(
    "flowrun_reconcile_duration_seconds",
    "Duration of one reconcile pass (read, decide, act, write)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, float("inf")),
)
RECONCILE_ERRORS = Counter("flowrun_reconcile_errors_total", "Reconcile passes that raised an error")
API_REQUESTS = Counter(
    "flowrun_api_requests_total",
    "Requests this operator sent to the API server, apart from watches, by verb and resource",
    ["verb", "resource"],
)
PASSES_QUEUED = Gauge("flowrun_passes_queued", "FlowRuns waiting for a reconcile pass")
API_SERVER_REACHABLE = Gauge(
    "flowrun_api_server_reachable", "1 while the API server answers, 0 during an outage the operator noticed"
)
ORPHANED_OBJECTS = Gauge(
    "flowrun_orphaned_objects",
    "Objects labelled with the UID of a FlowRun that no longer exists, past the grace period, by kind",
    ["kind"],
)
API_OUTAGES = Counter("flowrun_api_server_outages_total", "Outages of the API server the operator noticed")

_run_phases: dict[str, str] = {}
_phase_counts: dict[str, int] = {}


def _seconds_between(start: object, end: object) -> float | None:
    started, finished = parse_time(start), parse_time(end)
    if started is None or finished is None:
        return None
    return max((finished - started).total_seconds(), 0.0)


def _entries(status: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    entries = status.get(key)
    return entries if isinstance(entries, Mapping) else {}


def _newly_in(
    before: Mapping[str, Any], after: Mapping[str, Any], key: str, phases: tuple[str, ...]
) -> list[Mapping[str, Any]]:
    """The entries of status[key] that this pass moved into one of `phases`."""
    old = _entries(before, key)
    return [
        entry
        for name, entry in _entries(after, key).items()
        if isinstance(entry, Mapping)
        and entry.get("phase") in phases
        and (old.get(name) or {}).get("phase") != entry.get("phase")
    ]


def record_pass(uid: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Account for what one pass changed in a run's status."""
    _set_phase(uid, str(after.get("phase") or "Pending"))
    for task in _newly_in(before, after, "tasks", TERMINAL_TASK_PHASES):
        duration = _seconds_between(task.get("startedAt"), task.get("finishedAt"))
        if duration is not None:
            TASK_DURATION.labels(phase=task["phase"]).observe(duration)
    for resource in _newly_in(before, after, "resources", CLEANUP_END_PHASES):
        if resource["phase"] == "CleanupFailed":
            CLEANUP_FAILURES.inc()
        duration = _seconds_between(resource.get("cleanupStartedAt"), resource.get("cleanedUpAt"))
        if duration is not None:
            CLEANUP_DURATION.labels(phase=resource["phase"]).observe(duration)


def forget_run(uid: str) -> None:
    _set_phase(uid, None)


def _set_phase(uid: str, phase: str | None) -> None:
    """Counts kept up to date one run at a time: a pass costs the same with 10 runs or 10,000."""
    previous = _run_phases.pop(uid, None) if phase is None else _run_phases.get(uid)
    if previous == phase:
        return
    if previous is not None:
        _phase_counts[previous] -= 1
        RUNS.labels(phase=previous).set(_phase_counts[previous])
    if phase is not None:
        _run_phases[uid] = phase
        _phase_counts[phase] = _phase_counts.get(phase, 0) + 1
        RUNS.labels(phase=phase).set(_phase_counts[phase])


for _phase in ("Pending", "Running", "Succeeded", "Failed", "Cancelled"):
    RUNS.labels(phase=_phase).set(0)
API_SERVER_REACHABLE.set(1)
