"""The engine on pods that cannot start: why they wait is the task's message (the containers'
waiting reasons, the scheduler's), pendingTimeoutSeconds fails an attempt whose pod has not started
in time (PendingTimeout, then retried as any failed attempt), and a block's SetupTimeout says why
its pods are not Ready. The users' contract: docs/semantics.md, "Pods that do not start"."""

from dataclasses import replace
from typing import Any

import pytest

from flowrun.engine import CaptureLogs, DeleteObject, decide
from tests.unit.builders import (
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
    job,
    phases,
    pod_name,
    resource,
    succeed,
    task,
    template,
)

A1, A2 = pod_name("a", 1), pod_name("a", 2)
NEVER_PULL = 'Container image "example/image" is not present with pull policy of Never'
NO_NODE = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."


def pending_sim(cluster: FakeCluster | None = None, **task_fields: Any) -> Sim:
    """Task `a` (with `task_fields`) whose first pod was created at 0 and is seen at 1."""
    sim = Sim(flow(task("a", **task_fields)), cluster=cluster)
    assert creates(sim.step(at(0))) == [f"Pod/{A1}"]
    return sim


# -- why a pod waits is the task's message -----------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("ErrImageNeverPull", NEVER_PULL),
        ("ErrImagePull", 'failed to pull and unpack image "example/image": not found'),
        ("ImagePullBackOff", 'Back-off pulling image "example/image"'),
        ("InvalidImageName", 'Failed to apply default image tag "Example/Image": invalid reference format'),
        ("CreateContainerConfigError", 'secret "db-password" not found'),
        ("CreateContainerError", ""),
    ],
)
def test_the_main_containers_waiting_reason_and_message_are_the_tasks_message(reason: str, message: str) -> None:
    sim = pending_sim()
    sim.cluster.wait_pod(A1, reason, message)
    sim.step(at(1))
    a = sim.task("a")
    expected = f"container main: {reason}: {message}" if message else f"container main: {reason}"
    assert (a["phase"], a["reason"], a["message"]) == ("Running", "PodPending", expected)


def test_an_unschedulable_pod_quotes_the_scheduler() -> None:
    sim = pending_sim()
    sim.cluster.unschedulable(A1, NO_NODE)
    sim.step(at(1))
    assert (sim.task("a")["reason"], sim.task("a")["message"]) == ("PodPending", f"unschedulable: {NO_NODE}")


def test_a_pod_not_scheduled_for_another_reason_names_it() -> None:
    sim = pending_sim()
    sim.cluster.unschedulable(A1, "Scheduling is blocked due to non-empty scheduling gates", reason="SchedulingGated")
    sim.step(at(1))
    message = "not scheduled: SchedulingGated: Scheduling is blocked due to non-empty scheduling gates"
    assert sim.task("a")["message"] == message


def test_init_containers_are_quoted_first_then_the_others() -> None:
    sim = pending_sim()
    sim.cluster.wait_pod(A1, "ImagePullBackOff", "Back-off pulling image", container_name="fetch", init=True)
    sim.cluster.wait_pod(A1, "CreateContainerConfigError", 'configmap "cfg" not found', container_name="side")
    sim.cluster.wait_pod(A1, "PodInitializing")  # routine: not quoted
    sim.step(at(1))
    assert sim.task("a")["message"] == (
        "init container fetch: ImagePullBackOff: Back-off pulling image;"
        ' container side: CreateContainerConfigError: configmap "cfg" not found'
    )


@pytest.mark.parametrize("routine", ["ContainerCreating", "PodInitializing"])
def test_routine_waits_are_not_quoted(routine: str) -> None:
    sim = pending_sim()
    sim.cluster.wait_pod(A1, routine)
    sim.step(at(1))
    assert (sim.task("a")["reason"], sim.task("a")["message"]) == ("PodPending", "")


