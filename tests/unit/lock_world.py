"""Several FlowRuns of one namespace sharing a FakeCluster (their pods and the Leases of their
locks), each reconciled by the pure engine as the controller does: every pass sees the namespace's
lock Leases and every run's claims, put together by the same pure functions the caches use
(flowrun.locks), and the semaphores' ConfigMaps. A TakeLock is a create-if-absent: a name already
taken is a lost race, as the API server's 409 makes it."""

from __future__ import annotations

import copy
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from flowrun.engine import (
    CaptureLogs,
    CreateObject,
    DeleteFlowRun,
    DeleteObject,
    Event,
    Outcome,
    RunInput,
    TakeLock,
    decide,
)
from flowrun.locks import claims_of, lock_view, semaphore_limit, wanted_locks
from flowrun.observed import Observed
from flowrun.timestamps import format_time
from tests.unit.builders import NS, T0, FakeCluster, flow, task


def uid_of(name: str) -> str:
    return f"uid-{name}"


def lease_names(outcome: Outcome) -> list[str]:
    """The Leases an outcome takes."""
    return [a.manifest["metadata"]["name"] for a in outcome.actions if isinstance(a, TakeLock)]


def released(outcome: Outcome) -> list[str]:
    return [a.name for a in outcome.actions if isinstance(a, DeleteObject) and a.kind == "Lease"]


def mutex_run(lock: str = "m", **fields: Any) -> dict[str, Any]:
    """A one-task run holding mutex `lock` as a whole."""
    return flow(task("work"), synchronization={"mutex": {"name": lock}}, **fields)


def semaphore(config_map: str = "limits", key: str = "db") -> dict[str, Any]:
    return {"semaphore": {"configMapKeyRef": {"name": config_map, "key": key}}}


class World:
    """Runs by name, created one second apart in the order added (or at `created`)."""

    def __init__(self) -> None:
        self.cluster = FakeCluster()
        self.runs: dict[str, RunInput] = {}
        self.config_maps: dict[str, dict[str, str]] = {}
        self.events: dict[str, list[Event]] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.lost_races: list[str] = []  # Leases a TakeLock found taken

    # --- the namespace ---------------------------------------------------------------------------

    def add(self, name: str, spec: dict[str, Any], created: datetime | None = None) -> RunInput:
        when = created or T0 + timedelta(seconds=len(self.runs))
        run = RunInput(name=name, namespace=NS, uid=uid_of(name), spec=spec, generation=1, created_at=when)
        self.runs[name] = run
        self.events[name] = []
        return run

    def update(self, name: str, **fields: Any) -> None:
        self.runs[name] = replace(self.runs[name], **fields)

    def body(self, run: RunInput) -> dict[str, Any]:
        """The FlowRun as the caches hold it."""
        metadata: dict[str, Any] = {"name": run.name, "namespace": run.namespace, "uid": run.uid}
        if run.created_at is not None:
            metadata["creationTimestamp"] = format_time(run.created_at)
        if run.deleting:
            metadata["deletionTimestamp"] = format_time(T0)
        return {"metadata": metadata, "spec": run.spec, "status": run.status}

    def observed(self, name: str, hidden: tuple[str, ...] = ()) -> Observed:
        """What a pass of run `name` sees: the cluster, and each lock its spec names; `hidden`, runs
        the caches do not show yet (a stale view)."""
        observed = self.cluster.observed()
        claims = [c for r in self.runs.values() if r.name not in hidden for c in claims_of(self.body(r))]
        views = {}
        for lock in wanted_locks(self.runs[name].spec):
            data = self.config_maps.get(lock.name) if lock.kind == "semaphore" else None
            views[lock.id] = lock_view(lock, observed.leases, claims, semaphore_limit(lock, data))
        return replace(observed, locks=views)

    # --- passes ------------------------------------------------------------------------------------

    def decide(self, name: str, now: datetime, hidden: tuple[str, ...] = ()) -> Outcome:
        """A pass's decision, checked for idempotency (fed its own status, it decides the same and
        posts nothing), not applied."""
        run, observed = self.runs[name], self.observed(name, hidden)
        outcome = decide(run, observed, now)
        again = decide(replace(run, status=outcome.status), observed, now)
        assert again.events == (), again.events
        assert again.status == outcome.status
        return outcome

    def apply(self, name: str, outcome: Outcome, now: datetime) -> None:
        refused: dict[str, str] = {}
        for action in outcome.actions:
            if isinstance(action, CreateObject):
                refusal = self.cluster.create(action.manifest, now)
                if refusal is not None:
                    refused[f"{action.manifest['kind']}/{action.manifest['metadata']['name']}"] = refusal
            elif isinstance(action, TakeLock):
                self.take(action, now, refused)
            elif isinstance(action, DeleteObject) and action.kind == "Lease":
                self.cluster.objects.pop(("Lease", action.name), None)  # no finalizer: gone at once
            elif isinstance(action, DeleteObject):
                self.cluster.delete(action.kind, action.name)
            elif isinstance(action, DeleteFlowRun):
                self.update(name, deleting=True)
            elif isinstance(action, CaptureLogs):
                pass
        self.outcomes[name] = outcome
        self.events[name] += outcome.events
        self.update(name, status=copy.deepcopy(outcome.status), refused=refused)

    def take(self, action: TakeLock, now: datetime, refused: dict[str, str]) -> None:
        name = action.manifest["metadata"]["name"]
        if self.cluster.has("Lease", name):
            self.lost_races.append(name)
            return
        refusal = self.cluster.create(action.manifest, now)
        if refusal is not None:
            refused[f"Lease/{name}"] = refusal

    def step(self, name: str, now: datetime = T0, hidden: tuple[str, ...] = ()) -> Outcome:
        outcome = self.decide(name, now, hidden)
        self.apply(name, outcome, now)
        return outcome

    def settle(self, now: datetime = T0, order: list[str] | None = None, rounds: int = 4) -> None:
        """Passes of every run (in `order`), a few rounds: what follows from the cluster as it is."""
        for _ in range(rounds):
            for name in order or list(self.runs):
                self.step(name, now)

    # --- reading -----------------------------------------------------------------------------------

    def status(self, name: str) -> dict[str, Any]:
        status: dict[str, Any] = self.runs[name].status
        return status

    def task(self, name: str, task_name: str = "work") -> dict[str, Any]:
        entry: dict[str, Any] = self.status(name)["tasks"][task_name]
        return entry

    def condition(self, name: str, kind: str = "Succeeded") -> dict[str, Any]:
        return next(c for c in self.status(name)["conditions"] if c["type"] == kind)

    def leases(self) -> dict[str, str]:
        """Lease name -> its holder (spec.holderIdentity)."""
        return {n: self.cluster.get("Lease", n)["spec"]["holderIdentity"] for n in self.cluster.names("Lease")}

    def pod(self, run: str, task_name: str = "work", attempt: int = 1) -> str:
        return f"{run}-{task_name}-{attempt}"

    def running_pods(self) -> list[str]:
        return [
            n
            for n in self.cluster.names("Pod")
            if (self.cluster.get("Pod", n).get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]

    def reasons(self, name: str) -> list[str]:
        return [event.reason for event in self.events[name]]
