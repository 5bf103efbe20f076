"""What a FlowRun of the soak must end as, from the documented semantics alone.

`expect(spec)` reads a FlowRun spec (with its tasks: a Flow's run or a rerun is given the spec it
resolves to) and says the run's final phase, each task's phase, reason, attempts and result, and
each resource block's final phase. It is written from docs/semantics.md and docs/api.md and never
imports the operator's engine: a disagreement between the two is what the soak is for, so the
model must not copy the engine's reading.

How: the model plays the documented state machines (tasks, triggers, skip reasons, retries,
deadlines, parallelism, blocks with their setup, nesting and cleanup) over time in a small
simulation of its own, with the pods doing what their templates say (the dev cluster's KWOK
annotations, `sim.flowrun.dev/*`, or for a real-node pod the `soak.flowrun.dev/*` annotations its
script was written from). Final states depend on timing only where the semantics let them (which
of two skips comes first, whether a run deadline caught a task before it started): so the model
plays the run once with the dev cluster's usual delays and SAMPLES more times with random extra
delays of up to a minute on every step (the soak's faults delay things that much), and keeps what
every play agrees on. A reason, an attempt count, a result or a block phase that differs between
plays is not checked (None). A phase that differs cannot be left out (the interface always checks
phases), so `expect` raises Undetermined: the workload generator draws another workload then.

Sampling cannot prove that no timing changes an outcome; it finds the orders a minute of delay
makes likely. The plays are seeded, so `expect` is a function of its spec.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from flowrun import api

# --- the answer ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpectedTask:
    phase: str
    reason: str | None  # None: not checked
    attempts: int | None  # None: not checked
    result: str | None  # None: not checked (always None unless the task Succeeded)


@dataclass(frozen=True)
class Expected:
    phase: str
    tasks: Mapping[str, ExpectedTask]
    resources: Mapping[str, str | None]  # block -> its final phase; None: not checked


class Undetermined(ValueError):
    """The spec's outcome depends on timing in a way the interface cannot leave unchecked (a phase)."""


# --- the vocabulary the model reads and writes ---------------------------------------------------

SIM = "sim.flowrun.dev/"  # the dev cluster's KWOK annotations: devcluster/stages.yaml
REAL = "soak.flowrun.dev/"  # what a real-node pod's script does (workloads.py writes both)
KWOK_DEFAULT_SECONDS = 1.0  # a KWOK pod without sim.flowrun.dev/duration runs this long
# Task reasons the docs name that api.py does not hold (api.py holds the engine's vocabulary; the
# model spells what the docs say a user sees).
SUCCEEDED_REASON = "Succeeded"
REUSED = "Reused"  # a task a rerun took over from its original
ERROR = "Error"  # the main container's reason of a pod that failed by exit code (KWOK and kubelet)
DEADLINE_EXCEEDED = "DeadlineExceeded"  # an attempt past the task's activeDeadlineSeconds
JOB_BACKOFF_SECONDS = 10.0  # the Job controller's first retry delay of a setup Job's pod, doubling

# Delays of the dev cluster absent faults (seconds): they only shape the nominal play and the
# duration bound, never an outcome the model states (outcomes that depend on them are unchecked).
REACT = 0.5  # an event reaches the operator and its pass acts
POD_START = 1.0  # a created task pod runs (scheduler, KWOK)
REAL_POD_START = 3.0  # the same on the real node (containerd starts a container)
JOB_POD = 2.0  # a Job's pod is created, runs and the Job's condition follows
DEPLOYMENT_READY = 3.0  # a Deployment's pods are created and available
DELETION = 2.0  # what cleanup deletes is gone
FAULT_DELAY = 60.0  # the soak's faults delay a step by up to this much
SAMPLES = 32  # plays with random delays, besides the nominal one


# --- what a pod does -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PodPlan:
    """What the cluster makes of a pod template: how long its pod runs, which attempts fail, its
    termination message (with `$(...)` references for a real-node pod, whose script prints an
    argument the operator substituted), and for a Deployment's pods whether they become Ready."""

    seconds: float
    always_fails: bool = False
    fail_attempts: int = 0  # attempts 1..N fail (the pod's flowrun.dev/attempt label; 0 without one)
    message: str = ""
    substituted: bool = False  # message holds references the operator substitutes (real node)
    ready: bool = True
    real: bool = False

    def fails(self, attempt: int) -> bool:
        """Whether attempt `attempt` (0 for a pod without attempt label: a setup Job's) fails."""
        return self.always_fails or (self.fail_attempts > 0 and attempt <= self.fail_attempts)


