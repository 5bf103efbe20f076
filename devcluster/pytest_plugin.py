"""pytest fixtures: a session-wide Kubernetes cluster and a fresh namespace per test.

By default the session uses the dev cluster: it reuses one that is already running (and leaves it
running), or starts one and stops it when the session ends. With
``FLOWRUN_USE_EXISTING_CLUSTER=true`` it uses whatever cluster ``KUBECONFIG`` points at instead
(like controller-runtime's envtest ``USE_EXISTING_CLUSTER``); that cluster needs KWOK with
``devcluster/stages.yaml`` for the tests that drive pod outcomes.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from devcluster import cluster as devcluster
from devcluster import images
from devcluster import node as devcluster_node

T = TypeVar("T")

USE_EXISTING_CLUSTER = os.environ.get("FLOWRUN_USE_EXISTING_CLUSTER", "").lower() in ("1", "true", "yes")
TEST_NAMESPACE_LABEL = "flowrun.dev/test-namespace"


@dataclass(frozen=True)
class KubeCluster:
    """The cluster the tests run against."""

    kubeconfig: Path
    api: client.ApiClient
    # Set only for the dev cluster: where kubectl and helm are.
    bin_dir: Path | None

    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Poll `check` until it returns something truthy, and return that; fail naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except ApiException as error:
            last_error = error
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    if USE_EXISTING_CLUSTER:
        kubeconfig = Path(os.environ.get("KUBECONFIG", Path.home() / ".kube" / "config"))
        yield KubeCluster(kubeconfig, config.new_client_from_config(str(kubeconfig)), None)
        return
    running = devcluster.running_cluster()
    started_here = False
    if running is None:
        try:
            running = devcluster.up()
            started_here = True
        except devcluster.AlreadyRunning:
            # Another session started it meanwhile: use it, and leave stopping it to that session.
            running = devcluster.running_cluster()
            assert running is not None
    try:
        api = config.new_client_from_config(str(running.kubeconfig))
        yield KubeCluster(running.kubeconfig, api, running.bin_dir)
    finally:
        if started_here:
            devcluster.down()


@contextlib.contextmanager
def fresh_namespace(kube_cluster: KubeCluster, base: str) -> Iterator[str]:
    """A namespace of its own (`base` plus a random suffix), ready for pods, deleted afterwards."""
    core = kube_cluster.core()
    base = re.sub(r"[^a-z0-9-]+", "-", base.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{secrets.token_hex(3)}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels={TEST_NAMESPACE_LABEL: "true"}))
    )
    # Pods are refused until the ServiceAccount controller made the namespace's `default` account.
    wait_for(f"the default ServiceAccount in {name}", lambda: core.read_namespaced_service_account("default", name))
    try:
        yield name
    finally:
        try:
            core.delete_namespace(name)
        except ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture
def namespace(kube_cluster: KubeCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A namespace of its own for each test, deleted afterwards."""
    with fresh_namespace(kube_cluster, request.node.name) as name:
        yield name


@dataclass(frozen=True)
class RealNode:
    """The cluster's real node: where pods that ask for it run real containers."""

    name: str
    shell_image: str
    dask_image: str
    operator_image: str

    def pod(self, name: str, command: list[str], restart_policy: str = "Never") -> client.V1Pod:
        """A pod for the real node: its node selector and toleration, a local image (never pulled)."""
        return client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(
                restart_policy=restart_policy,
                node_selector={devcluster_node.LABEL: "true"},
                tolerations=[
                    client.V1Toleration(key=devcluster_node.LABEL, operator="Exists", effect="NoSchedule"),
                ],
                termination_grace_period_seconds=1,
                containers=[
                    client.V1Container(name="main", image=self.shell_image, image_pull_policy="Never", command=command)
                ],
            ),
        )


def real_node_unavailable(kube_cluster: KubeCluster) -> str | None:
    """Why the cluster has no real node (None when it has one)."""
    nodes = kube_cluster.core().list_node(label_selector=f"{devcluster_node.LABEL}=true").items
    if nodes:
        return None
    if kube_cluster.bin_dir is not None:
        return devcluster_node.host_problem(kube_cluster.bin_dir) or "the dev cluster started without a real node"
    return f"the cluster has no node labelled {devcluster_node.LABEL}=true"


@pytest.fixture(scope="session")
def real_node(kube_cluster: KubeCluster) -> RealNode:
    """The real node; skipped only where the host cannot run one and CI is not "true" (in CI a
    missing real node fails the test)."""
    problem = real_node_unavailable(kube_cluster)
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true needs the real node, but {problem}")
        pytest.skip(f"no real node on this host: {problem}")
    node = kube_cluster.core().list_node(label_selector=f"{devcluster_node.LABEL}=true").items[0]
    return RealNode(
        name=str(node.metadata.name),
        shell_image=images.SHELL_IMAGE,
        dask_image=images.DASK_IMAGE,
        operator_image=images.OPERATOR_IMAGE,
    )
