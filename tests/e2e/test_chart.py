"""The Helm chart on a real API server: lint and schema, server-side dry runs of both RBAC scopes,
install and uninstall, and its namespace-scoped RBAC proven by running the operator with the
chart's ServiceAccount token (and by what that token is refused)."""

from __future__ import annotations

import base64
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

import flowrun
from devcluster.pytest_plugin import KubeCluster, fresh_namespace, wait_for
from tests.e2e.helpers import (
    CHART,
    INSTANCE_LABEL,
    REPO,
    FlowRuns,
    Objects,
    Operator,
    Tools,
    check_runs_the_chart_refuses,
    create_runs_the_chart_refuses,
    labelled_leftovers,
    release_name,
    sim_task,
    uninstall_and_check_nothing_left,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def tools(kube_cluster: KubeCluster, tmp_path: Path) -> Tools:
    return Tools(kube_cluster, tmp_path / "helm-home")


@pytest.fixture
def other_namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """A second namespace, outside what the chart grants."""
    with fresh_namespace(kube_cluster, "chart-other") as name:
        yield name


def install_namespace_scoped(tools: Tools, release: str, namespace: str, *values: str) -> None:
    """The chart for one namespace, the CRD left to the flowrun_crd fixture; waits for its pod."""
    tools.run(
        "helm",
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--skip-crds",
        "--set",
        "rbac.scope=namespaces",
        *values,
        "--wait",
        "--timeout",
        "120s",
    )


# --- chart files and values schema (the API server is not involved) ---------------------------


@pytest.mark.parametrize(
    "values",
    [
        [],
        ["--set", "rbac.scope=namespaces", "--set", "watchNamespaces={team-a,team-b}"],
        ["--set", "metrics.enabled=false", "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=ops"],
        ["--set", "image.digest=sha256:" + "a" * 64, "--set", "logLevel=debug", "--set", "logFormat=text"],
    ],
    ids=["defaults", "namespaces", "no-metrics-own-sa", "digest-debug"],
)
def test_helm_lint_strict(tools: Tools, values: list[str]) -> None:
    done = tools.run("helm", "lint", "--strict", str(CHART), *values)
    assert "0 chart(s) failed" in done.stdout


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("rbac.scope=everything", "/rbac/scope"),
        ("replicaCount=2", "additional properties 'replicaCount' not allowed"),
        ("logLevel=verbose", "/logLevel"),
        ("logFormat=xml", "/logFormat"),
        ("metrics.port=70000", "/metrics/port"),
        ("watchNamespaces={Not_A_Namespace}", "/watchNamespaces/0"),
        ("watchNamespaces={team-a}", "/watchNamespaces"),  # with the default rbac.scope=cluster
        ("image.digest=latest", "/image/digest"),
        ("rbac.extraRules[0].resources={configmaps}", "/rbac/extraRules/0"),  # no verbs, no apiGroups
        ("replicas=0", "/replicas"),
        ("leaderElection.leaseName=Not_A_Name", "/leaderElection/leaseName"),
        ("leaderElection.enabled=maybe", "/leaderElection/enabled"),
        ("qps=-1", "/qps"),
        ("qps=fast", "/qps"),
        ("burst=0", "/burst"),
        ("burst=1.5", "/burst"),
    ],
)
def test_values_schema_rejects_bad_values(tools: Tools, setting: str, complaint: str) -> None:
    done = tools.run("helm", "lint", str(CHART), "--set", setting, check=False)
    assert done.returncode != 0, f"helm lint accepted --set {setting}:\n{done.stdout}"
    assert complaint in done.stdout + done.stderr


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        # Two operators that would both act, and a leader that could act after another took over.
        ("replicas=2,leaderElection.enabled=false", "replicas > 1 needs leaderElection.enabled (null or true)"),
        (
            "leaderElection.enabled=true,leaderElection.renewDeadlineSeconds=15",
            "leaderElection needs leaseDurationSeconds > renewDeadlineSeconds > retryPeriodSeconds",
        ),
    ],
)
def test_templates_refuse_values_under_which_two_operators_would_act(
    tools: Tools, setting: str, complaint: str
) -> None:
    done = tools.run("helm", "template", "r", str(CHART), "--set", setting, check=False)
    assert done.returncode != 0, f"helm template accepted --set {setting}"
    assert complaint in done.stderr


