"""Prometheus metrics. Durations and failures are derived from what each pass changed in a run's
status: transitions are found by comparing the status before and after a pass, so a restarted
operator never counts a finished task twice (it sees no transition for what was already
terminal). The runs by phase are counted from the watch cache at scrape time (RunPhases), so the
figure is exact whatever thread changed what.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flowrun import api
from flowrun.timestamps import parse_time

CLEANUP_END_PHASES = (api.CLEANED_UP, api.CLEANUP_FAILED)
_DURATION_BUCKETS = (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))

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
API_THROTTLED = Counter(
    "flowrun_api_throttled_seconds_total",
    "Seconds requests waited for the operator's client-side rate limit (--qps, --burst), summed over requests",
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
LEADER = Gauge(
    "flowrun_leader",
    "1 while this replica reconciles (it holds the Lease, or runs without leader election), 0 on a standby",
)
API_OUTAGES = Counter("flowrun_api_server_outages_total", "Outages of the API server the operator noticed")


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


def record_pass(before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Account for what one pass changed in a run's status."""
    for task in _newly_in(before, after, "tasks", api.TERMINAL):
        duration = _seconds_between(task.get("startedAt"), task.get("finishedAt"))
        if duration is not None:
            TASK_DURATION.labels(phase=task["phase"]).observe(duration)
    for resource in _newly_in(before, after, "resources", CLEANUP_END_PHASES):
        if resource["phase"] == api.CLEANUP_FAILED:
            CLEANUP_FAILURES.inc()
        duration = _seconds_between(resource.get("cleanupStartedAt"), resource.get("cleanedUpAt"))
        if duration is not None:
            CLEANUP_DURATION.labels(phase=resource["phase"]).observe(duration)


class RunPhases(Collector):
    """flowrun_runs{phase}: the runs known to this operator, counted from its watch cache when
    Prometheus scrapes (`phases` returns each run's phase)."""

    def __init__(self, phases: Callable[[], Iterable[str]]) -> None:
        self.phases = phases

    def collect(self) -> Iterator[Metric]:
        counts = Tally(self.phases())
        family = GaugeMetricFamily("flowrun_runs", "FlowRuns known to this operator, by phase", labels=["phase"])
        for phase in sorted({api.PENDING, api.RUNNING, *api.RUN_FINAL, *counts}):
            family.add_metric([phase], counts.get(phase, 0))
        yield family

    def register(self) -> None:
        REGISTRY.register(self)

    def unregister(self) -> None:
        REGISTRY.unregister(self)


LockCounts = Mapping[tuple[str, str], int]  # (namespace, lock) -> how many


class LockGauges(Collector):
    """flowrun_locks_held{namespace,lock} and flowrun_locks_waiting{namespace,lock}: the slots held
    (Leases) and the runs and tasks waiting, of each lock across runs, counted from the watch
    caches when Prometheus scrapes (`counts` returns both by (namespace, lock))."""

    def __init__(
        self, counts: Callable[[], tuple[Mapping[tuple[str, str], int], Mapping[tuple[str, str], int]]]
    ) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        held, waiting = self.counts()
        locks = sorted({*held, *waiting})
        for name, help_text, counts in (
            ("flowrun_locks_held", "Slots of a lock across runs held (its Leases), by namespace and lock", held),
            ("flowrun_locks_waiting", "Runs and tasks waiting for a lock across runs, by namespace and lock", waiting),
        ):
            family = GaugeMetricFamily(name, help_text, labels=["namespace", "lock"])
            for namespace, lock in locks:
                family.add_metric([namespace, lock], counts.get((namespace, lock), 0))
            yield family

    def register(self) -> None:
        REGISTRY.register(self)

    def unregister(self) -> None:
        REGISTRY.unregister(self)


API_SERVER_REACHABLE.set(1)
