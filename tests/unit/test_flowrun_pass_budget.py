"""A run of any size keeps its FlowRun under the object's byte limit (1 MiB), through the pass as
production runs it: 200 tasks failing with 4,000-byte messages and logs end Failed, each in the
status; 200 tasks with 4,000-byte results hand one on intact to a downstream task (results move
to ConfigMaps the run owns); a spec that leaves no room for a status fails at once; a status
write that fails never holds a deletion whose cleanup is done."""

from __future__ import annotations

from typing import Any

from flowrun import api
from flowrun.controller.caches import trimmed
from flowrun.engine.budget import size
from tests.unit.fakes import FakeKube, api_error, pod_task

WIDE = 200  # the most tasks a run may have (the CRD's and the model's maxItems)
PRODUCERS = WIDE - 1  # beside the task that uses their results


def finish(kube: FakeKube, phase: str, message: str) -> None:
    """Every task pod ends: its main container's termination message is `message`."""
    code = 0 if phase == "Succeeded" else 1
    for obj in kube.objects:
        if obj["kind"] == "Pod" and not obj.get("status"):
            terminated = {"exitCode": code, "message": message, "finishedAt": "2026-01-01T00:00:01Z"}
            obj["status"] = {
                "phase": phase,
                "containerStatuses": [{"name": "main", "state": {"terminated": terminated}}],
            }


def stored(kube: FakeKube) -> int:
    """The FlowRun's size as the API server would store it (as the caches see it)."""
    return int(trimmed(kube.body)["_storedBytes"])


def drive(kube: FakeKube, phase: str, message: str, passes: int = 6) -> None:
    run = kube.passes()
    for _ in range(passes):
        body = dict(kube.body)
        kube.body = {**trimmed(body), "metadata": body["metadata"]}
        kube.run(run)
        finish(kube, phase, message)
        assert stored(kube) <= api.OBJECT_LIMIT, stored(kube)


def test_200_tasks_failing_with_large_messages_and_logs_all_end_failed_in_a_status_under_the_limit() -> None:
    kube = FakeKube({"tasks": [pod_task(f"t{i}") for i in range(WIDE)]}, {})
    kube.logs = "l" * 4096
    drive(kube, "Failed", "m" * 4000)
    status = kube.body["status"]
    assert status["phase"] == "Failed"
    assert all(t["phase"] == "Failed" for t in status["tasks"].values()) and len(status["tasks"]) == WIDE
    cut = [t for t in status["tasks"].values() if "the status is kept under 1 MiB" in (t.get("logs") or "")]
    assert cut, "logs were cut to fit"
    print(f"{WIDE} failed tasks: FlowRun of {stored(kube)} bytes")


def test_200_tasks_with_4000_byte_results_hand_one_on_intact() -> None:
    tasks: list[dict[str, Any]] = [pod_task(f"t{i}") for i in range(PRODUCERS)]
    consumer = pod_task("use", runAfter=["t7"])
    consumer["template"]["spec"]["containers"][0]["args"] = ["$(tasks.t7.result)"]
    kube = FakeKube({"tasks": [*tasks, consumer]}, {})
    kube.list_error = None
    result = "".join(chr(ord("a") + i % 26) for i in range(4000))
    drive(kube, "Succeeded", result, passes=4)
    use = next(o for o in kube.objects if o["kind"] == "Pod" and o["metadata"]["name"] == "x-use-1")
    assert use["spec"]["containers"][0]["args"] == [result]
    moved = [o for o in kube.objects if o["kind"] == "ConfigMap"]
    t7 = kube.body["status"]["tasks"]["t7"]
    if t7.get("resultFrom"):
        assert t7["resultFrom"] == "ConfigMap/x-t7-result" and any(o["data"]["result"] == result for o in moved)
    print(f"{PRODUCERS} results of 4000 bytes: FlowRun of {stored(kube)} bytes, {len(moved)} results in ConfigMaps")