def test_a_container_waiting_beside_the_running_main_one_is_quoted() -> None:
    sim = pending_sim()
    sim.cluster.run_pod(A1, start=at(1))
    sim.cluster.wait_pod(A1, "ImagePullBackOff", "Back-off pulling image", container_name="side", phase="Running")
    sim.step(at(2))
    a = sim.task("a")
    assert (a["reason"], a["message"]) == ("PodRunning", "container side: ImagePullBackOff: Back-off pulling image")


def test_the_waiting_reason_goes_once_the_pod_runs() -> None:
    sim = pending_sim()
    sim.cluster.wait_pod(A1, "ErrImagePull", "registry unavailable")
    sim.step(at(1))
    assert sim.task("a")["message"] == "container main: ErrImagePull: registry unavailable"
    sim.cluster.run_pod(A1, start=at(1))
    sim.step(at(5))
    assert (sim.task("a")["reason"], sim.task("a")["message"]) == ("PodRunning", "")


def test_a_retry_shows_its_pods_waiting_reason_then_again_why_it_is_a_retry() -> None:
    sim = pending_sim(retries={"limit": 1, "backoffSeconds": 0})
    fail(sim, "a", exit_code=3)
    sim.step(at(1))
    note = "attempt 1 failed (Error: exit code 3)"
    assert (sim.task("a")["message"], sim.task("a")["lastFailure"]) == (note, note)
    sim.cluster.wait_pod(A2, "ImagePullBackOff", "Back-off pulling image")
    sim.step(at(2))
    assert sim.task("a")["message"] == "container main: ImagePullBackOff: Back-off pulling image"
    assert sim.task("a")["lastFailure"] == note
    sim.cluster.run_pod(A2, start=at(3))
    sim.step(at(3))
    assert (sim.task("a")["reason"], sim.task("a")["message"]) == ("PodRunning", note)


def test_a_first_attempt_has_no_last_failure() -> None:
    sim = pending_sim()
    sim.cluster.run_pod(A1)
    sim.step(at(1))
    assert sim.task("a")["lastFailure"] is None
    succeed(sim, "a")
    sim.step(at(2))
    assert (sim.task("a")["phase"], sim.task("a")["lastFailure"]) == ("Succeeded", None)


# -- pendingTimeoutSeconds ----------------------------------------------------------------------


def test_without_a_pending_timeout_a_pod_may_wait_for_ever() -> None:
    sim = pending_sim()
    sim.cluster.wait_pod(A1, "ErrImageNeverPull", NEVER_PULL)
    outcome = sim.step(at(365 * 86400))
    assert (sim.task("a")["phase"], sim.task("a")["reason"]) == ("Running", "PodPending")
    assert outcome.requeue_after is None and deletes(outcome) == []


def test_a_pod_not_started_in_time_fails_the_attempt_and_is_deleted_then_the_task_retries() -> None:
    sim = pending_sim(pendingTimeoutSeconds=30, retries={"limit": 1, "backoffSeconds": 5})
    sim.cluster.wait_pod(A1, "ErrImageNeverPull", NEVER_PULL)
    assert sim.step(at(1)).requeue_after == 29, "the pass comes back when the time is up"
    outcome = sim.step(at(29))
    assert (sim.task("a")["reason"], outcome.requeue_after) == ("PodPending", 1)
    outcome = sim.step(at(30))
    a = sim.task("a")
    why = f"not started within pendingTimeoutSeconds=30: container main: ErrImageNeverPull: {NEVER_PULL}"
    assert (a["phase"], a["reason"], a["attempts"]) == ("Running", "RetryBackoff", 1)
    assert a["message"] == a["lastFailure"] == f"attempt 1 failed (PendingTimeout: {why})"
    assert deletes(outcome) == [f"Pod/{A1}"], "it must not start late beside the next attempt"
    assert creates(outcome) == [] and outcome.requeue_after == 5
    assert ("Warning", "TaskRetrying") in [(e.type, e.reason) for e in outcome.events]
    assert creates(sim.step(at(35))) == [f"Pod/{A2}"]
    sim.cluster.wait_pod(A2, "ErrImageNeverPull", NEVER_PULL)
    assert sim.step(at(36)).requeue_after == 29, "counted from the new pod's creation"
    outcome = sim.step(at(65))
    a = sim.task("a")
    assert (a["phase"], a["reason"], a["attempts"]) == ("Failed", "PendingTimeout", 2)
    assert a["message"] == f"attempt 2: {why}"
    assert outcome.actions[:2] == (CaptureLogs("a", A2, "main"), DeleteObject("v1", "Pod", A2))
    assert sim.status["phase"] == "Failed"
    assert sim.status["message"] == f"task a failed: PendingTimeout: attempt 2: {why}"