@pytest.mark.parametrize(
    ("values", "flags"),
    [
        ([], ["--qps=200", "--burst=400", "--resync-seconds=30"]),
        (["--set", "qps=0"], ["--qps=0", "--burst=400", "--resync-seconds=30"]),
        (
            ["--set-json", "qps=12.5", "--set", "burst=40", "--set", "resyncSeconds=5"],
            ["--qps=12.5", "--burst=40", "--resync-seconds=5"],
        ),
    ],
    ids=["defaults", "no-limit", "set"],
)
def test_templates_give_the_operator_its_rate_limit(tools: Tools, values: list[str], flags: list[str]) -> None:
    rendered = yaml.safe_load_all(tools.run("helm", "template", "r", str(CHART), "--namespace", "ops", *values).stdout)
    deployment = next(doc for doc in rendered if doc and doc["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert [arg for arg in args if arg.startswith(("--qps=", "--burst=", "--resync-seconds="))] == flags


def test_templates_render_the_scope_asked_for(tools: Tools) -> None:
    cluster = list(yaml.safe_load_all(tools.run("helm", "template", "r", str(CHART), "--namespace", "ops").stdout))
    kinds = sorted(doc["kind"] for doc in cluster if doc)
    # The operator's ClusterRole, and the two that add FlowRuns to the default view/edit/admin roles.
    assert kinds == ["ClusterRole"] * 3 + ["ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]
    deployment = next(doc for doc in cluster if doc and doc["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"] == {"type": "Recreate"}
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][0] == "--all-namespaces"
    assert container["image"] == f"flowrun-operator:{flowrun.__version__}"  # the chart's appVersion
    assert container["securityContext"]["readOnlyRootFilesystem"] is True

    scoped = list(
        yaml.safe_load_all(
            tools.run(
                "helm",
                "template",
                "r",
                str(CHART),
                "--namespace",
                "ops",
                "--set",
                "rbac.scope=namespaces",
                "--set",
                "watchNamespaces={team-a,team-b}",
            ).stdout
        )
    )
    roles = sorted(
        (doc["kind"], doc["metadata"]["namespace"]) for doc in scoped if doc and doc["kind"].startswith("Role")
    )
    assert roles == [("Role", "team-a"), ("Role", "team-b"), ("RoleBinding", "team-a"), ("RoleBinding", "team-b")]
    assert not [doc for doc in scoped if doc and doc["kind"].startswith("Cluster")]
    args = next(doc for doc in scoped if doc and doc["kind"] == "Deployment")["spec"]["template"]["spec"]["containers"][
        0
    ]["args"]
    assert args[:2] == ["--namespace=team-a", "--namespace=team-b"] and "--all-namespaces" not in args


@pytest.mark.parametrize(
    "values",
    [
        [],
        [
            "--set",
            "rbac.scope=namespaces",
            "--set",
            "logFormat=text",
            "--set",
            "logLevel=debug",
            "--set",
            "metrics.enabled=false",
        ],
        ["--set", "replicas=2"],
        ["--set", "qps=0", "--set", "burst=1"],
        ["--set-json", "qps=2.5", "--set", "burst=100000"],
    ],
    ids=["defaults", "namespaces-text-no-metrics", "two-replicas", "no-rate-limit", "rate-limit-extremes"],
)
def test_the_operator_accepts_the_arguments_the_chart_gives_it(tools: Tools, values: list[str]) -> None:
    rendered = yaml.safe_load_all(tools.run("helm", "template", "r", str(CHART), "--namespace", "ops", *values).stdout)
    deployment = next(doc for doc in rendered if doc and doc["kind"] == "Deployment")
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    # The image's ENTRYPOINT is `flowrun run`; `--help` last makes argparse check every argument
    # before it and exit 0 without starting the operator.
    done = subprocess.run(
        [sys.executable, "-m", "flowrun.cli", "run", *args, "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"flowrun run {' '.join(args)}: {done.stderr}"


def rendered(tools: Tools, *values: str) -> dict[str, list[dict[str, Any]]]:
    """`helm template` of the chart (release r in namespace ops), the objects by kind."""
    docs = yaml.safe_load_all(tools.run("helm", "template", "r", str(CHART), "--namespace", "ops", *values).stdout)
    found: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        if doc:
            found.setdefault(doc["kind"], []).append(doc)
    return found


ELECTION_ARGS = [
    "--leader-election",
    "--leader-election-namespace=ops",
    "--leader-election-lease-name=r-flowrun-operator",
    "--leader-election-lease-seconds=15",
    "--leader-election-renew-deadline=10",
    "--leader-election-retry=2",
]


def test_two_replicas_elect_a_leader_with_a_disruption_budget_anti_affinity_and_a_lease_role(tools: Tools) -> None:
    objects = rendered(tools, "--set", "replicas=2", "--set", "rbac.scope=namespaces", "--set", "watchNamespaces={a}")
    deployment = objects["Deployment"][0]["spec"]
    pod = deployment["template"]["spec"]
    container = pod["containers"][0]
    selector = {"app.kubernetes.io/name": "flowrun-operator", "app.kubernetes.io/instance": "r"}
    assert deployment["replicas"] == 2
    # Replicas may run side by side: a new pod starts before an old one stops.
    assert deployment["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    assert container["args"][-len(ELECTION_ARGS) :] == ELECTION_ARGS
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in container["env"]
    assert pod["affinity"] == {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": selector},
                    },
                }
            ]
        }
    }
    [budget] = objects["PodDisruptionBudget"]
    assert budget["metadata"]["namespace"] == "ops"
    assert budget["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    assert selector.items() <= objects["Deployment"][0]["spec"]["template"]["metadata"]["labels"].items()
    # The Lease's rights: in the release's namespace only (not in the watched one), that Lease only
    # but for its creation (which cannot name it).
    lease_roles = [r for r in objects["Role"] if r["metadata"]["name"] == "r-flowrun-operator-leader-election"]
    assert [r["metadata"]["namespace"] for r in lease_roles] == ["ops"]
    assert lease_roles[0]["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {
            "apiGroups": ["coordination.k8s.io"],
            "resources": ["leases"],
            "resourceNames": ["r-flowrun-operator"],
            "verbs": ["get", "update"],
        },
    ]
    [binding] = [b for b in objects["RoleBinding"] if b["metadata"]["name"] == "r-flowrun-operator-leader-election"]
    assert binding["metadata"]["namespace"] == "ops"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "r-flowrun-operator", "namespace": "ops"}]
    # The locks' Leases (in the watched namespaces) are made and deleted, never updated: only the
    # election's rights renew a Lease.
    assert not any(
        "leases" in rule.get("resources", []) and "update" in rule.get("verbs", [])
        for role in objects["Role"]
        if role not in lease_roles
        for rule in role["rules"]
    )

    # One replica: no election, no budget, no anti-affinity, replaced with Recreate.
    one = rendered(tools)
    assert "PodDisruptionBudget" not in one and "Role" not in one
    pod_one = one["Deployment"][0]["spec"]
    assert pod_one["strategy"] == {"type": "Recreate"} and "affinity" not in pod_one["template"]["spec"]
    assert not [a for a in pod_one["template"]["spec"]["containers"][0]["args"] if a.startswith("--leader-election")]
    # One replica with leader election: an upgrade's new pod takes over when the old one stops.
    elected = rendered(tools, "--set", "leaderElection.enabled=true", "--set", "leaderElection.leaseName=mine")
    assert "PodDisruptionBudget" not in elected
    assert elected["Deployment"][0]["spec"]["strategy"]["type"] == "RollingUpdate"
    assert elected["Role"][0]["rules"][1]["resourceNames"] == ["mine"]
    # An affinity of one's own replaces the default one.
    own = rendered(tools, "--set", "replicas=3", "--set", "affinity.nodeAffinity.x=y")
    assert own["Deployment"][0]["spec"]["template"]["spec"]["affinity"] == {"nodeAffinity": {"x": "y"}}


