"""Fan-out (`tasks[].forEach`): one instance per item, each a task of its own (pod, attempts,
retries, result, status entry); the task done once every instance is; dependants read the results
in item order. docs/semantics.md, "Fan-out: forEach"."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from flowrun import api, names
from flowrun.engine import CreateObject, ValidateObjects
from flowrun.model import SpecError, parse_spec
from flowrun.rerun import plan_rerun
from flowrun.resolution import Resolved, resolve_run
from tests.unit.builders import (
    NS,
    T0,
    Sim,
    assert_restart_safe,
    at,
    creates,
    fail,
    flow,
    resource,
    succeed,
    task,
)


def fan_out(**work: Any) -> dict[str, Any]:
    """list -> work (one instance per item of list's result) -> join (reads their results)."""
    fields = {"forEach": "$(tasks.list.result)", "args": ["$(item)"], **work}
    return flow(task("list"), task("work", "list", **fields), task("join", "work", args=["$(tasks.work.results)"]))


def pod(index: int, attempt: int = 1) -> str:
    return f"demo-work-{index}-{attempt}"


def args(sim: Sim, name: str) -> list[str]:
    result: list[str] = sim.cluster.get("Pod", name)["spec"]["containers"][0]["args"]
    return result


def listed(sim: Sim, items: list[Any], second: int = 1) -> None:
    sim.step(at(0))
    succeed(sim, "list", json.dumps(items))
    sim.step(at(second))


def test_each_item_is_an_instance_with_its_own_pod_and_the_join_reads_the_results_in_item_order() -> None:
    sim = Sim(fan_out())
    sim.step(at(0))
    succeed(sim, "list", '["a.csv", "b.csv", "c.csv"]')
    assert creates(sim.step(at(1))) == [f"Pod/{pod(0)}", f"Pod/{pod(1)}", f"Pod/{pod(2)}"]
    assert [args(sim, pod(i)) for i in range(3)] == [["a.csv"], ["b.csv"], ["c.csv"]]
    labels = sim.cluster.get("Pod", pod(1))["metadata"]["labels"]
    assert labels[api.LABEL_TASK] == "work-1" and labels[api.LABEL_INSTANCE_OF] == "work"
    work = sim.task("work")
    assert (work["phase"], work["reason"], work["instances"]) == ("Running", "InstancesRunning", 3)
    assert sim.task("work-2")["instanceOf"] == "work" and sim.task("work-2")["index"] == 2
    assert sim.status["progress"] == "1/5", "a forEach task counts as its instances"
    # The instances end out of order; the results keep the items' order.
    for index, result in ((2, "C"), (0, "A")):
        sim.cluster.set_pod(pod(index), "Succeeded", message=result)
    sim.step(at(2))
    assert sim.task("work")["message"] == "2 of 3 instances done" and sim.task("join")["phase"] == "Pending"
    sim.cluster.set_pod(pod(1), "Succeeded", message="B")
    assert creates(sim.step(at(3))) == ["Pod/demo-join-1"]
    assert args(sim, "demo-join-1") == ['["A","B","C"]']
    assert sim.task("work")["phase"] == "Succeeded" and sim.task("work")["message"] == "3 instances succeeded"
    succeed(sim, "join")
    sim.step(at(4))
    assert sim.status["phase"] == "Succeeded" and sim.status["progress"] == "5/5"
    assert sim.status["message"] == "5 succeeded"


def test_items_of_any_json_kind_and_their_fields() -> None:
    spec = fan_out(args=["$(item)", "$(item.name)", "$(item.size.mb)", "$(item.tags.1)"])
    sim = Sim(spec)
    listed(
        sim,
        [{"name": "x", "size": {"mb": 5}, "tags": ["t0", "t1"]}, {"name": "y", "size": {"mb": 1.5}, "tags": [1, True]}],
    )
    assert args(sim, pod(0)) == ['{"name":"x","size":{"mb":5},"tags":["t0","t1"]}', "x", "5", "t1"]
    assert args(sim, pod(1))[1:] == ["y", "1.5", "true"]


def test_an_empty_list_succeeds_the_task_and_the_join_reads_an_empty_list() -> None:
    sim = Sim(fan_out())
    listed(sim, [])
    work = sim.task("work")
    assert (work["phase"], work["reason"], work["instances"]) == ("Succeeded", "NoItems", 0)
    assert args(sim, "demo-join-1") == ["[]"]


@pytest.mark.parametrize(
    ("result", "message"),
    [
        ("a, b", "spec.tasks[1].forEach: '$(tasks.list.result)' resolves to 'a, b', not a JSON list (Expecting value"),
        ('{"a": 1}', "spec.tasks[1].forEach: '$(tasks.list.result)' resolves to '{\"a\": 1}', not a JSON list"),
        (json.dumps(list(range(1001)), separators=(",", ":")), "resolves to a list of 1001 items: at most 1000"),
    ],
)
def test_a_list_that_is_not_one_fails_the_task_naming_the_field_before_any_instance(result: str, message: str) -> None:
    sim = Sim(fan_out())
    sim.step(at(0))
    succeed(sim, "list", result)
    assert creates(sim.step(at(1))) == []
    work = sim.task("work")
    assert (work["phase"], work["reason"]) == ("Failed", "ForEachInvalid") and message in work["message"], work
    assert not [name for name in sim.status["tasks"] if name.startswith("work-")]
    assert sim.task("join")["reason"] == "UpstreamFailed" and sim.status["phase"] == "Failed"


def test_an_item_without_a_field_the_template_reads_fails_the_task_naming_the_field() -> None:
    sim = Sim(fan_out(args=["$(item.name)"]))
    listed(sim, [{"name": "x"}, {"id": 2}])
    work = sim.task("work")
    assert work["reason"] == "ForEachInvalid", work
    assert work["message"] == (
        "spec.tasks[1].template.spec.containers[0].args[0]: $(item.name): item 1 ('{\"id\":2}') has no name"
    )
    assert sim.cluster.names("Pod") == ["demo-list-1"]


def test_the_runs_instances_are_capped_before_any_is_created() -> None:
    spec = flow(
        task("list"),
        task("one", "list", forEach="$(tasks.list.result)"),
        task("two", "list", forEach="$(tasks.list.result)"),
    )
    sim = Sim(spec)
    listed(sim, list(range(600)))
    assert sim.task("one")["instances"] == 600
    two = sim.task("two")
    assert (two["phase"], two["reason"]) == ("Failed", "ForEachInvalid")
    assert two["message"] == "spec.tasks[2].forEach: 600 items would make 1200 instances in the run: at most 1000"
    assert not any(name.startswith("demo-two-") for name in sim.cluster.names("Pod"))


def test_the_tasks_parallelism_bounds_its_instances_and_the_runs_bounds_every_pod() -> None:
    spec = fan_out(parallelism=2)
    spec["tasks"].append(task("other", "list"))
    spec["parallelism"] = 4
    sim = Sim(spec)
    sim.step(at(0))
    succeed(sim, "list", '["a", "b", "c", "d"]')
    assert creates(sim.step(at(1))) == [f"Pod/{pod(0)}", f"Pod/{pod(1)}", "Pod/demo-other-1"]
    assert sim.task("work-2")["message"] == "waiting for a slot (parallelism 2 of task work)"
    sim.cluster.set_pod(pod(0), "Succeeded")
    assert creates(sim.step(at(2))) == [f"Pod/{pod(2)}"]
    succeed(sim, "other")
    sim.cluster.set_pod(pod(1), "Succeeded")
    assert creates(sim.step(at(3))) == [f"Pod/{pod(3)}"]
    one_at_a_time = Sim({**fan_out(parallelism=2), "parallelism": 1})
    listed(one_at_a_time, ["a", "b"])
    assert one_at_a_time.cluster.names("Pod") == ["demo-list-1", pod(0)]
    assert one_at_a_time.task("work-1")["message"] == "waiting for a slot (parallelism 1)"


def test_each_instance_retries_on_its_own_and_the_task_fails_once_every_instance_is_done() -> None:
    sim = Sim(fan_out(retries={"limit": 1, "backoffSeconds": 0}))
    listed(sim, ["a", "b", "c"])
    sim.cluster.set_pod(pod(0), "Failed", message="boom")
    sim.cluster.set_pod(pod(1), "Succeeded", message="B")
    assert creates(sim.step(at(2))) == [f"Pod/{pod(0, 2)}"], "a new pod for the instance's next attempt"
    assert sim.task("work-0")["attempts"] == 2 and args(sim, pod(0, 2)) == ["a"]
    sim.cluster.set_pod(pod(0, 2), "Failed", message="boom again")
    sim.step(at(3))
    assert sim.task("work-0")["phase"] == "Failed" and sim.task("work")["phase"] == "Running", "c still runs"
    assert sim.task("work")["message"] == "2 of 3 instances done, 1 failed"
    sim.cluster.set_pod(pod(2), "Succeeded")
    sim.step(at(4))
    work = sim.task("work")
    assert (work["phase"], work["reason"]) == ("Failed", "InstancesFailed")
    assert work["message"].startswith("1 of 3 instances failed; work-0: Error: attempt 2: exit code 1"), work
    assert sim.task("join")["reason"] == "UpstreamFailed" and sim.status["phase"] == "Failed"
    assert sim.status["message"].startswith("task work failed: InstancesFailed: 1 of 3 instances failed")
    failures = [e for e in sim.events if e.reason == "TaskFailed"]
    assert [e.message.split(":")[0] for e in failures] == ["task work"], "one event for the task, none per instance"
    assert "logs of demo-work-0-2" in sim.task("work-0")["logs"], "each instance keeps its own logs"


def test_instances_inside_a_block_set_it_up_and_hold_its_cleanup_until_every_one_is_done() -> None:
    spec = fan_out(resources=["db"], args=["$(item)", "$(resources.db.value)"])
    spec["resources"] = [resource("db")]
    sim = Sim(spec)
    listed(sim, ["a", "b"])
    assert sim.res("db")["phase"] == "SettingUp", "its instances want it"
    assert sim.task("work-0")["reason"] == "WaitingForResources"
    sim.cluster.make_available("demo-db-db")
    sim.step(at(2))
    assert args(sim, pod(1))[1] == "demo-db-db.team.svc"
    sim.cluster.set_pod(pod(0), "Succeeded")
    sim.step(at(3))
    assert sim.res("db")["phase"] == "Ready", "an instance still runs in it"
    sim.cluster.set_pod(pod(1), "Succeeded")
    sim.step(at(4))
    assert sim.res("db")["phase"] == "CleaningUp"


def test_an_empty_list_never_sets_its_block_up() -> None:
    spec = fan_out(resources=["db"])
    spec["resources"] = [resource("db")]
    sim = Sim(spec)
    listed(sim, [])
    assert (sim.res("db")["phase"], sim.res("db")["reason"]) == ("Pending", "NotNeeded")


def test_a_list_from_a_param_and_a_chain_over_the_results_of_another_forEach() -> None:
    spec = flow(
        task("square", forEach="$(params.numbers)", args=["$(item)"]),
        task("report", "square", forEach="$(tasks.square.results)", args=["$(item)"]),
        params=[{"name": "numbers", "value": "[1, 2]"}],
    )
    sim = Sim(spec)
    assert creates(sim.step(at(0))) == ["Pod/demo-square-0-1", "Pod/demo-square-1-1"]
    sim.cluster.set_pod("demo-square-0-1", "Succeeded", message="1")
    sim.cluster.set_pod("demo-square-1-1", "Succeeded", message="4")
    assert creates(sim.step(at(1))) == ["Pod/demo-report-0-1", "Pod/demo-report-1-1"]
    assert args(sim, "demo-report-1-1") == ["4"]


def test_a_status_lost_mid_fan_out_creates_nothing_twice_and_finds_its_instances_again() -> None:
    sim = Sim(fan_out(retries={"limit": 2, "backoffSeconds": 0}))
    listed(sim, ["a", "b", "c"])
    sim.cluster.set_pod(pod(1), "Failed")
    sim.step(at(2))
    sim.cluster.set_pod(pod(0), "Succeeded", message="A")
    assert_restart_safe(sim, at(3))
    sim.update(status={})
    sim.step(at(3))
    assert sim.task("work-1")["attempts"] == 2 and sim.task("work-0")["result"] == "A"
    assert sim.task("work")["instances"] == 3


def test_a_status_that_claims_the_task_ended_while_instances_run_is_not_believed() -> None:
    sim = Sim(fan_out())
    listed(sim, ["a", "b"])
    status = copy.deepcopy(sim.status)
    status["tasks"]["work"].update(phase="Succeeded", reason="Succeeded")
    sim.update(status=status)
    sim.step(at(2))
    assert sim.task("work")["phase"] == "Running" and sim.task("join")["phase"] == "Pending"


def test_cancel_mid_fan_out_cancels_the_instances_and_the_task() -> None:
    sim = Sim(fan_out(parallelism=1))
    listed(sim, ["a", "b"])
    sim.set_spec(cancel=True)
    sim.step(at(2))
    assert [sim.task(n)["phase"] for n in ("work", "work-0", "work-1", "join")] == ["Cancelled"] * 4
    assert sim.status["phase"] == "Cancelled"


def test_the_run_deadline_fails_the_running_instances_and_skips_the_others() -> None:
    sim = Sim({**fan_out(parallelism=1), "activeDeadlineSeconds": 60})
    listed(sim, ["a", "b"])
    sim.step(at(61))
    assert (sim.task("work-0")["phase"], sim.task("work-1")["phase"]) == ("Failed", "Skipped")
    assert (sim.task("work")["phase"], sim.task("work")["reason"]) == ("Failed", "RunDeadlineExceeded")


def test_the_dry_run_checks_a_forEach_tasks_pod_with_a_placeholder_item() -> None:
    sim = Sim(fan_out(args=["$(item)", "$(item.name)"]))
    outcome = sim.step(at(0))
    dry_run = next(a for a in outcome.actions if isinstance(a, ValidateObjects))
    work = dry_run.manifests[dry_run.fields.index("spec.tasks[1].template")]
    assert work["metadata"]["name"] == "demo-work-0-1"
    assert work["spec"]["containers"][0]["args"] == [api.DRY_RUN_PLACEHOLDER] * 2


def test_a_manifest_named_like_an_instances_pod_is_refused() -> None:
    spec = fan_out()
    spec["tasks"][0]["resources"] = ["r"]
    spec["resources"] = [
        resource("r", setup={"manifests": [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "demo-work-7-1"}}]})
    ]
    sim = Sim(spec)
    sim.step(at(0))
    assert "attempt 1 of instance 7 of task work" in sim.status["message"], sim.status["message"]


