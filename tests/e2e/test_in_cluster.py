"""The operator as users run it: its own image, installed by its Helm chart with values only, on
the real node (Ready by its liveness endpoint, read-only root, non-root, restricted Pod Security,
its ServiceAccount's in-cluster credentials), failing at once the runs whose manifests its RBAC does
not grant, running the real Dask example to Succeeded with the block cleaned up, its metrics
scraped through the metrics Service, and `helm uninstall` removing it."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devcluster import node as devcluster_node
from devcluster.pytest_plugin import KubeCluster, RealNode, fresh_namespace, wait_for
from tests.e2e.helpers import (
    CHART,
    FlowRuns,
    Tools,
    check_runs_the_chart_refuses,
    create_runs_the_chart_refuses,
    labelled_leftovers,
    real_dask_example,
    release_name,
    res,
    task,
    uninstall_and_check_nothing_left,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def flows_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """Where the FlowRun goes: its pods are placed on the real node by the namespace's defaults."""
    with fresh_namespace(kube_cluster, "in-cluster-flows") as name:
        kube_cluster.core().patch_namespace(
            name, {"metadata": {"annotations": devcluster_node.namespace_annotations()}}
        )
        yield name


def test_the_chart_installs_the_image_which_runs_the_real_dask_example(
    kube_cluster: KubeCluster,
    real_node: RealNode,
    flowrun_crd: None,
    namespace: str,
    flows_namespace: str,
    tmp_path: Path,
) -> None:
    tools = Tools(kube_cluster, tmp_path / "helm-home")
    core = kube_cluster.core()
    # The operator's pod must pass the strictest Pod Security level, enforced by the API server.
    core.patch_namespace(namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})
    repository, tag = real_node.operator_image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "rbac": {"scope": "namespaces"},
        "watchNamespaces": [flows_namespace],
        "nodeSelector": {devcluster_node.LABEL: "true"},
        "tolerations": [{"key": devcluster_node.LABEL, "operator": "Exists", "effect": "NoSchedule"}],
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    release = release_name()
    tools.run(
        "helm",
        "install",
        release,
        str(CHART),
        "-n",
        namespace,
        "--skip-crds",
        "-f",
        str(values_file),
        "--wait",
        "--timeout",
        "180s",
    )
    try:
        pod = wait_for(
            "the operator's pod to be Ready",
            lambda: next(
                (
                    p
                    for p in core.list_namespaced_pod(
                        namespace, label_selector=f"app.kubernetes.io/instance={release}"
                    ).items
                    if any(c.type == "Ready" and c.status == "True" for c in (p.status.conditions or []))
                ),
                None,
            ),
            timeout=120,
        )
        assert pod.spec.node_name == real_node.name
        container = pod.spec.containers[0]
        assert container.security_context.read_only_root_filesystem is True
        assert pod.spec.security_context.run_as_non_root is True
        status = pod.status.container_statuses[0]
        if status.restart_count:
            previous = core.read_namespaced_pod_log(pod.metadata.name, namespace, previous=True, tail_lines=40)
            raise AssertionError(f"the operator restarted: {status.last_state}\n{previous}")
        assert status.ready

        flowruns = FlowRuns(kube_cluster, flows_namespace)
        body = real_dask_example(real_node)
        name = body["metadata"]["name"]
        flowruns.create(body)
        # With the chart's RBAC, in-cluster: manifests of kinds it does not grant fail at once.
        check_runs_the_chart_refuses(flowruns, create_runs_the_chart_refuses(flowruns))
        run = flowruns.wait_phase(name, ("Succeeded", "Failed"), timeout=300)
        # On failure, the tasks' entries (with the failed ones' log tails) say what the containers met.
        assert run["status"]["phase"] == "Succeeded", json.dumps(run["status"].get("tasks"), indent=1)
        # Computed by the Dask cluster: describe() of the 1,209,600 rows load-data made.
        summary = task(run, "summarize")["result"]
        assert summary.splitlines()[0] == ",x,y" and summary.splitlines()[1] == "count,1209600.0,1209600.0", summary
        assert task(run, "write-csv")["result"] == "/data/summary.csv"
        assert core.read_namespaced_pod_log(f"{name}-write-csv-1", flows_namespace) == summary
        assert res(run, "dask")["phase"] == "CleanedUp"
        assert not flowruns.children(run["metadata"]["uid"], {"flowrun.dev/role": "setup"}), (
            "the Dask cluster outlived its block"
        )

        # The metrics Service, through the API server's service proxy (as a scrape would).
        text = core.connect_get_namespaced_service_proxy_with_path(
            f"{release}-flowrun-operator-metrics:metrics", namespace, "metrics"
        )
        assert re.search(r'^flowrun_runs\{phase="Succeeded"\} 1\.0$', text, re.MULTILINE), text[:2000]
        assert re.search(r"^flowrun_task_duration_seconds_count\S* [1-9]", text, re.MULTILINE), text[:2000]
        flowruns.delete_and_check_nothing_leaked(name)
    finally:
        uninstall_and_check_nothing_left(tools, kube_cluster.api, release, namespace, [namespace])
    assert not labelled_leftovers(kube_cluster.api, [namespace], release)