# --- the chart against the API server ---------------------------------------------------------


@pytest.mark.parametrize("scope", ["cluster", "namespaces"])
@pytest.mark.parametrize("replicas", [1, 2])
def test_templates_pass_server_side_dry_run(
    tools: Tools, flowrun_crd: None, namespace: str, scope: str, replicas: int
) -> None:
    template = tools.run(
        "helm",
        "template",
        release_name(),
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        f"rbac.scope={scope}",
        "--set",
        f"replicas={replicas}",
    ).stdout
    done = tools.run("kubectl", "apply", "--dry-run=server", "-f", "-", stdin=template)
    applied = done.stdout
    for kind in ("serviceaccount", "deployment.apps", "service"):
        assert f"{kind}/" in applied
    if scope == "cluster":
        assert "clusterrole.rbac.authorization.k8s.io/" in applied and "clusterrolebinding" in applied
    else:
        assert "role.rbac.authorization.k8s.io/" in applied and "clusterrole." not in applied
    if replicas > 1:
        assert "poddisruptionbudget.policy/" in applied and "-leader-election" in applied
    else:
        assert "poddisruptionbudget" not in applied and "-leader-election" not in applied


def test_install_becomes_available_and_uninstall_removes_everything(
    tools: Tools, kube_cluster: KubeCluster, flowrun_crd: None, namespace: str
) -> None:
    release = release_name()
    # The operator's pod must pass the strictest Pod Security level (enforced by the API server).
    kube_cluster.core().patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    # The CRD exists already (the flowrun_crd fixture): Helm skips an existing crds/ entry.
    tools.run("helm", "install", release, str(CHART), "--namespace", namespace, "--wait", "--timeout", "120s")
    apps = client.AppsV1Api(kube_cluster.api)
    name = f"{release}-flowrun-operator"

    def available() -> bool:
        conditions = apps.read_namespaced_deployment(name, namespace).status.conditions or []
        return any(c.type == "Available" and c.status == "True" for c in conditions)

    # The image is not pulled here: KWOK plays the kubelet and marks the pod Ready.
    wait_for(f"Deployment {name} to be Available", available, timeout=60)
    assert set(labelled_leftovers(kube_cluster.api, [namespace], release)) >= {
        "ServiceAccount",
        "Service",
        "Deployment",
        "Pod",
        "ClusterRole",
        "ClusterRoleBinding",
    }
    uninstall_and_check_nothing_left(tools, kube_cluster.api, release, namespace, [namespace])
    # Helm never deletes what crds/ installed: FlowRuns survive an uninstall.
    client.ApiextensionsV1Api(kube_cluster.api).read_custom_resource_definition("flowruns.flowrun.dev")


