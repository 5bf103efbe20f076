"""The real node: pods that ask for it run real containers (a local image, never pulled), with real
exit codes, termination messages and logs, cluster DNS, and the API server through the
`kubernetes` Service; pods that do not ask for it never land there."""

from __future__ import annotations

import subprocess
from urllib.parse import urlparse

import pytest
from kubernetes import client

from devcluster.pytest_plugin import KubeCluster, RealNode, wait_for

pytestmark = pytest.mark.e2e


def finished(core: client.CoreV1Api, namespace: str, name: str, timeout: float = 60) -> client.V1Pod:
    def done() -> client.V1Pod | None:
        pod = core.read_namespaced_pod(name, namespace)
        return pod if pod.status.phase in ("Succeeded", "Failed") else None

    return wait_for(f"pod {name} to finish", done, timeout=timeout, interval=0.2)


def run_to_end(kube_cluster: KubeCluster, real_node: RealNode, namespace: str, name: str, script: str) -> client.V1Pod:
    core = kube_cluster.core()
    core.create_namespaced_pod(namespace, real_node.pod(name, ["/bin/sh", "-c", script]))
    return finished(core, namespace, name)


def logs(kube_cluster: KubeCluster, namespace: str, name: str) -> str:
    """`kubectl logs` where the dev cluster's kubectl is at hand, else the same API call."""
    if kube_cluster.bin_dir is None:
        return str(kube_cluster.core().read_namespaced_pod_log(name, namespace))
    result = subprocess.run(
        [
            str(kube_cluster.bin_dir / "kubectl"),
            f"--kubeconfig={kube_cluster.kubeconfig}",
            "-n",
            namespace,
            "logs",
            name,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_pod_runs_its_command_and_succeeds_with_its_message_and_logs(
    kube_cluster: KubeCluster, real_node: RealNode, namespace: str
) -> None:
    pod = run_to_end(
        kube_cluster,
        real_node,
        namespace,
        "hello",
        "echo hello from $(hostname); echo -n result-42 > /dev/termination-log",
    )
    assert pod.spec.node_name == real_node.name
    assert pod.status.phase == "Succeeded"
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 0
    assert terminated.message == "result-42"
    assert logs(kube_cluster, namespace, "hello") == "hello from hello\n"


def test_a_failing_command_gives_its_real_exit_code(
    kube_cluster: KubeCluster, real_node: RealNode, namespace: str
) -> None:
    pod = run_to_end(kube_cluster, real_node, namespace, "fails", "echo about to fail >&2; exit 7")
    assert pod.status.phase == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 7
    assert logs(kube_cluster, namespace, "fails") == "about to fail\n"


def test_service_names_resolve_in_a_pod(kube_cluster: KubeCluster, real_node: RealNode, namespace: str) -> None:
    core = kube_cluster.core()
    service = core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80)]),
        ),
    )
    # nslookup asks for the exact name; ping resolves through the pod's search list (`<svc>.<ns>.svc`).
    script = (
        "nslookup kubernetes.default.svc.cluster.local; "
        f"nslookup web.{namespace}.svc.cluster.local; "
        f"ping -c 1 -W 1 web.{namespace}.svc; ping -c 1 -W 1 web; true"
    )
    pod = run_to_end(kube_cluster, real_node, namespace, "dns", script)
    output = logs(kube_cluster, namespace, "dns")
    assert pod.status.phase == "Succeeded", output
    assert "Name:\tkubernetes.default.svc.cluster.local\nAddress: 10.96.0.1" in output, output
    assert f"Name:\tweb.{namespace}.svc.cluster.local\nAddress: {service.spec.cluster_ip}" in output, output
    assert f"PING web.{namespace}.svc ({service.spec.cluster_ip})" in output, output
    assert f"PING web ({service.spec.cluster_ip})" in output, output


def test_a_pod_reaches_the_api_server_through_the_kubernetes_service(
    kube_cluster: KubeCluster, real_node: RealNode, namespace: str
) -> None:
    # In-cluster configuration: the address and port the kubelet gives every pod. A plain HTTP
    # request to the API server's TLS port gets Go's answer, so the reply comes from the API server.
    script = (
        'echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"; '
        'printf \'GET /version HTTP/1.0\\r\\n\\r\\n\' | nc -w 5 "$KUBERNETES_SERVICE_HOST" "$KUBERNETES_SERVICE_PORT"; '
        "test -s /var/run/secrets/kubernetes.io/serviceaccount/token"
    )
    pod = run_to_end(kube_cluster, real_node, namespace, "api", script)
    output = logs(kube_cluster, namespace, "api")
    assert pod.status.phase == "Succeeded", output
    assert output.startswith("10.96.0.1:443\n"), output
    assert "Client sent an HTTP request to an HTTPS server." in output, output


def test_pods_have_no_route_out_of_the_machine(kube_cluster: KubeCluster, real_node: RealNode, namespace: str) -> None:
    pod = run_to_end(kube_cluster, real_node, namespace, "routes", "ip route; ip -4 addr show eth0")
    output = logs(kube_cluster, namespace, "routes")
    assert pod.status.phase == "Succeeded", output
    assert "default" not in output, output
    routes = [line.split()[0] for line in output.splitlines() if " via " in line]
    # Services and the API server's own address, through the node's bridge: nothing else.
    api_server = urlparse(kube_cluster.api.configuration.host).hostname
    assert sorted(routes) == sorted(["10.96.0.0/16", api_server]), output


def test_pods_without_the_toleration_never_land_on_the_real_node(
    kube_cluster: KubeCluster, real_node: RealNode, namespace: str
) -> None:
    core = kube_cluster.core()
    pod = real_node.pod("no-toleration", ["true"])
    pod.spec.tolerations = None
    core.create_namespaced_pod(namespace, pod)

    def unschedulable() -> bool:
        conditions = core.read_namespaced_pod("no-toleration", namespace).status.conditions or []
        return any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions)

    wait_for("the scheduler to refuse the pod", unschedulable)
    placed = core.read_namespaced_pod("no-toleration", namespace)
    assert placed.spec.node_name is None
    message = next(c.message for c in placed.status.conditions if c.type == "PodScheduled")
    assert "1 node(s) had untolerated taint(s)" in message, message
