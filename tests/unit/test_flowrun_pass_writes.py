"""A pass writes the status once per piece of news a person or a later pass needs, not once per
pod transition: a status whose only news is that pods started running is held back for up to
HOLD_STARTED_SECONDS, so a short task's start and end are one write; anything else is written at
once (a task that ended, a failure, the run's phase), with what was held back."""

from __future__ import annotations

from typing import Any

from flowrun.api import POD_PENDING, POD_RUNNING
from flowrun.controller.flowrun_pass import HOLD_STARTED_SECONDS
from flowrun.engine import only_pods_started
from tests.unit.fakes import FakeKube, pod_task

RUNNING = {"phase": "Running", "containerStatuses": [{"name": "main", "state": {"running": {}}}]}
SUCCEEDED = {
    "phase": "Succeeded",
    "containerStatuses": [
        {"name": "main", "state": {"terminated": {"exitCode": 0, "finishedAt": "2026-01-01T00:00:01Z"}}}
    ],
}


def pods(kube: FakeKube) -> list[dict[str, Any]]:
    return [o for o in kube.objects if o["kind"] == "Pod"]


def writes(kube: FakeKube) -> int:
    return kube.calls.count("patch_status")


def test_a_short_task_is_two_status_writes_its_start_and_end() -> None:
    now = [0.0]
    kube = FakeKube({"tasks": [pod_task("a")]}, {})
    passes = kube.passes(clock=lambda: now[0])
    kube.run(passes)
    assert (writes(kube), kube.body["status"]["tasks"]["a"]["reason"]) == (1, POD_PENDING)
    pods(kube)[0]["status"] = RUNNING
    result = kube.run(passes)
    assert writes(kube) == 1 and result.requeue_after == HOLD_STARTED_SECONDS  # held back
    now[0] = 0.5
    pods(kube)[0]["status"] = SUCCEEDED
    kube.run(passes)
    assert writes(kube) == 2 and kube.body["status"]["phase"] == "Succeeded"


def test_a_long_task_shows_running_once_the_hold_is_over() -> None:
    now = [0.0]
    kube = FakeKube({"tasks": [pod_task("a")]}, {})
    passes = kube.passes(clock=lambda: now[0])
    kube.run(passes)
    pods(kube)[0]["status"] = RUNNING
    kube.run(passes)
    now[0] = 1.0
    assert kube.run(passes).requeue_after == HOLD_STARTED_SECONDS - 1.0
    assert kube.body["status"]["tasks"]["a"]["reason"] == POD_PENDING
    now[0] = HOLD_STARTED_SECONDS
    kube.run(passes)
    assert (writes(kube), kube.body["status"]["tasks"]["a"]["reason"]) == (2, POD_RUNNING)


def test_what_counts_as_only_pods_started() -> None:
    pending: dict[str, Any] = {
        "phase": "Running",
        "tasks": {"a": {"phase": "Running", "reason": POD_PENDING, "message": ""}},
    }
    running: dict[str, Any] = {
        "phase": "Running",
        "tasks": {"a": {"phase": "Running", "reason": POD_RUNNING, "message": ""}},
    }
    assert only_pods_started(pending, running)
    assert not only_pods_started(pending, pending)  # no news at all
    assert not only_pods_started(running, pending)
    told = {**running, "tasks": {"a": {**running["tasks"]["a"], "message": "back-off pulling image"}}}
    assert not only_pods_started(pending, told)  # a message a person may act on is written at once
    assert not only_pods_started(pending, {**running, "progress": "1/2"})