def test_instance_pods_have_valid_distinct_names_whatever_the_runs_name() -> None:
    run = "r" * 253
    found = {names.task_pod_name(run, "t" * 59, attempt, index) for index in range(1000) for attempt in (1, 2)}
    assert len(found) == 2000 and all(len(n) <= 63 for n in found)
    assert names.task_pod_name(run, "t" * 59, 2, 999).endswith("-999-2")
    assert names.task_pod_name("demo", "work", 1, 3) == "demo-work-3-1"


# --- reruns ---------------------------------------------------------------------------------------


def test_a_rerun_reuses_the_succeeded_instances_and_runs_the_others_again() -> None:
    spec = fan_out()
    sim = Sim(spec)
    listed(sim, ["a", "b", "c"])
    sim.cluster.set_pod(pod(0), "Succeeded", message="A")
    sim.cluster.set_pod(pod(1), "Failed")
    sim.cluster.set_pod(pod(2), "Succeeded", message="C")
    sim.step(at(2))
    assert sim.status["phase"] == "Failed"
    original = {"metadata": {"name": "demo", "namespace": NS, "uid": "u0"}, "spec": spec, "status": sim.status}
    plan = plan_rerun({"rerunOf": {"name": "demo"}}, original, "demo")
    assert sorted(plan.reused) == ["list", "work-0", "work-2"] and "work" in plan.rerun_tasks

    first = resolve_run({"rerunOf": {"name": "demo"}}, {}, found=original, name="again", created_at=T0, now=T0)
    assert isinstance(first, Resolved)
    rerun = Sim(first.spec, status=first.engine_status({}))
    assert creates(rerun.step(at(0))) == [f"Pod/{pod(1)}"], "only the instance that failed runs again"
    assert rerun.task("work-0")["reason"] == "Reused"
    rerun.cluster.set_pod(pod(1), "Succeeded", message="B")
    rerun.step(at(1))
    assert args(rerun, "demo-join-1") == ['["A","B","C"]']


