"""Flux keeping FlowRuns, Flows and CronFlowRuns in Git, with its own controllers (source-controller
and kustomize-controller built from their Go modules, devcluster/flux.py) fetching from a Git
repository served on 127.0.0.1: its kstatus health checks (`wait: true`, no custom expression)
wait for a run, `dependsOn` holds what follows until the run Succeeded, a failed run fails the
Kustomization, and a run in Git with a TTL is never deleted and run again (the TTL is held)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.flux import GitServer
from devcluster.pytest_plugin import KubeCluster, wait_for
from flowrun import api
from flowrun.timestamps import parse_time
from tests.e2e.helpers import FlowRuns, FluxObjects, Objects, StartOperator, Watch, sim_task

pytestmark = pytest.mark.e2e

RUN = "migrate"
AFTER = "after-migrate"  # the ConfigMap the dependent Kustomization applies
IF_NOT_PRESENT = {"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"}


def manifests(run_task: dict[str, Any], ttl: int | None = None) -> dict[str, str]:
    """The repository: a Flow, a CronFlowRun of it and a FlowRun under runs/, a ConfigMap under
    after/ (what must wait for the run)."""
    run_spec: dict[str, Any] = {"tasks": [run_task]}
    if ttl is not None:
        run_spec["ttlSecondsAfterFinished"] = ttl
    objects = {
        "runs/flow.yaml": {
            "apiVersion": api.API_VERSION,
            "kind": api.FLOW_KIND,
            "metadata": {"name": "nightly"},
            "spec": {"tasks": [sim_task("load")]},
        },
        "runs/cron.yaml": {
            "apiVersion": api.API_VERSION,
            "kind": api.CRON_KIND,
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 2 * * *", "flowRunTemplate": {"spec": {"flowRef": {"name": "nightly"}}}},
        },
        "runs/run.yaml": {
            "apiVersion": api.API_VERSION,
            "kind": api.KIND,
            "metadata": {"name": RUN, "annotations": IF_NOT_PRESENT},
            "spec": run_spec,
        },
        "after/configmap.yaml": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": AFTER}},
    }
    return {path: yaml.safe_dump(body, sort_keys=False) for path, body in objects.items()}


def sync(flux: FluxObjects, git_server: GitServer) -> None:
    """Flux's objects: the repository, `runs` (waits for what it applies) and `after` (dependsOn runs)."""
    flux.git_repository("config", git_server.url)
    flux.kustomization("runs", "config", "./runs", wait=True, timeout="3m")
    flux.kustomization("after", "config", "./after", dependsOn=[{"name": "runs"}])


@dataclass
class Sample:
    """What is true at one moment while Flux works."""

    at: float
    run_phase: str | None
    runs_ready: str | None
    after_applied: bool


