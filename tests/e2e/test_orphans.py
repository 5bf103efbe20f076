"""The orphan sweep, on the dev cluster: an object labelled with the UID of a FlowRun that no longer
exists (here: the finalizer taken off by hand mid-run while the operator was down, and the
Deployment's owner reference removed, so the garbage collector cannot take it either) is counted
in flowrun_orphaned_objects, logged once by name, and deleted when deletion is enabled."""

from __future__ import annotations

import pytest
from kubernetes import client

from devcluster.pytest_plugin import wait_for
from tests.e2e.helpers import FlowRuns, Operator, StartOperator, deployment, sim_task

pytestmark = pytest.mark.e2e


def orphaned(operator: Operator, kind: str) -> float | None:
    """The operator's flowrun_orphaned_objects for the kind; None until its metrics are served."""
    try:
        metrics = operator.scrape_metrics()
    except OSError:
        return None
    prefix = f'flowrun_orphaned_objects{{kind="{kind}"}} '
    return next((float(line.removeprefix(prefix)) for line in metrics.splitlines() if line.startswith(prefix)), None)


def test_an_orphan_left_by_a_finalizer_removed_by_hand_is_reported_then_deleted(
    start_operator: StartOperator, flowruns: FlowRuns
) -> None:
    first = start_operator()
    created = flowruns.create(
        {
            "metadata": {"name": "left"},
            "spec": {
                "resources": [{"name": "env", "setup": {"deployments": [deployment("agent")]}}],
                "tasks": [sim_task("work", resources=["env"], duration="300s")],
            },
        }
    )
    uid = created["metadata"]["uid"]
    flowruns.wait_status(
        "left", "work running", lambda s: ((s.get("tasks") or {}).get("work") or {}).get("phase") == "Running"
    )
    first.stop()

    apps = client.AppsV1Api(flowruns.api_client)
    name = "left-env-agent"
    apps.patch_namespaced_deployment(name, flowruns.namespace, {"metadata": {"ownerReferences": None}})
    flowruns.patch("left", {"metadata": {"finalizers": None}})
    flowruns.delete("left")
    wait_for("the FlowRun to go without its cleanup", lambda: flowruns.get("left") is None)

    second = start_operator("--orphan-grace", "2", "--delete-orphans-after", "3", metrics=True)
    wait_for(
        "the orphan to be counted",
        lambda: orphaned(second, "Deployment") == 1.0,
        timeout=30,
    )
    wait_for("the orphan to be deleted", lambda: "Deployment" not in flowruns.children(uid), timeout=30)
    wait_for("the count to drop", lambda: orphaned(second, "Deployment") == 0.0, timeout=30)
    wait_for("every child of the run to be gone", lambda: not flowruns.children(uid), timeout=60)
    log = second.log_path.read_text()
    assert log.count(f"orphaned Deployment {flowruns.namespace}/{name}:") == 1, log[-3000:]
    assert f"deleted orphaned Deployment {flowruns.namespace}/{name}" in log
