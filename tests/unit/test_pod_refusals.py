"""PodRefusals: a Job's FailedCreate Event is read only for a Job that has had no pod for a while,
at most once per interval, and what it says is kept until the Job is gone."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flowrun.controller.pod_refusals import READ_INTERVAL_SECONDS, STALLED_AFTER_SECONDS, PodRefusals
from flowrun.observed import ObservedJob, observe
from tests.unit.builders import T0, at

SA = 'Error creating: pods "r-setup-" is forbidden: serviceaccount "robot" not found'


class Events:
    def __init__(self) -> None:
        self.messages: list[str] = []
        self.selectors: list[str] = []

    def __call__(self, namespace: str, field_selector: str) -> list[str]:
        self.selectors.append(field_selector)
        return list(self.messages)


def job(name: str, **status: Any) -> ObservedJob:
    metadata = {"name": name, "creationTimestamp": "2024-05-01T12:00:00Z"}
    observed = observe({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "status": status})
    assert isinstance(observed, ObservedJob)
    return observed


def test_only_a_job_without_a_pod_for_a_while_is_looked_at_and_at_most_once_per_interval() -> None:
    events = Events()
    refusals = PodRefusals(events)
    children = [
        job("r-setup"),
        job("r-running", active=1),
        job("r-done", conditions=[{"type": "Complete", "status": "True"}]),
    ]
    assert refusals.read("u1", "team", children, at(1)) == {} and events.selectors == []  # too soon
    assert refusals.read("u1", "team", children, at(STALLED_AFTER_SECONDS)) == {}
    assert events.selectors == ["involvedObject.kind=Job,involvedObject.name=r-setup,reason=FailedCreate"]
    refusals.read("u1", "team", children, at(STALLED_AFTER_SECONDS + 1))
    assert len(events.selectors) == 1  # not again within the interval
    events.messages = [SA]
    later = at(STALLED_AFTER_SECONDS + READ_INTERVAL_SECONDS)
    assert refusals.read("u1", "team", children, later) == {"r-setup": SA}
    # Kept without reading again; forgotten with the Job.
    assert refusals.read("u1", "team", children, later + timedelta(seconds=60)) == {"r-setup": SA}
    assert len(events.selectors) == 2
    assert refusals.read("u1", "team", children[1:], later + timedelta(seconds=61)) == {}
    assert refusals._runs == {}


def test_runs_are_kept_apart_and_forgotten() -> None:
    events = Events()
    events.messages = [SA]
    refusals = PodRefusals(events)
    moment = T0 + timedelta(seconds=30)
    assert refusals.read("u1", "team", [job("a-setup")], moment) == {"a-setup": SA}
    assert refusals.read("u2", "team", [job("b-setup", active=1)], moment) == {}
    assert refusals.read("u1", "team", [job("a-setup")], moment) == {"a-setup": SA}
    refusals.forget("u1")
    assert "u1" not in refusals._runs
