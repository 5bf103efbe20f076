"""The dev cluster's part in the soak model's cross-check (tests/unit/test_soak_model.py): a
FakeCluster whose pods, Jobs and Deployments move as the dev cluster moves them, so the engine can
run a soak workload's spec to its end without a cluster.

Read from devcluster/stages.yaml (written again here, apart from bench/soak/model.py, so the
cross-check does not share the model's reading): a pod runs `sim.flowrun.dev/duration` (default
1s) after it starts, then Succeeds, or Fails when `outcome` is `fail` or its `flowrun.dev/attempt`
label (0 without one) is at most `fail-attempts`; every container's termination message is
`message`. A Deployment's pods run until deleted, Ready unless `ready` is "false". A Job runs its
pod, and `backoffLimit` more on failure with the Job controller's doubling backoff from 10 s. A
real-node pod (`soak.flowrun.dev/result`) prints the argument the operator substituted into its
container's args, and fails as its `soak.flowrun.dev/*` annotations say its script does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from random import Random
from typing import Any

from flowrun import api
from tests.unit.builders import Sim, at

SIM = "sim.flowrun.dev/"
REAL = "soak.flowrun.dev/"
START = 0.3  # a created pod (or a Job's pod) runs this much later
AVAILABLE = 1.0  # a Deployment is available this much after its creation
WATCH = 0.2  # the engine's own writes come back as watch events this much later


def seconds_of(duration: str | None) -> float:
    """The Go durations the soak writes: "<n>ms" (KWOK's default is 1s)."""
    if not duration:
        return 1.0
    assert duration.endswith("ms"), duration
    return int(duration[:-2]) / 1000


def notes_of(obj: dict[str, Any]) -> dict[str, str]:
    notes: dict[str, str] = (obj.get("metadata") or {}).get("annotations") or {}
    return notes


def fails(notes: dict[str, str], attempt: int, prefix: str = SIM) -> bool:
    failing = int(notes.get(prefix + "fail-attempts") or 0)
    return notes.get(prefix + "outcome") == "fail" or (failing > 0 and attempt <= failing)


@dataclass
class Due:
    at: float
    kind: str
    name: str
    obj: dict[str, Any]
    act: Callable[[], None]


class KwokCluster:
    """Drives a Sim: due cluster changes, an engine pass, the changes its actions start, and the
    next moment (a cluster change, a requeue, or the watch events of the pass's own writes). With
    `jitter`, every cluster step is late by a random 0-30 s half of the time (as under faults)."""

    def __init__(self, sim: Sim, jitter: Random | None = None) -> None:
        self.sim = sim
        self.jitter = jitter
        self.cluster = sim.cluster
        self.seen: set[tuple[str, str]] = set()
        self.due: list[Due] = []
        self.now = 0.0

    def run(self, limit: float = 4000.0) -> dict[str, Any]:
        """Passes until the run is finished; its final status."""
        for _ in range(5000):
            self.apply_due()
            outcome = self.sim.step(at(self.now))
            self.schedule_new()
            if outcome.done:
                return self.sim.status
            moments = [d.at for d in self.due if d.at > self.now]
            if outcome.requeue_after is not None:
                moments.append(self.now + max(outcome.requeue_after, 0.05))
            if outcome.actions:
                moments.append(self.now + WATCH)
            assert moments, f"the run is stuck at {self.now}s: {self.sim.status}"
            self.now = min(moments)
            assert self.now < limit, f"the run did not finish in {limit}s: {self.sim.status}"
        raise AssertionError(f"too many passes: {self.sim.status}")

    def apply_due(self) -> None:
        for due in sorted((d for d in self.due if d.at <= self.now), key=lambda d: d.at):
            self.due.remove(due)
            if self.cluster.objects.get((due.kind, due.name)) is due.obj:  # not deleted meanwhile
                due.act()

    def late(self, seconds: float) -> float:
        if self.jitter is None or self.jitter.random() < 0.5:
            return seconds
        return seconds + self.jitter.uniform(0.0, 30.0)

    def later(self, seconds: float, kind: str, name: str, act: Callable[[], None]) -> None:
        obj = self.cluster.objects[(kind, name)]
        self.due.append(Due(self.now + seconds, kind, name, obj, act))

    def schedule_new(self) -> None:
        for (kind, name), obj in list(self.cluster.objects.items()):
            if (kind, name) in self.seen:
                continue
            self.seen.add((kind, name))
            role = obj["metadata"].get("labels", {}).get(api.LABEL_ROLE)
            if kind == "Pod" and role == api.ROLE_TASK:
                self.schedule_task_pod(name, obj)
            elif kind == "Job":
                self.schedule_job(name, obj)
            elif kind == "Deployment" and notes_of(obj["spec"]["template"]).get(SIM + "ready") != "false":
                self.schedule_deployment(name)

    def schedule_deployment(self, name: str) -> None:
        self.later(self.late(AVAILABLE), "Deployment", name, lambda: self.cluster.make_available(name))

    def schedule_task_pod(self, name: str, pod: dict[str, Any]) -> None:
        notes = notes_of(pod)
        attempt = int(pod["metadata"]["labels"][api.LABEL_ATTEMPT])
        main = pod["spec"]["containers"][0]
        if REAL + "result" in notes:  # the script prints its (substituted) argument
            failed, message, runs = (
                fails(notes, attempt, REAL),
                str(main["args"][0]),
                seconds_of(notes.get(REAL + "duration")),
            )
        else:
            failed, message, runs = (
                fails(notes, attempt),
                notes.get(SIM + "message", ""),
                seconds_of(notes.get(SIM + "duration")),
            )
        delay, runs = self.late(START), self.late(runs)
        start = self.now + delay
        self.later(delay, "Pod", name, lambda: self.cluster.run_pod(name, at(start)))
        phase = "Failed" if failed else "Succeeded"
        self.later(
            delay + runs,
            "Pod",
            name,
            lambda: self.cluster.set_pod(name, phase, message=message, start=at(start), finish=at(start + runs)),
        )

    def schedule_job(self, name: str, job: dict[str, Any]) -> None:
        template = job["spec"]["template"]
        notes = notes_of(template)
        attempt = int(template["metadata"].get("labels", {}).get(api.LABEL_ATTEMPT, "0"))
        failed = fails(notes, attempt)
        pods = 1 + (int(job["spec"].get("backoffLimit", 0)) if failed else 0)
        runs = seconds_of(notes.get(SIM + "duration"))
        backoffs = sum(10.0 * 2**k for k in range(pods - 1))
        message = notes.get(SIM + "message", "")
        delay = self.late(START)
        self.later(delay, "Job", name, lambda: self.cluster.start_job(name))
        self.later(
            delay + self.late(pods * runs + backoffs),
            "Job",
            name,
            lambda: self.cluster.finish_job(name, succeeded=not failed, message=message),
        )
