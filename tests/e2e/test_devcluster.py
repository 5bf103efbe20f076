"""The dev cluster is a real Kubernetes control plane: Jobs, Deployments, Services, garbage
collection, RBAC with real tokens, and KWOK driving pod outcomes from annotations."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.pytest_plugin import KubeCluster, wait_for

pytestmark = pytest.mark.e2e


def simulated_pod_template(annotations: dict[str, str] | None = None, restart_policy: str = "Never") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "sim"}, "annotations": annotations or {}},
        "spec": {"restartPolicy": restart_policy, "containers": [{"name": "main", "image": "busybox"}]},
    }


def terminated_state(pod: client.V1Pod) -> client.V1ContainerStateTerminated:
    statuses = pod.status.container_statuses or []
    terminated = statuses[0].state.terminated if statuses else None
    assert terminated is not None, f"pod {pod.metadata.name} has no terminated container: {pod.status}"
    return terminated


def create_pod(core: client.CoreV1Api, namespace: str, name: str, annotations: dict[str, str]) -> None:
    body = simulated_pod_template(annotations)
    body["metadata"]["name"] = name
    core.create_namespaced_pod(namespace, body)


def test_job_runs_to_complete_with_its_result(kube_cluster: KubeCluster, namespace: str) -> None:
    batch = client.BatchV1Api(kube_cluster.api)
    template = simulated_pod_template({"sim.flowrun.dev/duration": "500ms", "sim.flowrun.dev/message": "42"})
    batch.create_namespaced_job(
        namespace,
        {"metadata": {"name": "compute"}, "spec": {"backoffLimit": 0, "template": template}},
    )

    def complete() -> bool:
        conditions = batch.read_namespaced_job_status("compute", namespace).status.conditions or []
        return any(c.type == "Complete" and c.status == "True" for c in conditions)

    wait_for("the Job to complete", complete)
    pods = kube_cluster.core().list_namespaced_pod(namespace, label_selector="job-name=compute").items
    assert len(pods) == 1
    assert pods[0].status.phase == "Succeeded"
    assert terminated_state(pods[0]).message == "42"


def test_failing_pod_ends_failed_with_exit_code_and_message(kube_cluster: KubeCluster, namespace: str) -> None:
    core = kube_cluster.core()
    message = 'disk full: "/data" at 100%\nsecond line'
    create_pod(
        core,
        namespace,
        "breaks",
        {
            "sim.flowrun.dev/outcome": "fail",
            "sim.flowrun.dev/exit-code": "3",
            "sim.flowrun.dev/message": message,
            "sim.flowrun.dev/duration": "200ms",
        },
    )
    pod = wait_for(
        "the pod to fail",
        lambda: (p := core.read_namespaced_pod("breaks", namespace)).status.phase == "Failed" and p,
    )
    terminated = terminated_state(pod)
    assert (terminated.exit_code, terminated.reason, terminated.message) == (3, "Error", message)


def test_succeeding_pod_shows_its_termination_message(kube_cluster: KubeCluster, namespace: str) -> None:
    core = kube_cluster.core()
    create_pod(
        core, namespace, "answers", {"sim.flowrun.dev/outcome": "succeed", "sim.flowrun.dev/message": "s3://bucket/out"}
    )
    pod = wait_for(
        "the pod to succeed",
        lambda: (p := core.read_namespaced_pod("answers", namespace)).status.phase == "Succeeded" and p,
    )
    assert (terminated_state(pod).exit_code, terminated_state(pod).message) == (0, "s3://bucket/out")


def test_pod_without_annotations_succeeds_and_always_pod_keeps_running(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    core = kube_cluster.core()
    create_pod(core, namespace, "plain", {})
    service = simulated_pod_template(restart_policy="Always")
    service["metadata"]["name"] = "server"
    core.create_namespaced_pod(namespace, service)
    wait_for(
        "the plain pod to succeed", lambda: core.read_namespaced_pod("plain", namespace).status.phase == "Succeeded"
    )
    server = core.read_namespaced_pod("server", namespace)
    assert server.status.phase == "Running"
    assert {c.type: c.status for c in server.status.conditions}["Ready"] == "True"


def test_pod_annotated_not_ready_runs_but_never_becomes_ready(kube_cluster: KubeCluster, namespace: str) -> None:
    core = kube_cluster.core()
    body = simulated_pod_template({"sim.flowrun.dev/ready": "false"}, restart_policy="Always")
    body["metadata"]["name"] = "unready"
    core.create_namespaced_pod(namespace, body)
    pod = wait_for(
        "the pod to run", lambda: (p := core.read_namespaced_pod("unready", namespace)).status.phase == "Running" and p
    )
    assert {c.type: c.status for c in pod.status.conditions}["Ready"] == "False"


def test_deleting_a_running_pod_completes(kube_cluster: KubeCluster, namespace: str) -> None:
    core = kube_cluster.core()
    create_pod(core, namespace, "long", {"sim.flowrun.dev/duration": "1h"})
    wait_for("the pod to run", lambda: core.read_namespaced_pod("long", namespace).status.phase == "Running")
    core.delete_namespaced_pod("long", namespace)  # default grace period: a graceful deletion
    wait_for("the pod to be gone", lambda: not pod_exists(core, namespace, "long"))


def pod_exists(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    try:
        core.read_namespaced_pod(name, namespace)
        return True
    except ApiException as error:
        if error.status == 404:
            return False
        raise


def test_deployment_becomes_available_and_service_gets_cluster_ip(kube_cluster: KubeCluster, namespace: str) -> None:
    apps = client.AppsV1Api(kube_cluster.api)
    template = simulated_pod_template(restart_policy="Always")
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "sim"}}, "template": template},
        },
    )
    service = kube_cluster.core().create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "sim"}, "ports": [{"port": 80}]},
        },
    )
    assert service.spec.cluster_ip and service.spec.cluster_ip != "None"

    def available() -> bool:
        status = apps.read_namespaced_deployment_status("web", namespace).status
        conditions = {c.type: c.status for c in status.conditions or []}
        return status.available_replicas == 3 and conditions.get("Available") == "True"

    wait_for("the Deployment to be Available with 3 replicas", available)


def test_deleting_an_owner_garbage_collects_its_children(kube_cluster: KubeCluster, namespace: str) -> None:
    core = kube_cluster.core()
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    for index in range(3):
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": f"child-{index}", "ownerReferences": [reference]}}
        )
    core.delete_namespaced_config_map("owner", namespace)
    wait_for(
        "the garbage collector to delete the children",
        lambda: not core.list_namespaced_config_map(namespace, field_selector="metadata.name!=kube-root-ca.crt").items,
    )


def test_deleting_a_job_in_background_removes_its_pods(kube_cluster: KubeCluster, namespace: str) -> None:
    batch = client.BatchV1Api(kube_cluster.api)
    core = kube_cluster.core()
    template = simulated_pod_template({"sim.flowrun.dev/duration": "1h"})
    batch.create_namespaced_job(namespace, {"metadata": {"name": "slow"}, "spec": {"template": template}})
    wait_for(
        "the Job's pod to run",
        lambda: any(
            p.status.phase == "Running"
            for p in core.list_namespaced_pod(namespace, label_selector="job-name=slow").items
        ),
    )
    batch.delete_namespaced_job("slow", namespace, propagation_policy="Background")
    wait_for(
        "the Job's pods to be gone",
        lambda: not core.list_namespaced_pod(namespace, label_selector="job-name=slow").items,
    )


def _token_for(core: client.CoreV1Api, namespace: str, account: str) -> str:
    request = core.create_namespaced_service_account_token(
        account, namespace, {"spec": {"audiences": [], "expirationSeconds": 600}}
    )
    token: str = request.status.token
    return token


def _client_with_token(kube_cluster: KubeCluster, token: str) -> client.ApiClient:
    configuration = client.Configuration()
    base = kube_cluster.api.configuration
    configuration.host = base.host
    configuration.ssl_ca_cert = base.ssl_ca_cert
    configuration.verify_ssl = base.verify_ssl
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


def test_rbac_refuses_an_account_without_rights_and_allows_one_with_a_role(
    kube_cluster: KubeCluster, namespace: str
) -> None:
    core = kube_cluster.core()
    rbac = client.RbacAuthorizationV1Api(kube_cluster.api)
    for account in ("nobody", "reader"):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    rbac.create_namespaced_role(
        namespace,
        {
            "metadata": {"name": "read-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "reader-reads"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": namespace}],
        },
    )

    nobody = client.CoreV1Api(_client_with_token(kube_cluster, _token_for(core, namespace, "nobody")))
    with pytest.raises(ApiException) as refused:
        nobody.list_namespaced_config_map(namespace)
    assert refused.value.status == 403
    assert f"system:serviceaccount:{namespace}:nobody" in refused.value.body

    reader = client.CoreV1Api(_client_with_token(kube_cluster, _token_for(core, namespace, "reader")))
    names = [c.metadata.name for c in reader.list_namespaced_config_map(namespace).items]
    assert "kube-root-ca.crt" in names
    with pytest.raises(ApiException) as still_refused:
        reader.list_namespaced_secret(namespace)
    assert still_refused.value.status == 403

    forged = client.CoreV1Api(_client_with_token(kube_cluster, "not-a-real-token-" + uuid.uuid4().hex))
    with pytest.raises(ApiException) as unauthenticated:
        forged.list_namespaced_config_map(namespace)
    assert unauthenticated.value.status == 401