def test_documented_crd_upgrade_path(tools: Tools, kube_cluster: KubeCluster, namespace: str, tmp_path: Path) -> None:
    """What docs/install.md says about CRDs, on the real CRD under a throwaway group: Helm installs
    crds/ once, `helm upgrade` leaves it alone, `helm uninstall` keeps it, and the documented
    `kubectl apply --server-side --force-conflicts` upgrades it (a plain server-side apply
    conflicts with Helm's field ownership)."""
    group = f"g{secrets.token_hex(3)}.chart-test.flowrun.dev"
    crd_name = f"flowruns.{group}"
    chart = tmp_path / "crd-only"
    (chart / "crds").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        (CHART / "Chart.yaml").read_text().replace("name: flowrun-operator", "name: crd-only")
    )
    original = (CHART / "crds" / "flowrun.yaml").read_text()
    assert "name: flowruns.flowrun.dev" in original and "group: flowrun.dev" in original
    v1 = original.replace("name: flowruns.flowrun.dev", f"name: {crd_name}").replace(
        "group: flowrun.dev", f"group: {group}"
    )
    v2 = v1.replace("description: Run state.", "description: Run state (v2).")
    assert v2 != v1
    (chart / "crds" / "flowrun.yaml").write_text(v1)
    extensions = client.ApiextensionsV1Api(kube_cluster.api)

    def phase_column() -> str:
        crd = extensions.read_custom_resource_definition(crd_name)
        description: str = next(
            c.description for c in crd.spec.versions[0].additional_printer_columns if c.name == "Phase"
        )
        return description

    release = release_name()
    try:
        tools.run("helm", "install", release, str(chart), "--namespace", namespace)
        assert phase_column() == "Run state."
        (chart / "crds" / "flowrun.yaml").write_text(v2)
        tools.run("helm", "upgrade", release, str(chart), "--namespace", namespace)
        assert phase_column() == "Run state.", "helm upgrade changed crds/ (docs/install.md says it never does)"
        (tmp_path / "v2.yaml").write_text(v2)
        plain = tools.run("kubectl", "apply", "--server-side", "-f", str(tmp_path / "v2.yaml"), check=False)
        assert plain.returncode != 0 and "conflict" in plain.stderr.lower(), plain.stdout + plain.stderr
        tools.run("kubectl", "apply", "--server-side", "--force-conflicts", "-f", str(tmp_path / "v2.yaml"))
        assert phase_column() == "Run state (v2)."
        tools.run("helm", "uninstall", release, "--namespace", namespace)
        assert extensions.read_custom_resource_definition(crd_name), "helm uninstall deleted the CRD"
    finally:
        try:
            extensions.delete_custom_resource_definition(crd_name)
        except ApiException as error:
            if error.status != 404:
                raise


# --- RBAC proven with the chart's own ServiceAccount -------------------------------------------