_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_seconds(text: str) -> float:
    """A Go duration ("300ms", "1.5s", "1h2m") in seconds, as KWOK reads sim.flowrun.dev/duration."""
    if text == "0":
        return 0.0
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a Go duration: {text!r}")
    return sum(float(number) * _GO_UNITS[unit] for number, unit in parts)


def _annotations(template: Mapping[str, Any]) -> Mapping[str, str]:
    metadata = template.get("metadata") or {}
    annotations: Mapping[str, str] = metadata.get("annotations") or {}
    return annotations


def pod_plan(template: Mapping[str, Any]) -> PodPlan:
    """The plan of a pod made from `template`: a real-node pod's from its soak.flowrun.dev/*
    annotations, any other's from the KWOK stages' reading of sim.flowrun.dev/* (outcome fail, or
    fail-attempts, fails; duration defaults to 1s; message is the termination message)."""
    notes = _annotations(template)
    real = f"{REAL}result" in notes
    prefix = REAL if real else SIM
    duration = notes.get(f"{prefix}duration")
    return PodPlan(
        seconds=go_seconds(duration) if duration else KWOK_DEFAULT_SECONDS,
        always_fails=notes.get(f"{prefix}outcome") == "fail",
        fail_attempts=int(notes.get(f"{prefix}fail-attempts") or 0),
        message=notes.get(f"{REAL}result" if real else f"{SIM}message", ""),
        substituted=real,
        ready=notes.get(f"{SIM}ready") != "false",
        real=real,
    )


# --- references ----------------------------------------------------------------------------------

# $(params.P), $(tasks.T.result), $(resources.R.value), $(resources.R.services.D), $(flowrun.X);
# `$$(` escapes (docs/api.md, "References").
_REFERENCE = re.compile(r"(?<!\$)\$\(((?:params|tasks|resources|flowrun)\.[^)]*)\)")

Lookup = Callable[[str], str | None]  # the value of a reference path ("tasks.a.result"); None: unknown


def references(text: str) -> list[str]:
    """The reference paths in `text`, in order."""
    return _REFERENCE.findall(text)


def substitute(text: str, lookup: Lookup) -> str | None:
    """`text` with each reference replaced by its value, as the operator does; None when a value
    is not known to the model (a Service name holds the namespace, which a spec does not say)."""
    values = {path: lookup(path) for path in references(text)}
    if any(value is None for value in values.values()):
        return None
    return _REFERENCE.sub(lambda match: values[match.group(1)] or "", text)


def template_strings(template: Mapping[str, Any]) -> Iterable[str]:
    """Every string of a pod template the operator substitutes references in (docs/api.md: image,
    command, args and env values of containers and init containers)."""
    spec = template.get("spec") or {}
    for group in ("initContainers", "containers"):
        for container in spec.get(group) or []:
            yield str(container.get("image") or "")
            yield from (str(text) for text in container.get("command") or [])
            yield from (str(text) for text in container.get("args") or [])
            yield from (str(env["value"]) for env in container.get("env") or [] if "value" in env)


# --- the spec, as the model reads it -------------------------------------------------------------


@dataclass(frozen=True)
class TaskPlan:
    name: str
    run_after: tuple[str, ...]
    trigger: str
    resources: tuple[str, ...]
    limit: int  # retries after the first attempt
    backoff: float
    deadline: float | None  # activeDeadlineSeconds of each attempt
    pod: PodPlan


@dataclass(frozen=True)
class DeploymentPlan:
    replicas: str  # as written: digits, or references that must resolve to 0..10000
    ports: bool
    pod: PodPlan


@dataclass(frozen=True)
class BlockPlan:
    name: str
    run_after: tuple[str, ...]
    uses: tuple[str, ...]  # blocks its setup, value or cleanup job references (it nests in them)
    job: PodPlan | None
    job_backoff_limit: int
    deployments: tuple[DeploymentPlan, ...]
    manifests: int
    setup_timeout: float
    value: str | None
    cleanup_job: PodPlan | None
    cleanup_retries: int
    cleanup_timeout: float


@dataclass(frozen=True)
class Plan:
    tasks: tuple[TaskPlan, ...]  # in dependency order, spec order among independent tasks
    blocks: tuple[BlockPlan, ...]
    params: Mapping[str, str]
    parallelism: int | None
    deadline: float | None

    def task(self, name: str) -> TaskPlan:
        return next(task for task in self.tasks if task.name == name)

    def block(self, name: str) -> BlockPlan:
        return next(block for block in self.blocks if block.name == name)


