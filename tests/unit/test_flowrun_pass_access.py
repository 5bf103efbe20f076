"""Kinds of setup manifests the operator may not handle: before anything of the kind is listed or
created, a kind that is cluster-scoped, or that the operator may not create, get, list, watch or
delete in the run's namespace, fails the run with SpecValid=False naming the manifest. Each kind is
asked about once per namespace (cached); Events are never accepted as manifests."""

from __future__ import annotations

from typing import Any

import pytest

from flowrun.controller.access import VERBS, Access
from flowrun.model import SpecError, parse_spec
from tests.unit.fakes import NS, FakeKube, pod_task


def spec_with(manifest: dict[str, Any]) -> dict[str, Any]:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ok"}, "data": {"k": "v"}}
    block = {"name": "store", "setup": {"manifests": [config, manifest]}}
    return {"resources": [block], "tasks": [pod_task("a", resources=["store"])]}


SECRET = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
WEBHOOK = {
    "apiVersion": "admissionregistration.k8s.io/v1",
    "kind": "MutatingWebhookConfiguration",
    "metadata": {"name": "w"},
}


class Listing(FakeKube):
    """Records which kinds of other children were read."""

    read: list[tuple[str, str]]

    def other_children(self, namespace: str, uid: str, kinds: Any) -> list[Any]:
        self.read = [*getattr(self, "read", []), *kinds]
        return super().other_children(namespace, uid, kinds)


def conditions(kube: FakeKube) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in kube.body["status"]["conditions"]}


def test_a_kind_the_operator_may_not_list_fails_the_run_naming_the_manifest_before_anything_is_read() -> None:
    kube = Listing(spec_with(SECRET), {})
    kube.denied = {("secrets", "list"), ("secrets", "watch"), ("secrets", "delete")}
    kube.run(kube.passes())
    spec_valid = conditions(kube)["SpecValid"]
    assert (spec_valid["status"], kube.body["status"]["phase"]) == ("False", "Failed")
    assert spec_valid["message"] == (
        "spec.resources[0].setup.manifests[1]: the operator may not list, watch, delete secrets in namespace"
        f" {NS} (grant it, e.g. in the chart's rbac.extraRules)"
    )
    assert kube.create_calls == [] and getattr(kube, "read", []) == []
    assert [reason for _, reason, _ in kube.events] == ["InvalidSpec"]


def test_a_cluster_scoped_kind_fails_the_run_before_anything_is_read() -> None:
    kube = Listing(spec_with(WEBHOOK), {})
    kube.cluster_scoped = {"MutatingWebhookConfiguration"}
    kube.run(kube.passes())
    assert conditions(kube)["SpecValid"]["message"] == (
        "spec.resources[0].setup.manifests[1]: MutatingWebhookConfiguration in admissionregistration.k8s.io/v1 is"
        " cluster-scoped: children must be namespaced"
    )
    assert kube.create_calls == [] and getattr(kube, "read", []) == []


def test_a_kind_the_operator_may_handle_is_asked_about_once() -> None:
    kube = FakeKube(spec_with(SECRET), {})
    passes = kube.passes()
    kube.run(passes)
    kube.run(passes)
    asked = [call for call in kube.calls if call.startswith("allowed ")]
    assert sorted(asked) == sorted(f"allowed {verb} {plural}" for plural in ("configmaps", "secrets") for verb in VERBS)
    assert conditions(kube)["SpecValid"]["reason"] == "Validated"


def test_answers_are_kept_allowed_for_ten_minutes_denied_for_one() -> None:
    now = [0.0]
    asked: list[str] = []
    grants = {"list": False}

    def ask(namespace: str, group: str, plural: str, verb: str) -> bool:
        asked.append(verb)
        return grants.get(verb, True)

    access = Access(ask, clock=lambda: now[0])
    assert access.denied(NS, "", "secrets") == ("list",)
    now[0] = 59
    access.denied(NS, "", "secrets")
    assert len(asked) == len(VERBS)
    grants["list"] = True
    now[0] = 61
    assert access.denied(NS, "", "secrets") == ()
    now[0] = 600
    access.denied(NS, "", "secrets")
    assert len(asked) == 2 * len(VERBS)


@pytest.mark.parametrize("api_version", ["v1", "events.k8s.io/v1"])
def test_an_event_is_never_a_setup_manifest(api_version: str) -> None:
    event = {"apiVersion": api_version, "kind": "Event", "metadata": {"name": "e"}}
    with pytest.raises(SpecError) as refused:
        parse_spec(spec_with(event), NS)
    assert str(refused.value) == (
        "spec.resources[0].setup.manifests[1].kind: an Event is not a resource: setup manifests may not create Events"
    )