def token_kubeconfig(kube_cluster: KubeCluster, token: str, path: Path) -> Path:
    """A kubeconfig with the admin kubeconfig's server and CA, authenticating with `token`."""
    admin = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    context = next(
        c for c in admin["contexts"] if c["name"] == admin.get("current-context", admin["contexts"][0]["name"])
    )
    cluster = next(c for c in admin["clusters"] if c["name"] == context["context"]["cluster"])["cluster"]
    entry: dict[str, Any] = {"server": cluster["server"]}
    if "certificate-authority-data" in cluster:
        entry["certificate-authority-data"] = cluster["certificate-authority-data"]
    elif "certificate-authority" in cluster:
        ca = Path(cluster["certificate-authority"])
        ca = ca if ca.is_absolute() else kube_cluster.kubeconfig.parent / ca
        entry["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "cluster", "cluster": entry}],
                "users": [{"name": "operator", "user": {"token": token}}],
                "contexts": [{"name": "operator", "context": {"cluster": "cluster", "user": "operator"}}],
                "current-context": "operator",
            }
        )
    )
    return path


def assert_forbidden(what: str, call: Any) -> None:
    with pytest.raises(ApiException) as raised:
        call()
    assert raised.value.status == 403, f"{what}: expected 403, got {raised.value.status} {raised.value.reason}"


# kopf scans no namespace and no CRD (settings.scanning.disabled) and the operator asks only for
# what its Role grants: no refusal at all is expected.
FORBIDDEN_IN_LOG = re.compile(r'HTTP/1\.1" 403 |status=403|\b403 Forbidden|forbidden:|Forbidden\b')


