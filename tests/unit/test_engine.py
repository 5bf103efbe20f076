"""The engine on tasks and the run as a whole; resource blocks are in test_engine_blocks.py."""

from typing import Any

import pytest

from flowrun.engine import (
    CaptureLogs,
    CreateObject,
    DeleteFlowRun,
    DeleteObject,
    RunInput,
    ValidateObjects,
    decide,
    run_input_from_object,
)
from flowrun.observed import Observed, observed_from_objects
from tests.unit.builders import (
    NS,
    RUN,
    T0,
    UID,
    FakeCluster,
    Sim,
    assert_restart_safe,
    at,
    container,
    creates,
    deletes,
    deployment,
    fail,
    flow,
    phases,
    pod_name,
    resource,
    succeed,
    task,
    template,
)

# -- DAG order ----------------------------------------------------------------------------------


def test_linear_chain_runs_one_after_the_other() -> None:
    sim = Sim(flow(task("a"), task("b", "a"), task("c", "b")))
    assert creates(sim.step(at(0))) == ["Pod/demo-a-1"]
    assert creates(sim.step(at(1))) == []  # a still running
    succeed(sim, "a")
    assert creates(sim.step(at(2))) == ["Pod/demo-b-1"]
    succeed(sim, "b")
    assert creates(sim.step(at(3))) == ["Pod/demo-c-1"]
    succeed(sim, "c")
    outcome = sim.step(at(4))
    assert outcome.done and sim.status["phase"] == "Succeeded" and sim.status["progress"] == "3/3"
    assert sim.status["duration"] == "4s" and sim.task("a")["exitCode"] == 0
    assert sim.status["finishedAt"] == "2024-05-01T12:00:04Z" and sim.status["startedAt"] == "2024-05-01T12:00:00Z"


def test_diamond_fans_out_and_joins() -> None:
    sim = Sim(flow(task("a"), task("b", "a"), task("c", "a"), task("d", "b", "c")))
    sim.step(at(0))
    succeed(sim, "a")
    assert creates(sim.step(at(1))) == ["Pod/demo-b-1", "Pod/demo-c-1"]
    succeed(sim, "b")
    assert creates(sim.step(at(2))) == []  # d waits for c too
    assert sim.task("d")["reason"] == "WaitingForUpstream" and sim.task("d")["message"] == "waiting for c"
    succeed(sim, "c")
    assert creates(sim.step(at(3))) == ["Pod/demo-d-1"]


def test_independent_tasks_start_together() -> None:
    sim = Sim(flow(task("a"), task("b"), task("c")))
    assert creates(sim.step(at(0))) == ["Pod/demo-a-1", "Pod/demo-b-1", "Pod/demo-c-1"]


# -- triggers and skips -------------------------------------------------------------------------

UPSTREAM = {
    "ok": {"phase": "Succeeded", "reason": "Succeeded"},
    "failed": {"phase": "Failed", "reason": "Error"},
    "skipped-by-trigger": {"phase": "Skipped", "reason": "TriggerNotMet"},
    "skipped-upstream-failed": {"phase": "Skipped", "reason": "UpstreamFailed"},
    "skipped-setup-failed": {"phase": "Skipped", "reason": "SetupFailed"},
    "running": {"phase": "Running", "reason": "PodRunning", "attempts": 1, "podName": "demo-u2-1"},
}


