"""The Flow and CronFlowRun CRDs, and FlowRun's flowRef and rerunOf, on a real API server: they
install, `kubectl explain` and `kubectl get` work, and the schema and CEL rules refuse bad objects
at apply time with a message naming the problem. No operator runs here: this is the API alone."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.pytest_plugin import KubeCluster
from flowrun import api
from tests.e2e.helpers import kubectl

pytestmark = pytest.mark.e2e

TASKS = [{"name": "a", "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}}]
FLOW = {"params": [{"name": "out", "default": "x", "description": "where"}, {"name": "n"}], "tasks": TASKS}
CRON = {"schedule": "0 2 * * *", "timeZone": "Europe/Paris", "flowRunTemplate": {"spec": {"flowRef": {"name": "f"}}}}


class Objects:
    def __init__(self, kube_cluster: KubeCluster, namespace: str) -> None:
        self.api = client.CustomObjectsApi(kube_cluster.api)
        self.namespace = namespace

    def create(self, plural: str, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": api.API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}
        created = self.api.create_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, plural, body, field_validation="Strict"
        )
        assert isinstance(created, dict)
        return created

    def refused(self, plural: str, kind: str, name: str, spec: dict[str, Any]) -> str:
        """The API server's message refusing the object (fails if it is accepted)."""
        with pytest.raises(ApiException) as error:
            self.create(plural, kind, name, spec)
        assert error.value.status in (400, 422), error.value.body
        message: str = json.loads(error.value.body or "{}")["message"]
        return message

    def patch_spec(self, plural: str, name: str, spec: dict[str, Any]) -> None:
        self.api.patch_namespaced_custom_object(api.GROUP, api.VERSION, self.namespace, plural, name, {"spec": spec})


@pytest.fixture
def objects(kube_cluster: KubeCluster, flowrun_crd: None, namespace: str) -> Objects:
    return Objects(kube_cluster, namespace)


def test_a_valid_flow_cron_and_flowref_and_rerun_runs_are_accepted(objects: Objects) -> None:
    flow = objects.create("flows", "Flow", "f", FLOW)
    assert flow["spec"]["params"][1] == {"name": "n"}
    cron = objects.create("cronflowruns", "CronFlowRun", "nightly", CRON)
    assert cron["spec"]["concurrencyPolicy"] == "Allow", "CronJob's default"
    assert (cron["spec"]["suspend"], cron["spec"]["successfulRunsHistoryLimit"]) == (False, 3)
    assert cron["spec"]["failedRunsHistoryLimit"] == 1
    objects.create("flowruns", "FlowRun", "by-ref", {"flowRef": {"name": "f"}, "params": [{"name": "n", "value": "1"}]})
    objects.create("flowruns", "FlowRun", "again", {"rerunOf": {"name": "by-ref"}, "cancel": False})
    # A Flow may be edited (runs copy it when they start); a template too.
    objects.patch_spec("flows", "f", {"parallelism": 3})
    objects.patch_spec("cronflowruns", "nightly", {"flowRunTemplate": {"spec": {"flowRef": {"name": "g"}}}})


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"flowRef": {"name": "f"}, "tasks": TASKS}, "spec.flowRef excludes spec.tasks"),
        ({"rerunOf": {"name": "r"}, "params": [{"name": "p", "value": "v"}]}, "only spec.cancel"),
        ({"rerunOf": {"name": "r"}, "flowRef": {"name": "f"}}, "only spec.cancel"),
        ({}, "spec needs tasks, flowRef or rerunOf"),
        ({"flowRef": {"name": "Not_A_Name"}}, "spec.flowRef.name"),
        ({"flowRef": {}}, "spec.flowRef.name"),
    ],
)
def test_bad_flowruns_are_refused(objects: Objects, spec: dict[str, Any], says: str) -> None:
    assert says in objects.refused("flowruns", "FlowRun", "bad", spec)