def test_namespaced_rbac_is_enough_to_run_the_dask_example_and_no_more(
    tools: Tools, kube_cluster: KubeCluster, flowrun_crd: None, namespace: str, other_namespace: str, tmp_path: Path
) -> None:
    release = release_name()
    install_namespace_scoped(tools, release, namespace)
    service_account = f"{release}-flowrun-operator"
    core = kube_cluster.core()
    token = core.create_namespaced_service_account_token(
        service_account,
        namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)),
    ).status.token
    kubeconfig = token_kubeconfig(kube_cluster, token, tmp_path / "operator-kubeconfig")

    # The Flow and CronFlowRun examples too: the Flow validated (its dry run included), a run of it,
    # and the CronFlowRun's run (last night's, as if last scheduled two nights ago), its status.
    flow_examples = REPO / "examples" / "flows"
    flows = Objects(kube_cluster, namespace, "flows", "Flow")
    crons = Objects(kube_cluster, namespace, "cronflowruns", "CronFlowRun")
    for path, objects in (("dask-flow.yaml", flows), ("nightly-cronflowrun.yaml", crons)):
        example = yaml.safe_load((flow_examples / path).read_text())
        objects.create({"metadata": example["metadata"], "spec": example["spec"]})
    two_nights_ago = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    crons.patch_status("nightly-summary", {"lastScheduleTime": two_nights_ago})

    # The operator, as the chart's ServiceAccount, watching the namespace the chart granted.
    operator = Operator(kube_cluster, namespace, tmp_path)
    operator.env["KUBECONFIG"] = str(kubeconfig)
    operator.start()
    try:
        flowruns = FlowRuns(kube_cluster, namespace)
        example = yaml.safe_load((REPO / "examples" / "dask-flowrun.yaml").read_text())
        from_flow = yaml.safe_load((flow_examples / "dask-flowrun-from-flow.yaml").read_text())
        name = example["metadata"]["name"]
        flowruns.create({"metadata": {"name": name}, "spec": example["spec"]})
        flowruns.create({"metadata": from_flow["metadata"], "spec": from_flow["spec"]})
        nightly = wait_for(
            "the CronFlowRun's run",
            lambda: flowruns.custom.list_namespaced_custom_object(
                "flowrun.dev", "v1alpha1", namespace, "flowruns", label_selector="flowrun.dev/cron=nightly-summary"
            )["items"],
            timeout=60,
        )[0]["metadata"]["name"]
        for run_name in (name, from_flow["metadata"]["name"], nightly):
            try:
                run = flowruns.wait_phase(run_name, ("Succeeded", "Failed"), timeout=180)
            except AssertionError as error:
                raise AssertionError(f"{error}\noperator log:\n{operator.log_tail(60)}") from None
            assert run["status"]["phase"] == "Succeeded", f"{run['status']}\noperator log:\n{operator.log_tail(60)}"
            assert run["status"]["resources"]["dask"]["phase"] == "CleanedUp"
        flow = flows.wait_status("dask-summary", "validated", lambda s: bool(s.get("conditions")))
        assert [c["status"] for c in flow["status"]["conditions"] if c["type"] == "SpecValid"] == ["True"], flow
        crons.wait_status("nightly-summary", "its success recorded", lambda s: bool(s.get("lastSuccessfulTime")))
        nightly_uid = (flowruns.get(nightly) or {})["metadata"]["uid"]
        crons.delete("nightly-summary")  # its run goes with it, through its finalizer
        wait_for("the CronFlowRun's run to be gone", lambda: flowruns.get(nightly) is None, timeout=60)
        # Its pods go by garbage collection once the run is gone, a moment later.
        wait_for("the run's children to be gone", lambda: not flowruns.children(nightly_uid), timeout=60)
        flowruns.delete_and_check_nothing_leaked(from_flow["metadata"]["name"])
        flowruns.delete_and_check_nothing_leaked(name)
        flows.delete("dask-summary")
        assert operator.process is not None and operator.process.poll() is None, operator.log_tail()
    finally:
        operator.stop()
    log = operator.log_path.read_text(errors="replace")
    refused = [line for line in log.splitlines() if FORBIDDEN_IN_LOG.search(line)]
    assert not refused, "the operator was refused something:\n" + "\n".join(refused[:20])

    # The same token is refused everything the operator does not need.
    restricted = config.new_client_from_config(str(kubeconfig))
    as_operator = client.CoreV1Api(restricted)
    assert_forbidden("list Secrets in the watched namespace", lambda: as_operator.list_namespaced_secret(namespace))
    assert_forbidden(
        "read a Secret in the watched namespace", lambda: as_operator.read_namespaced_secret("any", namespace)
    )
    assert_forbidden("list pods in another namespace", lambda: as_operator.list_namespaced_pod(other_namespace))
    owned_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "stray-task-1",
            "labels": {
                "app.kubernetes.io/managed-by": "flowrun-operator",
                "flowrun.dev/flowrun": "stray",
                "flowrun.dev/role": "task",
            },
        },
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }
    assert_forbidden(
        "create a FlowRun pod in another namespace",
        lambda: as_operator.create_namespaced_pod(other_namespace, owned_pod),
    )
    custom = client.CustomObjectsApi(restricted)
    assert_forbidden(
        "create a FlowRun in another namespace (it creates those of CronFlowRuns it serves only)",
        lambda: custom.create_namespaced_custom_object(
            "flowrun.dev",
            "v1alpha1",
            other_namespace,
            "flowruns",
            {"apiVersion": "flowrun.dev/v1alpha1", "kind": "FlowRun", "metadata": {"name": "x"}, "spec": {"tasks": []}},
        ),
    )
    for plural, kind in (("flows", "Flow"), ("cronflowruns", "CronFlowRun")):
        body = {"apiVersion": "flowrun.dev/v1alpha1", "kind": kind, "metadata": {"name": "x"}, "spec": {}}
        assert_forbidden(
            f"create a {kind} (the operator only reads them)",
            lambda plural=plural, body=body: custom.create_namespaced_custom_object(
                "flowrun.dev", "v1alpha1", namespace, plural, body
            ),
        )
        assert_forbidden(
            f"patch a {kind} (it writes only their status)",
            lambda plural=plural: custom.patch_namespaced_custom_object(
                "flowrun.dev", "v1alpha1", namespace, plural, "x", {"metadata": {"labels": {"a": "b"}}}
            ),
        )
    endpoint_slices = client.DiscoveryV1Api(restricted)
    assert endpoint_slices.list_namespaced_endpoint_slice(namespace) is not None  # watched: listed
    assert_forbidden(
        "delete an EndpointSlice (the EndpointSlice controller's; the operator only watches them)",
        lambda: endpoint_slices.delete_namespaced_endpoint_slice("any", namespace),
    )
    assert_forbidden(
        "create an EndpointSlice",
        lambda: endpoint_slices.create_namespaced_endpoint_slice(
            namespace, {"metadata": {"name": "x"}, "addressType": "IPv4", "endpoints": []}
        ),
    )
    assert_forbidden("list namespaces", as_operator.list_namespace)
    assert_forbidden("read ClusterRoles", lambda: client.RbacAuthorizationV1Api(restricted).list_cluster_role())

    uninstall_and_check_nothing_left(tools, kube_cluster.api, release, namespace, [namespace, other_namespace])


