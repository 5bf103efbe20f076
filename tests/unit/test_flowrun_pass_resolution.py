"""The passes's wiring of flowRef and rerunOf, against a fake Kube: the Flow comes from the
lookup it is given, the original of a rerun is read once, the snapshot is stored before anything
is created, a missing Flow makes the run wait (creating nothing) and, after a minute, fail."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowrun import api
from flowrun.controller.flowrun_pass import FlowRunPass
from tests.unit.fakes import NS, FakeKube, pod_task

FLOW: dict[str, Any] = {
    "apiVersion": api.API_VERSION,
    "kind": "Flow",
    "metadata": {"name": "etl", "namespace": NS, "uid": "flow-uid", "resourceVersion": "41", "generation": 1},
    "spec": {
        "params": [{"name": "who", "default": "world"}],
        "tasks": [
            {
                "name": "a",
                "template": {"spec": {"containers": [{"name": "main", "image": "busybox", "args": ["$(params.who)"]}]}},
            },
            pod_task("b", runAfter=["a"]),
        ],
    },
}


class Lookup:
    def __init__(self, flow: Mapping[str, Any] | None) -> None:
        self.flow = flow
        self.calls: list[tuple[str, str]] = []

    def __call__(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        self.calls.append((namespace, name))
        return self.flow if self.flow is not None and name == self.flow["metadata"]["name"] else None


def with_flows(kube: FakeKube, lookup: Lookup) -> FlowRunPass:
    """The passes of `kube`, whose Flow cache is `lookup`."""
    kube.flows = lookup
    return kube.passes()


def conditions(kube: FakeKube) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in kube.body["status"]["conditions"]}


def test_a_run_of_a_flow_stores_its_snapshot_before_creating_and_never_looks_the_flow_up_again() -> None:
    kube = FakeKube({"flowRef": {"name": "etl"}, "params": [{"name": "who", "value": "you"}]}, {})
    lookup = Lookup(FLOW)
    passes = with_flows(kube, lookup)
    kube.run(passes)
    assert lookup.calls == [(NS, "etl")]
    # The snapshot is stored first, before the dry runs and the creates.
    assert kube.calls[:2] == ["patch_status", "dry run Pod/x-a-1"] and "create Pod/x-a-1" in kube.calls, kube.calls
    status = kube.body["status"]
    assert status["resolvedFrom"] == {"kind": "Flow", "name": "etl", "uid": "flow-uid", "resourceVersion": "41"}
    assert status["resolvedSpec"]["params"] == [{"name": "who", "value": "you"}]
    pod = next(o for o in kube.objects if o["metadata"]["name"] == "x-a-1")
    assert pod["spec"]["containers"][0]["args"] == ["you"]

    lookup.flow = None  # the Flow is deleted: the run goes on with its snapshot
    result = kube.run(passes)
    assert lookup.calls == [(NS, "etl")]
    assert result.waiting_for_flow is None
    assert kube.body["status"]["phase"] == "Running" and "resolvedSpec" in kube.body["status"]


def test_a_missing_flow_keeps_the_run_pending_creating_nothing_then_fails_it_after_a_minute() -> None:
    kube = FakeKube({"flowRef": {"name": "etl"}}, {})
    kube.body["metadata"]["creationTimestamp"] = "2999-01-01T00:00:00Z"  # just created, as far as the pass knows
    passes = with_flows(kube, Lookup(None))
    result = kube.run(passes)
    assert result.waiting_for_flow == "etl" and result.requeue_after is not None and result.requeue_after > 1
    assert kube.body["status"]["phase"] == "Pending"
    assert conditions(kube)["SpecValid"]["reason"] == "FlowNotFound"
    assert kube.create_calls == [] and [e[1] for e in kube.events] == ["FlowNotFound"]
    kube.run(passes)
    assert [e[1] for e in kube.events] == ["FlowNotFound"], "posted once"

    kube.body["metadata"]["creationTimestamp"] = "2024-05-01T12:00:00Z"  # long ago
    result = kube.run(passes)
    assert kube.body["status"]["phase"] == "Failed" and result.done
    assert conditions(kube)["SpecValid"]["status"] == "False"
    assert kube.body["status"]["message"].startswith("spec.flowRef.name: Flow 'etl' does not exist")
    assert kube.create_calls == []


def test_a_run_waiting_for_its_flow_is_released_at_once_when_deleted() -> None:
    kube = FakeKube({"flowRef": {"name": "etl"}}, {})
    kube.body["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:01Z"
    kube.body["metadata"]["creationTimestamp"] = "2999-01-01T00:00:00Z"
    result = kube.run(with_flows(kube, Lookup(None)))
    assert result.deleting and result.released


def test_a_rerun_reads_its_original_once_and_reuses_what_succeeded() -> None:
    spec = {"tasks": [pod_task("a"), pod_task("b", runAfter=["a"])]}
    kube = FakeKube({"rerunOf": {"name": "orig"}}, {})
    kube.others["orig"] = {
        "metadata": {"name": "orig", "namespace": NS, "uid": "orig-uid", "resourceVersion": "7"},
        "spec": {**spec, "cancel": True},
        "status": {
            "phase": "Cancelled",
            "tasks": {
                "a": {"phase": "Succeeded", "result": "r1", "attempts": 1},
                "b": {"phase": "Cancelled", "attempts": 1},
            },
        },
    }
    passes = kube.passes()
    kube.run(passes)
    assert kube.reads == ["orig"]
    assert kube.calls[0] == "patch_status"
    assert kube.create_calls == ["Pod/x-b-1"], "a reused task gets no pod"
    tasks = kube.body["status"]["tasks"]
    assert (tasks["a"]["phase"], tasks["a"]["reason"], tasks["a"]["result"]) == ("Succeeded", "Reused", "r1")
    del kube.others["orig"]  # the original may go once the first pass is done
    kube.run(passes)
    assert kube.reads == ["orig"]
    assert kube.body["status"]["phase"] == "Running"


def test_a_rerun_of_a_missing_run_is_a_spec_error_naming_rerun_of() -> None:
    kube = FakeKube({"rerunOf": {"name": "nope"}}, {})
    kube.run(kube.passes())
    assert kube.body["status"]["phase"] == "Failed"
    assert kube.body["status"]["message"].startswith("spec.rerunOf.name:")
    assert kube.create_calls == [] and [e[1] for e in kube.events] == ["InvalidSpec"]


def test_a_run_that_reruns_itself_fails_once_with_a_flat_message_and_reads_nothing() -> None:
    kube = FakeKube({"rerunOf": {"name": "x"}}, {})  # the run is named x
    passes = kube.passes()
    expected = "spec.rerunOf.name: names this FlowRun itself ('x'): rerun another run"
    for _ in range(4):  # later passes (a resync, a change to the run) change nothing
        result = kube.run(passes)
        assert (result.phase, result.done, result.message) == ("Failed", True, expected)
        status = kube.body["status"]
        assert status["message"] == expected
        assert (conditions(kube)["SpecValid"]["status"], conditions(kube)["SpecValid"]["message"]) == (
            "False",
            expected,
        )
    assert kube.reads == [], "it is not its own original: nothing to look up"
    assert kube.calls == ["patch_status"], "the status is written once"
    assert [(e[0], e[1], e[2]) for e in kube.events] == [("Warning", "InvalidSpec", expected)]
    assert kube.create_calls == []


def test_a_rerun_of_a_run_refused_as_a_rerun_does_not_quote_its_message() -> None:
    refused = FakeKube({"rerunOf": {"name": "x"}}, {})
    refused.run(refused.passes())
    kube = FakeKube({"rerunOf": {"name": "x"}}, {})
    kube.body["metadata"]["name"] = "y"
    kube.others["x"] = refused.body
    kube.run(kube.passes())
    assert kube.body["status"]["message"] == (
        "spec.rerunOf.name: FlowRun 'x' never started: its spec is invalid (its status says why)"
    )