def test_flow_ref_and_rerun_of_are_immutable(objects: Objects) -> None:
    objects.create("flowruns", "FlowRun", "by-ref", {"flowRef": {"name": "f"}})
    with pytest.raises(ApiException) as error:
        objects.patch_spec("flowruns", "by-ref", {"flowRef": {"name": "g"}})
    assert "spec.flowRef is immutable" in str(error.value.body)
    objects.patch_spec("flowruns", "by-ref", {"cancel": True})  # cancel stays possible
    objects.create("flowruns", "FlowRun", "again", {"rerunOf": {"name": "x"}})
    with pytest.raises(ApiException) as error:
        objects.patch_spec("flowruns", "again", {"rerunOf": {"name": "y"}})
    assert "spec.rerunOf is immutable" in str(error.value.body)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ({"tasks": TASKS, "params": [{"name": "p", "value": "v"}]}, 'unknown field "spec.params[0].value"'),
        ({"tasks": TASKS, "cancel": True}, 'unknown field "spec.cancel"'),
        ({"params": [{"name": "p"}]}, "spec.tasks: Required value"),
        ({"tasks": TASKS, "params": [{"name": "p"}, {"name": "p"}]}, "Duplicate value"),
    ],
)
def test_bad_flows_are_refused(objects: Objects, spec: dict[str, Any], says: str) -> None:
    assert says in objects.refused("flows", "Flow", "bad", spec)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"schedule": "0 2 * *"}, "spec.schedule"),
        ({"schedule": "@reboot"}, "spec.schedule"),
        ({"schedule": "1,,2 * * * *"}, "spec.schedule"),
        ({"schedule": "0 0 L * *"}, "spec.schedule"),
        ({"schedule": "TZ=UTC 0 2 * * *"}, "spec.schedule"),
        ({"timeZone": "Abcdefghijklmno"}, "spec.timeZone"),
        ({"timeZone": "Europe Paris"}, "spec.timeZone"),
        ({"concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy"),
        ({"startingDeadlineSeconds": -1}, "spec.startingDeadlineSeconds"),
        (
            {"flowRunTemplate": {"spec": {"rerunOf": {"name": "x"}}}},
            'unknown field "spec.flowRunTemplate.spec.rerunOf"',
        ),
        ({"flowRunTemplate": {"spec": {"flowRef": {"name": "f"}, "tasks": TASKS}}}, "spec.flowRef excludes"),
        ({"flowRunTemplate": {"spec": {}}}, "needs tasks or flowRef"),
    ],
)
def test_bad_cron_flow_runs_are_refused(objects: Objects, change: dict[str, Any], says: str) -> None:
    assert says in objects.refused("cronflowruns", "CronFlowRun", "bad", {**CRON, **change})


def test_a_cron_name_without_room_for_the_run_suffix_is_refused(objects: Objects) -> None:
    assert "at most 243 characters" in objects.refused("cronflowruns", "CronFlowRun", "n" * 244, CRON)


def test_kubectl_explain_and_get_show_the_new_kinds(kube_cluster: KubeCluster, objects: Objects) -> None:
    explained = kubectl(kube_cluster, "explain", "flow.spec.params")
    assert "  default\t" in explained and "  description\t" in explained
    explained = kubectl(kube_cluster, "explain", "cronflowrun.spec")
    for field in ("schedule", "timeZone", "concurrencyPolicy", "startingDeadlineSeconds", "flowRunTemplate"):
        assert f"  {field}\t" in explained, explained
    assert "  flowRef\t" in kubectl(kube_cluster, "explain", "flowrun.spec")
    objects.create("flows", "Flow", "f", FLOW)
    objects.create("cronflowruns", "CronFlowRun", "nightly", CRON)
    header, row = kubectl(kube_cluster, "get", "fl", "-n", objects.namespace).splitlines()
    assert header.split() == ["NAME", "TASKS", "RESOURCES", "VALID", "READY", "AGE"]
    assert row.split()[0] == "f"
    header, row = kubectl(kube_cluster, "get", "cfr", "-n", objects.namespace).splitlines()
    assert header.split() == ["NAME", "SCHEDULE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "READY", "AGE"]
    assert row.split()[:6] == ["nightly", "0", "2", "*", "*", "*"]
    assert row.split()[6] == "false"