def test_the_charts_lease_role_lets_two_replicas_elect_and_hand_over(
    tools: Tools, kube_cluster: KubeCluster, flowrun_crd: None, namespace: str, tmp_path: Path
) -> None:
    """Two replicas as the chart makes them (its Deployment, budget and Roles; KWOK plays their
    pods), and two operators run with its ServiceAccount's token and the leader election arguments
    it gives them: one leads through the chart's Lease, a run succeeds, the leader's graceful stop
    hands over, and nothing is refused."""
    release = release_name()
    install_namespace_scoped(tools, release, namespace, "--set", "replicas=2")
    name = f"{release}-flowrun-operator"
    status = client.AppsV1Api(kube_cluster.api).read_namespaced_deployment(name, namespace).status
    assert status.ready_replicas == 2
    budget = client.PolicyV1Api(kube_cluster.api).read_namespaced_pod_disruption_budget(name, namespace)
    assert budget.spec.min_available == 1
    wait_for("the budget to count both pods", lambda: budget_healthy(kube_cluster, name, namespace) == 2)
    args = (
        client.AppsV1Api(kube_cluster.api)
        .read_namespaced_deployment(name, namespace)
        .spec.template.spec.containers[0]
        .args
    )
    election = [arg for arg in args if arg.startswith("--leader-election")]
    assert f"--leader-election-lease-name={name}" in election
    token = (
        kube_cluster.core()
        .create_namespaced_service_account_token(
            name,
            namespace,
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)),
        )
        .status.token
    )
    kubeconfig = token_kubeconfig(kube_cluster, token, tmp_path / "operator-kubeconfig")
    coordination = client.CoordinationV1Api(kube_cluster.api)

    def holder() -> str | None:
        try:
            return str(coordination.read_namespaced_lease(name, namespace).spec.holder_identity or "")
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    operators = []
    for identity in ("pod-a", "pod-b"):
        (tmp_path / identity).mkdir()
        operator = Operator(kube_cluster, namespace, tmp_path / identity, tuple(election), env={"POD_NAME": identity})
        operator.env["KUBECONFIG"] = str(kubeconfig)
        operator.start()
        operators.append(operator)
        if identity == "pod-a":
            wait_for("pod-a to lead", lambda: holder() == "pod-a", timeout=60)
    try:
        flowruns = FlowRuns(kube_cluster, namespace)
        flowruns.create({"metadata": {"name": "ha"}, "spec": {"tasks": [sim_task("a")]}})
        assert flowruns.wait_phase("ha", "Succeeded", timeout=60)["status"]["progress"] == "1/1"
        operators[0].stop()  # gives the Lease up
        wait_for("pod-b to lead", lambda: holder() == "pod-b", timeout=15)
        flowruns.create({"metadata": {"name": "ha-2"}, "spec": {"tasks": [sim_task("a")]}})
        assert flowruns.wait_phase("ha-2", "Succeeded", timeout=60)["status"]["progress"] == "1/1"
        flowruns.delete_and_check_nothing_leaked("ha")
        flowruns.delete_and_check_nothing_leaked("ha-2")
    finally:
        for operator in operators:
            operator.stop()
    for operator in operators:
        log = operator.log_path.read_text(errors="replace")
        refused = [line for line in log.splitlines() if FORBIDDEN_IN_LOG.search(line)]
        assert not refused, "an operator was refused something:\n" + "\n".join(refused[:20])
    uninstall_and_check_nothing_left(tools, kube_cluster.api, release, namespace, [namespace])
    # The Lease is the operator's, not Helm's: docs/install.md says it stays, and how to delete it.
    coordination.delete_namespaced_lease(name, namespace)


def budget_healthy(kube_cluster: KubeCluster, name: str, namespace: str) -> int:
    status = client.PolicyV1Api(kube_cluster.api).read_namespaced_pod_disruption_budget(name, namespace).status
    return int(status.current_healthy or 0) if status is not None else 0


def test_uninstall_of_a_multi_namespace_release_removes_every_role(
    tools: Tools, kube_cluster: KubeCluster, flowrun_crd: None, namespace: str, other_namespace: str
) -> None:
    release = release_name()
    tools.run(
        "helm",
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--skip-crds",
        "--set",
        "rbac.scope=namespaces",
        "--set",
        f"watchNamespaces={{{namespace},{other_namespace}}}",
        "--wait",
        "--timeout",
        "120s",
    )
    found = labelled_leftovers(kube_cluster.api, [namespace, other_namespace], release)
    assert sorted(found["Role"]) == sorted(
        [f"{namespace}/{release}-flowrun-operator", f"{other_namespace}/{release}-flowrun-operator"]
    )
    assert "ClusterRole" not in found and "ClusterRoleBinding" not in found
    args = (
        client.AppsV1Api(kube_cluster.api)
        .read_namespaced_deployment(f"{release}-flowrun-operator", namespace)
        .spec.template.spec.containers[0]
        .args
    )
    assert args[:2] == [f"--namespace={namespace}", f"--namespace={other_namespace}"]
    uninstall_and_check_nothing_left(tools, kube_cluster.api, release, namespace, [namespace, other_namespace])


