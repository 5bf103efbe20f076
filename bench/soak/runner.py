"""The soak: workloads (workloads.py) started one after another while others run, the faults of
each (faults.py) injected at their moments, and the project's promises checked all along and at
the end. A workload passes when every invariant held for it; a failure names the invariant, the
faults that touched it, and the command that replays it alone.

The invariants:
1. every run ends (a terminal phase) within a bound after the last fault that touched it, and, if
   only transparent faults touched it, its phase, tasks and blocks are the model's (model.py);
2. every deleted FlowRun is gone within a bound (one whose cleanup legitimately fails keeps its
   finalizer and says why: CleanupBlocked);
3. nothing labelled with a run's UID, or owned by it, exists once it is gone; no object of a block
   exists once the block is CleanedUp;
4. no name the operator generates is created twice;
5. requests and WARNING/ERROR log lines per minute stay bounded while the API server is away;
6. the operator's /healthz answers 200 (it runs with --liveness-stall-seconds 60: a wedge fails it);
7. no FlowRun ever exceeds its documented size budget (1 MiB).
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from bench import harness, stats
from bench.soak import faults as fault_kinds
from bench.soak.faults import Fault, Injector
from bench.soak.model import Expected
from bench.soak.watching import Recorder, wait_until
from bench.soak.workloads import Workload, generate
from devcluster.ports import free_port
from flowrun import api

OBJECT_LIMIT = 1_048_576
END_SLACK = 90.0  # seconds beyond a workload's own bound (and its faults) before "it did not end" is a failure
CREATE_BOUND = 300.0  # seconds a workload's objects may wait for the control plane to be created
GONE_BOUND = 120.0  # seconds a deleted FlowRun may take to go
# Faults in which the control plane or the operator is away: time gone from every timeout's budget.
AWAY = frozenset({"api", "etcd", "stop", "kill", "restart"})
TIMEOUTS = frozenset({"SetupTimeout", "CleanupTimeout", api.PENDING_TIMEOUT, "DeadlineExceeded"})
RUN_TIMEOUTS = frozenset({api.STOP_DEADLINE, "DeadlineExceeded"})
LEAK_BOUND = 120.0  # seconds the garbage collector may take after that (it resyncs after an outage)
CONCURRENCY = 6  # workloads in flight at once
NAMESPACES = 3
LIVENESS_STALL = 60
OUTAGE_REQUESTS_PER_MINUTE = 240.0
OUTAGE_LOG_LINES_PER_MINUTE = 30.0
CHILD_KINDS = ("pods", "jobs", "deployments", "services", "configmaps")
OPERATOR = "(operator)"  # a failure of no one workload
PLURALS = {"FlowRun": api.PLURAL, "Flow": api.FLOW_PLURAL, "CronFlowRun": api.CRON_PLURAL}
SUSPEND = {"spec": {"suspend": True}}


@dataclass
class Failure:
    workload: str
    invariant: str
    detail: str


@dataclass
class Tracked:
    """A workload in flight: when it started, what touched it, where it is."""

    index: int
    workload: Workload
    namespace: str
    started: float
    faults: list[Fault]
    rng: random.Random
    applied: list[str] = field(default_factory=list)
    touched_until: float = 0.0  # when the last fault that touched it ended
    changed: bool = False  # an outcome-changing fault targeted it
    ended_by_fault: bool = False  # deleted by a fault: its going is checked, not its outcome
    state: str = "running"  # running -> deleting -> gone -> done
    since: float = 0.0
    uids: dict[str, str] = field(default_factory=dict)  # run name -> UID
    rerun_created: bool = False
    suspended: bool = False  # a cron's scheduling stopped, so that its runs can all end
    released: bool = False  # its runs annotated to skip cleanup (they were slow to go)
    away_seconds: float = 0.0  # how long the control plane or the operator was away in its life


class Soak:
    def __init__(
        self,
        session: harness.Session,
        seed: int,
        minutes: float,
        kinds: tuple[str, ...],
        only: int | None,
        real_node_image: str | None,
        out: Callable[[str], None] = print,
    ) -> None:
        self.session, self.seed, self.minutes, self.kinds, self.only = session, seed, minutes, kinds, only
        self.real_node_image = real_node_image
        self.out = out
        self.t0 = time.monotonic()
        self.failures: list[Failure] = []
        self.passed: list[str] = []
        self.fault_counts: dict[str, int] = {}
        self.namespaces = [session.namespace(f"soak-{seed}-{chr(ord('a') + i)}") for i in range(NAMESPACES)]
        self.recorders: dict[tuple[str, str], Recorder] = {}
        self.history: dict[tuple[str, str], list[tuple[float, dict[str, Any]]]] = {}
        self.cleaned: list[tuple[float, str, str, list[str]]] = []  # (check after, namespace, run, objects)
        self.tracked: list[Tracked] = []
        self.largest = 0  # bytes of the largest FlowRun seen (invariant 7)
        self.timeouts: list[str] = []  # runs that timed out after outages took time from their budget
        self.runs_seen: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}  # (ns, name) -> (UID, labels)
        self.finals: dict[tuple[str, str], dict[str, Any]] = {}  # (ns, name) -> its first final status
        self.lock = threading.Lock()
        self.terminating: set[str] = set()  # namespaces a fault deleted or put a quota on, meanwhile
        identity = session.identity(f"soak-{seed}")
        self.operator = harness.flowrun_operator(session, self.namespaces[0], identity)
        self.liveness_port = free_port()
        self.operator.argv += [
            *(f"--namespace={ns}" for ns in self.namespaces[1:]),
            "--log-format=json",
            f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
            f"--liveness-stall-seconds={LIVENESS_STALL}",
        ]
        self.injector = Injector(self.operator, session.core, session.custom, self.stale_status)
        self.fault_lock = threading.Lock()
        self.operator_away = threading.Event()  # stopped or restarting: /healthz is not asked
        self.outages: list[tuple[float, float, float, int]] = []  # (start, end, requests, log lines)

    # --- output -------------------------------------------------------------------------------

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.t0
        self.out(f"{int(elapsed // 60):02d}:{int(elapsed % 60):02d} {text}")

    def fail(self, tracked: Tracked | None, invariant: str, detail: str) -> None:
        name = tracked.workload.name if tracked is not None else OPERATOR
        with self.lock:
            self.failures.append(Failure(name, invariant, detail))
        self.say(f"FAILED {name}: invariant {invariant}: {detail}")

    # --- the cluster as the soak sees it ----------------------------------------------------------

    def start_watches(self) -> None:
        apis = {
            "flowruns": lambda ns, **kw: self.session.custom.list_namespaced_custom_object(
                api.GROUP, api.VERSION, ns, api.PLURAL, **kw
            ),
            "pods": self.session.core.list_namespaced_pod,
            "jobs": client.BatchV1Api(self.session.api).list_namespaced_job,
            "deployments": client.AppsV1Api(self.session.api).list_namespaced_deployment,
            "services": self.session.core.list_namespaced_service,
            "configmaps": self.session.core.list_namespaced_config_map,
        }
        for namespace in self.namespaces:
            for kind, call in apis.items():
                on_event = self.flowrun_event if kind == "flowruns" else None
                recorder = Recorder(call, namespace, on_event)
                self.recorders[(kind, namespace)] = recorder
                recorder.start()
        for recorder in self.recorders.values():
            recorder.synced.wait(60)

    def flowrun_event(self, type_: str, run: dict[str, Any]) -> None:
        """Invariant 7 on every write, and the history foreign writes and invariant 3 use."""
        metadata = run.get("metadata") or {}
        namespace, name = str(metadata.get("namespace")), str(metadata.get("name"))
        if type_ == "DELETED":
            return
        size = len(json.dumps(run, separators=(",", ":")).encode())
        self.largest = max(self.largest, size)
        if size > OBJECT_LIMIT:
            self.fail(self.workload_of(namespace, name), "7 size budget", f"FlowRun {name} is {size} bytes")
        status = run.get("status") or {}
        with self.lock:
            self.history.setdefault((namespace, name), []).append((time.monotonic(), status))
            self.runs_seen[(namespace, name)] = (str(metadata.get("uid")), dict(metadata.get("labels") or {}))
            if status.get("phase") in api.RUN_FINAL:
                self.finals.setdefault(
                    (namespace, name), {**status, "_cancelAsked": bool((run.get("spec") or {}).get("cancel"))}
                )
            for block, entry in (status.get("resources") or {}).items():
                if isinstance(entry, dict) and entry.get("phase") == "CleanedUp":
                    objects = [str(o) for o in entry.get("objects") or []]
                    self.cleaned.append((time.monotonic() + 15.0, namespace, f"{name}/{block}", objects))

    def said(self, namespace: str, run: str) -> str:
        """What a run's status says now (phase, message, its running tasks' reasons), for a failure."""
        status = (self.run_body(namespace, run) or {}).get("status") or {}
        busy = {n: t.get("reason") for n, t in (status.get("tasks") or {}).items() if t.get("phase") == "Running"}
        text = f"{status.get('phase')} {str(status.get('message'))[:160]!r}; running {dict(list(busy.items())[:5])}"
        return text

    def workload_of(self, namespace: str, run: str) -> Tracked | None:
        """The workload a run belongs to: named after it (its rerun `<name>-rerun`, a cron's runs
        `<name>-<minutes>`)."""
        for tracked in list(self.tracked):
            name = tracked.workload.name
            if tracked.namespace == namespace and (run == name or run.startswith(name + "-")):
                return tracked
        return None

    def stale_status(self, namespace: str, run: str) -> dict[str, Any] | None:
        """A status of the run at least 3 s old, for a foreign write."""
        with self.lock:
            history = list(self.history.get((namespace, run), []))
        old = [status for moment, status in history if time.monotonic() - moment > 3.0]
        return old[len(old) // 2] if old else None

    def run_body(self, namespace: str, name: str) -> dict[str, Any] | None:
        recorder = self.recorders[("flowruns", namespace)]
        return next((r for r in recorder.snapshot() if r["metadata"]["name"] == name), None)

    def children_of(self, namespace: str, uid: str) -> list[str]:
        found = []
        for kind in CHILD_KINDS:
            for obj in self.recorders[(kind, namespace)].snapshot():
                metadata = obj.get("metadata") or {}
                owners = [ref.get("uid") for ref in metadata.get("ownerReferences") or []]
                if (metadata.get("labels") or {}).get(api.LABEL_UID) == uid or uid in owners:
                    found.append(f"{kind}/{metadata.get('name')}")
        return found

    # --- the workloads ------------------------------------------------------------------------------

    def start_workload(self, index: int) -> Tracked:
        workload = generate(self.seed, index, real_node_image=self.real_node_image)
        rng = random.Random(f"{self.seed}/{index}/faults")
        namespace = self.open_namespace(index)
        faults = fault_kinds.plan(rng, self.kinds, workload.max_seconds)
        tracked = Tracked(index, workload, namespace, time.monotonic(), faults, rng)
        try:
            for manifest in workload.objects:
                self.create(namespace, manifest)
        except ApiException as error:  # the soak drew an object the API server refuses: its own bug
            self.fail(tracked, "0 valid workload", f"{error.status} {error.reason}: {error.body}")
            tracked.state = "deleting"
        except TimeoutError as error:  # the control plane did not come back: no workload to check
            self.fail(tracked, "0 created", str(error))
            tracked.state = "deleting"
        # Its life (and its bound) begins once its objects exist: an outage may have held them back.
        tracked.started = time.monotonic()
        planned = ", ".join(f.describe() + f" at {f.at:.0f}s" for f in faults) or "no fault"
        self.say(f"workload {workload.name} ({workload.kind}, #{index}) started in {namespace}; {planned}")
        return tracked

    def create(self, namespace: str, manifest: dict[str, Any]) -> None:
        kind = manifest["kind"]
        plural = PLURALS[kind]
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
        deadline = time.monotonic() + CREATE_BOUND
        while time.monotonic() < deadline:
            try:
                self.session.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, namespace, plural, body)
                return
            except ApiException as error:
                if error.status == 409:
                    return  # created by an attempt whose answer was lost
                if error.status < 500 and error.status != 429:
                    raise
            except Exception:
                pass  # the API server is away (a fault): the workload starts when it is back
            time.sleep(1.0)
        raise TimeoutError(f"{kind} {body['metadata']['name']} could not be created for {CREATE_BOUND:.0f}s")

    def fire_due_faults(self, tracked: Tracked) -> None:
        now = time.monotonic() - tracked.started
        while tracked.faults and tracked.faults[0].at <= now and tracked.state == "running":
            fault = tracked.faults.pop(0)
            threading.Thread(target=self.apply_fault, args=(tracked, fault), daemon=True).start()

    def apply_fault(self, tracked: Tracked, fault: Fault) -> None:
        with self.fault_lock:  # one at a time: each is attributed to what it touched
            run = self.main_run(tracked)
            touched = self.in_flight() if fault.kind in fault_kinds.GLOBAL else [tracked]
            if fault.kind in fault_kinds.NAMESPACE_WIDE:
                with self.lock:  # no workload starts there until it is usable again
                    self.terminating.add(tracked.namespace)
                touched = [t for t in self.in_flight() if t.namespace == tracked.namespace]
            with self.lock:  # before it lands: an outcome it changes is not checked meanwhile
                for other in touched:
                    other.changed = other.changed or fault.kind not in fault_kinds.TRANSPARENT
                    other.ended_by_fault = other.ended_by_fault or fault.kind in fault_kinds.ENDING
            if fault.kind in ("stop", "kill", "restart"):
                self.operator_away.set()
            started = time.monotonic()
            requests_before = self.operator_requests()
            lines_before = self.loud_lines()
            try:
                done = self.injector.apply(fault, tracked.namespace, run, tracked.rng)
            except Exception as error:  # a fault that could not be applied is said, not fatal
                done = f"{fault.kind} not applied: {error}"
            ended = time.monotonic()
            if fault.kind in ("api", "etcd"):
                self.outages.append(
                    (started, ended, self.operator_requests() - requests_before, self.loud_lines() - lines_before)
                )
            if fault.kind in ("stop", "kill", "restart"):
                threading.Thread(target=self.operator_back, daemon=True).start()
            if fault.kind == "namespace":
                self.recreate_namespace(tracked.namespace)
            if fault.kind in fault_kinds.NAMESPACE_WIDE:
                with self.lock:
                    self.terminating.discard(tracked.namespace)
            self.record_fault(fault, touched, started, ended)
            self.say(f"fault {fault.kind} ({tracked.workload.name}): {done}")

    def record_fault(self, fault: Fault, touched: list[Tracked], started: float, ended: float) -> None:
        with self.lock:
            self.fault_counts[fault.kind] = self.fault_counts.get(fault.kind, 0) + 1
            for other in touched:
                other.applied.append(f"{fault.describe()} at {started - other.started:.0f}s")
                other.touched_until = max(other.touched_until, ended)
                if fault.kind in AWAY:
                    other.away_seconds += ended - started

    def operator_back(self) -> None:
        wait_until(lambda: self.health()[0] == 200, 120, 1.0)
        self.operator_away.clear()

    def recreate_namespace(self, namespace: str) -> None:
        def gone() -> bool:
            try:
                self.session.core.read_namespace(namespace)
                return False
            except ApiException as error:
                return bool(error.status == 404)

        if wait_until(gone, 300, 1.0):
            self.session._ensure_namespace(namespace)

    def open_namespace(self, index: int) -> str:
        """The namespace of workload `index`: the next in turn, passing over one that a fault is
        deleting (it is made again once it is gone)."""
        with self.lock:
            turns = [self.namespaces[(index + i) % len(self.namespaces)] for i in range(len(self.namespaces))]
            return next((ns for ns in turns if ns not in self.terminating), turns[0])

    def main_run(self, tracked: Tracked) -> str:
        """The run a targeted fault hits: the workload's FlowRun, or its cron's latest run."""
        runs = [m["metadata"]["name"] for m in tracked.workload.objects if m["kind"] == "FlowRun"]
        if runs:
            return str(runs[0])
        return max(self.expected_runs(tracked), default=tracked.workload.name)

    def in_flight(self) -> list[Tracked]:
        return [t for t in self.tracked if t.state in ("running", "deleting")]

    # --- checking a workload --------------------------------------------------------------------

    def expected_runs(self, tracked: Tracked) -> dict[str, Expected]:
        """Run name -> its expectation, for the runs known by now (a cron's: every run it created
        that the soak saw, by their label, deleted by its history limits or not)."""
        workload = tracked.workload
        if workload.kind != "cron":
            return dict(workload.expected)
        template = workload.expected.get("*")
        cron = self.cron_name(tracked)
        with self.lock:
            seen = list(self.runs_seen.items())
        return {
            name: template
            for (namespace, name), (_, labels) in seen
            if namespace == tracked.namespace and labels.get(api.LABEL_CRON) == cron and template is not None
        }

    def cron_name(self, tracked: Tracked) -> str:
        return str(next(m for m in tracked.workload.objects if m["kind"] == "CronFlowRun")["metadata"]["name"])

    def step(self, tracked: Tracked) -> None:
        """Move one workload on: check its end, delete it, check it goes and leaves nothing."""
        now = time.monotonic()
        if tracked.state == "running":
            self.fire_due_faults(tracked)
            self.check_running(tracked, now)
        elif tracked.state == "deleting":
            self.check_deleting(tracked, now)
        elif tracked.state == "gone":
            self.check_leaks(tracked, now)

    def final_status(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The run's status once final: as it is now, or as last seen final (a cron's history limit
        may have deleted it since)."""
        body = self.run_body(namespace, name)
        status = (body or {}).get("status") or {}
        if body is not None and status.get("phase") in api.RUN_FINAL:
            return {**status, "_cancelAsked": bool((body.get("spec") or {}).get("cancel"))}
        with self.lock:
            return self.finals.get((namespace, name)) if body is None else None

    def check_running(self, tracked: Tracked, now: float) -> None:
        workload = tracked.workload
        if workload.kind == "rerun" and not self.rerun_started(tracked):
            return
        if workload.kind == "cron":
            if now - tracked.started < min(150.0, workload.max_seconds):
                return  # let it schedule a few runs
            if not tracked.suspended:
                self.suspend(tracked)
        expected = self.expected_runs(tracked)
        finals = {name: self.final_status(tracked.namespace, name) for name in expected}
        ended = tracked.ended_by_fault or (bool(expected) and all(f is not None for f in finals.values()))
        if not ended:
            bound = max(tracked.started, tracked.touched_until) + workload.max_seconds + END_SLACK
            if now > bound:
                late = sorted(n for n, f in finals.items() if f is None)
                said = "; ".join(f"{n}: {self.said(tracked.namespace, n)}" for n in late) or "no run created"
                self.fail(tracked, "1 ends", f"not finished {now - tracked.started:.0f}s after its start: {said}")
                self.delete_all(tracked)
            return
        if not tracked.ended_by_fault and not tracked.changed:
            self.check_outcomes(tracked, expected, finals)
        phases = {n: (f or {}).get("phase") for n, f in finals.items()}
        self.say(f"workload {workload.name} ended in {now - tracked.started:.0f}s: {phases}")
        self.delete_all(tracked)

    def check_outcomes(
        self, tracked: Tracked, expected: dict[str, Expected], finals: dict[str, dict[str, Any] | None]
    ) -> None:
        """Invariant 1's second half: a run only transparent faults touched ends as the model says.
        An outage is transparent to everything but a timeout: the time it took is gone from every
        timeout's budget (they are wall-clock, as documented). A run that timed out where the model
        says it would not, and whose life an outage took time from, is reported, not failed."""
        for name, status in finals.items():
            if status is None or (tracked.workload.kind == "cron" and status.get("_cancelAsked")):
                continue  # a run Replace cancelled for the next (the model leaves those out)
            problem = disagreement(expected[name], status)
            if not problem:
                continue
            timeouts = timed_out(status)
            if timeouts and tracked.away_seconds > 0:
                with self.lock:
                    self.timeouts.append(f"{name} ({tracked.away_seconds:.0f}s away): {'; '.join(timeouts)}")
                self.say(f"workload {tracked.workload.name}: {name} timed out after outages: {'; '.join(timeouts)}")
                continue
            self.fail(tracked, "1 outcome", f"{name}: {problem}{said_in(status)}")

    def rerun_started(self, tracked: Tracked) -> bool:
        """A rerun workload's rerun is created once its original ended (or a fault ended it)."""
        if tracked.rerun_created or tracked.ended_by_fault or tracked.workload.rerun is None:
            return True
        if self.final_status(tracked.namespace, self.main_run(tracked)) is None:
            return False
        try:
            self.create(tracked.namespace, tracked.workload.rerun)
        except TimeoutError as error:
            self.fail(tracked, "0 created", str(error))
        tracked.rerun_created = True
        return True

    def suspend(self, tracked: Tracked) -> None:
        """Stop a cron's scheduling, so that its runs can all end."""
        with contextlib.suppress(Exception):  # the API server is away: the next step asks again
            self.session.custom.patch_namespaced_custom_object(
                api.GROUP, api.VERSION, tracked.namespace, api.CRON_PLURAL, self.cron_name(tracked), SUSPEND
            )
            tracked.suspended = True

    def delete_all(self, tracked: Tracked) -> None:
        wanted = {*self.expected_runs(tracked), self.main_run(tracked)}
        with self.lock:
            for (namespace, name), (uid, _) in self.runs_seen.items():
                if namespace == tracked.namespace and name in wanted:
                    tracked.uids[name] = uid
        for manifest in tracked.workload.objects:
            self.delete(tracked.namespace, PLURALS[manifest["kind"]], manifest["metadata"]["name"])
        for name in tracked.uids:
            self.delete(tracked.namespace, api.PLURAL, name)
        tracked.state, tracked.since = "deleting", time.monotonic()

    def delete(self, namespace: str, plural: str, name: str) -> None:
        with contextlib.suppress(Exception):  # gone already, or the API server is away: deleted again later
            self.session.custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, namespace, plural, name)

    def check_deleting(self, tracked: Tracked, now: float) -> None:
        bodies = {n: self.run_body(tracked.namespace, n) for n in tracked.uids}
        left = [n for n, body in bodies.items() if body is not None]
        if not left:
            tracked.state, tracked.since = "gone", now
            return
        unasked = [n for n in left if not ((bodies[n] or {}).get("metadata") or {}).get("deletionTimestamp")]
        if unasked:  # a delete sent while the API server was away: sent again, its bound from now
            for name in unasked:
                self.delete(tracked.namespace, api.PLURAL, name)
            tracked.since = now
            return
        if now - max(tracked.since, tracked.touched_until) < GONE_BOUND:
            return
        for name in left:
            body = self.run_body(tracked.namespace, name) or {}
            released = {c.get("type"): c for c in (body.get("status") or {}).get("conditions") or []}
            blocked = (released.get("ResourcesReleased") or {}).get("reason") == "CleanupBlocked"
            if tracked.released:
                # Not even the annotation let it go (the operator is wedged): the soak takes the
                # finalizer off itself, so that it can go on.
                self.patch(tracked.namespace, name, {"metadata": {"finalizers": None}})
            elif not blocked:
                self.fail(tracked, "2 deletion", f"{name} still there {now - tracked.since:.0f}s after its deletion")
            self.patch(tracked.namespace, name, {"metadata": {"annotations": {api.SKIP_CLEANUP_ANNOTATION: "true"}}})
        tracked.released, tracked.since = True, now

    def patch(self, namespace: str, name: str, body: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # the API server is away: the next check asks again
            self.session.custom.patch_namespaced_custom_object(
                api.GROUP, api.VERSION, namespace, api.PLURAL, name, body
            )

    def check_leaks(self, tracked: Tracked, now: float) -> None:
        left = [c for uid in tracked.uids.values() for c in self.children_of(tracked.namespace, uid)]
        # The garbage collector works only while the control plane does: counted from its return.
        back = max((end for _, end, _, _ in self.outages), default=0.0)
        if left and now - max(tracked.since, back) < LEAK_BOUND:
            return
        if left:
            self.fail(tracked, "3 leak", f"left behind: {left}")
        tracked.state = "done"
        with self.lock:
            failed = any(f.workload == tracked.workload.name for f in self.failures)
            if not failed:
                self.passed.append(tracked.workload.name)

    # --- invariants over everything ---------------------------------------------------------------

    def check_everything(self) -> None:
        for (kind, _), recorder in self.recorders.items():
            if kind in ("pods", "jobs", "deployments", "services"):
                # Names made by controllers (a Job's or a ReplicaSet's pods) have random suffixes:
                # a name seen with two UIDs is one the operator created twice.
                for name, uids in recorder.created_twice().items():
                    self.fail(None, "4 created twice", f"{kind} {name}: {sorted(uids)}")
                    with recorder.lock:
                        recorder.uids[name] = set(sorted(uids)[-1:])
        now = time.monotonic()
        with self.lock:
            due = [c for c in self.cleaned if c[0] <= now]
            self.cleaned = [c for c in self.cleaned if c[0] > now]
        for _, namespace, what, objects in due:
            for ref in objects:
                kind, _, name = ref.partition("/")
                plural = {
                    "Deployment": "deployments",
                    "Service": "services",
                    "Job": "jobs",
                    "ConfigMap": "configmaps",
                }.get(kind)
                if plural and any(
                    o["metadata"]["name"] == name for o in self.recorders[(plural, namespace)].snapshot()
                ):
                    self.fail(None, "3 block objects", f"{ref} exists 15s after block {what} was CleanedUp")
        if not self.operator_away.is_set() and not self.operator.alive():
            # Only faults stop it: an exit of its own is a failure; it is started again to go on.
            tail = self.operator.log_path.read_text(errors="replace").splitlines()[-3:]
            process = self.operator.process
            status = process.returncode if process is not None else None
            why = f"killed by signal {-status}" if status is not None and status < 0 else f"exit status {status}"
            self.fail(None, "6 liveness", f"the operator exited by itself ({why}): {' | '.join(tail)[:600]}")
            self.operator.start()
        elif not self.operator_away.is_set():
            code, answer = self.health()
            if code == 500:
                self.fail(None, "6 liveness", f"/healthz answered 500: {answer[:300]}")

    def health(self) -> tuple[int, str]:
        try:
            url = f"http://127.0.0.1:{self.liveness_port}/healthz"
            with urllib.request.urlopen(url, timeout=15) as response:
                return int(response.status), response.read().decode(errors="replace")
        except urllib.error.HTTPError as error:
            return int(error.code), error.read().decode(errors="replace")
        except OSError as error:
            return 0, str(error)

    def operator_requests(self) -> float:
        return stats.counter_total(self.operator.metrics() or "", "flowrun_api_requests")

    def loud_lines(self) -> int:
        try:
            lines = self.operator.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return 0
        return sum(1 for line in lines if '"level": "warning"' in line or '"level": "error"' in line)

    def check_outages(self) -> None:
        for start, end, requests, lines in self.outages:
            minutes = max((end - start) / 60.0, 0.25)
            if requests / minutes > OUTAGE_REQUESTS_PER_MINUTE:
                self.fail(None, "5 outage", f"{requests:.0f} requests in a {end - start:.0f}s outage")
            if lines / minutes > OUTAGE_LOG_LINES_PER_MINUTE:
                self.fail(None, "5 outage", f"{lines} WARNING/ERROR lines in a {end - start:.0f}s outage")

    # --- the whole soak -----------------------------------------------------------------------------

    def run(self) -> int:
        self.start_watches()
        self.operator.start()
        wait_until(lambda: self.health()[0] == 200, 120, 1.0)
        indexes = iter([self.only] if self.only is not None else range(sys.maxsize))
        deadline = self.t0 + self.minutes * 60.0
        last_check = 0.0
        try:
            while True:
                now = time.monotonic()
                if now < deadline or self.only is not None:
                    while len(self.in_flight()) < (1 if self.only is not None else CONCURRENCY):
                        index = next(indexes, None)
                        if index is None:
                            break
                        self.tracked.append(self.start_workload(index))
                for tracked in list(self.tracked):
                    self.step(tracked)
                if now - last_check > 5.0:
                    self.check_everything()
                    last_check = now
                if all(t.state == "done" for t in self.tracked) and (now >= deadline or self.only is not None):
                    break
                time.sleep(0.5)
            self.check_outages()
        finally:
            with self.fault_lock:
                self.operator.stop()
            for recorder in self.recorders.values():
                recorder.stop()
        return self.report()

    def report(self) -> int:
        failed = sorted({f.workload for f in self.failures})
        counts = ", ".join(f"{kind} {n}" for kind, n in sorted(self.fault_counts.items())) or "none"
        self.out(f"{len(self.passed)} passed, {len(failed)} failed (seed {self.seed}; faults: {counts})")
        kinds = Counter(t.workload.kind for t in self.tracked)
        drawn = ", ".join(f"{kind} {n}" for kind, n in sorted(kinds.items()))
        self.out(f"  workloads: {drawn}; largest FlowRun {self.largest} bytes")
        self.out(f"  timed out after outages (outages take time from every timeout): {len(self.timeouts)}")
        for timeout in self.timeouts:
            self.out(f"    {timeout}")
        for name in (f for f in failed if f != OPERATOR):
            tracked = next((t for t in self.tracked if t.workload.name == name), None)
            for failure in (f for f in self.failures if f.workload == name):
                self.out(f"  {name}: invariant {failure.invariant}: {failure.detail}")
            if tracked is not None:
                self.out(
                    f"    workload #{tracked.index} ({tracked.workload.kind}); faults: {tracked.applied or 'none'}"
                )
                faults = ",".join(self.kinds) or "none"
                self.out(
                    f"    replay: python -m bench.soak --seed {self.seed} --only {tracked.index} --faults {faults}"
                )
        for failure in (f for f in self.failures if f.workload == OPERATOR):
            self.out(f"  (operator): invariant {failure.invariant}: {failure.detail}")
        return 1 if self.failures else 0


def timed_out(status: dict[str, Any]) -> list[str]:
    """The timeouts a final status shows: of blocks, tasks and the run."""
    found = []
    if status.get("reason") in RUN_TIMEOUTS:
        found.append(f"run {status.get('reason')}: {status.get('message')}")
    for kind, entries in (("resource", status.get("resources")), ("task", status.get("tasks"))):
        for name, entry in (entries or {}).items():
            if (entry or {}).get("reason") in TIMEOUTS:
                found.append(f"{kind} {name} {entry.get('reason')}: {entry.get('message')}")
    return found


def said_in(status: dict[str, Any]) -> str:
    """What the run and its blocks said about their ends (a failure's evidence)."""
    said = [f"run: {status.get('message')}"] if status.get("message") else []
    for name, entry in (status.get("resources") or {}).items():
        if (entry or {}).get("reason"):
            said.append(f"resource {name} {entry.get('phase')} {entry.get('reason')}: {entry.get('message')}")
    return f" [{'; '.join(said)}]" if said else ""


def disagreement(expected: Expected, status: dict[str, Any]) -> str:
    """How the run's status differs from the model's expectation ("" if it does not)."""
    problems = []
    if status.get("phase") != expected.phase:
        problems.append(f"phase {status.get('phase')}, expected {expected.phase}")
    tasks = status.get("tasks") or {}
    for name, want in expected.tasks.items():
        got = tasks.get(name) or {}
        for key, value in (
            ("phase", want.phase),
            ("reason", want.reason),
            ("attempts", want.attempts),
            ("result", want.result),
        ):
            if value is not None and got.get(key) != value:
                problems.append(f"task {name} {key} {got.get(key)!r}, expected {value!r}")
    resources = status.get("resources") or {}
    for name, phase in expected.resources.items():
        if phase is not None and (resources.get(name) or {}).get("phase") != phase:
            problems.append(f"resource {name} {(resources.get(name) or {}).get('phase')}, expected {phase}")
    return "; ".join(problems[:6])