@pytest.mark.parametrize(
    ("trigger", "u1", "u2", "expected"),
    [
        ("allSucceeded", "ok", "ok", "run"),
        ("allSucceeded", "ok", "running", "wait"),
        ("allSucceeded", "failed", "running", "Skipped/UpstreamFailed"),  # decided without waiting
        ("allSucceeded", "skipped-upstream-failed", "ok", "Skipped/UpstreamFailed"),
        ("allSucceeded", "skipped-setup-failed", "ok", "Skipped/UpstreamFailed"),
        ("allSucceeded", "skipped-by-trigger", "ok", "Skipped/TriggerNotMet"),
        ("allSucceeded", "skipped-by-trigger", "failed", "Skipped/UpstreamFailed"),
        ("allDone", "ok", "failed", "run"),
        ("allDone", "skipped-by-trigger", "skipped-upstream-failed", "run"),
        ("allDone", "failed", "running", "wait"),
        ("anyFailed", "ok", "failed", "run"),
        ("anyFailed", "ok", "skipped-upstream-failed", "run"),
        ("anyFailed", "ok", "ok", "Skipped/TriggerNotMet"),
        ("anyFailed", "ok", "skipped-by-trigger", "Skipped/TriggerNotMet"),
        ("anyFailed", "failed", "running", "wait"),
    ],
)
def test_triggers(trigger: str, u1: str, u2: str, expected: str) -> None:
    sim = Sim(flow(task("u1"), task("u2"), task("t", "u1", "u2", trigger=trigger)))
    sim.update(status={"tasks": {"u1": UPSTREAM[u1], "u2": UPSTREAM[u2]}})
    if u2 == "running":
        sim.cluster.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "demo-u2-1",
                    "labels": {
                        "flowrun.dev/flowrun-uid": UID,
                        "flowrun.dev/role": "task",
                        "flowrun.dev/task": "u2",
                        "flowrun.dev/attempt": "1",
                    },
                },
            }
        )
        sim.cluster.run_pod("demo-u2-1")
    outcome = sim.step(at(0))
    t = sim.task("t")
    if expected == "run":
        assert "Pod/demo-t-1" in creates(outcome) and t["phase"] == "Running"
    elif expected == "wait":
        assert creates(outcome) == [] and (t["phase"], t["reason"]) == ("Pending", "WaitingForUpstream")
    else:
        assert f"{t['phase']}/{t['reason']}" == expected and creates(outcome) == []


@pytest.mark.parametrize(
    ("trigger", "expected"), [("allSucceeded", "Running"), ("allDone", "Running"), ("anyFailed", "Skipped")]
)
def test_triggers_without_run_after(trigger: str, expected: str) -> None:
    sim = Sim(flow(task("a", trigger=trigger)))
    sim.step(at(0))
    assert sim.task("a")["phase"] == expected


def test_failure_propagates_as_upstream_failed_and_all_done_still_runs() -> None:
    sim = Sim(flow(task("a"), task("b", "a"), task("c", "b"), task("report", "c", trigger="allDone")))
    sim.step(at(0))
    fail(sim, "a", message="boom")
    outcome = sim.step(at(1))
    assert phases(sim) == {"a": "Failed", "b": "Skipped", "c": "Skipped", "report": "Running"}
    assert sim.task("b")["reason"] == sim.task("c")["reason"] == "UpstreamFailed"
    assert creates(outcome) == ["Pod/demo-report-1"]
    succeed(sim, "report")
    sim.step(at(2))
    assert sim.status["phase"] == "Failed"
    assert sim.status["message"] == "task a failed: Error: exit code 1; boom"
    assert sim.condition("Succeeded")["reason"] == "TasksFailed"


def test_a_skip_by_trigger_design_propagates_and_the_run_succeeds() -> None:
    sim = Sim(flow(task("a"), task("on-error", "a", trigger="anyFailed"), task("notify", "on-error")))
    sim.step(at(0))
    succeed(sim, "a")
    sim.step(at(1))
    assert phases(sim) == {"a": "Succeeded", "on-error": "Skipped", "notify": "Skipped"}
    assert sim.task("notify")["reason"] == "TriggerNotMet"
    assert sim.status["phase"] == "Succeeded" and sim.status["message"] == "1 succeeded, 2 skipped"


def test_an_error_handler_runs_on_failure_but_the_run_still_fails() -> None:
    sim = Sim(flow(task("a"), task("on-error", "a", trigger="anyFailed")))
    sim.step(at(0))
    fail(sim, "a")
    assert creates(sim.step(at(1))) == ["Pod/demo-on-error-1"]
    succeed(sim, "on-error")
    sim.step(at(2))
    assert sim.status["phase"] == "Failed"


# -- results and references ---------------------------------------------------------------------


def test_results_and_params_are_substituted_into_downstream_pods() -> None:
    tpl = template(
        {
            "name": "main",
            "image": "x",
            "command": ["sh", "-c", "echo $(date) $(HOME)"],
            "args": ["$(tasks.a.result)", "$(params.out)", "$(flowrun.name)/$(flowrun.namespace)/$(flowrun.uid)"],
            "env": [{"name": "IN", "value": "$(tasks.a.result)"}],
        }
    )
    sim = Sim(flow(task("a"), task("b", "a", template=tpl), params=[{"name": "out", "value": "/data/o.csv"}]))
    sim.step(at(0))
    succeed(sim, "a", message="s3://bucket/part-0")
    sim.step(at(1))
    main = sim.cluster.get("Pod", "demo-b-1")["spec"]["containers"][0]
    assert main["command"] == ["sh", "-c", "echo $(date) $(HOME)"]
    assert main["args"] == ["s3://bucket/part-0", "/data/o.csv", f"{RUN}/{NS}/{UID}"]
    assert main["env"] == [{"name": "IN", "value": "s3://bucket/part-0"}]
    assert sim.task("a")["result"] == "s3://bucket/part-0"