def test_results_every_task_uses_move_to_configmaps_when_the_status_cannot_hold_them() -> None:
    """A spec of 400 kB and 199 results of 4,000 bytes, all used: more than the status can hold."""
    tasks: list[dict[str, Any]] = [pod_task(f"t{i}") for i in range(PRODUCERS)]
    for task in tasks:
        task["template"]["spec"]["containers"][0]["env"] = [{"name": "PAD", "value": "p" * 2000}]
    consumer = pod_task("join", runAfter=[f"t{i}" for i in range(PRODUCERS)])
    consumer["template"]["spec"]["containers"][0]["args"] = [f"$(tasks.t{i}.result)" for i in range(PRODUCERS)]
    kube = FakeKube({"tasks": [*tasks, consumer]}, {})
    results = {f"t{i}": f"{i:04d}" + "r" * 3996 for i in range(PRODUCERS)}

    def finish_each() -> None:
        for obj in kube.objects:
            task = obj["metadata"].get("labels", {}).get(api.LABEL_TASK)
            if obj["kind"] == "Pod" and not obj.get("status") and task in results:
                terminated = {"exitCode": 0, "message": results[task], "finishedAt": "2026-01-01T00:00:01Z"}
                obj["status"] = {
                    "phase": "Succeeded",
                    "containerStatuses": [{"name": "main", "state": {"terminated": terminated}}],
                }

    run = kube.passes()
    for _ in range(4):
        body = dict(kube.body)
        kube.body = {**trimmed(body), "metadata": body["metadata"]}
        kube.run(run)
        finish_each()
        assert stored(kube) <= api.OBJECT_LIMIT, stored(kube)
    join = next(o for o in kube.objects if o["kind"] == "Pod" and o["metadata"]["name"] == "x-join-1")
    assert join["spec"]["containers"][0]["args"] == [results[f"t{i}"] for i in range(PRODUCERS)]
    moved = {o["metadata"]["name"]: o for o in kube.objects if o["kind"] == "ConfigMap"}
    assert moved, "some results moved"
    for name, entry in kube.body["status"]["tasks"].items():
        if entry.get("resultFrom"):
            config_map = moved[entry["resultFrom"].removeprefix("ConfigMap/")]
            assert config_map["data"] == {"result": results[name]} and config_map["immutable"] is True
            assert config_map["metadata"]["ownerReferences"][0]["uid"] == kube.body["metadata"]["uid"]
        elif name in results:
            assert entry["result"] == results[name]
    print(f"{len(moved)} of {PRODUCERS} results in ConfigMaps; FlowRun of {stored(kube)} bytes")


def test_a_spec_that_leaves_no_room_for_a_status_fails_at_once_naming_its_size() -> None:
    task = pod_task("a")
    task["template"]["spec"]["containers"][0]["env"] = [{"name": "BIG", "value": "x" * 1_200_000}]
    kube = FakeKube({"tasks": [task]}, {})
    kube.run(kube.passes())
    status = kube.body["status"]
    assert status["phase"] == "Failed" and kube.create_calls == []
    assert status["message"].startswith("spec: the FlowRun takes "), status["message"]
    assert f"over the limit of {api.OBJECT_LIMIT} bytes" in status["message"]
    assert size(kube.body) > api.OBJECT_LIMIT  # what the test is about


def test_a_deletion_whose_cleanup_is_done_is_released_even_when_the_status_cannot_be_written() -> None:
    kube = FakeKube({"tasks": [pod_task("a")]}, {})
    passes = kube.passes()
    kube.run(passes)
    kube.body["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    finish(kube, "Succeeded", "")

    def refused(*_: Any) -> dict[str, Any]:
        raise api_error(500, "Internal Server Error", "etcdserver: request is too large")

    kube.patch_status = refused  # type: ignore[method-assign,assignment]
    result = kube.run(passes)
    assert result.released and "remove_finalizer" in kube.calls
