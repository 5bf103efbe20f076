"""Write cost: what one status write of a FlowRun costs the API server (its CPU, read from /proc),
side by side with a ConfigMap holding the same spec and status, and how much of it the CRD's CEL
rules and its schemas account for (copies of the FlowRun CRD under other groups, without them).

    .venv/bin/python -m bench.write_cost [--writes 300] [--rounds 3]

The status is a 10-task chain's, as the operator writes it while the run runs. The API server is
shared with whatever else runs: quote medians of several rounds. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import yaml
from kubernetes import client

from bench import harness, stats
from devcluster import cluster as devcluster

Crd = dict[str, Any]


def _without(node: Any, key: str) -> None:
    if isinstance(node, dict):
        node.pop(key, None)
        for value in node.values():
            _without(value, key)
    elif isinstance(node, list):
        for value in node:
            _without(value, key)


def _schema(crd: Crd) -> dict[str, Any]:
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def no_transition_rules(crd: Crd) -> None:
    spec = _schema(crd)["properties"]["spec"]
    spec["x-kubernetes-validations"] = [
        r for r in spec.get("x-kubernetes-validations", []) if "oldSelf" not in r["rule"]
    ]


def no_cel(crd: Crd) -> None:
    _without(crd, "x-kubernetes-validations")


def no_cel_nor_schemas(crd: Crd) -> None:
    no_cel(crd)
    for part in ("spec", "status"):
        _schema(crd)["properties"][part] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


VARIANTS: list[tuple[str, str, Callable[[Crd], None]]] = [
    ("flowrun.dev", "FlowRun (the CRD as shipped)", lambda crd: None),
    ("no-transition.bench.flowrun.dev", "  without its transition rules (oldSelf)", no_transition_rules),
    ("no-cel.bench.flowrun.dev", "  without any CEL rule", no_cel),
    ("no-schema.bench.flowrun.dev", "  without CEL rules, spec and status unstructured", no_cel_nor_schemas),
]


def chain_spec(tasks: int = 10) -> dict[str, Any]:
    container = {"name": "main", "image": "busybox", "command": ["sh", "-c", "echo hi"]}
    return {
        "tasks": [
            {
                "name": f"t{i}",
                **({"runAfter": [f"t{i - 1}"]} if i else {}),
                "template": {
                    "metadata": {"annotations": {"sim.flowrun.dev/duration": "100ms"}},
                    "spec": {"containers": [container]},
                },
            }
            for i in range(tasks)
        ]
    }


def running_status(name: str, write: int, tasks: int = 10) -> dict[str, Any]:
    done = write % tasks
    entries = {
        f"t{k}": {
            "phase": "Succeeded" if k < done else "Running" if k == done else "Pending",
            "attempts": 1 if k <= done else 0,
            "podName": f"{name}-t{k}-1",
            "startedAt": "2026-12-07T23:00:00Z",
        }
        for k in range(tasks)
    }
    return {"phase": "Running", "observedGeneration": 1, "message": f"running: t{done}", "tasks": entries}


def install_copy(session: harness.Session, group: str, change: Callable[[Crd], None]) -> None:
    crd: Crd = yaml.safe_load((harness.REPO / "crds" / "flowrun.yaml").read_text())
    crd["metadata"]["name"] = f"flowruns.{group}"
    crd["spec"]["group"] = group
    change(crd)
    extensions = client.ApiextensionsV1Api(session.api)
    extensions.create_custom_resource_definition(crd)
    harness.wait_for(
        f"the CRD flowruns.{group} to be established",
        lambda: any(
            c.type == "Established" and c.status == "True"
            for c in extensions.read_custom_resource_definition(f"flowruns.{group}").status.conditions or []
        ),
        60,
    )


def cost_of_flowrun_writes(session: harness.Session, namespace: str, group: str, writes: int, apiserver: int) -> float:
    name = f"run-{time.monotonic_ns()}"
    body = {"apiVersion": f"{group}/v1alpha1", "kind": "FlowRun", "metadata": {"name": name}, "spec": chain_spec()}
    session.custom.create_namespaced_custom_object(group, "v1alpha1", namespace, "flowruns", body)
    before = harness.cpu_seconds(apiserver)
    for write in range(writes):
        session.custom.patch_namespaced_custom_object_status(
            group, "v1alpha1", namespace, "flowruns", name, {"status": running_status(name, write)}
        )
    return (harness.cpu_seconds(apiserver) - before) / writes


def cost_of_config_map_writes(session: harness.Session, namespace: str, writes: int, apiserver: int) -> float:
    name = f"cm-{time.monotonic_ns()}"
    session.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": name}, "data": {"spec": json.dumps(chain_spec())}}
    )
    before = harness.cpu_seconds(apiserver)
    for write in range(writes):
        patch = {"data": {"status": json.dumps(running_status(name, write))}}
        session.core.patch_namespaced_config_map(name, namespace, patch)
    return (harness.cpu_seconds(apiserver) - before) / writes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--writes", type=int, default=300, help="status writes per measurement (default 300)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, interleaved (default 3)")
    args = parser.parse_args(argv)
    with harness.session() as session:
        apiserver = devcluster.component_pid("kube-apiserver")
        if apiserver is None:
            raise SystemExit("the dev cluster's kube-apiserver is not running")
        namespace = session.namespace("write-cost")
        extensions = client.ApiextensionsV1Api(session.api)
        copies = [group for group, _, _ in VARIANTS if group != "flowrun.dev"]
        try:
            for group, _, change in VARIANTS:
                if group in copies:
                    install_copy(session, group, change)
            costs: dict[str, list[float]] = {label: [] for _, label, _ in VARIANTS}
            config_maps: list[float] = []
            for _ in range(args.rounds):
                for group, label, _ in VARIANTS:
                    costs[label].append(cost_of_flowrun_writes(session, namespace, group, args.writes, apiserver))
                config_maps.append(cost_of_config_map_writes(session, namespace, args.writes, apiserver))
        finally:
            for group in copies:
                with contextlib.suppress(client.ApiException):  # not installed: nothing to remove
                    extensions.delete_custom_resource_definition(f"flowruns.{group}")
        print(
            f"== API server CPU per status write (10-task chain; {args.writes} writes x {args.rounds} rounds, median)"
        )
        floor = stats.percentile(config_maps, 50)
        for label, values in costs.items():
            median = stats.percentile(values, 50)
            print(f"   {label:<52} {median * 1000:6.1f} ms  ({median / floor:4.1f}x the ConfigMap)")
        print(f"   {'ConfigMap with the same spec and status':<52} {floor * 1000:6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