def test_result_of_a_task_that_did_not_succeed_is_empty() -> None:
    sim = Sim(flow(task("a"), task("b", "a", trigger="allDone", args=["[$(tasks.a.result)]"])))
    sim.step(at(0))
    fail(sim, "a", message="partial")
    sim.step(at(1))
    assert sim.cluster.get("Pod", "demo-b-1")["spec"]["containers"][0]["args"] == ["[]"]


def test_result_is_read_from_the_main_container() -> None:
    tpl = template(container("sidecar"), container("main"))
    sim = Sim(flow(task("a", template=tpl)))
    sim.step(at(0))
    pod = sim.cluster.get("Pod", "demo-a-1")
    pod["status"] = {
        "phase": "Succeeded",
        "containerStatuses": [
            {"name": "sidecar", "state": {"terminated": {"exitCode": 0, "message": "not me"}}},
            {"name": "main", "state": {"terminated": {"exitCode": 0, "message": "me"}}},
        ],
    }
    sim.step(at(1))
    assert sim.task("a")["result"] == "me"


def test_a_result_at_the_4kib_limit_is_flagged_as_possibly_truncated() -> None:
    sim = Sim(flow(task("a")))
    sim.step(at(0))
    succeed(sim, "a", message="x" * 5000)
    sim.step(at(1))
    assert len(sim.task("a")["result"]) == 4096
    assert "4 KiB" in sim.task("a")["message"]


# -- parallelism --------------------------------------------------------------------------------


def test_parallelism_limits_running_pods() -> None:
    sim = Sim(flow(*(task(f"t{i}") for i in range(5)), parallelism=2))
    assert creates(sim.step(at(0))) == ["Pod/demo-t0-1", "Pod/demo-t1-1"]
    assert sim.task("t2")["reason"] == "WaitingForParallelism"
    assert creates(sim.step(at(1))) == []
    succeed(sim, "t0")
    assert creates(sim.step(at(2))) == ["Pod/demo-t2-1"]
    running = [n for n, t in sim.status["tasks"].items() if t["phase"] == "Running"]
    assert running == ["t1", "t2"]


def test_parallelism_counts_a_pod_that_is_still_terminating() -> None:
    sim = Sim(
        flow(task("a", activeDeadlineSeconds=5, retries={"limit": 1, "backoffSeconds": 0}), task("b"), parallelism=1),
        cluster=FakeCluster(graceful=True),
    )
    sim.step(at(0))
    sim.cluster.run_pod(pod_name("a"), start=at(0))
    outcome = sim.step(at(6))  # deadline: pod a-1 is deleted but still terminating
    assert deletes(outcome) == ["Pod/demo-a-1"] and creates(outcome) == []
    sim.cluster.collect()
    assert creates(sim.step(at(7))) == ["Pod/demo-a-2"]


# -- retries ------------------------------------------------------------------------------------


def test_retries_use_a_new_pod_per_attempt_after_the_backoff() -> None:
    sim = Sim(flow(task("a", retries={"limit": 2, "backoffSeconds": 30})))
    sim.step(at(0))
    fail(sim, "a", exit_code=3)
    outcome = sim.step(at(10))
    a = sim.task("a")
    assert (a["phase"], a["reason"], a["attempts"]) == ("Running", "RetryBackoff", 1)
    assert a["nextAttemptAt"] == "2024-05-01T12:00:40Z"
    assert outcome.requeue_after == 30 and creates(outcome) == []
    assert creates(sim.step(at(39))) == []
    assert creates(sim.step(at(40))) == ["Pod/demo-a-2"]
    assert sim.task("a")["podName"] == "demo-a-2" and sim.task("a")["attempts"] == 2
    fail(sim, "a", attempt=2)
    sim.step(at(41))
    assert creates(sim.step(at(71))) == ["Pod/demo-a-3"]
    fail(sim, "a", attempt=3, exit_code=7, message="still broken")
    sim.step(at(72))
    a = sim.task("a")
    assert (a["phase"], a["reason"], a["attempts"], a["exitCode"]) == ("Failed", "Error", 3, 7)
    assert a["message"] == "attempt 3: exit code 7; still broken"
    assert sim.event_reasons().count("TaskRetrying") == 2
    assert "TaskStarted" not in sim.event_reasons()  # the status says each attempt; events say what went wrong