def config_map(kube_cluster: KubeCluster, namespace: str, name: str) -> client.V1ConfigMap | None:
    try:
        found: client.V1ConfigMap = kube_cluster.core().read_namespaced_config_map(name, namespace)
        return found
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def test_flux_waits_for_the_run_applies_what_depends_on_it_after_and_never_runs_it_again(
    kube_cluster: KubeCluster,
    start_operator: StartOperator,
    flowruns: FlowRuns,
    flows: Objects,
    crons: Objects,
    flux: FluxObjects,
    git_server: GitServer,
    watch: Watch,
) -> None:
    start_operator()
    recorder = watch("flowruns")
    committed = time.monotonic()
    git_server.commit(manifests(sim_task("migrate", duration="4s"), ttl=1), "a migration, then the app")
    sync(flux, git_server)

    samples: list[Sample] = []

    def applied() -> bool:
        run = flowruns.get(RUN)
        phase = ((run or {}).get("status") or {}).get("phase")
        after = config_map(kube_cluster, flowruns.namespace, AFTER) is not None
        samples.append(Sample(time.monotonic() - committed, phase, flux.ready("runs").get("status"), after))
        return after

    wait_for("the dependent Kustomization to apply its ConfigMap", applied, timeout=180, interval=0.2)
    elapsed = time.monotonic() - committed
    print(f"\ncommit to the dependent Kustomization applied: {elapsed:.1f}s (the run itself: 4s)")

    # While the run ran, Flux waited (runs not Ready) and applied nothing that depends on it; the
    # dependent came only after the run Succeeded.
    running = [s for s in samples if s.run_phase == "Running"]
    assert running, "the run was never seen running"
    assert all(s.runs_ready != "True" and not s.after_applied for s in running), running
    assert all(s.run_phase == "Succeeded" for s in samples if s.after_applied), samples
    run = flowruns.get(RUN)
    assert run is not None
    after = config_map(kube_cluster, flowruns.namespace, AFTER)
    assert after is not None
    finished = parse_time(run["status"]["finishedAt"])
    assert finished is not None and after.metadata.creation_timestamp >= finished
    assert flux.wait_ready("runs", "True")["reason"] == "ReconciliationSucceeded"
    for objects, name in ((flows, "nightly"), (crons, "nightly")):
        status = (objects.get(name) or {}).get("status") or {}
        ready = {c["type"]: c["status"] for c in status.get("conditions") or []}.get(api.CONDITION_READY)
        assert ready == "True", (name, status)

    # Its TTL (1s) has long passed; Flux reconciles again: the run is still the one that ran, never
    # deleted, never created again, and says why.
    flux.reconcile("runs")
    flux.reconcile("runs")
    again = flowruns.get(RUN)
    assert again is not None and again["metadata"]["uid"] == run["metadata"]["uid"]
    assert again["status"]["phase"] == "Succeeded"
    assert [k for k, o in recorder.snapshot() if k == "ADDED" and o["metadata"]["name"] == RUN] == ["ADDED"]
    assert not [k for k, o in recorder.snapshot() if k == "DELETED" and o["metadata"]["name"] == RUN]
    held = {c["type"]: c for c in again["status"]["conditions"]}[api.CONDITION_TTL_HELD]
    assert (held["status"], held["reason"]) == ("True", "DeclaredInGit")
    assert "kustomize.toolkit.fluxcd.io/name=runs" in held["message"], held
    events = flowruns.events_when(RUN, lambda found: any(e.reason == "TTLHeld" for e in found))
    assert [(e.type, e.message) for e in events if e.reason == "TTLHeld"] == [("Warning", held["message"])]

    # Done: Flux stops, the run goes through its finalizer, Flux's objects go.
    flux.suspend("runs")
    flowruns.delete_and_check_nothing_leaked(RUN)
    flux.delete_all()


def test_a_failed_run_fails_its_kustomization_at_once_and_holds_what_depends_on_it(
    kube_cluster: KubeCluster,
    start_operator: StartOperator,
    flowruns: FlowRuns,
    crons: Objects,
    flux: FluxObjects,
    git_server: GitServer,
) -> None:
    start_operator()
    failing = sim_task("migrate", duration="1s", outcome="fail", message="relation accounts already exists")
    git_server.commit(manifests(failing), "a migration that fails")
    started = time.monotonic()
    sync(flux, git_server)

    ready: dict[str, Any] = wait_for(
        "the health check to fail",
        lambda: flux.ready("runs") if flux.ready("runs").get("reason") == "HealthCheckFailed" else None,
        timeout=120,
    )
    assert time.monotonic() - started < 120, "failed early, not at the 3m timeout"
    # Flux names the run and its kstatus; the run's own message is in its Stalled condition.
    assert f"FlowRun/{flowruns.namespace}/{RUN} status: 'Failed'" in ready["message"], ready
    run = flowruns.get(RUN)
    assert run is not None and run["status"]["phase"] == "Failed"
    stalled = {c["type"]: c for c in run["status"]["conditions"]}[api.CONDITION_STALLED]
    assert stalled["status"] == "True" and "relation accounts already exists" in stalled["message"], stalled
    assert stalled["message"] == run["status"]["message"]

    # What depends on the run is not applied.
    wait_for(
        "the dependent Kustomization to wait for its dependency",
        lambda: flux.ready("after").get("reason") == "DependencyNotReady",
        timeout=60,
    )
    assert flux.ready("after")["status"] == "False"
    assert config_map(kube_cluster, flowruns.namespace, AFTER) is None

    flux.suspend("runs")
    flowruns.delete_and_check_nothing_leaked(RUN)
    flux.delete_all()
