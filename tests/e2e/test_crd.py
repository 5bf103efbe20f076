"""The CRD behaves like a first-class API for kubectl users: documented fields, useful columns."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devcluster.pytest_plugin import KubeCluster
from tests.e2e.helpers import FlowRuns, Operator, deployment, kubectl, sim_task

pytestmark = pytest.mark.e2e


def test_kubectl_explain_describes_the_task_fields(kube_cluster: KubeCluster, flowrun_crd: None) -> None:
    explained = kubectl(kube_cluster, "explain", "flowrun.spec.tasks")
    for field in ("runAfter", "trigger", "resources", "retries", "template", "activeDeadlineSeconds"):
        assert f"  {field}\t" in explained, f"{field} is not explained:\n{explained}"
    assert "DESCRIPTION:" in explained and "DAG" in explained


def test_kubectl_get_shows_phase_progress_duration_and_short_name(
    kube_cluster: KubeCluster, operator: Operator, flowruns: FlowRuns
) -> None:
    flowruns.create(
        {"metadata": {"name": "columns"}, "spec": {"tasks": [sim_task("a"), sim_task("b", run_after=["a"])]}}
    )
    flowruns.wait_phase("columns", "Succeeded")
    header, row = kubectl(kube_cluster, "get", "fr", "columns", "-n", flowruns.namespace).splitlines()
    assert header.split() == ["NAME", "PHASE", "PROGRESS", "DURATION", "AGE"]
    name, phase, progress, duration, _age = row.split()
    assert (name, phase, progress) == ("columns", "Succeeded", "2/2")
    assert duration.endswith("s")
    flowruns.delete_and_check_nothing_leaked("columns")


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("run", "spec.activeDeadlineSeconds"),
        ("setup", "spec.resources[0].setup.timeoutSeconds"),
        ("cleanup", "spec.resources[0].cleanup.timeoutSeconds"),
    ],
)
def test_a_duration_past_a_year_is_refused_at_apply_time_naming_the_field(
    flowruns: FlowRuns, where: str, field: str
) -> None:
    # 2^63-1 fits the int64 format; the bound is what keeps it out of the operator's arithmetic.
    spec: dict[str, Any] = {
        "resources": [{"name": "r", "setup": {"deployments": [deployment("d")]}, "cleanup": {}}],
        "tasks": [sim_task("use", resources=["r"])],
    }
    if where == "run":
        spec["activeDeadlineSeconds"] = 2**63 - 1
    else:
        spec["resources"][0][where]["timeoutSeconds"] = 2**63 - 1
    with pytest.raises(ApiException) as refused:
        flowruns.create({"metadata": {"name": "forever"}, "spec": spec})
    assert refused.value.status == 422, refused.value.body
    assert field in refused.value.body and "31536000" in refused.value.body, refused.value.body
    assert flowruns.get("forever") is None