def test_a_pod_that_vanishes_while_running_fails_the_attempt_and_is_retried() -> None:
    sim = Sim(flow(task("a", retries={"limit": 1, "backoffSeconds": 0})))
    sim.step(at(0))
    sim.cluster.run_pod(pod_name("a"))
    sim.step(at(1))
    sim.cluster.delete("Pod", pod_name("a"))
    outcome = sim.step(at(2))
    assert creates(outcome) == ["Pod/demo-a-2"]
    assert sim.task("a")["message"] == "attempt 1 failed (PodDeleted: pod demo-a-1 disappeared)"
    assert outcome.events[-1].message.endswith("after attempt 1 failed (PodDeleted: pod demo-a-1 disappeared)")
    sim.cluster.delete("Pod", pod_name("a", 2))
    outcome = sim.step(at(3))  # demo-a-2 was never observed: it is still being created, not vanished
    assert sim.task("a")["phase"] == "Running" and creates(outcome) == ["Pod/demo-a-2"]


def test_a_pod_that_vanishes_after_it_was_seen_fails_the_task_without_retries() -> None:
    sim = Sim(flow(task("a")))
    sim.step(at(0))
    sim.cluster.run_pod(pod_name("a"))
    sim.step(at(1))
    sim.cluster.delete("Pod", pod_name("a"))
    sim.step(at(2))
    assert (sim.task("a")["phase"], sim.task("a")["reason"]) == ("Failed", "PodDeleted")
    assert sim.status["phase"] == "Failed"


def test_failed_task_logs_are_captured() -> None:
    sim = Sim(flow(task("a")))
    sim.step(at(0))
    fail(sim, "a")
    outcome = sim.step(at(1))
    assert [a for a in outcome.actions if isinstance(a, CaptureLogs)] == [CaptureLogs("a", "demo-a-1", "main", 100)]
    assert sim.task("a")["logs"] == "logs of demo-a-1"
    assert not any(isinstance(a, CaptureLogs) for a in sim.step(at(2)).actions)


# -- deadlines ----------------------------------------------------------------------------------


def test_task_deadline_is_enforced_from_the_pod_start() -> None:
    sim = Sim(flow(task("a", activeDeadlineSeconds=30)))
    sim.step(at(0))
    sim.cluster.run_pod(pod_name("a"), start=at(5))
    assert sim.step(at(10)).requeue_after == 25
    outcome = sim.step(at(35))
    assert outcome.actions == (CaptureLogs("a", "demo-a-1", "main"), DeleteObject("v1", "Pod", "demo-a-1"))
    a = sim.task("a")
    assert (a["phase"], a["reason"]) == ("Failed", "DeadlineExceeded")


def test_a_timed_out_attempt_is_named_once_in_the_messages() -> None:
    sim = Sim(flow(task("a", activeDeadlineSeconds=30, retries={"limit": 1, "backoffSeconds": 0})))
    sim.step(at(0))
    sim.cluster.run_pod(pod_name("a"), start=at(0))
    assert creates(sim.step(at(30))) == ["Pod/demo-a-2"]
    assert sim.task("a")["message"] == "attempt 1 failed (DeadlineExceeded: ran longer than activeDeadlineSeconds=30)"
    sim.cluster.run_pod(pod_name("a", 2), start=at(31))
    sim.step(at(61))
    a = sim.task("a")
    assert (a["phase"], a["reason"]) == ("Failed", "DeadlineExceeded")
    assert a["message"] == "attempt 2: ran longer than activeDeadlineSeconds=30"


def test_task_deadline_reported_by_the_kubelet() -> None:
    sim = Sim(flow(task("a", activeDeadlineSeconds=30)))
    sim.step(at(0))
    fail(sim, "a", reason="DeadlineExceeded")
    sim.step(at(31))
    assert (sim.task("a")["phase"], sim.task("a")["reason"]) == ("Failed", "DeadlineExceeded")