def test_the_next_attempt_may_start_in_the_pass_the_pending_pod_is_deleted_in() -> None:
    sim = pending_sim(pendingTimeoutSeconds=10, retries={"limit": 1, "backoffSeconds": 0})
    sim.cluster.unschedulable(A1, NO_NODE)
    outcome = sim.step(at(10))
    assert (deletes(outcome), creates(outcome)) == ([f"Pod/{A1}"], [f"Pod/{A2}"])
    assert sim.task("a")["message"] == (
        f"attempt 1 failed (PendingTimeout: not started within pendingTimeoutSeconds=10: unschedulable: {NO_NODE})"
    )


def test_a_pod_with_no_reason_reported_says_its_phase() -> None:
    sim = pending_sim(pendingTimeoutSeconds=10)
    outcome = sim.step(at(10))
    a = sim.task("a")
    assert (a["phase"], a["reason"]) == ("Failed", "PendingTimeout")
    assert a["message"] == "not started within pendingTimeoutSeconds=10: the pod is Pending, no reason reported"
    assert deletes(outcome) == [f"Pod/{A1}"]


def test_the_timeout_quotes_routine_waits_too() -> None:
    sim = pending_sim(pendingTimeoutSeconds=10)
    sim.cluster.wait_pod(A1, "ContainerCreating")
    sim.step(at(10))
    assert sim.task("a")["message"] == "not started within pendingTimeoutSeconds=10: container main: ContainerCreating"


def test_the_runs_pending_timeout_is_every_tasks_default_and_a_tasks_own_wins() -> None:
    sim = Sim(flow(task("a"), task("b", pendingTimeoutSeconds=5), pendingTimeoutSeconds=60))
    sim.step(at(0))
    outcome = sim.step(at(1))
    assert outcome.requeue_after == 4
    sim.step(at(5))
    assert phases(sim) == {"a": "Running", "b": "Failed"}
    assert sim.task("b")["reason"] == "PendingTimeout"
    assert sim.step(at(6)).requeue_after == 54
    sim.step(at(60))
    assert (sim.task("a")["phase"], sim.task("a")["reason"]) == ("Failed", "PendingTimeout")
    assert "pendingTimeoutSeconds=60" in sim.task("a")["message"]


@pytest.mark.parametrize("started", ["running", "finished"])
def test_a_pod_whose_main_container_started_in_time_is_never_failed_by_it(started: str) -> None:
    sim = pending_sim(pendingTimeoutSeconds=30)
    sim.cluster.run_pod(A1, start=at(29))
    if started == "finished":
        # The main container is done; the pod still runs (a sidecar that has not stopped yet).
        sim.cluster.objects[("Pod", A1)]["status"]["containerStatuses"] = [
            {"name": "main", "state": {"terminated": {"exitCode": 0}}},
            {"name": "side", "state": {"running": {}}},
        ]
    outcome = sim.step(at(29))
    assert outcome.requeue_after is None
    outcome = sim.step(at(10_000))
    assert (sim.task("a")["phase"], sim.task("a")["reason"]) == ("Running", "PodRunning")
    assert deletes(outcome) == []


