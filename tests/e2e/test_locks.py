"""Locks across runs end to end (docs/semantics.md, "Locks"), on the dev cluster with the real
operator: runs on a mutex never overlap and go in the order they were created; a semaphore of 3
never has more than 3 holders; a holder deleted mid-run lets the next waiter start at once; the
operator SIGKILLed while runs hold and wait leaks no slot and goes on in line. Pods and Leases are
watched (not polled), so a moment of overlap would be seen; the handover latencies measured are
printed (pytest -s)."""

from __future__ import annotations

import itertools
import time
import urllib.error
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from devcluster.pytest_plugin import KubeCluster, wait_for
from flowrun import api, names
from tests.e2e.helpers import (
    FlowRuns,
    Operator,
    StartOperator,
    Watch,
    WatchRecorder,
    install_crds,
    pod_phase,
    sim_task,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(autouse=True)
def crds_with_synchronization(kube_cluster: KubeCluster, flowrun_crd: None) -> None:
    """This checkout's CRDs, installed again before each test: on a dev cluster shared with other
    checkouts, one installed since without spec.synchronization would have the API server prune it."""
    install_crds(kube_cluster)


MUTEX = {"mutex": {"name": "m"}}
LEASE = names.lock_lease("mutex/m", 0)


class Timed:
    """When each event of a recorder arrived (monotonic seconds), by its index."""

    def __init__(self, recorder: WatchRecorder) -> None:
        self.recorder = recorder
        self.times: list[float] = []
        original = recorder._record

        def record(kind: str, obj: dict[str, Any]) -> None:
            self.times.append(time.monotonic())
            original(kind, obj)

        recorder._record = record  # type: ignore[method-assign]

    def first(self, predicate: Callable[[str, dict[str, Any]], bool]) -> float:
        return self.times[self.recorder.index(predicate)]


def run_of(pod: dict[str, Any]) -> str:
    return str(pod["metadata"]["labels"][api.LABEL_FLOWRUN])


def most_runs_alive(pods: WatchRecorder) -> int:
    """The most runs with a pod that has not ended at once: a pod counts from its creation until it
    has Succeeded or Failed, or is gone (a pod being deleted still runs until then)."""
    alive: dict[str, str] = {}  # pod uid -> its run
    peak = 0
    for kind, pod in pods.snapshot():
        if kind == "DELETED" or pod_phase(pod) in ("Succeeded", "Failed"):
            alive.pop(pod["metadata"]["uid"], None)
        else:
            alive[pod["metadata"]["uid"]] = run_of(pod)
        peak = max(peak, len(set(alive.values())))
    return peak


def most_leases(leases: WatchRecorder) -> int:
    alive: set[str] = set()
    peak = 0
    for kind, lease in leases.snapshot():
        (alive.discard if kind == "DELETED" else alive.add)(lease["metadata"]["uid"])
        peak = max(peak, len(alive))
    return peak


def started_order(pods: WatchRecorder) -> list[str]:
    """The runs in the order their first pod was created."""
    found: list[str] = []
    for kind, pod in pods.snapshot():
        if kind == "ADDED" and run_of(pod) not in found:
            found.append(run_of(pod))
    return found


def scraped(operator: Operator) -> str:
    """The operator's metrics; empty while it does not serve them yet."""
    try:
        return operator.scrape_metrics()
    except urllib.error.URLError:
        return ""


def locked_run(name: str, synchronization: dict[str, Any] = MUTEX, **task: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"synchronization": synchronization, "tasks": [sim_task("work", **task)]},
    }


def handovers(pods: WatchRecorder, timed: Timed, runs: list[str]) -> list[float]:
    """Seconds from each run's pod ending (its Succeeded event) to the next run's pod created."""

    def ended(run: str) -> Callable[[str, dict[str, Any]], bool]:
        return lambda kind, pod: run_of(pod) == run and pod_phase(pod) == "Succeeded"

    def created(run: str) -> Callable[[str, dict[str, Any]], bool]:
        return lambda kind, pod: kind == "ADDED" and run_of(pod) == run

    return [timed.first(created(after)) - timed.first(ended(before)) for before, after in itertools.pairwise(runs)]


def test_ten_runs_on_a_mutex_never_overlap_and_go_in_line(operator: Operator, flowruns: FlowRuns, watch: Watch) -> None:
    pods, leases = watch("pods"), watch("leases")
    timed = Timed(pods)
    runs = [f"r{i:02d}" for i in range(10)]
    for name in runs:
        flowruns.create(locked_run(name, duration="1s"))
    for name in runs:
        flowruns.wait_phase(name, "Succeeded", timeout=120)
    assert most_runs_alive(pods) == 1
    assert most_leases(leases) == 1 and not leases.latest()
    # Created within a second or two of each other: in line by creation time, then name.
    assert started_order(pods) == runs
    waited = flowruns.get("r09")
    assert waited is not None and waited["status"].get("locks") is None
    reasons = [e.reason for e in flowruns.events("r09")]
    # One event: it waited (a person may act on a holder that does not end); taking it is no news.
    assert reasons.count("WaitingForLock") == 1 and not [r for r in reasons if r.startswith("Lock")], reasons
    latency = handovers(pods, timed, runs)
    print(f"\nmutex handover (holder's pod Succeeded -> next run's pod created), s: {[round(s, 2) for s in latency]}")
    assert max(latency) < 5, latency
    for name in runs:
        flowruns.delete_and_check_nothing_leaked(name)