def test_run_deadline_stops_tasks_and_fails_the_run() -> None:
    sim = Sim(flow(task("a"), task("b", "a"), task("c"), activeDeadlineSeconds=60))
    assert sim.step(at(0)).requeue_after == 60
    succeed(sim, "c")
    sim.cluster.run_pod(pod_name("a"))
    outcome = sim.step(at(60))
    assert deletes(outcome) == ["Pod/demo-a-1"]
    assert CaptureLogs("a", "demo-a-1", "main") in outcome.actions
    assert {n: (t["phase"], t["reason"]) for n, t in sim.status["tasks"].items()} == {
        "a": ("Failed", "RunDeadlineExceeded"),
        "b": ("Skipped", "RunDeadlineExceeded"),
        "c": ("Succeeded", "Succeeded"),
    }
    assert sim.status["phase"] == "Failed" and sim.condition("Succeeded")["reason"] == "DeadlineExceeded"


# -- cancel -------------------------------------------------------------------------------------


def test_cancel_before_start_creates_nothing() -> None:
    sim = Sim(flow(task("a"), task("b", "a"), cancel=True))
    outcome = sim.step(at(0))
    assert outcome.actions == () and outcome.done
    assert phases(sim) == {"a": "Cancelled", "b": "Cancelled"}
    assert sim.status["phase"] == "Cancelled" and sim.condition("Succeeded")["status"] == "False"


def test_cancel_while_running_deletes_pods_keeps_logs_and_cancels_pending_tasks() -> None:
    sim = Sim(flow(task("a"), task("b", "a"), task("c")), cluster=FakeCluster(graceful=True))
    sim.step(at(0))
    sim.cluster.run_pod(pod_name("a"))
    succeed(sim, "c")
    sim.set_spec(cancel=True)
    outcome = sim.step(at(5))
    assert outcome.actions == (CaptureLogs("a", "demo-a-1", "main"), DeleteObject("v1", "Pod", "demo-a-1"))
    assert phases(sim) == {"a": "Cancelled", "b": "Cancelled", "c": "Succeeded"}
    assert sim.task("a")["logs"] == "logs of demo-a-1"
    assert sim.status["phase"] == "Cancelled" and sim.status["message"] == "cancelled"
    assert sim.step(at(6)).actions == ()  # the pod is terminating: nothing more to do
    assert "Cancelled" in sim.event_reasons()


def test_cancel_after_the_run_finished_changes_nothing() -> None:
    sim = Sim(flow(task("a")))
    sim.step(at(0))
    succeed(sim, "a")
    sim.step(at(1))
    sim.set_spec(cancel=True)
    outcome = sim.step(at(2))
    assert sim.status["phase"] == "Succeeded" and outcome.events == () and outcome.actions == ()


def test_a_task_that_finished_when_cancel_arrives_keeps_its_outcome() -> None:
    sim = Sim(flow(task("a"), task("b")))
    sim.step(at(0))
    succeed(sim, "a", message="r")
    sim.cluster.run_pod(pod_name("b"))
    sim.set_spec(cancel=True)
    sim.step(at(1))
    assert phases(sim) == {"a": "Succeeded", "b": "Cancelled"} and sim.task("a")["result"] == "r"


# -- deletion -----------------------------------------------------------------------------------


def test_deletion_before_anything_ran_releases_the_finalizer() -> None:
    sim = Sim(flow(task("a")), deleting=True)
    outcome = sim.step(at(0))
    assert outcome.actions == () and outcome.finalizer_releasable


def test_deletion_while_running_stops_pods_and_waits_until_they_are_gone() -> None:
    sim = Sim(flow(task("a"), task("b", "a")), cluster=FakeCluster(graceful=True))
    sim.step(at(0))
    sim.cluster.run_pod(pod_name("a"))
    sim.step(at(1))
    sim.update(deleting=True)
    outcome = sim.step(at(2))
    assert deletes(outcome) == ["Pod/demo-a-1"] and not outcome.finalizer_releasable
    assert phases(sim) == {"a": "Cancelled", "b": "Cancelled"} and sim.task("a")["reason"] == "FlowRunDeleted"
    assert not sim.step(at(3)).finalizer_releasable  # still terminating
    sim.cluster.collect()
    assert sim.step(at(4)).finalizer_releasable