def _task_plan(raw: Mapping[str, Any]) -> TaskPlan:
    retries = raw.get("retries") or {}
    deadline = raw.get("activeDeadlineSeconds")
    return TaskPlan(
        name=raw["name"],
        run_after=tuple(raw.get("runAfter") or ()),
        trigger=raw.get("trigger") or "allSucceeded",
        resources=tuple(raw.get("resources") or ()),
        limit=int(retries.get("limit", 0)),
        backoff=float(retries.get("backoffSeconds", 10)),
        deadline=float(deadline) if deadline is not None else None,
        pod=pod_plan(raw["template"]),
    )


def _block_strings(raw: Mapping[str, Any]) -> Iterable[str]:
    """Where a block's references are: setup (job, deployments, replicas), value, cleanup job."""
    setup = raw.get("setup") or {}
    if setup.get("job"):
        yield from template_strings(setup["job"]["template"])
    for deployment in setup.get("deployments") or []:
        yield from template_strings(deployment["template"])
        yield str(deployment.get("replicas", 1))
    if raw.get("value") is not None:
        yield str(raw["value"])
    cleanup = raw.get("cleanup") or {}
    if cleanup.get("job"):
        yield from template_strings(cleanup["job"]["template"])


def _uses(raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The blocks a block nests in: those whose value or services it references (docs/api.md,
    "Choice (nesting)")."""
    used: list[str] = []
    for text in _block_strings(raw):
        for path in references(text):
            parts = path.split(".")
            if parts[0] == "resources" and parts[1] != raw["name"] and parts[1] not in used:
                used.append(parts[1])
    return tuple(used)


def _block_plan(raw: Mapping[str, Any]) -> BlockPlan:
    setup = raw.get("setup") or {}
    cleanup = raw.get("cleanup") or {}
    job = setup.get("job")
    return BlockPlan(
        name=raw["name"],
        run_after=tuple(raw.get("runAfter") or ()),
        uses=_uses(raw),
        job=pod_plan(job["template"]) if job else None,
        job_backoff_limit=int(job.get("backoffLimit", 0)) if job else 0,
        deployments=tuple(
            DeploymentPlan(str(d.get("replicas", 1)), bool(d.get("ports")), pod_plan(d["template"]))
            for d in setup.get("deployments") or []
        ),
        manifests=len(setup.get("manifests") or []),
        setup_timeout=float(setup.get("timeoutSeconds", 600)),
        value=raw.get("value"),
        cleanup_job=pod_plan(cleanup["job"]["template"]) if cleanup.get("job") else None,
        cleanup_retries=int(cleanup.get("retries", 3)),
        cleanup_timeout=float(cleanup.get("timeoutSeconds", 600)),
    )


def dependency_order(tasks: Sequence[TaskPlan]) -> tuple[TaskPlan, ...]:
    """Tasks in dependency order, spec order among independent ones (docs: the order slots go in)."""
    done: set[str] = set()
    order: list[TaskPlan] = []
    while len(order) < len(tasks):
        ready = next((t for t in tasks if t.name not in done and all(u in done for u in t.run_after)), None)
        if ready is None:
            raise ValueError("the tasks' runAfter form a cycle: the model reads valid specs only")
        done.add(ready.name)
        order.append(ready)
    return tuple(order)


def read_plan(spec: Mapping[str, Any]) -> Plan:
    """The model's reading of a valid spec with its own tasks (a Flow's run or a rerun is read in
    the spec it resolves to). `cancel` is outside the model: the soak's workloads never set it."""
    for key in ("flowRef", "rerunOf", "cancel"):
        if spec.get(key):
            raise ValueError(f"the model reads resolved specs without {key}")
    deadline = spec.get("activeDeadlineSeconds")
    return Plan(
        tasks=dependency_order([_task_plan(raw) for raw in spec["tasks"]]),
        blocks=tuple(_block_plan(raw) for raw in spec.get("resources") or ()),
        params={p["name"]: p["value"] for p in spec.get("params") or ()},
        parallelism=spec.get("parallelism"),
        deadline=float(deadline) if deadline is not None else None,
    )


# --- time -----------------------------------------------------------------------------------------


