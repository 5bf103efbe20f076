"""Conditions and fan-out on the dev cluster, with the operator as a process: the fan-out example
inside its Dask block (instances' pods with their items, the task's parallelism watched on the
pods, the join reading the results in order, the block cleaned up after the last instance); a
list that is not one fails its task before any pod; a condition that cannot be evaluated fails
its task naming it. (Their exhaustive cases are the engine's unit tests.)"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from flowrun.timestamps import parse_time
from tests.e2e.helpers import REPO, FlowRuns, Operator, Watch, main_container, res, sim_task, task

pytestmark = pytest.mark.e2e


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())
    body.pop("apiVersion")
    body.pop("kind")
    return body


def test_the_fan_out_example_runs_one_pod_per_item_two_at_a_time_in_its_block(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    pods = watch("pods", label_selector="flowrun.dev/instance-of=summarize-day")
    body = example("foreach-dask-flowrun.yaml")
    name = body["metadata"]["name"]
    flowruns.create(body)
    run = flowruns.wait_phase(name, ("Succeeded", "Failed"), timeout=120)
    status = run["status"]
    assert status["phase"] == "Succeeded", status["message"]
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    for i, day in enumerate(days):
        instance = task(run, f"summarize-day-{i}")
        assert (instance["phase"], instance["instanceOf"], instance["index"]) == ("Succeeded", "summarize-day", i)
        assert main_container(flowruns.read_pod(f"{name}-summarize-day-{i}-1")).args[1] == day
    assert task(run, "summarize-day")["instances"] == 3 and status["progress"] == "5/5"
    assert pods.max_alive() <= 2, "parallelism: 2 of the task's instances at a time"
    assert set(pods.uids_by_name()) == {f"{name}-summarize-day-{i}-1" for i in range(3)}
    result = '{"rows": 86400, "mean": 0.0}'
    assert json.loads(main_container(flowruns.read_pod(f"{name}-combine-1")).args[1]) == [result] * 3
    dask = res(run, "dask")
    ends = [parse_time(task(run, f"summarize-day-{i}")["finishedAt"]) for i in range(3)]
    cleanup = parse_time(dask["cleanupStartedAt"])
    assert dask["phase"] == "CleanedUp" and cleanup is not None
    assert all(end is not None and cleanup >= end for end in ends), "the block waited for every instance"
    flowruns.delete_and_check_nothing_leaked(name)


def test_a_list_that_is_not_json_fails_its_task_and_a_condition_that_cannot_be_evaluated_fails_its_own(
    operator: Operator, flowruns: FlowRuns, watch: Watch
) -> None:
    pods = watch("pods")
    spec = {
        "tasks": [
            sim_task("list", message="a.csv, b.csv"),
            sim_task("work", run_after=["list"], forEach="$(tasks.list.result)", args=["$(item)"]),
            sim_task("gate", run_after=["list"], when=["int($(tasks.list.result)) > 0"]),
            sim_task("after", run_after=["gate"], trigger="allDone", when=["$(tasks.gate.phase) == 'Failed'"]),
        ]
    }
    flowruns.create({"metadata": {"name": "bad-lists"}, "spec": spec})
    run = flowruns.wait_phase("bad-lists", ("Succeeded", "Failed"), timeout=60)
    work, gate = task(run, "work"), task(run, "gate")
    assert (work["phase"], work["reason"]) == ("Failed", "ForEachInvalid"), work
    assert work["message"].startswith("spec.tasks[1].forEach: '$(tasks.list.result)' resolves to 'a.csv, b.csv'")
    assert (gate["phase"], gate["reason"]) == ("Failed", "WhenError") and gate["message"].startswith(
        "spec.tasks[2].when[0]: Function 'int' error"
    ), gate
    assert task(run, "after")["phase"] == "Succeeded", "a condition on the failed task's phase holds"
    assert set(pods.uids_by_name()) == {"bad-lists-list-1", "bad-lists-after-1"}, "no pod for either"
    flowruns.delete_and_check_nothing_leaked("bad-lists")
