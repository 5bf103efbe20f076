from typing import Any

import pytest

from flowrun import manifests
from flowrun.model import FlowSpec, RunIdentity, parse_spec
from flowrun.references import Context
from tests.unit.builders import container, deployment, flow, job, resource, task, template

RUN = RunIdentity("demo", "team", "uid-1")
CONTEXT = Context(
    params={"n": "3"},
    flowrun={"name": "demo", "namespace": "team", "uid": "uid-1"},
    task_results={"a": "RESULT"},
    resource_values={"db": "db-value", "cache": "cache-value"},
    services={("db", "pg"): "demo-db-pg.team.svc"},
)
OWNER = {
    "apiVersion": "flowrun.dev/v1alpha1",
    "kind": "FlowRun",
    "name": "demo",
    "uid": "uid-1",
    "controller": True,
    "blockOwnerDeletion": True,
}


def _spec(**fields: Any) -> FlowSpec:
    user_template = {
        "metadata": {"labels": {"team": "data"}, "annotations": {"sim.kwok/outcome": "Succeeded"}},
        "spec": {
            "initContainers": [container("init", "$(params.n)")],
            "containers": [
                {
                    "name": "main",
                    "image": "x",
                    "command": ["run", "$(flowrun.name)"],
                    "args": ["$(tasks.a.result)", "$(date)"],
                    "env": [
                        {"name": "DB", "value": "$(resources.db.services.pg)"},
                        {"name": "FROM", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
                    ],
                    "terminationMessagePolicy": "FallbackToLogsOnError",
                },
                container("sidecar"),
            ],
        },
    }
    return parse_spec(
        flow(
            task("a"),
            task("b", "a", resources=["db", "cache"], template=user_template, activeDeadlineSeconds=30),
            resources=[
                resource(
                    "db",
                    setup={
                        "job": {**job("--n=$(params.n)"), "backoffLimit": 2},
                        "deployments": [{**deployment("pg"), "replicas": "$(params.n)"}],
                    },
                    cleanup={"job": job("drop", "$(resources.db.value)")},
                ),
                resource(
                    "cache",
                    setup={
                        "manifests": [
                            {
                                "apiVersion": "v1",
                                "kind": "ConfigMap",
                                "metadata": {"name": "cfg", "labels": {"mine": "yes"}},
                                "data": {"k": "$(params.n)"},
                            }
                        ]
                    },
                ),
            ],
            params=[{"name": "n", "value": "3"}],
            **fields,
        ),
        "team",
    )


def _env(container_: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container_.get("env", [])}


def test_task_pod_identity_labels_and_owner() -> None:
    spec = _spec(serviceAccountName="runner")
    pod = manifests.build_task_pod(RUN, spec, spec.task("b"), 2, CONTEXT)
    meta = pod["metadata"]
    assert (pod["apiVersion"], pod["kind"], meta["name"], meta["namespace"]) == ("v1", "Pod", "demo-b-2", "team")
    assert meta["ownerReferences"] == [OWNER]
    assert meta["labels"] == {
        "team": "data",
        "flowrun.dev/flowrun": "demo",
        "flowrun.dev/flowrun-uid": "uid-1",
        "flowrun.dev/role": "task",
        "flowrun.dev/task": "b",
        "flowrun.dev/attempt": "2",
        "app.kubernetes.io/managed-by": "flowrun-operator",
    }
    assert meta["annotations"] == {"sim.kwok/outcome": "Succeeded"}


def test_task_pod_spec() -> None:
    spec = _spec(serviceAccountName="runner")
    pod_spec = manifests.build_task_pod(RUN, spec, spec.task("b"), 1, CONTEXT)["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    assert pod_spec["serviceAccountName"] == "runner"
    assert pod_spec["activeDeadlineSeconds"] == 30
    main, sidecar = pod_spec["containers"]
    assert main["command"] == ["run", "demo"]
    assert main["args"] == ["RESULT", "$(date)"]
    assert main["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert main["env"][:2] == [
        {"name": "DB", "value": "demo-db-pg.team.svc"},
        {"name": "FROM", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
    ]
    for c in (main, sidecar, pod_spec["initContainers"][0]):
        assert _env(c)["FLOWRUN_RESOURCE_DB"] == "db-value"
        assert _env(c)["FLOWRUN_RESOURCE_CACHE"] == "cache-value"
    assert pod_spec["initContainers"][0]["args"] == ["3"]


def test_task_pod_keeps_a_template_service_account_and_does_not_touch_the_spec() -> None:
    spec = parse_spec(
        flow(task("a", template={"spec": {"serviceAccountName": "own", "containers": [container()]}})), "team"
    )
    pod = manifests.build_task_pod(RUN, spec, spec.task("a"), 1, CONTEXT)
    assert pod["spec"]["serviceAccountName"] == "own"
    assert "activeDeadlineSeconds" not in pod["spec"] and "restartPolicy" not in spec.task("a").template["spec"]


def test_setup_job() -> None:
    spec = _spec(serviceAccountName="runner")
    built = manifests.build_setup_job(RUN, spec, spec.resource("db"), CONTEXT, None)
    assert (built["kind"], built["metadata"]["name"]) == ("Job", "demo-db-setup")
    assert built["metadata"]["labels"]["flowrun.dev/role"] == "setup"
    assert built["metadata"]["labels"]["flowrun.dev/resource"] == "db"
    assert built["metadata"]["ownerReferences"] == [OWNER]
    assert built["spec"]["backoffLimit"] == 2
    tpl = built["spec"]["template"]
    assert tpl["metadata"]["labels"]["flowrun.dev/flowrun-uid"] == "uid-1"
    assert tpl["spec"]["restartPolicy"] == "Never" and tpl["spec"]["serviceAccountName"] == "runner"
    main = tpl["spec"]["containers"][0]
    assert main["args"] == ["--n=3"]
    assert "env" not in main  # the value is not known before setup


def test_setup_job_backoff_limit_defaults_to_zero() -> None:
    spec = parse_spec(flow(task("a"), resources=[resource("r", setup={"job": job()})]))
    assert manifests.build_setup_job(RUN, spec, spec.resource("r"), CONTEXT, None)["spec"]["backoffLimit"] == 0


def test_cleanup_job() -> None:
    spec = _spec()
    built = manifests.build_cleanup_job(RUN, spec, spec.resource("db"), 3, CONTEXT, "db-value")
    assert (built["kind"], built["metadata"]["name"]) == ("Job", "demo-db-cleanup-3")
    labels = built["metadata"]["labels"]
    assert (labels["flowrun.dev/role"], labels["flowrun.dev/resource"], labels["flowrun.dev/attempt"]) == (
        "cleanup",
        "db",
        "3",
    )
    assert built["spec"]["backoffLimit"] == 0
    main = built["spec"]["template"]["spec"]["containers"][0]
    assert main["args"] == ["drop", "db-value"]
    assert _env(main) == {"FLOWRUN_RESOURCE_DB": "db-value", "FLOWRUN_RESOURCE_VALUE": "db-value"}
    assert built["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_deployment_and_its_service() -> None:
    spec = _spec()
    db = spec.resource("db")
    built = manifests.build_deployment(RUN, spec, db, db.setup.deployments[0], 3, CONTEXT, "db-value")
    assert (built["kind"], built["metadata"]["name"], built["spec"]["replicas"]) == ("Deployment", "demo-db-pg", 3)
    selector = {"flowrun.dev/flowrun-uid": "uid-1", "flowrun.dev/resource": "db", "flowrun.dev/deployment": "pg"}
    assert built["spec"]["selector"] == {"matchLabels": selector}
    pod_labels = built["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items() and pod_labels["flowrun.dev/role"] == "setup"
    assert "restartPolicy" not in built["spec"]["template"]["spec"]  # Deployments need Always
    assert _env(built["spec"]["template"]["spec"]["containers"][0]) == {"FLOWRUN_RESOURCE_DB": "db-value"}
    service = manifests.build_service(RUN, db, db.setup.deployments[0])
    assert (service["kind"], service["metadata"]["name"]) == ("Service", "demo-db-pg")
    assert service["spec"] == {
        "type": "ClusterIP",
        "selector": selector,
        "ports": [{"name": "tcp", "port": 5432, "targetPort": 5432, "protocol": "TCP"}],
    }
    assert service["metadata"]["ownerReferences"] == [OWNER]


def test_manifest_keeps_its_name_and_content() -> None:
    spec = _spec()
    cache = spec.resource("cache")
    built = manifests.build_manifest(RUN, cache, cache.setup.manifests[0])
    assert built["metadata"]["name"] == "cfg" and built["metadata"]["namespace"] == "team"
    assert built["data"] == {"k": "$(params.n)"}  # manifests are created as given
    assert built["metadata"]["labels"]["mine"] == "yes"
    assert built["metadata"]["labels"]["flowrun.dev/resource"] == "cache"
    assert built["metadata"]["ownerReferences"] == [OWNER]
    assert "namespace" not in cache.setup.manifests[0]["metadata"]  # the spec is not modified


@pytest.mark.parametrize(("name", "env"), [("db", "FLOWRUN_RESOURCE_DB"), ("my-big-db", "FLOWRUN_RESOURCE_MY_BIG_DB")])
def test_resource_env_name(name: str, env: str) -> None:
    assert manifests.resource_env_name(name) == env


def test_a_user_env_of_the_same_name_is_replaced_not_duplicated() -> None:
    tpl = template(container("main", env={"FLOWRUN_RESOURCE_DB": "mine"}))
    spec = parse_spec(flow(task("a", resources=["db"], template=tpl), resources=[resource("db")]))
    main = manifests.build_task_pod(RUN, spec, spec.task("a"), 1, CONTEXT)["spec"]["containers"][0]
    assert main["env"] == [{"name": "FLOWRUN_RESOURCE_DB", "value": "db-value"}]


def test_long_flowrun_name_gives_a_valid_label() -> None:
    spec = parse_spec(flow(task("a")))
    run = RunIdentity("r" * 100, "team", "uid-1")
    labels = manifests.build_task_pod(run, spec, spec.task("a"), 1, CONTEXT)["metadata"]["labels"]
    assert len(labels["flowrun.dev/flowrun"]) <= 63
