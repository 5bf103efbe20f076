"""E2E fixtures: the FlowRun CRD installed once, the real operator (`flowrun run`) running as a
process of its own watching the test's namespace only, FlowRun calls and watch recorders. What
they are made of is in helpers.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import flux as devcluster_flux
from devcluster.pytest_plugin import KubeCluster
from flowrun import api
from tests.e2e.helpers import (
    FlowRuns,
    FluxObjects,
    Objects,
    Operator,
    StartOperator,
    Watch,
    WatchRecorder,
    install_crds,
    lister,
    release_leftover_flowruns,
)


@pytest.fixture(scope="session")
def flowrun_crd(kube_cluster: KubeCluster) -> None:
    """Install (or update) every CRD (FlowRun, Flow, CronFlowRun) and wait until the API serves them."""
    install_crds(kube_cluster)


@pytest.fixture
def start_operator(
    kube_cluster: KubeCluster, flowrun_crd: None, namespace: str, tmp_path: Path
) -> Iterator[StartOperator]:
    """`start_operator(*extra_args, metrics=False, liveness=False, env=None)` starts the operator on
    the test namespace. At
    teardown every one started must still run; leftover runs are released; all are stopped."""
    started: list[Operator] = []

    def start(
        *extra_args: str, metrics: bool = False, liveness: bool = False, env: dict[str, str] | None = None
    ) -> Operator:
        log_dir = tmp_path / f"operator-{len(started) + 1}" if started else tmp_path
        log_dir.mkdir(exist_ok=True)
        running = Operator(kube_cluster, namespace, log_dir, extra_args, metrics=metrics, liveness=liveness, env=env)
        running.start()
        started.append(running)
        return running

    yield start
    try:
        for running in started:
            assert running.running() or running.stopped, "the operator exited during the test:\n" + running.log_tail()
    finally:
        try:
            if started:
                release_leftover_flowruns(kube_cluster, namespace, started[0])
        finally:
            for running in started:
                running.stop()


@pytest.fixture
def operator(start_operator: StartOperator) -> Operator:
    return start_operator()


@pytest.fixture
def flowruns(kube_cluster: KubeCluster, flowrun_crd: None, namespace: str) -> FlowRuns:
    return FlowRuns(kube_cluster, namespace)


@pytest.fixture
def flows(kube_cluster: KubeCluster, flowrun_crd: None, namespace: str) -> Objects:
    return Objects(kube_cluster, namespace, api.FLOW_PLURAL, "Flow")


@pytest.fixture
def crons(kube_cluster: KubeCluster, flowrun_crd: None, namespace: str) -> Iterator[Objects]:
    """At teardown (before the operator's: request it after start_operator) every CronFlowRun
    left by a failed test is deleted, so none goes on creating runs while leftovers are released."""
    objects = Objects(kube_cluster, namespace, api.CRON_PLURAL, "CronFlowRun")
    yield objects
    listed = objects.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.CRON_PLURAL)
    for leftover in listed["items"]:
        objects.delete(leftover["metadata"]["name"])


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[devcluster_flux.GitServer]:
    """A Git repository served over HTTP on 127.0.0.1 (`git http-backend`), stopped at teardown."""
    unavailable = devcluster_flux.git_available()
    if unavailable is not None:
        pytest.skip(f"cannot serve a Git repository: {unavailable}")
    root = tmp_path / "git"
    root.mkdir()
    server = devcluster_flux.GitServer(root)
    yield server
    server.stop()


@pytest.fixture
def flux(kube_cluster: KubeCluster, flowrun_crd: None, namespace: str, tmp_path: Path) -> Iterator[FluxObjects]:
    """Flux's source-controller and kustomize-controller (built on first use, their CRDs applied)
    watching the test namespace. At teardown, while they still run, every Kustomization and
    GitRepository left in the namespace is deleted (their finalizers need the controllers); then
    both stop."""
    kubectl = kube_cluster.bin_dir / "kubectl" if kube_cluster.bin_dir is not None else shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("no kubectl to apply Flux's CRDs with (the dev cluster provides one)")
    devcluster_flux.install_crds(Path(kubectl), kube_cluster.kubeconfig)
    workdir = tmp_path / "flux"
    controllers = devcluster_flux.Flux(kube_cluster.kubeconfig, namespace, workdir)
    controllers.start()
    objects = FluxObjects(kube_cluster, namespace, controllers)
    yield objects
    try:
        objects.delete_all()
        assert all(c.running() for c in controllers.controllers), "a Flux controller exited:\n" + controllers.logs()
    finally:
        controllers.stop()


@pytest.fixture
def watch(kube_cluster: KubeCluster, namespace: str) -> Iterator[Watch]:
    """`watch(kind, label_selector=None)` starts a WatchRecorder of pods, jobs, deployments,
    services, leases or flowruns in the test namespace; all are stopped at teardown."""
    started: list[WatchRecorder] = []

    def start(kind: str, label_selector: str | None = None) -> WatchRecorder:
        recorder = WatchRecorder(lister(kube_cluster.api, kind), namespace, label_selector)
        started.append(recorder)
        return recorder

    yield start
    for recorder in started:
        recorder.stop()