class Clock:
    """How long each step of a play takes. The nominal play takes the dev cluster's usual delays
    and the pods' own durations. Other plays draw each delay anew (`fast`: the share of steps
    quicker than usual, down to none, since the usual delays are estimates, not floors; `slow`:
    the share late by up to FAULT_DELAY, pods included, which never run shorter than their
    duration), so that plays differ in which of two steps comes first, as faults make them."""

    def __init__(self, rng: random.Random | None = None, fast: float = 0.0, slow: float = 0.0) -> None:
        self.rng = rng or random.Random(0)
        self.fast, self.slow = fast, slow

    @classmethod
    def drawn(cls, rng: random.Random) -> Clock:
        """A play with its own mix: some plays mostly quick, some mostly late, most mixed."""
        fast = rng.random()
        return cls(rng, fast, rng.random() * (1.0 - fast))

    def delay(self, usual: float) -> float:
        """A step of the cluster or the operator that usually takes `usual` seconds."""
        roll = self.rng.random()
        if roll < self.fast:
            return self.rng.uniform(0.0, usual) if self.fast < 1.0 else 0.0
        if roll < self.fast + self.slow:
            return usual + (self.rng.uniform(0.0, FAULT_DELAY) if self.slow < 1.0 else FAULT_DELAY)
        return usual

    def runs(self, seconds: float) -> float:
        """A pod that runs `seconds` (its sim.flowrun.dev/duration, or its script's sleep)."""
        if self.rng.random() < self.slow:
            return seconds + (self.rng.uniform(0.0, FAULT_DELAY) if self.slow < 1.0 else FAULT_DELAY)
        return seconds


# --- one play of a run ---------------------------------------------------------------------------

RUNNING_BLOCK = (api.SETTING_UP, api.READY, api.SETUP_FAILED)  # set up started, not cleaned up yet
FINISHED_BLOCK = (api.CLEANED_UP, api.CLEANUP_FAILED)
HOLDS, CANNOT, WAITING = "holds", "cannot", "waiting"


@dataclass
class TaskState:
    phase: str = api.PENDING
    reason: str | None = None
    reason_known: bool = True  # False: the docs leave the reason open (a nested block's runAfter)
    attempts: int = 0
    result: str | None = None
    in_flight: bool = False  # the current attempt's pod has not ended
    ends_at: float = math.inf  # when the current attempt's end is acted on
    failure: str | None = None  # why the current attempt fails (None: it succeeds)
    retry_at: float | None = None  # RetryBackoff: the next attempt may start from then


@dataclass
class BlockState:
    phase: str = api.PENDING
    checked: bool = True  # False: the docs leave its final phase open
    setup_failed: bool = False
    done_at: float = math.inf  # when the running setup or cleanup ends
    ok: bool = True  # how the running setup or cleanup ends
    value: str | None = None


@dataclass(frozen=True)
class Ending:
    """The end of one play: the run's phase, per task (phase, reason, attempts, result) with None
    for what this play cannot state, per block its phase (None: not stated), and the time it took."""

    phase: str
    tasks: Mapping[str, tuple[str, str | None, int | None, str | None]]
    blocks: Mapping[str, str | None]
    seconds: float


def failed_upstream(state: TaskState) -> bool:
    """docs/semantics.md: Failed, Cancelled, or Skipped for any reason but TriggerNotMet."""
    if state.phase in (api.FAILED, api.CANCELLED):
        return True
    return state.phase == api.SKIPPED and state.reason != api.TRIGGER_NOT_MET


TERMINAL = frozenset(api.TERMINAL)
ENDED_OTHERWISE = TERMINAL - {api.SUCCEEDED}


def terminal(state: TaskState) -> bool:
    return state.phase in TERMINAL