def test_the_main_container_must_start_not_another_one() -> None:
    spec_template = template(container("main"), container("side"))
    sim = pending_sim(pendingTimeoutSeconds=30, template=spec_template)
    sim.cluster.run_pod(A1, start=at(1))  # the pod runs: its sidecar does
    sim.cluster.objects[("Pod", A1)]["status"]["containerStatuses"] = [
        {"name": "side", "state": {"running": {}}},
        {"name": "main", "state": {"waiting": {"reason": "CreateContainerConfigError", "message": "no secret"}}},
    ]
    sim.step(at(29))
    assert (sim.task("a")["reason"], sim.task("a")["message"]) == (
        "PodRunning",
        "container main: CreateContainerConfigError: no secret",
    )
    sim.step(at(30))
    assert (sim.task("a")["phase"], sim.task("a")["reason"]) == ("Failed", "PendingTimeout")


def test_init_containers_count_toward_the_pending_timeout() -> None:
    sim = pending_sim(pendingTimeoutSeconds=30)
    status = {
        "phase": "Pending",
        "initContainerStatuses": [{"name": "fetch", "state": {"running": {"startedAt": "2024-05-01T12:00:02Z"}}}],
        "containerStatuses": [{"name": "main", "state": {"waiting": {"reason": "PodInitializing"}}}],
    }
    sim.cluster.objects[("Pod", A1)]["status"] = status
    sim.step(at(30))
    a = sim.task("a")
    assert (a["phase"], a["reason"]) == ("Failed", "PendingTimeout")
    assert a["message"] == "not started within pendingTimeoutSeconds=30: container main: PodInitializing"


def test_a_pod_being_deleted_is_not_failed_by_it() -> None:
    sim = pending_sim(FakeCluster(graceful=True), pendingTimeoutSeconds=10)
    sim.cluster.objects[("Pod", A1)]["metadata"]["deletionTimestamp"] = "2024-05-01T12:00:05Z"
    outcome = sim.step(at(60))
    assert (sim.task("a")["reason"], sim.task("a")["message"]) == ("PodPending", "pod is being deleted")
    assert outcome.requeue_after is None


def test_a_pod_without_creation_time_is_never_timed_out() -> None:
    sim = pending_sim(pendingTimeoutSeconds=10)
    del sim.cluster.objects[("Pod", A1)]["metadata"]["creationTimestamp"]
    outcome = sim.step(at(60))
    assert (sim.task("a")["phase"], outcome.requeue_after) == ("Running", None)


@pytest.mark.parametrize(
    ("second", "phase", "reason"), [(5, "Cancelled", "Cancelled"), (10, "Failed", "PendingTimeout")]
)
def test_a_stop_ends_a_pending_attempt_without_retry(second: int, phase: str, reason: str) -> None:
    sim = pending_sim(pendingTimeoutSeconds=10, retries={"limit": 3})
    sim.set_spec(cancel=True)
    outcome = sim.step(at(second))
    assert (sim.task("a")["phase"], sim.task("a")["reason"], sim.task("a")["attempts"]) == (phase, reason, 1)
    assert deletes(outcome) == [f"Pod/{A1}"]


# -- restart safety -----------------------------------------------------------------------------


def test_the_clock_is_the_pods_creation_so_a_lost_status_does_not_restart_it() -> None:
    sim = pending_sim(pendingTimeoutSeconds=30, retries={"limit": 1, "backoffSeconds": 5})
    sim.cluster.wait_pod(A1, "ImagePullBackOff", "Back-off pulling image")
    sim.step(at(20))
    sim.update(status={})  # the operator lost the run's status (say, restored from a backup)
    outcome = assert_restart_safe(sim, at(30))
    assert deletes(outcome) == [f"Pod/{A1}"]
    assert outcome.status["tasks"]["a"]["reason"] == "RetryBackoff"
    assert "PendingTimeout" in outcome.status["tasks"]["a"]["message"]