# --- refused at validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (flow(task("a", forEach="[1, 2"), task("b")), "spec.tasks[0].forEach", "not a JSON list"),
        (
            flow(task("a", forEach="$(params.l)", args=["$(item.x)"]), params=[{"name": "l", "value": '[{"y": 1}]'}]),
            "spec.tasks[0].template.spec.containers[0].args[0]",
            "$(item.x): item 0 ('{\"y\":1}') has no x",
        ),
        (flow(task("a", forEach="[1]"), task("a-0")), "spec.tasks[1].name", "an instance of forEach task 'a'"),
        (flow(task("a", args=["$(item)"])), "spec.tasks[0].template.spec.containers[0].args[0]", "has no forEach"),
        (flow(task("a", parallelism=2)), "spec.tasks[0].parallelism", "set forEach"),
        (flow(task("a" * 60, forEach="[1]")), "spec.tasks[0].name", "at most 59 characters"),
        (
            flow(task("a", forEach="[1]"), task("b", "a", args=["$(tasks.a.result)"])),
            "spec.tasks[1].template.spec.containers[0].args[0]",
            "its instances' results are $(tasks.a.results)",
        ),
        (
            flow(task("a"), task("b", "a", args=["$(tasks.a.results)"])),
            "spec.tasks[1].template.spec.containers[0].args[0]",
            "has no forEach: its result is $(tasks.a.result)",
        ),
        (flow(task("a", forEach="$(item)")), "spec.tasks[0].forEach", "the list cannot use its own items"),
        (
            flow(task("a", forEach=json.dumps(list(range(600)))), task("b", forEach=json.dumps(list(range(401))))),
            "spec.tasks[1].forEach",
            "would have 1001 instances with this one's 401: at most 1000 in a run",
        ),
    ],
)
def test_what_is_known_before_the_run_is_checked_naming_the_field(
    spec: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec)
    assert error.value.field == field and message in error.value.message, error.value


def test_a_flows_param_without_default_is_not_read_as_a_list_before_a_run_gives_it() -> None:
    spec = flow(task("a", forEach="$(params.l)"), params=[{"name": "l", "value": "1"}])
    with pytest.raises(SpecError):
        parse_spec(spec)
    parse_spec(spec, placeholders=["l"])


def test_the_creates_of_a_pass_are_instance_pods_of_the_right_items() -> None:
    sim = Sim(fan_out())
    sim.step(at(0))
    succeed(sim, "list", '["x"]')
    outcome = sim.step(at(1))
    created = [a.manifest for a in outcome.actions if isinstance(a, CreateObject)]
    assert [m["metadata"]["labels"][api.LABEL_ATTEMPT] for m in created] == ["1"]


def test_fail_of_the_list_task_skips_the_forEach_task_without_instances() -> None:
    sim = Sim(fan_out())
    sim.step(at(0))
    fail(sim, "list")
    sim.step(at(1))
    work = sim.task("work")
    assert (work["phase"], work["reason"], work["instances"]) == ("Skipped", "UpstreamFailed", None)
