"""What a FlowRun cannot make the operator do, on the dev cluster. (Cluster-scoped manifests and
manifests naming another namespace are refused before any create: test_flowrun_refusals.py.)

- References are substituted as plain strings: a value that looks like a reference, a shell
  command or a Kubernetes `$(VAR)` reaches the pod verbatim, never evaluated or substituted again.
- Children go to the FlowRun's namespace whatever their template says.
- Pods run as the ServiceAccount the FlowRun (or its template) names, else the namespace's
  `default`: never as the operator's own.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.e2e.helpers import FlowRuns, Operator, deployment, res, sim_task

pytestmark = pytest.mark.e2e

TRICKY = "$(tasks.a.result) $(params.value) `id` $(rm -rf /) ${HOME} $(HOME) '\"; exit 1"


def test_a_value_that_looks_like_a_reference_or_a_command_reaches_the_pod_verbatim(
    operator: Operator, flowruns: FlowRuns
) -> None:
    flowruns.create(
        {
            "metadata": {"name": "literal"},
            "spec": {
                "params": [{"name": "value", "value": TRICKY}],
                "tasks": [
                    sim_task("a", message=TRICKY),
                    sim_task("b", run_after=["a"], args=["$(params.value)", "$(tasks.a.result)"]),
                ],
            },
        }
    )
    run = flowruns.wait_phase("literal", "Succeeded")
    assert run["status"]["tasks"]["a"]["result"] == TRICKY
    pod = flowruns.read_pod("literal-b-1")
    assert pod.spec.containers[0].args == [TRICKY, TRICKY]
    flowruns.delete_and_check_nothing_leaked("literal")


def test_children_go_to_the_runs_namespace_and_pods_run_as_the_account_the_run_names(
    operator: Operator, flowruns: FlowRuns
) -> None:
    core = client.CoreV1Api(flowruns.api_client)
    core.create_namespaced_service_account(flowruns.namespace, {"metadata": {"name": "runner"}})
    elsewhere = sim_task("elsewhere")
    elsewhere["template"]["metadata"]["namespace"] = "kube-system"
    db = deployment("db")
    db["template"]["metadata"] = {**(db["template"].get("metadata") or {}), "namespace": "kube-system"}
    flowruns.create(
        {
            "metadata": {"name": "placed"},
            "spec": {
                "serviceAccountName": "runner",
                "resources": [{"name": "env", "setup": {"deployments": [db]}}],
                "tasks": [elsewhere, sim_task("default-account", resources=["env"])],
            },
        }
    )
    run = flowruns.wait_phase("placed", "Succeeded")
    assert res(run, "env")["phase"] in ("Ready", "CleaningUp", "CleanedUp")
    for task in ("elsewhere", "default-account"):
        pod = flowruns.read_pod(f"placed-{task}-1")
        assert pod.metadata.namespace == flowruns.namespace
        assert pod.spec.service_account_name == "runner"
    system = core.list_namespaced_pod("kube-system", label_selector=f"flowrun.dev/flowrun-uid={run['metadata']['uid']}")
    assert system.items == []
    flowruns.delete_and_check_nothing_leaked("placed")


def test_a_pod_of_a_run_naming_no_account_runs_as_the_namespace_default(operator: Operator, flowruns: FlowRuns) -> None:
    flowruns.create({"metadata": {"name": "plain"}, "spec": {"tasks": [sim_task("a")]}})
    flowruns.wait_phase("plain", "Succeeded")
    assert flowruns.read_pod("plain-a-1").spec.service_account_name == "default"
    flowruns.delete_and_check_nothing_leaked("plain")
