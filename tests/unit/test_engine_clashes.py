"""Setup manifests named like the run's generated children (any attempt of a task, a setup or
cleanup Job, a Deployment or its Service, in this block or another) are a spec error naming the
manifest: nothing is created."""

from __future__ import annotations

from typing import Any

import pytest

from flowrun.engine.clashes import generated_names
from flowrun.model import parse_spec
from tests.unit.builders import NS, RUN, Sim, at, creates, deployment, flow, job, resource, task


def manifest(kind: str, name: str) -> dict[str, Any]:
    api_version = {"Pod": "v1", "Service": "v1", "Job": "batch/v1", "Deployment": "apps/v1"}.get(kind, "v1")
    body: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "metadata": {"name": name}}
    if kind == "ConfigMap":
        body["data"] = {"k": "v"}
    return body


def spec_with(*manifests: dict[str, Any]) -> dict[str, Any]:
    return flow(
        task("a", retries={"limit": 2, "backoffSeconds": 1}, resources=["r"]),
        task("b", resources=["other"]),
        resources=[
            resource("r", setup={"manifests": list(manifests)}, cleanup={"job": job(), "retries": 1}),
            resource("other", setup={"job": job(), "deployments": [deployment("db")]}),
        ],
    )


@pytest.mark.parametrize(
    ("kind", "name", "what"),
    [
        ("Pod", "demo-a-1", "attempt 1 of task a"),
        ("Pod", "demo-a-3", "attempt 3 of task a"),
        ("Pod", "demo-b-1", "attempt 1 of task b"),
        ("Job", "demo-r-cleanup-2", "cleanup job attempt 2 of resource r"),
        ("Job", "demo-other-setup", "the setup job of resource other"),
        ("Deployment", "demo-other-db", "deployment db of resource other"),
        ("Service", "demo-other-db", "the Service of deployment db of resource other"),
    ],
)
def test_a_manifest_named_like_a_generated_child_is_a_spec_error_naming_it(kind: str, name: str, what: str) -> None:
    sim = Sim(spec_with(manifest("ConfigMap", "fine"), manifest(kind, name)))
    outcome = sim.step(at(0))
    spec_valid = sim.condition("SpecValid")
    assert spec_valid["status"] == "False"
    assert spec_valid["message"] == (
        f"spec.resources[0].setup.manifests[1].metadata.name: {kind} {name!r} is the name of {what} in this run:"
        " name it otherwise"
    )
    assert creates(outcome) == [] and sim.status["phase"] == "Failed"


@pytest.mark.parametrize(
    ("kind", "name"),
    [("Pod", "demo-a-4"), ("ConfigMap", "demo-a-1"), ("Job", "demo-r-cleanup-3"), ("Service", "demo-r-db")],
)
def test_names_no_generated_child_of_that_kind_can_have_are_fine(kind: str, name: str) -> None:
    sim = Sim(spec_with(manifest(kind, name)))
    sim.step(at(0))
    assert sim.condition("SpecValid")["status"] == "True"


def test_long_generated_names_are_the_hashed_ones_the_children_get() -> None:
    long_task = "t" * 60
    spec = parse_spec(flow(task(long_task)), NS)
    pods = generated_names(RUN, spec)[("v1", "Pod")]
    assert len(pods) == 1 and all(len(name) == 63 for name in pods)