class Play:
    """One play of a run: the documented rules applied to a fixpoint at every moment something
    happens (one pass takes every decision its inputs allow), moments taken in time order."""

    def __init__(self, plan: Plan, reused: Mapping[str, str], clock: Clock) -> None:
        self.plan = plan
        self.clock = clock
        self.now = 0.0
        self.first_pass = clock.delay(REACT)
        self.started_at: float | None = None
        self.deadline_lag = clock.delay(REACT)
        self.stopped = False
        self.tasks = {task.name: TaskState() for task in plan.tasks}
        for name, result in reused.items():
            self.tasks[name] = TaskState(api.SUCCEEDED, REUSED, attempts=0, result=result)
        self.blocks = {block.name: BlockState() for block in plan.blocks}
        self.task_plans = {task.name: task for task in plan.tasks}
        self.block_plans = {block.name: block for block in plan.blocks}
        self.open: list[TaskPlan] = list(plan.tasks)
        self.members = {b.name: tuple(t.name for t in plan.tasks if b.name in t.resources) for b in plan.blocks}
        self.nested = {b.name: tuple(n.name for n in plan.blocks if b.name in n.uses) for b in plan.blocks}
        self.rules: tuple[Callable[[], bool], ...] = (
            self.finish_attempts,
            self.apply_deadline,
            self.finish_setups,
            self.skip_tasks,
            self.start_setups,
            self.start_tasks,
            self.start_cleanups,
            self.finish_cleanups,
        )

    # -- the loop --

    def play(self) -> Ending:
        while True:
            if self.now >= self.first_pass:
                self.settle()
            if self.finished():
                return self.ending()
            moment = self.next_moment()
            if moment == math.inf:  # a block waiting for its own task: the operator refuses such specs
                raise ValueError(f"the run waits for itself at {self.now:.1f}s (a cycle through blocks?)")
            self.now = moment

    def settle(self) -> None:
        changed = True
        while changed:
            changed = False
            self.open = [task for task in self.plan.tasks if not terminal(self.tasks[task.name])]
            for rule in self.rules:
                changed = rule() or changed

    def next_moment(self) -> float:
        moments = [self.first_pass, self.deadline_at() + self.deadline_lag]
        moments += [s.ends_at for s in self.tasks.values() if s.in_flight]
        moments += [s.retry_at for s in self.tasks.values() if s.retry_at is not None]
        moments += [s.done_at for s in self.blocks.values() if s.phase in (api.SETTING_UP, api.CLEANING_UP)]
        later = [moment for moment in moments if moment > self.now]
        return min(later, default=math.inf)

    def deadline_at(self) -> float:
        """docs: the run deadline counts from status.startedAt, or the creation while nothing started."""
        if self.plan.deadline is None or self.stopped:
            return math.inf
        return (self.started_at or 0.0) + self.plan.deadline

    def mark_started(self) -> None:
        if self.started_at is None:
            self.started_at = self.now

    # -- values --

    def lookup(self, path: str) -> str | None:
        """The value of a reference in this play (docs/api.md, "References" and "Results")."""
        parts = path.split(".")
        if parts[0] == "params":
            return self.plan.params.get(parts[1], "")
        if parts[0] == "tasks":
            state = self.tasks[parts[1]]
            # docs (Choice): the result of a task that did not succeed is the empty string.
            return state.result if state.phase == api.SUCCEEDED else ""
        if parts[0] == "resources" and len(parts) == 3:
            return self.blocks[parts[1]].value
        return None  # a Service name or $(flowrun.*): the namespace, name and uid are the cluster's

    def message_of(self, pod: PodPlan) -> str | None:
        return substitute(pod.message, self.lookup) if pod.substituted else pod.message

    # -- tasks --

    def finish_attempts(self) -> bool:
        ended = [name for name, s in self.tasks.items() if s.in_flight and s.ends_at <= self.now]
        for name in ended:
            self.end_attempt(self.task_plans[name], self.tasks[name])
        return bool(ended)

    def end_attempt(self, task: TaskPlan, state: TaskState) -> None:
        """An attempt's pod ended: the task Succeeded, waits out its backoff, or Failed for good."""
        state.in_flight = False
        if state.failure is None:
            state.phase, state.reason, state.result = api.SUCCEEDED, SUCCEEDED_REASON, self.message_of(task.pod)
        elif state.attempts <= task.limit:
            state.reason, state.retry_at = api.RETRY_BACKOFF, state.ends_at + task.backoff + self.clock.delay(REACT)
        else:
            state.phase, state.reason = api.FAILED, state.failure

    def trigger(self, task: TaskPlan) -> str:
        """docs/semantics.md, "Triggers": whether the trigger holds, cannot hold any more, or waits."""
        upstream = [self.tasks[name] for name in task.run_after]
        phases = {state.phase for state in upstream}
        if task.trigger == "allSucceeded" and phases & ENDED_OTHERWISE:
            return CANNOT
        if not phases <= TERMINAL:
            return WAITING
        if task.trigger != "anyFailed":
            return HOLDS
        return HOLDS if any(failed_upstream(s) for s in upstream) else CANNOT

    def skip_reason(self, task: TaskPlan) -> tuple[str, bool] | None:
        """docs/semantics.md, "Skip reasons, checked in this order": (reason, whether the docs
        state it), or None while the task may still run."""
        if any(self.broken(block) for block in task.resources):
            return api.SETUP_FAILED, True
        for block in task.resources:
            never = self.never_set_up(block)
            if never is not None:
                return never
        if self.trigger(task) == CANNOT:
            failed = any(failed_upstream(self.tasks[name]) for name in task.run_after)
            return (api.UPSTREAM_FAILED if failed else api.TRIGGER_NOT_MET), True
        return None

    def skip_tasks(self) -> bool:
        changed = False
        for task in self.open:  # the tasks not terminal when this round began
            state = self.tasks[task.name]
            skip = self.skip_reason(task) if state.phase == api.PENDING else None
            if skip is not None:
                state.phase = api.SKIPPED
                state.reason, state.reason_known = skip
                changed = True
        return changed

    def startable(self, task: TaskPlan) -> bool:
        """A Pending task that can start (docs: runAfter terminal, trigger holds, blocks Ready), or
        one whose retry backoff has passed."""
        state = self.tasks[task.name]
        if state.phase == api.RUNNING:
            return not state.in_flight and state.retry_at is not None and state.retry_at <= self.now
        if state.phase != api.PENDING or self.trigger(task) != HOLDS:
            return False
        return all(self.blocks[block].phase == api.READY for block in task.resources)

    def start_tasks(self) -> bool:
        if self.stopped:
            return False
        slots = self.plan.parallelism or len(self.plan.tasks)
        slots -= sum(1 for s in self.tasks.values() if s.in_flight)
        started = False
        for task in self.open:  # dependency order: the order slots go in
            if slots > 0 and self.startable(task):
                self.start_attempt(task, self.tasks[task.name])
                slots -= 1
                started = True
        return started

    def start_attempt(self, task: TaskPlan, state: TaskState) -> None:
        """A new pod: it fails past the task's deadline (counted from the pod's start; the operator
        then deletes it), else ends as its plan says."""
        self.mark_started()
        state.phase, state.in_flight, state.retry_at = api.RUNNING, True, None
        state.attempts += 1
        running_at = self.now + self.clock.delay(REAL_POD_START if task.pod.real else POD_START)
        runtime = self.clock.runs(task.pod.seconds)
        if task.deadline is not None and runtime > task.deadline:
            state.failure, state.ends_at = DEADLINE_EXCEEDED, running_at + task.deadline + self.clock.delay(REACT)
        else:
            state.failure = ERROR if task.pod.fails(state.attempts) else None
            state.ends_at = running_at + runtime + self.clock.delay(REACT)

    def apply_deadline(self) -> bool:
        """docs/semantics.md, "Deadlines": running tasks and tasks in backoff Fail, pending ones are
        Skipped, both RunDeadlineExceeded; nothing new starts."""
        if self.now < self.deadline_at():
            return False
        self.stopped = True
        for state in self.tasks.values():
            if state.phase == api.RUNNING:
                state.phase, state.reason, state.in_flight, state.retry_at = api.FAILED, api.STOP_DEADLINE, False, None
            elif state.phase == api.PENDING:
                state.phase, state.reason = api.SKIPPED, api.STOP_DEADLINE
        return True

    # -- blocks: setup --

    def broken(self, name: str) -> bool:
        """The block failed setup, or can no longer be set up because a block it uses did."""
        block = self.block_plans[name]
        if self.blocks[name].setup_failed:
            return True
        return self.blocks[name].phase == api.PENDING and any(self.broken(used) for used in block.uses)

    def never_set_up(self, name: str) -> tuple[str, bool] | None:
        """A Pending block a task of its runAfter did not succeed for: UpstreamFailed, or
        TriggerNotMet when that task was itself skipped by its trigger. Through a block it uses,
        the docs say no reason: the same reading, unchecked."""
        block = self.block_plans[name]
        if self.blocks[name].phase != api.PENDING:
            return None
        missed = [s for s in (self.tasks[x] for x in block.run_after) if terminal(s) and s.phase != api.SUCCEEDED]
        if missed:
            return (api.UPSTREAM_FAILED if any(failed_upstream(s) for s in missed) else api.TRIGGER_NOT_MET), True
        for used in block.uses:
            never = self.never_set_up(used)
            if never is not None:
                return never[0], False
        return None

    def wanted(self, block: BlockPlan) -> bool:
        """docs: setup starts when every runAfter task succeeded and a task of the block could start
        but for its resources, or a block nested in it is needed (and, for the start itself, every
        block it uses is Ready). A cancel or a passed run deadline prevents it."""
        if self.blocks[block.name].phase != api.PENDING or self.stopped:
            return False
        if not all(self.tasks[x].phase == api.SUCCEEDED for x in block.run_after):
            return False
        members = (self.task_plans[name] for name in self.members[block.name])
        if any(self.tasks[t.name].phase == api.PENDING and self.trigger(t) == HOLDS for t in members):
            return True
        return any(self.wanted(self.block_plans[nested]) for nested in self.nested[block.name])

    def start_setups(self) -> bool:
        started = False
        for block in self.plan.blocks:
            if self.wanted(block) and all(self.blocks[used].phase == api.READY for used in block.uses):
                self.mark_started()
                state = self.blocks[block.name]
                state.phase = api.SETTING_UP
                state.ok, seconds = self.setup_outcome(block, state)
                state.done_at = self.now + seconds
                started = True
        return started

    def replicas_valid(self, deployment: DeploymentPlan) -> bool:
        """docs: replicas from a task result or a block value must resolve to an integer 0..10000,
        else setup fails (InvalidValue) and nothing of the block is created."""
        text = substitute(deployment.replicas, self.lookup)
        return text is not None and text.isdigit() and int(text) <= 10_000

    def setup_outcome(self, block: BlockPlan, state: BlockState) -> tuple[bool, float]:
        """How the setup ends and when: all parts start together; it fails when its Job fails (after
        backoffLimit retries with the Job controller's doubling backoff), is Ready when every part
        is, and fails at setup.timeoutSeconds if not Ready by then (a Deployment that never
        becomes Ready ends there)."""
        if not all(self.replicas_valid(d) for d in block.deployments):
            # The docs say the block is SetupFailed (InvalidValue) with nothing created, not whether
            # it then counts as set up and is cleaned up (CleanedUp) or stays: its phase is unchecked.
            state.checked = False
            return False, self.clock.delay(REACT)
        ready, failures = [self.clock.delay(REACT)], list[float]()
        if block.job is not None:
            (failures if block.job.fails(0) else ready).append(self.job_seconds(block))
        for deployment in block.deployments:
            ready.append(self.clock.delay(DEPLOYMENT_READY) if deployment.pod.ready else math.inf)
        ends = min(failures, default=max(ready))
        if ends > block.setup_timeout:
            return False, block.setup_timeout + self.clock.delay(REACT)
        return not failures, ends

    def job_seconds(self, block: BlockPlan) -> float:
        assert block.job is not None
        pods = block.job_backoff_limit + 1 if block.job.fails(0) else 1
        backoffs = sum(JOB_BACKOFF_SECONDS * float(2**k) for k in range(pods - 1))
        return sum(self.clock.delay(JOB_POD) + self.clock.runs(block.job.seconds) for _ in range(pods)) + backoffs

    def finish_setups(self) -> bool:
        changed = False
        for block in self.plan.blocks:
            state = self.blocks[block.name]
            if state.phase == api.SETTING_UP and state.done_at <= self.now:
                state.phase = api.READY if state.ok else api.SETUP_FAILED
                state.setup_failed = not state.ok
                state.value = self.block_value(block) if state.ok else None
                state.done_at = math.inf
                changed = True
        return changed

    def block_value(self, block: BlockPlan) -> str | None:
        """docs/api.md, "Resource value": `value`, else the setup job's result, else the Service of
        the first deployment with ports (its name holds the namespace: unknown here), else the name."""
        if block.value is not None:
            return substitute(block.value, self.lookup)
        if block.job is not None:
            return self.message_of(block.job)
        if any(deployment.ports for deployment in block.deployments):
            return None
        return block.name

    # -- blocks: cleanup --

    def finished_block(self, name: str) -> bool:
        """Cleaned up (or failed to), or never set up and no task can need it any more."""
        state = self.blocks[name]
        if state.phase in FINISHED_BLOCK:
            return True
        if state.phase != api.PENDING:
            return False
        tasks_done = all(terminal(self.tasks[t]) for t in self.members[name])
        return tasks_done and all(self.finished_block(nested) for nested in self.nested[name])

    def start_cleanups(self) -> bool:
        """docs: cleanup starts once every task of the block is terminal and every block nested in
        it is finished, for every block whose setup started (even one that failed)."""
        changed = False
        for block in self.plan.blocks:
            state = self.blocks[block.name]
            if state.phase not in RUNNING_BLOCK:
                continue
            if all(terminal(self.tasks[t]) for t in self.members[block.name]) and all(
                self.finished_block(nested) for nested in self.nested[block.name]
            ):
                state.ok, seconds = self.cleanup_outcome(block, state)
                state.phase, state.done_at = api.CLEANING_UP, self.now + seconds
                changed = True
        return changed

    def cleanup_outcome(self, block: BlockPlan, state: BlockState) -> tuple[bool, float]:
        """docs: stop a running setup job, run the cleanup job (retries + 1 attempts, 10 s apart;
        each attempt's pods carry its number), delete what setup created; CleanupFailed when every
        attempt failed or past cleanup.timeoutSeconds."""
        seconds = self.clock.delay(REACT)
        if state.phase == api.SETTING_UP and block.job is not None:
            seconds += self.clock.delay(DELETION)
        ok = True
        if block.cleanup_job is not None:
            ok, job_seconds = self.cleanup_job_seconds(block, block.cleanup_job)
            seconds += job_seconds
        seconds += self.clock.delay(DELETION)
        if seconds > block.cleanup_timeout:
            return False, block.cleanup_timeout
        return ok, seconds

    def cleanup_job_seconds(self, block: BlockPlan, job: PodPlan) -> tuple[bool, float]:
        seconds = 0.0
        for attempt in range(1, block.cleanup_retries + 2):
            seconds += self.clock.delay(JOB_POD) + self.clock.runs(job.seconds)
            if not job.fails(attempt):
                return True, seconds
            if attempt <= block.cleanup_retries:
                seconds += api.CLEANUP_BACKOFF_SECONDS + self.clock.delay(REACT)
        return False, seconds

    def finish_cleanups(self) -> bool:
        changed = False
        for state in self.blocks.values():
            if state.phase == api.CLEANING_UP and state.done_at <= self.now:
                state.phase, state.done_at = (api.CLEANED_UP if state.ok else api.CLEANUP_FAILED), math.inf
                changed = True
        return changed

    # -- the end --

    def finished(self) -> bool:
        """docs: every task terminal and every started block CleanedUp or CleanupFailed."""
        tasks_done = all(terminal(s) for s in self.tasks.values())
        return tasks_done and all(self.finished_block(name) for name in self.blocks)

    def run_phase(self) -> str:
        """docs/semantics.md, "Final phase" (no cancel in the model)."""
        for state in self.tasks.values():
            if state.phase == api.FAILED or (state.phase == api.SKIPPED and state.reason != api.TRIGGER_NOT_MET):
                return api.FAILED
        if any(s.setup_failed or s.phase == api.CLEANUP_FAILED for s in self.blocks.values()):
            return api.FAILED
        return api.SUCCEEDED

    def ending(self) -> Ending:
        tasks = {
            name: (
                s.phase,
                s.reason if s.reason_known else None,
                s.attempts,
                s.result if s.phase == api.SUCCEEDED else None,
            )
            for name, s in self.tasks.items()
        }
        blocks = {name: (s.phase if s.checked else None) for name, s in self.blocks.items()}
        return Ending(self.run_phase(), tasks, blocks, self.now)