def test_a_semaphore_of_three_never_has_more_than_three_holders(
    start_operator: StartOperator, flowruns: FlowRuns, watch: Watch, kube_cluster: KubeCluster, namespace: str
) -> None:
    client.CoreV1Api(kube_cluster.api).create_namespaced_config_map(
        namespace, {"metadata": {"name": "limits"}, "data": {"exports": "3"}}
    )
    operator = start_operator(metrics=True)
    pods, leases = watch("pods"), watch("leases")
    semaphore = {"semaphore": {"configMapKeyRef": {"name": "limits", "key": "exports"}}}
    runs = [f"s{i}" for i in range(7)]
    for name in runs:
        # A task's lock: the run itself starts at once, its task waits for a slot.
        # 6 s: the first three still hold while the waiting runs are read (on a loaded machine too).
        spec = {"tasks": [sim_task("work", duration="6s", synchronization=semaphore)]}
        flowruns.create({"metadata": {"name": name}, "spec": spec})
    labels = f'lock="semaphore/limits/exports",namespace="{namespace}"'
    wanted = {f"flowrun_locks_held{{{labels}}} 3.0", f"flowrun_locks_waiting{{{labels}}} 4.0"}
    wait_for("3 holding, 4 waiting in the metrics", lambda: wanted <= set(scraped(operator).splitlines()), timeout=30)

    # A run that waits says who holds the slots. Which runs wait: those whose first passes came
    # last (runs created in the same moment are in line once their status shows their claim); one
    # that lost the race for a slot says `taking ...` until the Lease's event brings its next pass.
    def waiting_task() -> dict[str, Any] | None:
        for name in runs:
            found = (((flowruns.get(name) or {}).get("status") or {}).get("tasks") or {}).get("work") or {}
            if (found.get("phase"), found.get("reason")) == ("Pending", "WaitingForLock") and str(
                found.get("message")
            ).startswith("waiting for"):
                return dict(found)
        return None

    task = wait_for("a run waiting for a slot", waiting_task, timeout=30)
    held_by = task["message"].split("; ahead in line")[0]
    assert held_by.startswith("waiting for semaphore/limits/exports (limit 3), held by FlowRun s"), task["message"]
    assert held_by.count("(task work)") == 3, task["message"]
    for name in runs:
        flowruns.wait_phase(name, "Succeeded", timeout=120)
    assert most_runs_alive(pods) == 3 and most_leases(leases) == 3
    # Tasks that become ready at the same moment claim together: any may go first.
    assert sorted(started_order(pods)) == runs
    for name in runs:
        flowruns.delete_and_check_nothing_leaked(name)


def test_a_holder_deleted_mid_run_lets_the_next_start_at_once(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    pods = watch("pods")
    timed = Timed(pods)
    flowruns.create(locked_run("holder", outcome=None))  # runs until deleted
    pods.wait("the holder's pod running", lambda p: p.phase("holder-work-1") == "Running")
    flowruns.create(locked_run("next"))
    flowruns.wait_status(
        "next", "waiting for the holder", lambda s: s.get("message") == ("waiting for mutex/m, held by FlowRun holder")
    )
    deleted_at = time.monotonic()
    flowruns.delete("holder")
    pods.wait("the next run's pod", lambda p: p.first("next-work-1") is not None, timeout=30)
    latency = timed.first(lambda kind, pod: kind == "ADDED" and run_of(pod) == "next") - deleted_at
    print(f"\nholder deleted -> next run's pod created: {latency:.2f}s")
    assert latency < 10, latency
    assert most_runs_alive(pods) == 1
    flowruns.wait_phase("next", "Succeeded")
    wait_for("the holder gone", lambda: flowruns.get("holder") is None)
    flowruns.delete_and_check_nothing_leaked("next")


def test_the_operator_killed_while_runs_hold_and_wait_leaks_no_slot_and_goes_on_in_line(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    pods, leases = watch("pods"), watch("leases")
    runs = ["k0", "k1", "k2", "k3"]
    for name in runs:
        flowruns.create(locked_run(name, duration="3s"))
    pods.wait("k0 running", lambda p: p.phase("k0-work-1") == "Running")
    flowruns.wait_status(
        "k3", "waiting", lambda s: (s.get("tasks") or {}).get("work", {}).get("reason") == ("WaitingForLock")
    )
    operator.kill()
    # While it is down, the holder's pod ends: nobody may take the slot until the operator is back.
    pods.wait("k0's pod done", lambda p: p.phase("k0-work-1") == "Succeeded", timeout=30)
    assert [lease["spec"]["holderIdentity"] for lease in leases.latest().values()] == ["k0"]
    operator.start()
    for name in runs:
        flowruns.wait_phase(name, "Succeeded", timeout=120)
    assert most_runs_alive(pods) == 1 and most_leases(leases) == 1 and not leases.latest()
    assert started_order(pods) == runs and not pods.duplicated_names()
    for name in runs:
        flowruns.delete_and_check_nothing_leaked(name)