def test_a_pass_fed_its_own_status_decides_the_same() -> None:
    sim = pending_sim(pendingTimeoutSeconds=30, retries={"limit": 1, "backoffSeconds": 0})
    sim.cluster.wait_pod(A1, "ErrImageNeverPull", NEVER_PULL)
    for second in (1, 29, 30):
        observed, now = sim.cluster.observed(), at(second)
        outcome = decide(sim.run, observed, now)
        again = decide(replace(sim.run, status=outcome.status), observed, now)
        assert (again.status, again.events) == (outcome.status, ())
        assert not set(creates(again)) - set(creates(outcome)) and not set(deletes(again)) - set(deletes(outcome))
        sim.step(now)
    assert sim.task("a")["reason"] == "PodCreating" and sim.cluster.has("Pod", A2)


def test_the_timeout_is_decided_in_whole_seconds() -> None:
    sim = pending_sim(pendingTimeoutSeconds=30)
    sim.step(at(29.999))
    assert sim.task("a")["phase"] == "Running"
    sim.step(at(30))
    assert sim.task("a")["phase"] == "Failed"


# -- resource blocks ----------------------------------------------------------------------------

DB = "demo-r-db"


def add_block_pod(sim: Sim, name: str, owner: dict[str, Any]) -> None:
    """A pod the Deployment or Job `owner` made (with its template's labels), not started yet."""
    labels = dict(owner["spec"]["template"]["metadata"]["labels"])
    if owner["kind"] == "Job":
        labels["job-name"] = owner["metadata"]["name"]
    sim.cluster.objects[("Pod", name)] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "status": {"phase": "Pending"},
    }


def block_sim(**setup: Any) -> Sim:
    spec = flow(task("use", resources=["r"]), resources=[resource("r", setup=setup)])
    sim = Sim(spec)
    sim.step(at(0))
    return sim


def test_a_setting_up_block_says_why_its_pods_wait() -> None:
    sim = block_sim(deployments=[deployment("db")], timeoutSeconds=60)
    add_block_pod(sim, f"{DB}-5d9f-x2v", sim.cluster.get("Deployment", DB))
    sim.cluster.wait_pod(f"{DB}-5d9f-x2v", "ImagePullBackOff", 'Back-off pulling image "pg"', container_name="db")
    sim.step(at(1))
    r = sim.res("r")
    assert (r["phase"], r["reason"]) == ("SettingUp", "SettingUp")
    assert (
        r["message"] == f'deployment db: pod {DB}-5d9f-x2v: container db: ImagePullBackOff: Back-off pulling image "pg"'
    )


def test_setup_timeout_quotes_why_the_blocks_pods_are_not_ready() -> None:
    sim = block_sim(job=job(), deployments=[deployment("db")], timeoutSeconds=60)
    add_block_pod(sim, f"{DB}-5d9f-x2v", sim.cluster.get("Deployment", DB))
    sim.cluster.unschedulable(f"{DB}-5d9f-x2v", NO_NODE)
    add_block_pod(sim, "demo-r-setup-abcde", sim.cluster.get("Job", "demo-r-setup"))
    sim.cluster.wait_pod("demo-r-setup-abcde", "ContainerCreating")
    sim.step(at(1))
    assert sim.res("r")["message"] == f"deployment db: pod {DB}-5d9f-x2v: unschedulable: {NO_NODE}"
    sim.step(at(60))
    r = sim.res("r")
    assert r["setupError"] == (
        f"SetupTimeout: not Ready within timeoutSeconds=60: deployment db: pod {DB}-5d9f-x2v: unschedulable: {NO_NODE};"
        " pod demo-r-setup-abcde: container main: ContainerCreating"
    )


def test_setup_timeout_without_waiting_pods_says_only_the_timeout() -> None:
    sim = block_sim(deployments=[deployment("db")], timeoutSeconds=60)
    sim.step(at(60))
    assert sim.res("r")["setupError"] == "SetupTimeout: not Ready within timeoutSeconds=60"


def test_a_ready_block_has_no_waiting_message() -> None:
    sim = block_sim(deployments=[deployment("db")], timeoutSeconds=60)
    sim.cluster.make_available(DB)
    sim.step(at(1))
    assert (sim.res("r")["phase"], sim.res("r")["message"]) == ("Ready", "")