def test_deletion_of_a_finished_run_releases_the_finalizer() -> None:
    sim = Sim(flow(task("a")))
    sim.step(at(0))
    succeed(sim, "a")
    sim.step(at(1))
    sim.update(deleting=True)
    outcome = sim.step(at(2))
    assert outcome.finalizer_releasable and outcome.actions == () and sim.status["phase"] == "Succeeded"


def test_the_finalizer_is_never_releasable_without_deletion() -> None:
    sim = Sim(flow(task("a")))
    sim.step(at(0))
    succeed(sim, "a")
    assert not sim.step(at(1)).finalizer_releasable


# -- ttl ----------------------------------------------------------------------------------------


def test_ttl_deletes_the_flowrun_after_it_finished() -> None:
    sim = Sim(flow(task("a"), ttlSecondsAfterFinished=100))
    sim.step(at(0))
    succeed(sim, "a")
    outcome = sim.step(at(10))
    assert outcome.requeue_after == 100 and DeleteFlowRun() not in outcome.actions
    assert DeleteFlowRun() not in sim.step(at(109)).actions
    assert sim.step(at(110)).actions == (DeleteFlowRun(),)


# -- bad input ----------------------------------------------------------------------------------


def test_a_bad_spec_fails_the_run_with_a_field_and_creates_nothing() -> None:
    sim = Sim(flow(task("a", "nope")))
    outcome = sim.step(at(0))
    assert outcome.actions == () and outcome.done
    assert sim.status["phase"] == "Failed"
    valid = sim.condition("SpecValid")
    assert (valid["status"], valid["reason"]) == ("False", "InvalidSpec")
    assert valid["message"] == "spec.tasks[0].runAfter[0]: unknown task 'nope'"
    assert outcome.events == (("Warning", "InvalidSpec", valid["message"]),)
    again = sim.step(at(5))
    assert again.events == () and again.status == outcome.status
    sim.update(deleting=True)
    assert sim.step(at(6)).finalizer_releasable


def test_the_dry_run_comes_first_and_only_once() -> None:
    sim = Sim(flow(task("a"), task("b", "a")))
    outcome = sim.step(at(0))
    validate = outcome.actions[0]
    assert isinstance(validate, ValidateObjects) and isinstance(outcome.actions[1], CreateObject)
    dry = validate.manifests
    assert [m["metadata"]["name"] for m in dry] == ["demo-a-1", "demo-b-1"]
    assert (sim.condition("SpecValid")["status"], sim.condition("SpecValid")["reason"]) == ("True", "Validated")
    succeed(sim, "a")
    assert not any(isinstance(a, ValidateObjects) for a in sim.step(at(1)).actions)


def test_a_dry_run_rejection_fails_the_run_for_good() -> None:
    sim = Sim(flow(task("a")))
    sim.step(at(0), apply=False)
    sim.update(dry_run_error='Pod "demo-a-1" is invalid: spec.containers[0].image: Required value', status={})
    outcome = sim.step(at(0))
    assert outcome.actions == () and sim.status["phase"] == "Failed"
    assert (
        sim.condition("SpecValid")["reason"] == "InvalidSpec"
        and "image: Required" in sim.condition("SpecValid")["message"]
    )
    sim.update(dry_run_error=None)
    assert sim.step(at(1)).actions == () and sim.status["phase"] == "Failed"


@pytest.mark.parametrize(
    "status",
    [
        None,
        "garbage",
        [],
        {"phase": 3, "tasks": "x", "resources": [1], "conditions": "y"},
        {"tasks": {"a": {"phase": "Exploded", "attempts": -4, "startedAt": "yesterday"}}},
        {"tasks": {"a": {"phase": "Running", "attempts": "2", "podName": 5}}},
        {"tasks": {"a": {"phase": "Pending", "attempts": 2, "reason": "Whatever"}}},
        {"conditions": [None, {"type": "SpecValid", "status": "True", "lastTransitionTime": 1}]},
        {"phase": "Succeeded", "finishedAt": "2024-05-01T12:00:00Z"},
    ],
)
def test_garbage_previous_status_never_crashes(status: Any) -> None:
    run = RunInput(RUN, NS, UID, flow(task("a"), task("b", "a")), status=status, created_at=T0)
    outcome = decide(run, Observed(), at(0))
    assert not any(e.reason == "InternalError" for e in outcome.events)
    assert outcome.status["phase"] == "Running"
    assert all(n.startswith("Pod/demo-a-") for n in creates(outcome))


