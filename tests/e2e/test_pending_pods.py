"""Pods that cannot start, end to end (docs/semantics.md, "Pods that do not start"): the task's
message says why within seconds (the kubelet's waiting reason on the real node, the scheduler's
Unschedulable on the KWOK cluster), pendingTimeoutSeconds fails each attempt whose pod has not
started (PendingTimeout) and deletes its pod, and a block's SetupTimeout quotes why its pods wait."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from devcluster.pytest_plugin import RealNode, wait_for
from tests.e2e.helpers import FlowRuns, Operator, deployment, real_task, res, sim_task, task

pytestmark = pytest.mark.e2e

ABSENT_IMAGE = "flowrun.invalid/absent:1"
NEVER_PULL = (
    f'container main: ErrImageNeverPull: Container image "{ABSENT_IMAGE}" is not present with pull policy of Never'
)
NO_SUCH_NODE = {"flowrun.dev/no-such-node": "true"}  # a nodeSelector no node of the dev cluster matches

# How soon the reason must show after the pod's creation: the kubelet or the scheduler reports it
# within a second or two, and the pod's status change starts a pass at once.
SOON = 10.0


def first_seen(what: str, check: Callable[[], object], timeout: float) -> float:
    """time.monotonic() when `check` first holds, polled every 50 ms."""
    wait_for(what, check, timeout=timeout, interval=0.05)
    return time.monotonic()


def pod_exists(flowruns: FlowRuns, name: str) -> bool:
    try:
        flowruns.read_pod(name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def pod_reports(flowruns: FlowRuns, name: str, reason: str) -> bool:
    """Whether the pod's status shows `reason`: a container waiting for it, or PodScheduled=False."""
    status = flowruns.read_pod(name).status
    waiting = [c.state.waiting for c in status.container_statuses or [] if c.state and c.state.waiting]
    reasons = [w.reason for w in waiting] + [c.reason for c in status.conditions or [] if c.status == "False"]
    return reason in reasons


def task_message(flowruns: FlowRuns, run: str, name: str) -> str:
    found = flowruns.get(run)
    return str(((found or {}).get("status") or {}).get("tasks", {}).get(name, {}).get("message") or "")


def check_pending_timeout(flowruns: FlowRuns, run: str, name: str, reason: str, why: str) -> dict[str, Any]:
    """The task of a run that started when this is called: its first pod's waiting `reason` shows
    (as `why`) SOON, then both attempts time out. Returns the final run; prints the figures."""
    started = time.monotonic()
    pod_1, pod_2 = f"{run}-{name}-1", f"{run}-{name}-2"
    created = first_seen(f"pod {pod_1}", lambda: pod_exists(flowruns, pod_1), timeout=30)
    reported = first_seen(f"pod {pod_1} to report {reason}", lambda: pod_reports(flowruns, pod_1, reason), SOON)
    shown = first_seen(f"{why!r} in task {name}'s message", lambda: why in task_message(flowruns, run, name), SOON)
    assert shown - created <= SOON, f"the reason showed {shown - created:.1f}s after the pod's creation"
    final = flowruns.wait_phase(run, ("Failed", "Succeeded"), timeout=90)
    finished = time.monotonic()
    entry = task(final, name)
    assert (final["status"]["phase"], entry["phase"], entry["reason"]) == ("Failed", "Failed", "PendingTimeout")
    assert entry["attempts"] == 2, entry
    # `why` is all of it, or its start where the scheduler's message follows.
    timed_out = f"not started within pendingTimeoutSeconds=10: {why}"
    assert entry["message"].startswith(f"attempt 2: {timed_out}"), entry
    assert entry["lastFailure"] == f"attempt 2 failed (PendingTimeout: {entry['message'].removeprefix('attempt 2: ')})"
    retried = f"attempt 1 failed (PendingTimeout: {timed_out}"
    flowruns.events_when(run, lambda events: any(e.reason == "TaskRetrying" and retried in e.message for e in events))
    # Neither pod is left to start late.
    wait_for(
        "both pending pods to be deleted", lambda: not pod_exists(flowruns, pod_1) and not pod_exists(flowruns, pod_2)
    )
    print(
        f"\n{run}: {reason} in the pod's status {reported - created:.1f}s after the pod appeared, in the"
        f" task's message {shown - reported:.1f}s later;"
        f" PendingTimeout after {finished - started:.1f}s (two attempts of 10s, 1s backoff)"
    )
    return final


