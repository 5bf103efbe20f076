"""A forEach task of 1,000 instances (the most a run may have) keeps its FlowRun under the object's
byte limit (1 MiB), through the pass as production runs it: instances failing with 4,000-byte
messages and logs all end Failed in the status; instances with 4,000-byte results hand them on,
in item order, to a join that reads $(tasks.work.results) (results move to ConfigMaps the run
owns, each instance's of its own)."""

from __future__ import annotations

import json
import time
from typing import Any

from flowrun import api
from flowrun.controller.caches import trimmed
from tests.unit.fakes import FakeKube, pod_task
from tests.unit.test_flowrun_pass_budget import stored

ITEMS = api.MAX_INSTANCES


def spec(join: bool) -> dict[str, Any]:
    items = json.dumps(list(range(ITEMS)), separators=(",", ":"))
    work = pod_task("work", forEach=items, retries={"limit": 1, "backoffSeconds": 0})
    work["template"]["spec"]["containers"][0]["args"] = ["$(item)"]
    tasks = [work]
    if join:
        tasks.append(pod_task("join", runAfter=["work"]))
        tasks[1]["template"]["spec"]["containers"][0]["args"] = ["$(tasks.work.results)"]
    return {"tasks": tasks}


def finish_pods(kube: FakeKube, phase: str, message: Any) -> None:
    """Every task pod without a status ends: its termination message is message(pod)."""
    for obj in kube.objects:
        if obj["kind"] == "Pod" and not obj.get("status"):
            terminated = {
                "exitCode": 0 if phase == "Succeeded" else 1,
                "message": message(obj),
                "finishedAt": "2026-01-01T00:00:01Z",
            }
            obj["status"] = {
                "phase": phase,
                "containerStatuses": [{"name": "main", "state": {"terminated": terminated}}],
            }


def drive(kube: FakeKube, phase: str, message: Any, passes: int) -> list[float]:
    """Passes, each after the pods of the last ended; the seconds each pass took."""
    run = kube.passes()
    took = []
    for _ in range(passes):
        body = dict(kube.body)
        kube.body = {**trimmed(body), "metadata": body["metadata"]}
        started = time.perf_counter()
        kube.run(run)
        took.append(time.perf_counter() - started)
        finish_pods(kube, phase, message)
        assert stored(kube) <= api.OBJECT_LIMIT, stored(kube)
    return took


def result_of(pod: dict[str, Any]) -> str:
    index = pod["spec"]["containers"][0]["args"][0]
    return f"{int(index):04d}" + "r" * 3996 if pod["metadata"]["labels"].get(api.LABEL_INSTANCE_OF) else "done"


def test_1000_instances_failing_with_large_messages_and_logs_all_end_failed_in_a_status_under_the_limit() -> None:
    kube = FakeKube(spec(join=False), {})
    kube.logs = "l" * 4096
    took = drive(kube, "Failed", lambda _: "m" * 4000, passes=5)
    status = kube.body["status"]
    assert status["phase"] == "Failed", status["message"]
    instances = [e for e in status["tasks"].values() if e.get("instanceOf") == "work"]
    assert len(instances) == ITEMS and all(e["phase"] == "Failed" and e["attempts"] == 2 for e in instances)
    assert status["tasks"]["work"]["reason"] == "InstancesFailed"
    seconds = ", ".join(f"{t:.2f}" for t in took)
    print(f"{ITEMS} failed instances: FlowRun of {stored(kube)} bytes; passes took {seconds} s")


def test_1000_instances_with_4000_byte_results_hand_them_on_in_item_order() -> None:
    kube = FakeKube(spec(join=True), {})
    took = drive(kube, "Succeeded", result_of, passes=4)
    status = kube.body["status"]
    join = next(o for o in kube.objects if o["kind"] == "Pod" and o["metadata"]["name"] == "x-join-1")
    handed = json.loads(join["spec"]["containers"][0]["args"][0])
    assert handed == [f"{i:04d}" + "r" * 3996 for i in range(ITEMS)], "every result, in item order"
    moved = {o["metadata"]["name"]: o for o in kube.objects if o["kind"] == "ConfigMap"}
    for entry in status["tasks"].values():
        if entry.get("resultFrom"):
            index = entry["index"]
            assert entry["resultFrom"] == f"ConfigMap/x-work-{index}-result"
            assert moved[f"x-work-{index}-result"]["data"]["result"].startswith(f"{index:04d}r")
    assert moved, "results moved"
    print(
        f"{ITEMS} results of 4000 bytes: FlowRun of {stored(kube)} bytes, {len(moved)} results in ConfigMaps;"
        f" passes took {', '.join(f'{t:.2f}' for t in took)} s"
    )


def test_a_spec_that_leaves_no_room_for_the_instances_of_its_forEach_tasks_fails_at_once() -> None:
    small = spec(join=False)
    small["tasks"][0]["template"]["spec"]["containers"][0]["env"] = [{"name": "BIG", "value": "x" * 500_000}]
    kube = FakeKube(small, {})
    kube.run(kube.passes())
    status = kube.body["status"]
    assert status["phase"] == "Failed" and kube.create_calls == []
    assert "(and up to 1000 instances of forEach tasks)" in status["message"], status["message"]
    without = {"tasks": [pod_task("work", template=small["tasks"][0]["template"])]}
    without["tasks"][0]["template"]["spec"]["containers"][0]["args"] = ["one"]
    kube = FakeKube(without, {})
    kube.run(kube.passes())
    assert kube.create_calls, "without forEach the same spec runs"
