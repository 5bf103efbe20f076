"""Who drives a workload, and the one measurement of any of them.

- `OperatorDriver`: FlowRuns, run by the operator of this checkout (a local process).
- `BareDriver`: the floor, a bare client in this process with one watch: it creates the pods of a
  shape as soon as their dependencies have finished, nothing else.
- `ArgoDriver` (bench/argo_controller.py): Argo Workflows of the same shape.

`measure` submits runs through a driver and takes every figure on one clock, from one watch of
the pods (PodClock) and, for a controller, one watch of its run objects (PhaseClock).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from kubernetes import client, config

from bench import harness, stats, workloads
from bench.workloads import Shape
from devcluster import cluster as devcluster
from flowrun import api

SUBMITTERS = 8  # threads that create the runs (or the bare client's first pods) at once


class Driver(Protocol):
    label: str
    identity: harness.Identity
    controller: harness.Controller | None

    def submit(self, runs: list[str], shape: Shape, duration: str, submitted: dict[str, float]) -> None: ...

    def finished(self, runs: set[str], pods: harness.PodClock) -> dict[str, float]:
        """When each finished run was seen finished (by the driver's record of it)."""
        ...

    def failed(self, runs: set[str]) -> list[str]: ...


class CustomObjectDriver:
    """A driver whose runs are custom objects that a controller records as finished."""

    label = ""
    group = version = plural = ""
    controller: harness.Controller | None = None

    def __init__(self, session: harness.Session, namespace: str, identity: harness.Identity) -> None:
        self.session, self.namespace, self.identity = session, namespace, identity
        self.phases = harness.PhaseClock(session.custom, namespace, self.group, self.version, self.plural).start()

    def body(self, name: str, shape: Shape, duration: str) -> dict[str, Any]:
        raise NotImplementedError

    def submit(self, runs: list[str], shape: Shape, duration: str, submitted: dict[str, float]) -> None:
        def create(name: str) -> None:
            submitted[name] = time.monotonic()
            self.session.custom.create_namespaced_custom_object(
                self.group,
                self.version,
                self.namespace,
                self.plural,
                self.body(name, shape, duration),
                _preload_content=False,
            )

        with ThreadPoolExecutor(SUBMITTERS) as pool:
            list(pool.map(create, runs))

    def finished(self, runs: set[str], pods: harness.PodClock) -> dict[str, float]:
        with self.phases.lock:
            return {name: seen for name, (seen, _) in self.phases.finished.items() if name in runs}

    def failed(self, runs: set[str]) -> list[str]:
        with self.phases.lock:
            return [name for name, (_, phase) in self.phases.finished.items() if name in runs and phase != "Succeeded"]

    def close(self) -> None:
        self.phases.stop()
        if self.controller is not None:
            self.controller.stop()


class OperatorDriver(CustomObjectDriver):
    label = "flowrun-operator"
    group, version, plural = api.GROUP, api.VERSION, api.PLURAL

    def __init__(self, session: harness.Session, namespace: str) -> None:
        super().__init__(session, namespace, session.identity("operator"))
        self.controller = harness.flowrun_operator(session, namespace, self.identity)
        self.controller.start()

    def body(self, name: str, shape: Shape, duration: str) -> dict[str, Any]:
        return workloads.flowrun(name, shape, duration)


class BareDriver:
    """The floor: one watch of its pods; creates a pod as soon as its dependencies finished."""

    label = "bare client"
    controller: harness.Controller | None = None

    def __init__(self, session: harness.Session, namespace: str) -> None:
        self.namespace = namespace
        self.identity = session.identity("bare")
        self.core = client.CoreV1Api(config.new_client_from_config(str(self.identity.kubeconfig)))
        self.pool = ThreadPoolExecutor(SUBMITTERS)
        self.lock = threading.Lock()
        self.shapes: dict[str, Shape] = {}
        self.duration = ""
        self.done: dict[str, set[str]] = {}
        self.created: set[tuple[str, str]] = set()
        self.finished_at: dict[str, float] = {}
        self.failures: list[str] = []
        self.watch = harness.RawWatch(
            lambda **kwargs: self.core.list_namespaced_pod(namespace, **kwargs),
            self._seen,
            label_selector=f"{workloads.RUN_LABEL}",
        )
        self.watch.start()
        self.watch.synced.wait(60)

    def _create(self, run: str, task: str) -> None:
        self.core.create_namespaced_pod(
            self.namespace, workloads.bare_pod(run, task, self.duration), _preload_content=False
        )

    def _seen(self, kind: str, pod: dict[str, Any]) -> None:
        labels = pod["metadata"].get("labels") or {}
        run, task = labels.get(workloads.RUN_LABEL, ""), labels.get(workloads.TASK_LABEL, "")
        phase = (pod.get("status") or {}).get("phase")
        if run not in self.shapes or phase not in harness.TERMINAL_POD_PHASES:
            return
        with self.lock:
            if task in self.done[run]:
                return
            if phase == "Failed":
                self.failures.append(run)
            self.done[run].add(task)
            ready = [
                t.name
                for t in self.shapes[run]
                if (run, t.name) not in self.created and all(dep in self.done[run] for dep in t.after)
            ]
            self.created.update((run, name) for name in ready)
            if len(self.done[run]) == len(self.shapes[run]):
                self.finished_at[run] = time.monotonic()
        for name in ready:
            self.pool.submit(self._create, run, name)

    def submit(self, runs: list[str], shape: Shape, duration: str, submitted: dict[str, float]) -> None:
        self.duration = duration
        first = [task.name for task in shape if not task.after]
        with self.lock:
            for run in runs:
                self.shapes[run], self.done[run] = shape, set()
                self.created.update((run, name) for name in first)

        def start(run: str) -> None:
            submitted[run] = time.monotonic()
            for name in first:
                self._create(run, name)

        list(self.pool.map(start, runs))

    def finished(self, runs: set[str], pods: harness.PodClock) -> dict[str, float]:
        with self.lock:
            return {run: seen for run, seen in self.finished_at.items() if run in runs}

    def failed(self, runs: set[str]) -> list[str]:
        with self.lock:
            return [run for run in self.failures if run in runs]

    def close(self) -> None:
        self.watch.stop()
        self.pool.shutdown(wait=True)


@dataclass
class Result:
    """One workload driven once."""

    label: str
    runs: int
    tasks: int
    wall: float
    first_pod: list[float]
    gaps: list[float]
    requests: Counter[tuple[str, str]] | None = None
    own_requests: float | None = None  # the operator's own flowrun_api_requests_total, if it has it
    own_breakdown: Counter[tuple[str, str]] = field(default_factory=Counter)  # of own_requests: (verb, resource)
    # Seconds the operator's requests waited for its client-side rate limit (--qps, --burst), summed.
    throttled: float | None = None
    cpu: float | None = None
    peak_rss: float | None = None
    # The dev cluster's kube-apiserver's CPU seconds during the workload (it serves every driver).
    apiserver_cpu: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def tasks_per_second(self) -> float:
        return self.tasks / self.wall

    @property
    def requests_per_task(self) -> float | None:
        return sum(self.requests.values()) / self.tasks if self.requests is not None else None


API_REQUESTS_METRIC = "flowrun_api_requests_total"
THROTTLED_METRIC = "flowrun_api_throttled_seconds_total"


def measure(
    session: harness.Session,
    driver: Driver,
    pods: harness.PodClock,
    runs: list[str],
    shape: Shape,
    duration: str,
    timeout: float,
) -> Result:
    """Submit `runs` (all at once) and wait until the driver has seen each finished."""
    names = set(runs)
    offset = session.audit_offset()
    controller = driver.controller
    cpu_before = controller.cpu() if controller else None
    apiserver = devcluster.component_pid("kube-apiserver")
    apiserver_before = harness.cpu_seconds(apiserver) if apiserver is not None else None
    metrics_before = controller.metrics() if controller else None
    submitted: dict[str, float] = {}
    started = time.monotonic()
    driver.submit(runs, shape, duration, submitted)
    harness.wait_for(
        f"{len(runs)} runs of {driver.label} to finish",
        lambda: len(driver.finished(names, pods)) == len(names),
        timeout,
        interval=0.1,
    )
    finished = driver.finished(names, pods)
    failed = driver.failed(names)
    if failed:
        raise RuntimeError(f"{driver.label}: {len(failed)} runs did not succeed, e.g. {failed[0]}")
    wall = max(finished.values()) - started
    # Every pod is seen finished before its run is: the clock has them all by now.
    harness.wait_for("the pod clock", lambda: pods.finished_count(names) >= len(names) * len(shape), 30)
    times = pods.of_runs(names)
    by_run: dict[str, dict[str, harness.PodTimes]] = {}
    for pod in times:
        by_run.setdefault(pod.run, {})[pod.task] = pod
    first_pod = [min(t.created for t in by_run[run].values()) - submitted[run] for run in runs]
    gaps: list[float] = []
    for run in runs:
        for task in shape:
            if task.after:
                ready = max(by_run[run][dep].finished or 0.0 for dep in task.after)
                gaps.append(by_run[run][task.name].created - ready)
    result = Result(driver.label, len(runs), len(runs) * len(shape), wall, first_pod, gaps)
    if apiserver is not None and apiserver_before is not None:
        result.apiserver_cpu = harness.cpu_seconds(apiserver) - apiserver_before
    if controller is not None:
        assert cpu_before is not None
        result.cpu = controller.cpu() - cpu_before
        result.peak_rss = controller.memory()[1]
        metrics_after = controller.metrics()
        if metrics_before is not None and metrics_after is not None:
            own_figures(result, metrics_before, metrics_after)
    time.sleep(1)  # the audit log is written as responses complete
    result.requests = session.audit_requests(offset, driver.identity)
    return result


def own_figures(result: Result, metrics_before: str, metrics_after: str) -> None:
    """What the operator's own metrics say of the workload: its requests, and its waits for its
    rate limit (where it has one)."""
    if THROTTLED_METRIC.removesuffix("_total") in metrics_after:
        waited = stats.counter_total(metrics_after, THROTTLED_METRIC)
        result.throttled = waited - stats.counter_total(metrics_before, THROTTLED_METRIC)
    before = stats.counter_samples(metrics_before, API_REQUESTS_METRIC)
    after = stats.counter_samples(metrics_after, API_REQUESTS_METRIC)
    if after:
        result.own_requests = sum(after.values()) - sum(before.values())
        for labels, value in after.items():
            named = dict(labels)
            result.own_breakdown[(named.get("verb", ""), named.get("resource", ""))] += int(
                value - before.get(labels, 0.0)
            )


def run_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{index}" for index in range(count)]


def warm_up(session: harness.Session, driver: Driver, pods: harness.PodClock, duration: str) -> None:
    """One run of one task, so that the controller is started and its caches are synced before any
    figure is taken."""
    measure(session, driver, pods, [f"warm-{int(time.time() * 1000) % 100000}"], workloads.chain(1), duration, 180)
