"""Creates the API server refuses for good, end to end: no state waits forever. A setup manifest
whose name is taken by someone else's object fails setup at once (not after timeoutSeconds), and
a task pod refused by a ResourceQuota added after the run started fails its attempts and the run.
A setup manifest of a kind the API server does not serve, or of a cluster-scoped kind, or in another
namespace, is a spec error, reported once, and nothing is created.
Every test ends with the leak check."""

from __future__ import annotations

import hashlib
import json
import re
import time

import pytest
from kubernetes import client

from devcluster.pytest_plugin import wait_for
from flowrun import api
from tests.e2e.helpers import FlowRuns, Operator, StartOperator, res, sim_task, task

pytestmark = pytest.mark.e2e


def test_a_setup_manifest_whose_name_is_taken_fails_setup_at_once_and_leaves_the_owner_alone(
    operator: Operator, flowruns: FlowRuns, namespace: str
) -> None:
    core = client.CoreV1Api(flowruns.api_client)
    theirs = core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="shared-settings", labels={"team": "other"}),
            data={"owner": "someone else"},
        ),
    )
    started = time.monotonic()
    flowruns.create(
        {
            "metadata": {"name": "taken"},
            "spec": {
                "resources": [
                    {
                        "name": "store",
                        "setup": {
                            "manifests": [
                                {
                                    "apiVersion": "v1",
                                    "kind": "ConfigMap",
                                    "metadata": {"name": "taken-own"},
                                    "data": {"k": "v"},
                                },
                                {
                                    "apiVersion": "v1",
                                    "kind": "ConfigMap",
                                    "metadata": {"name": "shared-settings"},
                                    "data": {"owner": "the run"},
                                },
                            ],
                            "timeoutSeconds": 300,
                        },
                    }
                ],
                "tasks": [
                    sim_task("use", resources=["store"]),
                    sim_task("after", run_after=["use"]),
                ],
            },
        }
    )
    run = flowruns.wait_status(
        "taken",
        "the block failed setup",
        lambda s: bool(((s.get("resources") or {}).get("store") or {}).get("setupError")),
        timeout=30,
    )
    assert time.monotonic() - started < 30, "a refused create must not wait for setup.timeoutSeconds"
    store = res(run, "store")
    assert store["setupError"].startswith("CreateRefused: cannot create ConfigMap shared-settings: 409 "), store
    assert (
        "already exists" in store["setupError"]
        and "was not created as this child of this FlowRun" in store["setupError"]
    ), store

    run = flowruns.wait_phase("taken", ("Succeeded", "Failed"), timeout=30)
    assert run["status"]["phase"] == "Failed", run["status"]
    store = res(run, "store")
    assert (store["phase"], store["reason"]) == ("CleanedUp", "SetupFailed"), store
    assert (task(run, "use")["phase"], task(run, "use")["reason"]) == ("Skipped", "SetupFailed")
    assert "shared-settings" in task(run, "use")["message"]
    assert (task(run, "after")["phase"], task(run, "after")["reason"]) == ("Skipped", "UpstreamFailed")
    succeeded = {c["type"]: c for c in run["status"]["conditions"]}["Succeeded"]
    assert (succeeded["status"], succeeded["reason"]) == ("False", "SetupFailed")
    events = flowruns.events_when(
        "taken",
        lambda events: any(
            e.type == "Warning" and e.reason == "SetupFailed" and "shared-settings" in e.message for e in events
        ),
    )
    assert not any(e.reason == "ActionFailed" for e in events), [e.message for e in events]

    # What setup did create is cleaned up; the object that was never the run's is untouched.
    names = {c.metadata.name for c in core.list_namespaced_config_map(namespace).items}
    assert "taken-own" not in names
    after = core.read_namespaced_config_map("shared-settings", namespace)
    assert after.metadata.uid == theirs.metadata.uid
    assert after.metadata.resource_version == theirs.metadata.resource_version
    assert after.data == {"owner": "someone else"} and api.LABEL_UID not in (after.metadata.labels or {})
    flowruns.delete_and_check_nothing_leaked("taken")
    assert core.read_namespaced_config_map("shared-settings", namespace).metadata.uid == theirs.metadata.uid


