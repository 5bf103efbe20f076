"""The CRDs scripts/generate writes, on a real API server, agree with the model field by field (both
come from flowrun.schema): for every bound of the FlowRun spec (the cases of
tests/unit/test_crd_model.py: the bound itself, and one past it) the API server accepts what
parse_spec accepts and refuses what it refuses; beside rerunOf, both refuse every field but cancel
and ttlSecondsAfterFinished (a CEL rule written from the fields). Server-side dry runs: nothing is
stored, no operator runs."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devcluster.pytest_plugin import KubeCluster
from flowrun import api
from flowrun.model import SpecError, parse_spec
from flowrun.rerun import plan_rerun
from flowrun.schema import SCHEMAS
from flowrun.schema.flowrun import BESIDE_RERUN_OF
from tests.unit.test_crd_model import CASES, full_spec

pytestmark = pytest.mark.e2e


class DryRun:
    def __init__(self, kube_cluster: KubeCluster, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(kube_cluster.api)
        self.namespace = namespace

    def refusal(self, spec: dict[str, Any]) -> str | None:
        """The API server's message refusing a FlowRun of this spec, None if it accepts it."""
        body = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": "agree"}, "spec": spec}
        try:
            self.custom.create_namespaced_custom_object(
                api.GROUP, api.VERSION, self.namespace, api.PLURAL, body, dry_run="All", field_validation="Strict"
            )
        except ApiException as error:
            if error.status not in (400, 422):
                raise
            message: str = json.loads(error.body or "{}")["message"]
            return message
        return None

    def stored(self) -> list[Any]:
        items: list[Any] = self.custom.list_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, api.PLURAL
        )["items"]
        return items


@pytest.fixture
def server(kube_cluster: KubeCluster, flowrun_crd: None, namespace: str) -> DryRun:
    return DryRun(kube_cluster, namespace)


def model_refusal(spec: dict[str, Any]) -> SpecError | None:
    try:
        parse_spec(spec, "team")
    except SpecError as error:
        return error
    return None


def test_the_api_server_and_the_model_agree_on_every_bound(server: DryRun) -> None:
    disagreements = []
    for name, _, at_bound, past_bound in CASES:
        for what, spec, accepted in (("at the bound", at_bound, True), ("past it", past_bound, False)):
            by_server, by_model = server.refusal(spec), model_refusal(spec)
            if (by_server is None) != accepted or (by_model is None) != accepted:
                disagreements.append(f"{name}, {what}: API server: {by_server}; model: {by_model}")
    assert len(CASES) > 50
    assert disagreements == []
    assert server.stored() == [], "dry runs store nothing"


def test_beside_rerun_of_both_refuse_every_field_but_cancel_and_ttl(server: DryRun) -> None:
    values = {**full_spec(), "flowRef": {"name": "f"}}
    for field in SCHEMAS.flowrun.spec.fields:
        if field == "rerunOf":
            continue
        spec = {"rerunOf": {"name": "original"}, field: values[field]}
        by_server = server.refusal(spec)
        with pytest.raises(SpecError) as by_model:
            plan_rerun(spec, None, "original")  # no original: past the fields, the model names rerunOf
        if field in BESIDE_RERUN_OF:
            assert by_server is None, field
            assert by_model.value.field == "spec.rerunOf.name", field
        else:
            assert by_server is not None and "only spec.cancel and spec.ttlSecondsAfterFinished" in by_server, field
            assert by_model.value.field == f"spec.{field}", field
    assert server.stored() == [], "dry runs store nothing"