def test_metrics_service_selects_the_operator_pod(
    tools: Tools, kube_cluster: KubeCluster, flowrun_crd: None, namespace: str
) -> None:
    release = release_name()
    install_namespace_scoped(tools, release, namespace)
    core = kube_cluster.core()

    def endpoint_ports() -> list[int]:
        slices = (
            client.DiscoveryV1Api(kube_cluster.api)
            .list_namespaced_endpoint_slice(
                namespace, label_selector=f"kubernetes.io/service-name={release}-flowrun-operator-metrics"
            )
            .items
        )
        return [
            port.port
            for s in slices
            for port in (s.ports or [])
            if any(e.conditions.ready for e in (s.endpoints or []))
        ]

    assert wait_for("the metrics Service to have a ready endpoint", endpoint_ports, timeout=60) == [9090]
    service = core.read_namespaced_service(f"{release}-flowrun-operator-metrics", namespace)
    assert service.spec.ports[0].target_port == "metrics"
    pod = core.list_namespaced_pod(namespace, label_selector=f"{INSTANCE_LABEL}={release}").items[0]
    assert pod.metadata.annotations["prometheus.io/port"] == "9090"
    assert pod.spec.security_context.run_as_user == 65532 and pod.spec.security_context.run_as_non_root is True
    uninstall_and_check_nothing_left(tools, kube_cluster.api, release, namespace, [namespace])


def test_manifests_of_kinds_the_charts_rbac_does_not_grant_fail_at_once_and_their_runs_delete_in_seconds(
    tools: Tools, kube_cluster: KubeCluster, flowrun_crd: None, namespace: str, tmp_path: Path
) -> None:
    release = release_name()
    install_namespace_scoped(tools, release, namespace)
    token = (
        kube_cluster.core()
        .create_namespaced_service_account_token(
            f"{release}-flowrun-operator",
            namespace,
            client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=3600)),
        )
        .status.token
    )
    operator = Operator(kube_cluster, namespace, tmp_path)
    operator.env["KUBECONFIG"] = str(token_kubeconfig(kube_cluster, token, tmp_path / "operator-kubeconfig"))
    operator.start()
    try:
        flowruns = FlowRuns(kube_cluster, namespace)
        check_runs_the_chart_refuses(flowruns, create_runs_the_chart_refuses(flowruns))
        assert operator.running(), operator.log_tail()
    finally:
        operator.stop()
    uninstall_and_check_nothing_left(tools, kube_cluster.api, release, namespace, [namespace])


def test_the_default_edit_role_may_change_flowruns_but_never_their_status(
    tools: Tools, kube_cluster: KubeCluster, flowrun_crd: None, namespace: str, tmp_path: Path
) -> None:
    release = release_name()
    install_namespace_scoped(tools, release, namespace, "--set", "rbac.aggregateToDefaultRoles=true")
    core, rbac = kube_cluster.core(), client.RbacAuthorizationV1Api(kube_cluster.api)
    core.create_namespaced_service_account(namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="dev")))
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "dev-edit"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "ServiceAccount", "name": "dev", "namespace": namespace}],
        },
    )
    token = core.create_namespaced_service_account_token(
        "dev", namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    ).status.token
    as_dev = client.CustomObjectsApi(
        config.new_client_from_config(str(token_kubeconfig(kube_cluster, token, tmp_path / "dev-kubeconfig")))
    )
    task = {"name": "a", "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}}
    spec = {"tasks": [task]}
    body = {"apiVersion": "flowrun.dev/v1alpha1", "kind": "FlowRun", "metadata": {"name": "mine"}, "spec": spec}
    # The aggregated rules reach `edit` within moments of the install.
    wait_for(
        "edit to allow FlowRuns",
        lambda: as_dev.create_namespaced_custom_object("flowrun.dev", "v1alpha1", namespace, "flowruns", body),
        timeout=30,
    )
    assert_forbidden(
        "write a FlowRun's status as edit",
        lambda: as_dev.patch_namespaced_custom_object_status(
            "flowrun.dev", "v1alpha1", namespace, "flowruns", "mine", {"status": {"phase": "Succeeded"}}
        ),
    )
    as_dev.delete_namespaced_custom_object("flowrun.dev", "v1alpha1", namespace, "flowruns", "mine")
    uninstall_and_check_nothing_left(tools, kube_cluster.api, release, namespace, [namespace])