# --- what every play agrees on --------------------------------------------------------------------


def _common(values: Iterable[Any]) -> Any:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def merge(endings: Sequence[Ending]) -> Expected:
    """What every play agrees on: a differing phase raises Undetermined; anything else that differs
    is not checked (None)."""
    run_phases = sorted({e.phase for e in endings})
    if len(run_phases) > 1:
        raise Undetermined(f"the run's phase depends on timing: {run_phases}")
    tasks: dict[str, ExpectedTask] = {}
    for name in endings[0].tasks:
        phases = sorted({e.tasks[name][0] for e in endings})
        if len(phases) > 1:
            raise Undetermined(f"task {name}'s phase depends on timing: {phases}")
        reason, attempts, result = (_common(e.tasks[name][i] for e in endings) for i in (1, 2, 3))
        tasks[name] = ExpectedTask(phases[0], reason, attempts, result)
    blocks = {name: _common(e.blocks[name] for e in endings) for name in endings[0].blocks}
    return Expected(run_phases[0], tasks, blocks)


def plays(spec: Mapping[str, Any], reused: Mapping[str, str] | None = None, samples: int = SAMPLES) -> list[Ending]:
    """The nominal play, then (with `samples`) the quickest and the latest plays, and `samples`
    seeded plays of drawn delays."""
    plan = read_plan(spec)
    clocks = [Clock()]
    if samples:
        clocks += [Clock(fast=1.0), Clock(slow=1.0)]
        clocks += [Clock.drawn(random.Random(f"soak-model/{sample}")) for sample in range(samples)]
    return [Play(plan, reused or {}, clock).play() for clock in clocks]


def expect(spec: Mapping[str, Any], *, reused: Mapping[str, str] | None = None, samples: int = SAMPLES) -> Expected:
    """The expected outcome of a FlowRun executing `spec` (its own tasks); `reused` gives, for a
    rerun, each task the original Succeeded in and its result (docs: Succeeded, reason Reused,
    attempts 0, the original's result; every other task runs again from attempt 1). Raises
    Undetermined when a phase depends on timing. Fewer `samples` for a spec whose outcome cannot
    depend on timing (independent tasks) and is costly to play many times (hundreds of tasks)."""
    return merge(plays(spec, reused, samples))


def nominal_seconds(spec: Mapping[str, Any], *, reused: Mapping[str, str] | None = None) -> float:
    """How long the run takes on the dev cluster absent faults, in the model's nominal play."""
    return plays(spec, reused, samples=0)[0].seconds
