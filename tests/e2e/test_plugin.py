"""The `kubectl flowrun` plugin end to end, run as a user runs it: the installed console script
`kubectl-flowrun` as a subprocess, against the dev cluster and the real operator. Every test
that starts a run ends with the leak check."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devcluster.pytest_plugin import KubeCluster, wait_for
from flowrun import api
from tests.e2e.helpers import FlowRuns, Objects

pytestmark = pytest.mark.e2e

PLUGIN = Path(sys.executable).with_name("kubectl-flowrun")


def plugin(
    kube_cluster: KubeCluster, namespace: str, *args: str, kubeconfig: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PLUGIN), *args, "-n", namespace],
        env=dict(os.environ, KUBECONFIG=str(kubeconfig or kube_cluster.kubeconfig)),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def task(
    name: str, *run_after: str, outcome: str = "succeed", duration: str = "1s", message: str = ""
) -> dict[str, Any]:
    """A task whose pod the dev cluster finishes as told."""
    annotations = {"sim.flowrun.dev/outcome": outcome, "sim.flowrun.dev/duration": duration}
    if message:
        annotations["sim.flowrun.dev/message"] = message
    body: dict[str, Any] = {
        "name": name,
        "template": {
            "metadata": {"annotations": annotations},
            "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        },
    }
    if run_after:
        body["runAfter"] = list(run_after)
    return body


def flowrun(name: str, *tasks: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name},
        "spec": {"tasks": list(tasks), **spec},
    }


def test_watch_follows_a_run_to_its_end_and_exits_with_its_outcome(
    kube_cluster: KubeCluster, namespace: str, operator: object, flowruns: FlowRuns
) -> None:
    flowruns.create(flowrun("good", task("a", message="42"), task("b", "a")))
    flowruns.create(flowrun("bad", task("a", outcome="fail", message="boom")))

    good = plugin(kube_cluster, namespace, "watch", "good")
    assert good.returncode == 0, good.stderr
    lines = good.stdout.splitlines()
    # Not a terminal: one line per change, then the final tree.
    assert any(line.split()[1:4] == ["task", "b", "Succeeded"] for line in lines if line[:1].isdigit())
    tree = lines[lines.index("") + 1 :]
    assert tree[0].split()[:3] == ["FlowRun", "good", "Succeeded"]
    assert [row.split()[:2] for row in tree[4:]] == [["a", "Succeeded"], ["b", "Succeeded"]]
    assert tree[4].split()[-1] == "42"

    bad = plugin(kube_cluster, namespace, "watch", "bad")
    assert bad.returncode == 1, bad.stderr
    assert "FlowRun bad  Failed" in bad.stdout and "boom" in bad.stdout

    missing = plugin(kube_cluster, namespace, "watch", "nope")
    assert missing.returncode == 1
    assert missing.stderr == f'error: FlowRun "nope" not found in namespace "{namespace}"\n'

    listed = plugin(kube_cluster, namespace, "list")
    assert [row.split()[:3] for row in listed.stdout.splitlines()] == [
        ["NAME", "FLOW", "PHASE"],
        ["bad", "-", "Failed"],
        ["good", "-", "Succeeded"],
    ]
    for name in ("good", "bad"):
        flowruns.delete_and_check_nothing_leaked(name)


def test_logs_of_a_failed_task_live_and_after_its_pod_is_deleted(
    kube_cluster: KubeCluster, namespace: str, operator: object, flowruns: FlowRuns
) -> None:
    flowruns.create(flowrun("logged", task("prep"), task("crunch", "prep", outcome="fail", duration="4s")))
    wait_for(
        "crunch to run",
        lambda: (
            ((flowruns.get("logged") or {}).get("status") or {}).get("tasks", {}).get("crunch", {}).get("phase")
            == "Running"
        ),
        timeout=60,
    )
    # Follows every task's pod while it runs, and ends by itself once the run has finished.
    followed = plugin(kube_cluster, namespace, "logs", "logged", "-f")
    assert followed.returncode == 0, followed.stderr
    lines = followed.stdout.splitlines()
    # The dev cluster's simulated containers each print 150 numbered lines.
    assert lines.count("prep   | simulated log line 150") == 1
    assert lines.count("crunch | simulated log line 150") == 1
    assert len(lines) == 300
    finished = flowruns.get("logged")
    assert finished is not None and finished["status"]["phase"] == "Failed"

    live = plugin(kube_cluster, namespace, "logs", "logged", "crunch")
    assert live.returncode == 0, live.stderr
    assert live.stdout.splitlines()[0] == "crunch | simulated log line 1"
    assert len(live.stdout.splitlines()) == 150

    client.CoreV1Api(kube_cluster.api).delete_namespaced_pod("logged-crunch-1", namespace, grace_period_seconds=0)
    wait_for(
        "the crunch pod to be gone",
        lambda: (
            not client.CoreV1Api(kube_cluster.api)
            .list_namespaced_pod(namespace, field_selector="metadata.name=logged-crunch-1")
            .items
        ),
    )
    kept = plugin(kube_cluster, namespace, "logs", "logged", "crunch")
    assert kept.returncode == 0, kept.stderr
    assert "pod logged-crunch-1 is gone: the last lines of crunch kept in the FlowRun's status" in kept.stderr
    # The operator kept the last 100 lines.
    assert kept.stdout.splitlines()[0] == "crunch | simulated log line 51"
    assert kept.stdout.splitlines()[-1] == "crunch | simulated log line 150"

    unknown = plugin(kube_cluster, namespace, "logs", "logged", "nope")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: FlowRun logged has no task 'nope'")
    flowruns.delete_and_check_nothing_leaked("logged")


def test_cancel_stops_a_run(kube_cluster: KubeCluster, namespace: str, operator: object, flowruns: FlowRuns) -> None:
    flowruns.create(flowrun("long", task("slow", duration="10m"), task("after", "slow")))
    wait_for(
        "slow to run",
        lambda: (
            ((flowruns.get("long") or {}).get("status") or {}).get("tasks", {}).get("slow", {}).get("reason")
            == "PodRunning"
        ),
        timeout=60,
    )
    cancelled = plugin(kube_cluster, namespace, "cancel", "long")
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout == "FlowRun long: cancel requested\n"
    watched = plugin(kube_cluster, namespace, "watch", "long")
    assert watched.returncode == 1
    run = flowruns.get("long")
    assert run is not None and run["spec"]["cancel"] is True and run["status"]["phase"] == "Cancelled"
    assert run["status"]["tasks"]["slow"]["phase"] == "Cancelled"
    again = plugin(kube_cluster, namespace, "cancel", "long")
    assert (
        again.returncode == 0 and again.stdout == "FlowRun long has already finished (Cancelled): nothing to cancel\n"
    )
    flowruns.delete_and_check_nothing_leaked("long")


def restricted_kubeconfig(kube_cluster: KubeCluster, namespace: str, path: Path) -> Path:
    """The admin's kubeconfig plus a context `restricted` for a ServiceAccount that may create
    FlowRuns and the children of a run, but no ConfigMaps."""
    core, rbac = client.CoreV1Api(kube_cluster.api), client.RbacAuthorizationV1Api(kube_cluster.api)
    meta = client.V1ObjectMeta(name="flow-user")
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=meta))
    rules = [
        client.V1PolicyRule(api_groups=[api.GROUP], resources=[api.PLURAL], verbs=["create", "get", "list"]),
        client.V1PolicyRule(api_groups=[""], resources=["pods", "services"], verbs=["create"]),
        client.V1PolicyRule(api_groups=["apps"], resources=["deployments"], verbs=["create"]),
        client.V1PolicyRule(api_groups=["batch"], resources=["jobs"], verbs=["create"]),
    ]
    rbac.create_namespaced_role(namespace, client.V1Role(metadata=meta, rules=rules))
    binding = client.V1RoleBinding(
        metadata=meta,
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="flow-user"),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="flow-user", namespace=namespace)],
    )
    rbac.create_namespaced_role_binding(namespace, binding)
    request = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600))
    issued: Any = core.create_namespaced_service_account_token("flow-user", namespace, request)
    token = issued.status.token
    config = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    cluster = config["contexts"][0]["context"]["cluster"]
    config["users"].append({"name": "flow-user", "user": {"token": token}})
    config["contexts"].append({"name": "restricted", "context": {"cluster": cluster, "user": "flow-user"}})
    path.write_text(yaml.safe_dump(config))
    return path


def test_validate_server_catches_an_invalid_pod_template_and_a_forbidden_kind(
    kube_cluster: KubeCluster, namespace: str, flowruns: FlowRuns, tmp_path: Path
) -> None:
    kubeconfig = restricted_kubeconfig(kube_cluster, namespace, tmp_path / "config")
    invalid = flowrun("no-image", {"name": "a", "template": {"spec": {"containers": [{"name": "main"}]}}})
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"k": "v"}}
    forbidden = flowrun(
        "needs-config",
        task("a") | {"resources": ["cfg"]},
        resources=[{"name": "cfg", "setup": {"manifests": [config_map]}}],
    )
    fine = flowrun("fine", task("a"), task("b", "a"))
    path = tmp_path / "runs.yaml"
    path.write_text(yaml.safe_dump_all([invalid, forbidden, fine]))

    offline = plugin(kube_cluster, namespace, "validate", "-f", str(path))
    assert offline.returncode == 0, offline.stdout  # only the API server knows these are wrong

    checked = plugin(
        kube_cluster,
        namespace,
        "validate",
        "-f",
        str(path),
        "--server",
        "--context",
        "restricted",
        kubeconfig=kubeconfig,
    )
    assert checked.returncode == 1, checked.stderr
    lines = checked.stdout.splitlines()
    assert len(lines) == 3, checked.stdout
    assert lines[0].startswith(f"{path}#1: FlowRun no-image: the API server rejected a child: spec.tasks[0].template: ")
    assert "spec.containers[0].image: Required value" in lines[0]
    assert lines[1].startswith(
        f"{path}#2: FlowRun needs-config: the API server rejected a child: spec.resources[0].setup.manifests[0]: "
    )
    assert (
        'cannot create resource "configmaps"' in lines[1] and "serviceaccount:" + namespace + ":flow-user" in lines[1]
    )
    assert (
        lines[2]
        == f"{path}#3: FlowRun fine: valid; the API server accepted the FlowRun and its 2 children in a dry run"
    )

    # The admin may create ConfigMaps; a dry run creates nothing.
    admin = plugin(kube_cluster, namespace, "validate", "-f", str(path), "--server")
    assert admin.returncode == 1 and admin.stdout.count("rejected") == 1
    listed: Any = flowruns.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)
    assert listed["items"] == []
    assert (
        client.CoreV1Api(kube_cluster.api)
        .list_namespaced_config_map(namespace, field_selector="metadata.name=settings")
        .items
        == []
    )


def test_validate_server_says_what_the_api_server_cannot_take_before_sending_it(
    kube_cluster: KubeCluster, namespace: str, flowruns: FlowRuns, tmp_path: Path
) -> None:
    fine = flowrun("fine", task("a"))
    huge = flowrun("huge", task("a"))
    huge["metadata"]["annotations"] = {"example.com/blob": "x" * 10_000_000}
    laughs = "".join(
        [
            "apiVersion: flowrun.dev/v1alpha1\nkind: FlowRun\nmetadata:\n  name: laughs\n  labels:\n",
            f"    l0: &a0 [{', '.join(['lol'] * 10)}]\n",
            *(f"    l{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 12)),
            "spec:\n  tasks:\n  - name: a\n    template: {spec: {containers: [{name: main, image: busybox}]}}\n",
        ]
    )
    files = {
        "huge.yaml": yaml.safe_dump(huge, width=1 << 30).encode(),
        "laughs.yaml": laughs.encode(),
        "latin1.yaml": yaml.safe_dump(fine).replace("fine", "caf\xe9").encode("latin-1"),
    }
    expected = {
        "huge.yaml": "over 3 MiB: too large for the API server, which refuses a request over 3 MiB",
        "laughs.yaml": "excessive aliasing: its YAML aliases expand it to over 3 MiB, too large for the API server",
        "latin1.yaml": "not UTF-8 text (byte 0xe9 at offset ",
    }
    for name, content in files.items():
        path = tmp_path / name
        path.write_bytes(content)
        checked = plugin(kube_cluster, namespace, "validate", "-f", str(path), "--server", timeout=30)
        assert (checked.returncode, checked.stdout) == (1, ""), checked
        assert checked.stderr.startswith(f"error: {path}: {expected[name]}") and checked.stderr.count("\n") == 1, (
            checked.stderr
        )
    listed: Any = flowruns.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)
    assert listed["items"] == []


def with_args(body: dict[str, Any], *args: str) -> dict[str, Any]:
    body["template"]["spec"]["containers"][0]["args"] = list(args)
    return body


def test_submit_from_a_flow_cancel_and_rerun_through_the_plugin(
    kube_cluster: KubeCluster, namespace: str, operator: object, flowruns: FlowRuns
) -> None:
    flows = Objects(kube_cluster, namespace, "flows", "Flow")
    first = with_args(task("extract", message="rows-123"), "$(params.day)")
    second = with_args(task("report", "extract", duration="6s"), "$(tasks.extract.result)")
    flows.create({"metadata": {"name": "nightly"}, "spec": {"params": [{"name": "day"}], "tasks": [first, second]}})

    submitted = plugin(kube_cluster, namespace, "submit", "nightly", "-p", "day=2026-12-01", "--name", "night-1")
    assert (submitted.returncode, submitted.stdout) == (0, "night-1\n"), submitted.stderr
    flowruns.wait_status("night-1", "report running", lambda s: task_phase(s, "report") == "Running", timeout=60)
    # The param given on the command line reached the pod.
    assert main_args(flowruns, "night-1-extract-1") == ["2026-12-01"]
    cancelled = plugin(kube_cluster, namespace, "cancel", "night-1")
    assert cancelled.returncode == 0, cancelled.stderr
    flowruns.wait_phase("night-1", "Cancelled", timeout=60)

    rerun = plugin(kube_cluster, namespace, "rerun", "night-1", "--name", "night-1-again", "--watch", timeout=180)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "created FlowRun night-1-again" in rerun.stderr
    again = flowruns.get("night-1-again")
    assert again is not None and again["status"]["phase"] == "Succeeded", again
    extract = again["status"]["tasks"]["extract"]
    assert (extract["phase"], extract["reason"], extract["result"]) == ("Succeeded", "Reused", "rows-123")
    # The reused result flowed into the task that ran again; extract got no pod of its own.
    assert main_args(flowruns, "night-1-again-report-1") == ["rows-123"]
    assert "night-1-again-extract-1" not in flowruns.children(again["metadata"]["uid"]).get("Pod", [])
    # The tree of a run of a Flow is drawn from the spec it resolved.
    tree = plugin(kube_cluster, namespace, "get", "night-1-again")
    assert tree.returncode == 0 and "Reused" in tree.stdout, tree.stdout
    for name in ("night-1-again", "night-1"):
        flowruns.delete_and_check_nothing_leaked(name)


def task_phase(status: dict[str, Any], name: str) -> str | None:
    phase = ((status.get("tasks") or {}).get(name) or {}).get("phase")
    return str(phase) if phase is not None else None


def main_args(flowruns: FlowRuns, pod: str) -> list[str]:
    return list(flowruns.read_pod(pod).spec.containers[0].args or [])