def test_a_task_pod_refused_by_a_quota_added_mid_run_fails_every_attempt_and_the_run(
    operator: Operator, flowruns: FlowRuns, namespace: str
) -> None:
    core = client.CoreV1Api(flowruns.api_client)
    flowruns.create(
        {
            "metadata": {"name": "quota"},
            "spec": {
                "tasks": [
                    sim_task("a", duration="3s"),
                    sim_task("b", run_after=["a"], retries={"limit": 1, "backoffSeconds": 1}),
                    sim_task("c", run_after=["b"]),
                ]
            },
        }
    )
    # The dry run is behind us once a's pod runs: only now does the quota refuse new pods.
    flowruns.wait_status(
        "quota",
        "a running",
        lambda s: ((s.get("tasks") or {}).get("a") or {}).get("reason") == "PodRunning",
        timeout=30,
    )
    core.create_namespaced_resource_quota(
        namespace,
        client.V1ResourceQuota(
            metadata=client.V1ObjectMeta(name="no-more-pods"), spec=client.V1ResourceQuotaSpec(hard={"pods": "0"})
        ),
    )
    # Enforced with "exceeded quota" once the quota controller has computed its usage.
    wait_for(
        "the quota's status",
        lambda: (
            (
                core.read_namespaced_resource_quota("no-more-pods", namespace).status or client.V1ResourceQuotaStatus()
            ).hard
        ),
    )
    try:
        run = flowruns.wait_phase("quota", ("Succeeded", "Failed"), timeout=45)
        assert run["status"]["phase"] == "Failed", run["status"]
        assert task(run, "a")["phase"] == "Succeeded"
        b = task(run, "b")
        assert (b["phase"], b["reason"], b["attempts"]) == ("Failed", "CreateRefused", 2), b
        assert b["message"].startswith("attempt 2: cannot create Pod quota-b-2: 403 Forbidden: "), b["message"]
        assert "exceeded quota: no-more-pods" in b["message"], b["message"]
        assert (task(run, "c")["phase"], task(run, "c")["reason"]) == ("Skipped", "UpstreamFailed")
        assert run["status"]["message"].startswith("task b failed: CreateRefused"), run["status"]["message"]

        # Events are posted after the status is written: wait for the last one.
        events = flowruns.events_when(
            "quota", lambda events: any(e.reason == "TaskFailed" and "quota-b-2" in e.message for e in events)
        )
        retrying = [e for e in events if e.reason == "TaskRetrying"]
        assert retrying and "quota-b-1" in retrying[0].message and "exceeded quota" in retrying[0].message
        pods = {p.metadata.name for p in core.list_namespaced_pod(namespace).items}
        assert pods == {"quota-a-1"}, pods  # no refused pod slipped through
    finally:
        core.delete_namespaced_resource_quota("no-more-pods", namespace)
    flowruns.delete_and_check_nothing_leaked("quota")


