"""Runs of the same templates in a namespace are validated by one dry run, not one each: what a
dry run depends on (the manifest but for names, the operator's per-run labels and the owner; the
namespace) is the key; a refusal is never remembered, an acceptance for TTL_SECONDS."""

from __future__ import annotations

import copy
from typing import Any

from flowrun import api
from flowrun.controller.dry_runs import MAX_ENTRIES, TTL_SECONDS, AcceptedDryRuns, dry_run_key
from tests.unit.fakes import FakeKube, api_error, pod_task


def dry_runs(kube: FakeKube) -> list[str]:
    return [call for call in kube.calls if call.startswith("dry run")]


def test_ten_runs_of_the_same_five_templates_send_one_dry_run() -> None:
    first = FakeKube({"tasks": [pod_task(f"t{i}") for i in range(5)]}, {})
    passes = first.passes()
    first.run(passes)
    assert len(dry_runs(first)) == 1  # five tasks, one template
    for index in range(9):
        other = FakeKube({"tasks": [pod_task(f"t{i}") for i in range(5)]}, {})
        other.body["metadata"] |= {"name": f"run-{index}", "uid": f"uid-{index}"}
        passes.kube = other
        other.run(passes)
        assert dry_runs(other) == [] and other.body["status"]["conditions"], other.calls
        assert f"create Pod/run-{index}-t0-1" in other.calls


def test_a_template_that_differs_is_dry_run_and_a_refusal_is_not_remembered() -> None:
    kube = FakeKube({"tasks": [pod_task("a")]}, {})
    passes = kube.passes()
    kube.run(passes)
    other_task = pod_task("a")
    other_task["template"]["spec"]["containers"][0]["image"] = "alpine"
    refused = FakeKube({"tasks": [other_task]}, {})
    refused.body["metadata"] |= {"name": "y", "uid": "uid-y"}
    refused.dry_run_create = lambda manifest: (_ for _ in ()).throw(api_error(422, "Invalid", "bad image"))  # type: ignore[method-assign]
    passes.kube = refused
    refused.run(passes)
    assert refused.body["status"]["phase"] == "Failed" and "bad image" in refused.body["status"]["message"]
    again = FakeKube({"tasks": [copy.deepcopy(other_task)]}, {})
    again.body["metadata"] |= {"name": "z", "uid": "uid-z"}
    passes.kube = again
    again.run(passes)
    assert len(dry_runs(again)) == 1


def pod(name: str, namespace: str = "ns", **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {api.LABEL_FLOWRUN: name, api.LABEL_UID: name, **labels},
            "ownerReferences": [{"uid": name}],
        },
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
    }


def test_the_key_ignores_what_differs_between_runs_and_keeps_what_admission_reads() -> None:
    assert dry_run_key(pod("a")) == dry_run_key(pod("b"))
    assert dry_run_key(pod("a")) != dry_run_key(pod("a", namespace="other"))
    assert dry_run_key(pod("a", team="x")) == dry_run_key(pod("b", team="y"))  # a label's value: the create checks it
    assert dry_run_key(pod("a")) != dry_run_key(pod("a", team="x"))  # a label a policy may require
    changed = pod("a")
    changed["spec"]["containers"][0]["image"] = "alpine"
    assert dry_run_key(pod("a")) != dry_run_key(changed)


def test_an_acceptance_expires_and_the_oldest_go_first() -> None:
    now = [0.0]
    cache = AcceptedDryRuns(clock=lambda: now[0])
    cache.remember(pod("a"))
    assert cache.accepted(pod("b"))
    now[0] = TTL_SECONDS + 1
    assert not cache.accepted(pod("b"))
    for index in range(MAX_ENTRIES + 1):
        cache.remember(pod("a", **{f"k{index}": "v"}))
    assert not cache.accepted(pod("a", k0="v")) and cache.accepted(pod("a", **{f"k{MAX_ENTRIES}": "v"}))