@pytest.mark.parametrize(
    "spec", [None, 3, "x", {"tasks": "a"}, {"tasks": [None]}, {"tasks": [{"name": "a", "template": []}]}]
)
def test_garbage_spec_is_a_spec_error(spec: Any) -> None:
    outcome = decide(RunInput(RUN, NS, UID, spec), Observed(), at(0))
    assert outcome.status["phase"] == "Failed" and outcome.done
    assert not any(e.reason == "InternalError" for e in outcome.events)


def test_garbage_children_never_crash() -> None:
    junk = [
        None,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "demo-a-1",
                "labels": {
                    "flowrun.dev/flowrun-uid": UID,
                    "flowrun.dev/role": "task",
                    "flowrun.dev/task": "a",
                    "flowrun.dev/attempt": "x",
                },
            },
            "status": {"phase": 7, "containerStatuses": [None, {"state": {"terminated": "?"}}]},
        },
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"labels": None}, "status": {"conditions": [1]}},
        {"kind": "Deployment", "apiVersion": "apps/v1", "spec": {"replicas": "2"}},
    ]
    outcome = decide(RunInput(RUN, NS, UID, flow(task("a"))), observed_from_objects(junk), at(0))
    assert not any(e.reason == "InternalError" for e in outcome.events)


# -- status shape, events, idempotency ---------------------------------------------------------


def test_status_shape() -> None:
    sim = Sim(flow(task("a")))
    sim.step(at(0))
    assert set(sim.status) == {
        "phase",
        "startedAt",
        "finishedAt",
        "duration",
        "observedGeneration",
        "progress",
        "message",
        "conditions",
        "tasks",
        "resources",
        "locks",
    }
    assert sim.status["locks"] is None  # no lock: absent once written (a merge patch drops null)
    assert set(sim.task("a")) == {
        "phase",
        "reason",
        "message",
        "attempts",
        "podName",
        "exitCode",
        "startedAt",
        "finishedAt",
        "result",
        "resultFrom",
        "logs",
        "nextAttemptAt",
        "lastFailure",
        "instances",
        "instanceOf",
        "index",
    }
    for cond in sim.status["conditions"]:
        assert set(cond) == {"type", "status", "reason", "message", "lastTransitionTime", "observedGeneration"}
    assert [c["type"] for c in sim.status["conditions"]] == [
        "Succeeded",
        "ResourcesReleased",
        "SpecValid",
        "Ready",
        "Reconciling",
        "Stalled",
    ]
    assert sim.condition("Succeeded")["status"] == "Unknown" and sim.status["observedGeneration"] == 1


def test_duration_is_written_once_the_run_finished() -> None:
    sim = Sim(flow(task("a")))
    sim.step(at(0))
    assert sim.status["duration"] is None
    succeed(sim, "a")
    sim.step(at(3725))
    assert sim.status["duration"] == "1h2m5s"


def test_last_transition_time_moves_only_when_a_condition_status_changes() -> None:
    sim = Sim(flow(task("a"), task("b", "a")))
    sim.step(at(0))
    succeed(sim, "a")
    sim.step(at(5))
    assert sim.condition("Succeeded")["lastTransitionTime"] == "2024-05-01T12:00:00Z"
    succeed(sim, "b")
    sim.step(at(9))
    assert sim.condition("Succeeded")["lastTransitionTime"] == "2024-05-01T12:00:09Z"
    assert sim.condition("SpecValid")["lastTransitionTime"] == "2024-05-01T12:00:00Z"


def test_events_are_emitted_once_per_transition_a_person_may_act_on() -> None:
    sim = Sim(flow(task("a"), task("b", "a")))
    assert sim.step(at(0)).events == ()  # a run and a task starting are in the status, not events
    succeed(sim, "a")
    assert sim.step(at(1)).events == ()  # nor is a task that succeeded
    fail(sim, "b")
    last = sim.step(at(2))
    assert [(e.type, e.reason) for e in last.events] == [("Warning", "TaskFailed"), ("Warning", "Failed")]
    assert sim.step(at(3)).events == ()