def test_an_image_never_pulled_is_quoted_and_times_out_on_the_real_node(
    real_node: RealNode, operator: Operator, flowruns: FlowRuns
) -> None:
    absent = real_task(real_node, "absent", "true", pendingTimeoutSeconds=10, retries={"limit": 1, "backoffSeconds": 1})
    absent["template"]["spec"]["containers"][0]["image"] = ABSENT_IMAGE
    flowruns.create({"metadata": {"name": "never-pulled"}, "spec": {"tasks": [absent]}})
    check_pending_timeout(flowruns, "never-pulled", "absent", "ErrImageNeverPull", NEVER_PULL)
    flowruns.delete_and_check_nothing_leaked("never-pulled")


def test_an_unschedulable_pod_is_quoted_and_times_out(operator: Operator, flowruns: FlowRuns) -> None:
    stuck = sim_task("stuck", retries={"limit": 1, "backoffSeconds": 1})
    stuck["template"]["spec"]["nodeSelector"] = NO_SUCH_NODE
    after = sim_task("after", run_after=["stuck"])
    flowruns.create(
        {"metadata": {"name": "unschedulable"}, "spec": {"pendingTimeoutSeconds": 10, "tasks": [stuck, after]}}
    )
    final = check_pending_timeout(flowruns, "unschedulable", "stuck", "Unschedulable", "unschedulable: 0/")
    assert "didn't match Pod's node affinity/selector" in task(final, "stuck")["message"]
    assert (task(final, "after")["phase"], task(final, "after")["reason"]) == ("Skipped", "UpstreamFailed")
    flowruns.delete_and_check_nothing_leaked("unschedulable")


def test_a_pod_that_starts_in_time_is_not_failed_by_the_pending_timeout(operator: Operator, flowruns: FlowRuns) -> None:
    flowruns.create(
        {
            "metadata": {"name": "in-time"},
            "spec": {"tasks": [sim_task("quick", duration="12s", pendingTimeoutSeconds=5)]},
        }
    )
    final = flowruns.wait_phase("in-time", ("Failed", "Succeeded"), timeout=60)
    quick = task(final, "quick")
    assert (final["status"]["phase"], quick["attempts"], quick.get("lastFailure")) == ("Succeeded", 1, None), quick
    flowruns.delete_and_check_nothing_leaked("in-time")


def test_setup_timeout_quotes_why_the_blocks_pods_wait(operator: Operator, flowruns: FlowRuns) -> None:
    db = deployment("db")
    db["template"]["spec"]["nodeSelector"] = NO_SUCH_NODE
    flowruns.create(
        {
            "metadata": {"name": "stuck-block"},
            "spec": {
                "resources": [{"name": "r", "setup": {"deployments": [db], "timeoutSeconds": 10}}],
                "tasks": [sim_task("use", resources=["r"])],
            },
        }
    )

    def setting_up_says_why() -> bool:
        found = flowruns.get("stuck-block") or {}
        block = ((found.get("status") or {}).get("resources") or {}).get("r") or {}
        return block.get("phase") == "SettingUp" and "unschedulable: 0/" in str(block.get("message"))

    wait_for("the SettingUp block to say why its pod waits", setting_up_says_why, timeout=SOON + 5)
    final = flowruns.wait_phase("stuck-block", ("Failed", "Succeeded"), timeout=60)
    error = str(res(final, "r")["setupError"])
    assert error.startswith("SetupTimeout: not Ready within timeoutSeconds=10: deployment db: pod stuck-block-r-db-"), (
        error
    )
    assert "unschedulable: 0/" in error and "didn't match Pod's node affinity/selector" in error, error
    assert (task(final, "use")["phase"], task(final, "use")["reason"]) == ("Skipped", "SetupFailed")
    flowruns.delete_and_check_nothing_leaked("stuck-block")