def test_a_setup_manifest_of_a_kind_the_api_server_does_not_serve_is_a_spec_error_reported_once(
    start_operator: StartOperator, flowruns: FlowRuns
) -> None:
    operator = start_operator("--log-format", "json", metrics=True)

    def passes() -> float:
        found = re.search(r"^flowrun_reconcile_duration_seconds_count (\S+)$", operator.scrape_metrics(), re.MULTILINE)
        assert found, "no reconcile pass counted"
        return float(found[1])

    flowruns.create(
        {
            "metadata": {"name": "widgets"},
            "spec": {
                "resources": [
                    {
                        "name": "store",
                        "setup": {
                            "manifests": [{"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}]
                        },
                    }
                ],
                "tasks": [sim_task("use", resources=["store"])],
            },
        }
    )
    run = flowruns.wait_phase("widgets", ("Succeeded", "Failed"), timeout=30)
    conditions = {c["type"]: c for c in run["status"]["conditions"]}
    assert (conditions["SpecValid"]["status"], conditions["SpecValid"]["reason"]) == ("False", "InvalidSpec")
    assert conditions["SpecValid"]["message"] == (
        "the API server rejected a child: spec.resources[0].setup.manifests[0]:"
        " the API server serves no Widget in example.com/v1"
    ), conditions["SpecValid"]
    assert run["status"]["tasks"] == {} and run["status"]["resources"] == {}

    # Later passes (each change to the run wakes one) neither fail nor report it again.
    def poke_and_wait_for_a_pass(poke: int) -> None:
        before = passes()
        flowruns.patch("widgets", {"metadata": {"annotations": {"example.com/poke": str(poke)}}})
        wait_for(f"a pass after poke {poke}", lambda: passes() > before)

    for poke in range(3):
        poke_and_wait_for_a_pass(poke)
    assert flowruns.children(run["metadata"]["uid"]) == {}
    events = [(e.type, e.reason) for e in flowruns.events("widgets")]
    assert events == [("Warning", "InvalidSpec")], events
    flowruns.delete_and_check_nothing_leaked("widgets")
    assert operator.running(), operator.log_tail()
    operator.stop()  # every line written
    records = [json.loads(line) for line in operator.log_path.read_text().splitlines() if line.strip()]
    errors = [r["message"] for r in records if r["level"] in ("error", "critical")]
    assert errors == [], errors


CLUSTER_SCOPED = [
    pytest.param({"apiVersion": "v1", "kind": "Namespace"}, id="Namespace"),
    pytest.param(
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "rules": []},
        id="ClusterRole",
    ),
]


@pytest.mark.parametrize("manifest", CLUSTER_SCOPED)
def test_a_cluster_scoped_setup_manifest_is_a_spec_error_and_nothing_is_created(
    operator: Operator, flowruns: FlowRuns, namespace: str, manifest: dict[str, object]
) -> None:
    # The operator's RBAC may create such objects; a FlowRun must not make it do so for its author.
    kind = str(manifest["kind"])
    name = f"fr-{kind.lower()}-{hashlib.sha256(namespace.encode()).hexdigest()[:10]}"
    flowruns.create(
        {
            "metadata": {"name": "cluster-object"},
            "spec": {
                "resources": [
                    {
                        "name": "block",
                        "setup": {
                            "manifests": [
                                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fine"}},
                                {**manifest, "metadata": {"name": name}},
                            ]
                        },
                    }
                ],
                "tasks": [sim_task("use", resources=["block"])],
            },
        }
    )
    run = flowruns.wait_phase("cluster-object", ("Succeeded", "Failed"), timeout=30)
    conditions = {c["type"]: c for c in run["status"]["conditions"]}
    assert (conditions["SpecValid"]["status"], conditions["SpecValid"]["reason"]) == ("False", "InvalidSpec")
    assert conditions["SpecValid"]["message"] == (
        f"spec.resources[0].setup.manifests[1]: {kind} in"
        f" {manifest['apiVersion']} is cluster-scoped: children must be namespaced"
    ), conditions["SpecValid"]
    assert run["status"]["tasks"] == {} and run["status"]["resources"] == {}
    assert flowruns.children(run["metadata"]["uid"]) == {}
    api_client = flowruns.api_client
    if kind == "Namespace":
        existing = [n.metadata.name for n in client.CoreV1Api(api_client).list_namespace().items]
    else:
        existing = [r.metadata.name for r in client.RbacAuthorizationV1Api(api_client).list_cluster_role().items]
    assert name not in existing
    flowruns.delete_and_check_nothing_leaked("cluster-object")


def test_a_setup_manifest_in_another_namespace_is_a_spec_error_and_nothing_is_created(
    operator: Operator, flowruns: FlowRuns, namespace: str
) -> None:
    flowruns.create(
        {
            "metadata": {"name": "elsewhere"},
            "spec": {
                "resources": [
                    {
                        "name": "block",
                        "setup": {
                            "manifests": [
                                {
                                    "apiVersion": "v1",
                                    "kind": "ConfigMap",
                                    "metadata": {"name": "theirs", "namespace": "default"},
                                }
                            ]
                        },
                    }
                ],
                "tasks": [sim_task("use", resources=["block"])],
            },
        }
    )
    run = flowruns.wait_phase("elsewhere", ("Succeeded", "Failed"), timeout=30)
    valid = next(c for c in run["status"]["conditions"] if c["type"] == "SpecValid")
    assert (valid["status"], valid["message"]) == (
        "False",
        f"spec.resources[0].setup.manifests[0].metadata.namespace: must be the FlowRun's namespace"
        f" {namespace!r} (or unset), not 'default'",
    ), valid
    names = [c.metadata.name for c in client.CoreV1Api(flowruns.api_client).list_namespaced_config_map("default").items]
    assert "theirs" not in names and flowruns.children(run["metadata"]["uid"]) == {}
    flowruns.delete_and_check_nothing_leaked("elsewhere")