def test_a_successful_run_of_100_tasks_posts_one_event() -> None:
    sim = Sim(flow(*(task(f"t{i}") for i in range(100))))
    posted = list(sim.step(at(0)).events)
    for i in range(100):
        succeed(sim, f"t{i}")
    posted += sim.step(at(1)).events
    assert [(e.type, e.reason) for e in posted] == [("Normal", "Succeeded")]


def test_a_retry_without_backoff_is_an_event_as_one_with_backoff() -> None:
    sim = Sim(flow(task("a", retries={"limit": 2, "backoffSeconds": 0})))
    sim.step(at(0))
    fail(sim, "a", attempt=1)
    events = sim.step(at(1)).events
    assert [(e.type, e.reason) for e in events] == [("Warning", "TaskRetrying")]
    assert events[0].message.startswith("task a: attempt 2 started (pod demo-a-2) after attempt 1 failed")


def test_a_cancel_is_one_event_of_the_run_not_one_per_task() -> None:
    sim = Sim(flow(*(task(f"t{i}") for i in range(10))))
    sim.step(at(0))
    sim.set_spec(cancel=True)
    reasons = [e.reason for e in sim.step(at(1)).events]
    assert "TaskCancelled" not in reasons and reasons.count("Cancelling") + reasons.count("Cancelled") >= 1


def test_repeating_a_pass_with_its_own_status_is_idempotent() -> None:
    sim = Sim(flow(task("a"), task("b", "a")))
    first = sim.step(at(0), apply=False)
    second = sim.step(at(0), apply=False)
    assert second.events == () and second.status == first.status
    assert creates(second) == creates(first) == ["Pod/demo-a-1"]  # still in flight: re-sent, create-if-absent


def test_run_input_from_object() -> None:
    body = {
        "metadata": {
            "name": "demo",
            "namespace": "team",
            "uid": "u",
            "generation": 3,
            "creationTimestamp": "2024-05-01T12:00:00Z",
            "deletionTimestamp": "2024-05-01T13:00:00Z",
            "annotations": {"flowrun.dev/skip-cleanup": "true"},
        },
        "spec": {"tasks": []},
        "status": {"phase": "Running"},
    }
    run = run_input_from_object(body)
    assert (run.name, run.namespace, run.uid, run.generation) == ("demo", "team", "u", 3)
    assert run.deleting and run.skip_cleanup and run.created_at == T0 and run.status == {"phase": "Running"}


# -- restart safety -----------------------------------------------------------------------------


def test_restart_with_a_lost_status_never_duplicates_or_reuses_a_name() -> None:
    sim = Sim(flow(task("a", retries={"limit": 2, "backoffSeconds": 0}), task("b", "a"), task("c")))
    sim.step(at(0))
    assert_restart_safe(sim, at(0))
    fail(sim, "a")
    assert_restart_safe(sim, at(1))
    sim.step(at(1))
    assert sim.cluster.names("Pod") == ["demo-a-1", "demo-a-2", "demo-c-1"]
    assert_restart_safe(sim, at(2))
    succeed(sim, "a", attempt=2, message="r2")
    assert_restart_safe(sim, at(3))
    fresh = decide(RunInput(RUN, NS, UID, sim.run.spec, status={}, created_at=T0), sim.cluster.observed(), at(3))
    assert fresh.status["tasks"]["a"]["result"] == "r2" and fresh.status["tasks"]["a"]["attempts"] == 2
    assert creates(fresh) == ["Pod/demo-b-1"]


def test_params_are_substituted_into_images_of_tasks_and_blocks() -> None:
    image = {"name": "main", "image": "$(params.registry)/etl:$(params.tag)"}
    block = resource("r", setup={"deployments": [{**deployment("db", 1), "template": template(dict(image))}]})
    spec = flow(
        task("a", resources=["r"], template=template(dict(image))),
        resources=[block],
        params=[{"name": "registry", "value": "mirror.example"}, {"name": "tag", "value": "1.2"}],
    )
    sim = Sim(spec)
    sim.step(at(0))
    deployment_spec = sim.cluster.get("Deployment", "demo-r-db")["spec"]["template"]["spec"]
    assert deployment_spec["containers"][0]["image"] == "mirror.example/etl:1.2"
    sim.cluster.make_available("demo-r-db")
    sim.step(at(1))
    assert sim.cluster.get("Pod", "demo-a-1")["spec"]["containers"][0]["image"] == "mirror.example/etl:1.2"
