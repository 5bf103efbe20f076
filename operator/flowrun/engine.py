"""The pure, level-triggered reconciler of a FlowRun (DESIGN sections 3 and 4).

`reconcile(run, observed, now)` derives everything from the FlowRun (spec and its own previous
status) and the children that exist now; it does no I/O and reads no clock. It never raises.

How a pass works:

1. The previous status is read leniently and merged with what is observed (attempt numbers come
   from pod labels too, a block whose objects exist is at least SettingUp), so a lost or garbage
   status never makes the engine reuse a name or create a duplicate.
2. State transitions are applied until nothing changes any more (a fixpoint), so one pass takes
   every decision the inputs allow and a repeated pass with the recorded status takes none.
3. Actions are then derived from the final state and the observed children only ("this pod
   should exist and does not: create it"; "this pod should not run and does: delete it"), which
   makes every action idempotent and safe to repeat after a crash.
4. Events are the differences between the previous and the new status: one per transition, and
   none on a repeated pass.

Semantics chosen where DESIGN.md leaves room (for the user docs to repeat):

* Triggers. An upstream counts as failed if it is Failed or Cancelled, or Skipped for any reason
  but TriggerNotMet. `allSucceeded` runs when every upstream Succeeded; it is skipped as soon as
  one upstream ended otherwise, with reason UpstreamFailed if one failed, else TriggerNotMet (a
  skip by trigger design propagates as such and does not fail the run). `allDone` runs when every
  upstream is terminal. `anyFailed` runs when every upstream is terminal and one failed, else it
  is skipped with TriggerNotMet. A resource's `runAfter` behaves like `allSucceeded`.
* Results. `$(tasks.X.result)` is X's result if X succeeded, else the empty string.
* Retries wait `backoffSeconds` after a failed attempt (a constant delay); cleanup jobs wait
  CLEANUP_BACKOFF_SECONDS. The task deadline counts from the attempt's pod start time.
* The run deadline counts from the run's start. Running tasks then fail and pending ones are
  skipped, both with reason RunDeadlineExceeded; cleanup continues under its own deadline.
* A resource referencing another resource's value or services (resource `uses`) is set up after
  it and cleaned up before it, like nested `with` blocks.
* Cleanup: stop a still-running setup job, run the cleanup job attempts, then delete everything
  setup created and wait until it and the block's pods are gone. A cleanup job that fails every
  attempt still gets the objects deleted, then the block is CleanupFailed. A block that never
  became Ready hands its cleanup what value is known, else the setup job's termination message
  (e.g. the id of a half-created VM), else the empty string.
* Deletion: the finalizer may go once the run is finished, no block is CleanupFailed and no pod
  of the run is still running; the skip-cleanup annotation releases it at once.
* Phase: Cancelled if spec.cancel was set before the run finished or a task was cancelled (also
  when a cleanup then failed: ResourcesReleased=False shows the leak); else Failed if a task
  failed or a cleanup failed; else Succeeded. A phase is final only once every task is terminal
  and every started block is cleaned up (or failed to be). Succeeded=False names the first reason
  that applies: DeadlineExceeded, TasksFailed, SetupFailed, CleanupFailed (or Cancelled).
* A task between two attempts stays Running with reason RetryBackoff and holds no parallelism
  slot; its message says why the previous attempt failed.
* A create the API server refused for good (RunInput.refused, recorded by the handler in the
  previous pass) is a failure of what waited for it, never a silent wait: a task pod fails its
  attempt (CreateRefused, then retries as usual), a setup object fails setup (SetupFailed,
  CreateRefused), a cleanup job fails its cleanup attempt. Only an object that is still absent
  counts: one observed since is no longer refused.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from flowrun import api, manifests, names
from flowrun.model import (
    DeploymentSpec,
    FlowSpec,
    ResourceSpec,
    RunIdentity,
    SpecError,
    TaskSpec,
    main_container_name,
    parse_spec,
)
from flowrun.observed import Observed, ObservedJob, ObservedPod, Terminated
from flowrun.references import Context, substitute
from flowrun.timestamps import format_time, parse_time

# Task phases
PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELLED = (
    "Pending",
    "Running",
    "Succeeded",
    "Failed",
    "Skipped",
    "Cancelled",
)
TASK_PHASES = (PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELLED)
TERMINAL = (SUCCEEDED, FAILED, SKIPPED, CANCELLED)
RUN_FINAL = (SUCCEEDED, FAILED, CANCELLED)

# Resource phases
SETTING_UP, READY, SETUP_FAILED = "SettingUp", "Ready", "SetupFailed"
CLEANING_UP, CLEANED_UP, CLEANUP_FAILED = "CleaningUp", "CleanedUp", "CleanupFailed"
RESOURCE_PHASES = (PENDING, SETTING_UP, READY, SETUP_FAILED, CLEANING_UP, CLEANED_UP, CLEANUP_FAILED)

# Reasons a task is skipped or stopped
UPSTREAM_FAILED, TRIGGER_NOT_MET = "UpstreamFailed", "TriggerNotMet"
STOP_CANCELLED, STOP_DELETED, STOP_DEADLINE = "Cancelled", "FlowRunDeleted", "RunDeadlineExceeded"

# Reasons of a task that is not terminal. Running/PodCreating: created, not observed yet.
# Running/RetryBackoff: between attempts, no pod should run.
POD_CREATING, POD_PENDING, POD_RUNNING = "PodCreating", "PodPending", "PodRunning"
RETRY_BACKOFF = "RetryBackoff"
WAITING_UPSTREAM, WAITING_RESOURCES, WAITING_PARALLELISM = (
    "WaitingForUpstream",
    "WaitingForResources",
    "WaitingForParallelism",
)

# Steps of a block in CleaningUp, kept in its `reason`.
STOPPING_SETUP, CLEANUP_JOB_RUNNING, CLEANUP_JOB_BACKOFF, DELETING_OBJECTS = (
    "StoppingSetup",
    "CleanupJobRunning",
    "CleanupJobBackoff",
    "DeletingObjects",
)
CLEANUP_STEPS = (STOPPING_SETUP, CLEANUP_JOB_RUNNING, CLEANUP_JOB_BACKOFF, DELETING_OBJECTS)
NOT_NEEDED = "NotNeeded"
CREATE_REFUSED = "CreateRefused"  # the API server refused to create a child, for good
INVALID_SPEC = "InvalidSpec"
CLEANUP_BLOCKED = "CleanupBlocked"  # deleting, a cleanup failed: the finalizer stays

CLEANUP_BACKOFF_SECONDS = 10
RESULT_LIMIT = 4096  # bytes: the kubelet's limit on a termination message
LOG_TAIL_LINES = 100
DRY_RUN_PLACEHOLDER = "flowrun-dry-run-placeholder"
SPEC_VALID_PARSED, SPEC_VALID_VALIDATED = "Parsed", "Validated"


# ---------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True)
class RunInput:
    name: str
    namespace: str
    uid: str
    spec: Any  # the raw spec: the engine parses it so that a bad spec becomes a status
    status: Any = field(default_factory=dict)  # the previous status: may be empty or garbage
    generation: int = 0
    deleting: bool = False  # metadata.deletionTimestamp is set
    skip_cleanup: bool = False  # annotation flowrun.dev/skip-cleanup == "true"
    created_at: datetime | None = None
    # Set by the handler when the ValidateObjects dry run was rejected by the API server.
    dry_run_error: str | None = None
    # "Kind/name" -> why the API server refused to create that child in the previous pass, for a
    # reason that does not go away by itself (Invalid, Forbidden, a foreign object holding the
    # name, an unknown kind). Transient errors never appear here: those creates are just retried.
    refused: Mapping[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> RunIdentity:
        return RunIdentity(self.name, self.namespace, self.uid)


def run_input_from_object(
    body: Mapping[str, Any], dry_run_error: str | None = None, refused: Mapping[str, str] | None = None
) -> RunInput:
    """RunInput from a FlowRun object as the API returns it."""
    metadata = _map(body.get("metadata"))
    annotations = _map(metadata.get("annotations"))
    generation = metadata.get("generation")
    return RunInput(
        name=str(metadata.get("name") or ""),
        namespace=str(metadata.get("namespace") or ""),
        uid=str(metadata.get("uid") or ""),
        spec=body.get("spec"),
        status=body.get("status") or {},
        generation=generation if isinstance(generation, int) else 0,
        deleting=bool(metadata.get("deletionTimestamp")),
        skip_cleanup=annotations.get(api.SKIP_CLEANUP_ANNOTATION) == "true",
        created_at=parse_time(metadata.get("creationTimestamp")),
        dry_run_error=dry_run_error,
        refused=dict(refused or {}),
    )


@dataclass(frozen=True)
class ValidateObjects:
    """Server-side dry run of every child (references filled with placeholders), applied before
    anything else in the list. On rejection (Invalid, Forbidden, unknown kind; not a transient
    error) the handler applies none of the other actions and reconciles again with
    RunInput.dry_run_error = f"{fields[i]}: {the API server's message}". AlreadyExists is success."""

    manifests: tuple[dict[str, Any], ...]
    fields: tuple[str, ...]  # fields[i]: the spec field manifests[i] is built from


@dataclass(frozen=True)
class CreateObject:
    """Create if absent: AlreadyExists is success."""

    manifest: dict[str, Any]


@dataclass(frozen=True)
class CaptureLogs:
    """Read the last `tail_lines` lines of a task pod's container and store them in
    status.tasks[task].logs (or a note saying why they are unavailable, so it is not retried).
    Always listed before a DeleteObject of the same pod."""

    task: str
    pod_name: str
    container: str
    tail_lines: int = LOG_TAIL_LINES


@dataclass(frozen=True)
class DeleteObject:
    """Delete; NotFound is success."""

    api_version: str
    kind: str
    name: str
    propagation: str = "Background"


@dataclass(frozen=True)
class DeleteFlowRun:
    """ttlSecondsAfterFinished has passed: delete the FlowRun itself."""


Action = ValidateObjects | CreateObject | CaptureLogs | DeleteObject | DeleteFlowRun


class Event(NamedTuple):
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """The result of one pass. `status` is the complete new status: every key is always present,
    None where unset, so writing it as a JSON merge patch also clears what no longer applies.
    Actions are applied in order; the handler then writes `status` (plus captured logs)."""

    status: dict[str, Any]
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    finalizer_releasable: bool = False
    done: bool = False


# ---------------------------------------------------------------------------------------------
# Internal state: the status as typed, mutable records.


@dataclass
class TaskState:
    phase: str = PENDING
    reason: str = ""
    message: str = ""
    attempts: int = 0
    pod_name: str | None = None
    exit_code: int | None = None  # of the main container of the latest finished attempt
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: str | None = None
    logs: str | None = None
    next_attempt_at: datetime | None = None


@dataclass
class ResourceState:
    phase: str = PENDING
    reason: str = ""
    message: str = ""
    value: str | None = None
    objects: list[str] = field(default_factory=list)
    setup_started_at: datetime | None = None
    ready_at: datetime | None = None
    cleanup_started_at: datetime | None = None
    cleaned_up_at: datetime | None = None
    cleanup_attempts: int = 0
    next_cleanup_attempt_at: datetime | None = None
    setup_error: str | None = None  # why setup failed: kept through cleanup
    cleanup_error: str | None = None  # why cleanup failed, as soon as it is known


@dataclass
class _State:
    tasks: dict[str, TaskState]
    resources: dict[str, ResourceState]
    phase: str = PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None


def _map(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _load_task(raw: object) -> TaskState:
    raw = _map(raw)
    phase = raw.get("phase")
    return TaskState(
        phase=phase if phase in TASK_PHASES else PENDING,
        reason=_str(raw.get("reason")),
        message=_str(raw.get("message")),
        attempts=_count(raw.get("attempts")),
        pod_name=_opt_str(raw.get("podName")),
        exit_code=raw.get("exitCode") if isinstance(raw.get("exitCode"), int) else None,
        started_at=parse_time(raw.get("startedAt")),
        finished_at=parse_time(raw.get("finishedAt")),
        result=_opt_str(raw.get("result")),
        logs=_opt_str(raw.get("logs")),
        next_attempt_at=parse_time(raw.get("nextAttemptAt")),
    )


def _load_resource(raw: object) -> ResourceState:
    raw = _map(raw)
    phase = raw.get("phase")
    objects = raw.get("objects")
    state = ResourceState(
        phase=phase if phase in RESOURCE_PHASES else PENDING,
        reason=_str(raw.get("reason")),
        message=_str(raw.get("message")),
        value=_opt_str(raw.get("value")),
        objects=[o for o in objects if isinstance(o, str)] if isinstance(objects, list) else [],
        setup_started_at=parse_time(raw.get("setupStartedAt")),
        ready_at=parse_time(raw.get("readyAt")),
        cleanup_started_at=parse_time(raw.get("cleanupStartedAt")),
        cleaned_up_at=parse_time(raw.get("cleanedUpAt")),
        cleanup_attempts=_count(raw.get("cleanupAttempts")),
        next_cleanup_attempt_at=parse_time(raw.get("nextCleanupAttemptAt")),
        setup_error=_opt_str(raw.get("setupError")),
        cleanup_error=_opt_str(raw.get("cleanupError")),
    )
    if state.phase == CLEANING_UP and state.reason not in CLEANUP_STEPS:
        state.reason = STOPPING_SETUP  # unknown step: start over, every step is idempotent
    return state


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else format_time(moment)


def _dump_task(state: TaskState) -> dict[str, Any]:
    # Every key is always present (None when unset) so a merge patch of the status also clears.
    return {
        "phase": state.phase,
        "reason": state.reason,
        "message": state.message,
        "attempts": state.attempts,
        "podName": state.pod_name,
        "exitCode": state.exit_code,
        "startedAt": _time(state.started_at),
        "finishedAt": _time(state.finished_at),
        "result": state.result,
        "logs": state.logs,
        "nextAttemptAt": _time(state.next_attempt_at),
    }


def _dump_resource(state: ResourceState) -> dict[str, Any]:
    return {
        "phase": state.phase,
        "reason": state.reason,
        "message": state.message,
        "value": state.value,
        "objects": list(state.objects),
        "setupStartedAt": _time(state.setup_started_at),
        "readyAt": _time(state.ready_at),
        "cleanupStartedAt": _time(state.cleanup_started_at),
        "cleanedUpAt": _time(state.cleaned_up_at),
        "cleanupAttempts": state.cleanup_attempts,
        "nextCleanupAttemptAt": _time(state.next_cleanup_attempt_at),
        "setupError": state.setup_error,
        "cleanupError": state.cleanup_error,
    }


def _is_failure(state: TaskState) -> bool:
    """Failed, Cancelled, or skipped for any reason but the trigger's design."""
    return state.phase in (FAILED, CANCELLED) or (state.phase == SKIPPED and state.reason != TRIGGER_NOT_MET)


def _result(term: Terminated | None) -> tuple[str, str]:
    """(result, note) from a container's termination message, capped at the kubelet's 4 KiB."""
    message = term.message if term is not None else ""
    raw = message.encode()
    if len(raw) < RESULT_LIMIT:
        return message, ""
    result = raw[:RESULT_LIMIT].decode(errors="ignore")
    return result, "result reached the 4 KiB termination-message limit and may be truncated"


def _container(pod: ObservedPod, name: str) -> Terminated | None:
    status = next((c for c in pod.containers if c.name == name), None)
    if status is None and pod.containers:
        status = pod.containers[0]
    return None if status is None else status.terminated


# ---------------------------------------------------------------------------------------------
# Observed children of this run, indexed.


@dataclass(frozen=True)
class _ObjectRef:
    api_version: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.name}"


def _group(api_version: str) -> str:
    return api_version.split("/")[0] if "/" in api_version else ""


def _label_int(labels: Mapping[str, str], key: str) -> int:
    value = labels.get(key, "")
    return int(value) if value.isascii() and value.isdigit() else 0


class _Children:
    """The observed children that carry this run's UID label, indexed for lookups."""

    def __init__(self, observed: Observed, uid: str) -> None:
        def mine(labels: Mapping[str, str]) -> bool:
            return labels.get(api.LABEL_UID) == uid

        self.pods = [p for p in observed.pods if mine(p.labels)]
        self.jobs = {j.name: j for j in observed.jobs if mine(j.labels)}
        self._task_pods: dict[str, list[ObservedPod]] = {}
        for pod in self.pods:
            if pod.labels.get(api.LABEL_ROLE) == api.ROLE_TASK:
                self._task_pods.setdefault(pod.labels.get(api.LABEL_TASK, ""), []).append(pod)
        self._by_kind: dict[tuple[str, str], dict[str, Any]] = {
            ("", "Pod"): {p.name: p for p in self.pods},
            ("batch", "Job"): self.jobs,
            ("apps", "Deployment"): {d.name: d for d in observed.deployments if mine(d.labels)},
            ("", "Service"): {s.name: s for s in observed.services if mine(s.labels)},
        }
        self._others = {(_group(o.api_version), o.kind, o.name): o for o in observed.others if mine(o.labels)}

    def find(self, ref: _ObjectRef) -> Any | None:
        key = (_group(ref.api_version), ref.kind)
        if key in self._by_kind:
            return self._by_kind[key].get(ref.name)
        return self._others.get((key[0], ref.kind, ref.name))

    def pod(self, name: str | None) -> ObservedPod | None:
        return self._by_kind[("", "Pod")].get(name) if name else None

    def task_pods(self) -> list[ObservedPod]:
        return [p for pods in self._task_pods.values() for p in pods]

    def max_attempt(self, task: str) -> int:
        return max((_label_int(p.labels, api.LABEL_ATTEMPT) for p in self._task_pods.get(task, ())), default=0)

    def max_cleanup_attempt(self, resource: str) -> int:
        return max(
            (
                _label_int(j.labels, api.LABEL_ATTEMPT)
                for j in self.jobs.values()
                if j.labels.get(api.LABEL_ROLE) == api.ROLE_CLEANUP and j.labels.get(api.LABEL_RESOURCE) == resource
            ),
            default=0,
        )

    def job_pods(self, job: str) -> list[ObservedPod]:
        return [p for p in self.pods if job in (p.labels.get("batch.kubernetes.io/job-name"), p.labels.get("job-name"))]

    def block_pods(self, resource: str) -> list[ObservedPod]:
        """Pods setup created for a block (setup job pods, deployment pods)."""
        return [
            p
            for p in self.pods
            if p.labels.get(api.LABEL_ROLE) == api.ROLE_SETUP and p.labels.get(api.LABEL_RESOURCE) == resource
        ]

    def has_block_objects(self, resource: str, role: str) -> bool:
        objects = [*self.pods, *self.jobs.values(), *self._by_kind[("apps", "Deployment")].values()]
        objects += [*self._by_kind[("", "Service")].values(), *self._others.values()]
        return any(
            o.labels.get(api.LABEL_ROLE) == role and o.labels.get(api.LABEL_RESOURCE) == resource for o in objects
        )


# ---------------------------------------------------------------------------------------------
# The reconciler


def reconcile(run: RunInput, observed: Observed, now: datetime) -> Outcome:
    """One level-triggered pass: see the module docstring. Never raises."""
    try:
        return _reconcile(run, observed, now)
    except Exception as err:
        message = f"internal error in the flowrun engine: {type(err).__name__}: {err}"
        status = {**_map(run.status), "message": message}
        return Outcome(status=status, events=(Event("Warning", "InternalError", message),), requeue_after=60.0)


def _reconcile(run: RunInput, observed: Observed, now: datetime) -> Outcome:
    now = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    prev = _map(run.status)
    spec_valid = _map(_prev_conditions(prev).get("SpecValid"))
    if spec_valid.get("status") == "False":
        # A rejected spec stays rejected: the run never started and never will.
        return _invalid(run, prev, now, _str(spec_valid.get("message")))
    try:
        spec = parse_spec(run.spec, run.namespace)
    except SpecError as err:
        return _invalid(run, prev, now, str(err))
    if run.dry_run_error is not None:
        return _invalid(run, prev, now, f"the API server rejected a child: {run.dry_run_error}")
    return _Engine(run, spec, observed, now).outcome(prev)


def _condition(
    prev: Mapping[str, Any], kind: str, status: str, reason: str, message: str, now: datetime, generation: int
) -> dict[str, Any]:
    """A metav1.Condition whose lastTransitionTime only moves when its status changes."""
    old = _map(_map(prev).get(kind))
    since = (
        old.get("lastTransitionTime")
        if old.get("status") == status and parse_time(old.get("lastTransitionTime"))
        else None
    )
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or format_time(now),
        "observedGeneration": generation,
    }


def _prev_conditions(prev: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    conditions = prev.get("conditions")
    return (
        {_str(c.get("type")): c for c in conditions if isinstance(c, Mapping)} if isinstance(conditions, list) else {}
    )


def _invalid(run: RunInput, prev: Mapping[str, Any], now: datetime, message: str) -> Outcome:
    """A spec that cannot run: Failed, SpecValid=False, nothing created, finalizer free to go."""
    conds = _prev_conditions(prev)
    gen = run.generation
    tasks = _map(run.spec).get("tasks")
    finished = parse_time(prev.get("finishedAt")) if prev.get("phase") == FAILED else None
    status: dict[str, Any] = {
        "phase": FAILED,
        "startedAt": None,
        "finishedAt": format_time(finished or now),
        "duration": None,
        "observedGeneration": gen,
        "progress": f"0/{len(tasks) if isinstance(tasks, list) else 0}",
        "message": message,
        "conditions": [
            _condition(conds, "Succeeded", "False", INVALID_SPEC, message, now, gen),
            _condition(conds, "ResourcesReleased", "True", "NothingToRelease", "nothing was created", now, gen),
            _condition(conds, "SpecValid", "False", INVALID_SPEC, message, now, gen),
        ],
        "tasks": {},
        "resources": {},
    }
    was_invalid = _map(conds.get("SpecValid")).get("status") == "False"
    events = () if was_invalid else (Event("Warning", INVALID_SPEC, message),)
    return Outcome(status=status, events=events, finalizer_releasable=run.deleting, done=True)


class _Engine:
    def __init__(self, run: RunInput, spec: FlowSpec, observed: Observed, now: datetime) -> None:
        self.run = run
        self.spec = spec
        self.identity = run.identity
        # Decisions use whole seconds, the precision of status timestamps, so that a pass fed
        # its own status decides exactly as the pass that wrote it.
        self.real_now = now
        self.now = now.replace(microsecond=0)
        self.children = _Children(observed, run.uid)
        self.order = spec.task_order()
        self.resource_order = _resource_order(spec)

    # -- loading -------------------------------------------------------------------------------

    def load(self, prev: Mapping[str, Any]) -> _State:
        raw_tasks, raw_resources = _map(prev.get("tasks")), _map(prev.get("resources"))
        phase = _str(prev.get("phase"))
        state = _State(
            tasks={t.name: _load_task(raw_tasks.get(t.name)) for t in self.spec.tasks},
            resources={r.name: _load_resource(raw_resources.get(r.name)) for r in self.spec.resources},
            phase=phase if phase in (PENDING, RUNNING, *RUN_FINAL) else PENDING,
            started_at=parse_time(prev.get("startedAt")),
            finished_at=parse_time(prev.get("finishedAt")),
        )
        for task in self.spec.tasks:
            self._recover_task(task, state.tasks[task.name], state)
        for resource in self.spec.resources:
            self._recover_resource(resource, state.resources[resource.name], state)
        return state

    def _recover_task(self, task: TaskSpec, ts: TaskState, state: _State) -> None:
        """Align a task with its observed pods, so that a lost or garbage status neither reuses
        an attempt's name nor loses a pod that exists."""
        observed_attempt = self.children.max_attempt(task.name)
        if ts.phase in TERMINAL:
            ts.attempts = max(ts.attempts, observed_attempt)
            return
        if ts.phase == RUNNING and ts.attempts == 0:
            ts.phase, ts.reason = PENDING, ""  # garbage: running without an attempt
        if ts.phase == PENDING and ts.attempts:
            ts.phase, ts.reason, ts.next_attempt_at = RUNNING, RETRY_BACKOFF, None  # garbage: go to the next attempt
        if observed_attempt > ts.attempts:
            # A pod of an attempt status does not know: the observe step judges it.
            pod = self.children.pod(names.task_pod_name(self.run.name, task.name, observed_attempt))
            ts.attempts = observed_attempt
            ts.phase, ts.reason, ts.next_attempt_at = RUNNING, POD_CREATING, None
            ts.started_at = ts.started_at or (pod.start_time if pod is not None else None) or self.now
            state.started_at = state.started_at or ts.started_at
        if ts.attempts:
            ts.pod_name = names.task_pod_name(self.run.name, task.name, ts.attempts)

    def _recover_resource(self, resource: ResourceSpec, rs: ResourceState, state: _State) -> None:
        """A block status does not know about but whose objects exist was started before."""
        if rs.phase != PENDING:
            return
        if self.children.has_block_objects(resource.name, api.ROLE_CLEANUP):
            rs.phase, rs.reason = CLEANING_UP, CLEANUP_JOB_RUNNING
            rs.cleanup_attempts = max(1, self.children.max_cleanup_attempt(resource.name))
            rs.setup_started_at = rs.cleanup_started_at = self.now
        elif self.children.has_block_objects(resource.name, api.ROLE_SETUP):
            rs.phase, rs.reason, rs.setup_started_at = SETTING_UP, SETTING_UP, self.now
        else:
            return
        rs.objects = [str(ref) for ref in self._setup_objects(resource)]
        state.started_at = state.started_at or self.now

    # -- one step ------------------------------------------------------------------------------

    def step(self, before: _State) -> _State:
        state = copy.deepcopy(before)
        stop = self._stop_reason(state)
        for resource in self.resource_order:
            rs = state.resources[resource.name]
            if rs.phase == SETTING_UP:
                self._progress_setup(resource, rs, state)
            elif rs.phase == CLEANING_UP:
                self._progress_cleanup(resource, rs)
        live = self._live_pods(state)
        for task in self.order:
            self._advance_task(task, state, stop, live)
        for resource in self.resource_order:
            self._schedule_resource(resource, state, stop)
        self._update_run(state)
        return state

    def _stop_reason(self, state: _State) -> str | None:
        if self.run.deleting:
            return STOP_DELETED
        if self.spec.cancel:
            return STOP_CANCELLED
        deadline = self._run_deadline(state)
        if deadline is not None and self.now >= deadline:
            return STOP_DEADLINE
        return None

    def _run_deadline(self, state: _State) -> datetime | None:
        base = state.started_at or self.run.created_at
        if self.spec.active_deadline_seconds is None or base is None:
            return None
        return base + timedelta(seconds=self.spec.active_deadline_seconds)

    def _live_pods(self, state: _State) -> set[str]:
        """Task pods that hold a parallelism slot: expected to run, or still running."""
        return _expected_pods(state) | {p.name for p in self.children.task_pods() if not p.finished}

    def _advance_task(self, task: TaskSpec, state: _State, stop: str | None, live: set[str]) -> None:
        ts = state.tasks[task.name]
        backoff = ts.phase == RUNNING and ts.reason == RETRY_BACKOFF
        if ts.phase == RUNNING and not backoff:
            self._observe_attempt(task, ts, stop)
        if ts.phase in TERMINAL:
            return
        if stop is not None:
            self._stop_task(ts, stop)
            return
        if backoff:
            if ts.next_attempt_at is not None and self.now < ts.next_attempt_at:
                return
        elif ts.phase == RUNNING:
            return
        else:
            skip = self._skip_reason(task, state)
            if skip is not None:
                ts.phase, (ts.reason, ts.message), ts.finished_at = SKIPPED, skip, self.now
                return
            if self._trigger(task, state) != "go":
                waiting_for = [u for u in task.run_after if state.tasks[u].phase not in TERMINAL]
                ts.reason, ts.message = WAITING_UPSTREAM, "waiting for " + ", ".join(waiting_for)
                return
        waiting = [r for r in task.resources if state.resources[r].phase != READY]
        full = self.spec.parallelism is not None and len(live) >= self.spec.parallelism
        if backoff and (waiting or full):
            return  # the next attempt goes as soon as it can; the reason stays RetryBackoff
        if waiting:
            ts.reason, ts.message = WAITING_RESOURCES, "waiting for resources " + ", ".join(waiting)
            return
        if full:
            ts.reason, ts.message = WAITING_PARALLELISM, f"waiting for a slot (parallelism {self.spec.parallelism})"
            return
        ts.attempts += 1
        ts.pod_name = names.task_pod_name(self.run.name, task.name, ts.attempts)
        ts.phase, ts.reason, ts.next_attempt_at = RUNNING, POD_CREATING, None
        if ts.attempts == 1:
            ts.message = ""
        ts.started_at = ts.started_at or self.now
        state.started_at = state.started_at or self.now
        live.add(ts.pod_name)

    def _observe_attempt(self, task: TaskSpec, ts: TaskState, stop: str | None) -> None:
        pod = self.children.pod(ts.pod_name)
        if pod is None:
            refusal = self._refusal(_ObjectRef("v1", "Pod", ts.pod_name or ""))
            if ts.reason == POD_CREATING and refusal is not None:
                # Without this the task would wait for its pod forever (or until the run deadline).
                self._attempt_failed(task, ts, CREATE_REFUSED, refusal, self.now, stop)
            elif ts.reason != POD_CREATING:
                self._attempt_failed(task, ts, "PodDeleted", f"pod {ts.pod_name} disappeared", self.now, stop)
            return
        term = _container(pod, main_container_name(task.template))
        finished = (term.finished_at if term is not None else None) or self.now
        if pod.finished and term is not None:
            ts.exit_code = term.exit_code
        if pod.phase == "Succeeded":
            ts.result, note = _result(term)
            ts.phase, ts.reason, ts.message, ts.finished_at = SUCCEEDED, "Succeeded", note, finished
        elif pod.phase == "Failed":
            reason = pod.reason or (term.reason if term is not None and term.reason else "PodFailed")
            details = [f"exit code {term.exit_code}"] if term is not None else []
            details += [m for m in (pod.message, term.message if term is not None else "") if m]
            self._attempt_failed(task, ts, reason, "; ".join(details) or "pod failed", finished, stop)
        elif (
            task.active_deadline_seconds is not None
            and pod.start_time is not None
            and self.now >= pod.start_time + timedelta(seconds=task.active_deadline_seconds)
        ):
            # No attempt number here: _attempt_failed adds it where it says which attempt failed.
            message = f"ran longer than activeDeadlineSeconds={task.active_deadline_seconds}"
            self._attempt_failed(task, ts, "DeadlineExceeded", message, self.now, stop)
        else:
            ts.reason = POD_RUNNING if pod.phase == "Running" else POD_PENDING
            ts.message = "pod is being deleted" if pod.deleting else (pod.message or ts.message)

    def _attempt_failed(
        self, task: TaskSpec, ts: TaskState, reason: str, message: str, finished: datetime, stop: str | None
    ) -> None:
        if ts.attempts < 1 + task.retries.limit and stop is None:
            delay = task.retries.backoff_seconds
            # The message stays while the next attempt runs: it says why there is a next attempt.
            ts.reason, ts.message = RETRY_BACKOFF, f"attempt {ts.attempts} failed ({reason}: {message})"
            ts.next_attempt_at = finished.replace(microsecond=0) + timedelta(seconds=delay)
        else:
            prefix = f"attempt {ts.attempts}: " if ts.attempts > 1 else ""
            ts.phase, ts.reason, ts.message, ts.finished_at = FAILED, reason, prefix + message, finished

    def _stop_task(self, ts: TaskState, stop: str) -> None:
        if stop == STOP_DEADLINE:
            ts.phase = FAILED if ts.attempts else SKIPPED
            ts.message = f"the run's activeDeadlineSeconds={self.spec.active_deadline_seconds} was exceeded"
        else:
            ts.phase = CANCELLED
            ts.message = "the run was cancelled" if stop == STOP_CANCELLED else "the FlowRun is being deleted"
        ts.reason, ts.finished_at, ts.next_attempt_at = stop, self.now, None

    def _trigger(self, task: TaskSpec, state: _State) -> str | tuple[str, str]:
        """ "go", "wait", or (skip reason, message)."""
        ups = [(u, state.tasks[u]) for u in task.run_after]
        ended = [(u, s) for u, s in ups if s.phase in TERMINAL]
        failed = [u for u, s in ended if _is_failure(s)]
        if task.trigger == "allSucceeded":
            if all(s.phase == SUCCEEDED for _, s in ups):
                return "go"
            if failed:
                return UPSTREAM_FAILED, f"upstream {failed[0]} did not succeed ({state.tasks[failed[0]].phase})"
            skipped = [u for u, s in ended if s.phase != SUCCEEDED]
            if skipped:
                return TRIGGER_NOT_MET, f"allSucceeded: upstream {skipped[0]} was skipped"
            return "wait"
        if len(ended) < len(ups):
            return "wait"
        if task.trigger == "allDone" or failed:
            return "go"
        return TRIGGER_NOT_MET, "anyFailed: no upstream failed"

    def _skip_reason(self, task: TaskSpec, state: _State) -> tuple[str, str] | None:
        for name in task.resources:
            rs = state.resources[name]
            if rs.phase in (SETUP_FAILED, CLEANING_UP, CLEANED_UP, CLEANUP_FAILED):
                return SETUP_FAILED, f"resource {name} is not available ({rs.phase}: {rs.message})"
            blocked = self._blocked(self.spec.resource(name), state)
            if blocked is not None:
                return blocked
        trigger = self._trigger(task, state)
        return trigger if isinstance(trigger, tuple) else None

    def _consumers(self, resource: ResourceSpec) -> list[ResourceSpec]:
        return [r for r in self.spec.resources if resource.name in r.uses]

    def _blocked(self, resource: ResourceSpec, state: _State) -> tuple[str, str] | None:
        """Why a Pending block can never be set up, as a skip reason for its tasks; else None."""
        if state.resources[resource.name].phase != PENDING:
            return None
        for name in resource.run_after:
            upstream = state.tasks[name]
            if upstream.phase in TERMINAL and upstream.phase != SUCCEEDED:
                reason = UPSTREAM_FAILED if _is_failure(upstream) else TRIGGER_NOT_MET
                return reason, f"resource {resource.name} runs after {name}, which ended {upstream.phase}"
        for name in resource.uses:
            dependency = state.resources[name]
            if dependency.phase not in (PENDING, SETTING_UP, READY):
                return SETUP_FAILED, f"resource {resource.name} uses resource {name}, which is {dependency.phase}"
            blocked = self._blocked(self.spec.resource(name), state)
            if blocked is not None:
                return blocked
        return None

    def _consumers_done(self, resource: ResourceSpec, state: _State) -> bool:
        return all(state.tasks[t.name].phase in TERMINAL for t in self.spec.users_of(resource.name)) and all(
            self._final(c, state) for c in self._consumers(resource)
        )

    def _final(self, resource: ResourceSpec, state: _State) -> bool:
        phase = state.resources[resource.name].phase
        return phase in (CLEANED_UP, CLEANUP_FAILED) or (phase == PENDING and self._consumers_done(resource, state))

    def _wanted(self, resource: ResourceSpec, state: _State) -> bool:
        """Some consumer could start now if this block were Ready (DESIGN 3.2)."""
        for task in self.spec.users_of(resource.name):
            ts = state.tasks[task.name]
            if ts.phase == PENDING and ts.attempts == 0 and self._trigger(task, state) == "go":
                return True
        return any(
            state.resources[c.name].phase == PENDING and self._after_succeeded(c, state) and self._wanted(c, state)
            for c in self._consumers(resource)
        )

    def _after_succeeded(self, resource: ResourceSpec, state: _State) -> bool:
        return all(state.tasks[u].phase == SUCCEEDED for u in resource.run_after)

    def _schedule_resource(self, resource: ResourceSpec, state: _State, stop: str | None) -> None:
        rs = state.resources[resource.name]
        if rs.phase == PENDING:
            if self._consumers_done(resource, state):
                rs.reason, rs.message = NOT_NEEDED, "no task needed it: never set up"
            elif (
                stop is None
                and self._blocked(resource, state) is None
                and self._after_succeeded(resource, state)
                and all(state.resources[d].phase == READY for d in resource.uses)
                and self._wanted(resource, state)
            ):
                rs.phase, rs.reason, rs.message, rs.setup_started_at = SETTING_UP, SETTING_UP, "", self.now
                rs.objects = [str(ref) for ref in self._setup_objects(resource)]
                state.started_at = state.started_at or self.now
        elif rs.phase in (SETTING_UP, READY, SETUP_FAILED) and self._consumers_done(resource, state):
            if rs.value is None:
                rs.value = self._fallback_value(resource, state)
            rs.phase, rs.reason, rs.cleanup_started_at = CLEANING_UP, STOPPING_SETUP, self.now
            rs.message = _with_setup_error(rs, "cleaning up")

    def _setup_objects(self, resource: ResourceSpec) -> list[_ObjectRef]:
        run = self.run.name
        refs: list[_ObjectRef] = []
        if resource.setup.job is not None:
            refs.append(_ObjectRef("batch/v1", "Job", names.setup_job_name(run, resource.name)))
        for deployment in resource.setup.deployments:
            name = names.deployment_name(run, resource.name, deployment.name)
            refs.append(_ObjectRef("apps/v1", "Deployment", name))
            if deployment.ports:
                refs.append(_ObjectRef("v1", "Service", name))
        for manifest in resource.setup.manifests:
            refs.append(_ObjectRef(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"]))
        return refs

    def _refusal(self, ref: _ObjectRef) -> str | None:
        """Why the API server refused to create `ref` in the previous pass, if it still does not
        exist: the message names the object and quotes the server."""
        message = self.run.refused.get(str(ref))
        if message is None or self.children.find(ref) is not None:
            return None
        return f"cannot create {ref.kind} {ref.name}: {message}"

    def _setup_job(self, resource: ResourceSpec) -> ObservedJob | None:
        return self.children.jobs.get(names.setup_job_name(self.run.name, resource.name))

    def _setup_job_message(self, resource: ResourceSpec, phase: str | None) -> str | None:
        """The termination message of the setup job's main container (of a pod in `phase`)."""
        job = resource.setup.job
        if job is None:
            return None
        container = main_container_name(job.template)
        for pod in self.children.job_pods(names.setup_job_name(self.run.name, resource.name)):
            term = _container(pod, container)
            if term is not None and (phase is None or pod.phase == phase):
                return _result(term)[0]
        return None

    def _progress_setup(self, resource: ResourceSpec, rs: ResourceState, state: _State) -> None:
        failure = self._setup_failure(resource, rs, state)
        if failure is not None:
            rs.phase, (rs.reason, rs.message) = SETUP_FAILED, failure
            rs.setup_error = f"{rs.reason}: {rs.message}"
            return
        for ref in self._setup_objects(resource):
            obj = self.children.find(ref)
            if obj is None or obj.deleting:
                return
        job = self._setup_job(resource)
        if resource.setup.job is not None and (job is None or not job.complete):
            return
        for deployment in resource.setup.deployments:
            observed = self.children.find(self._deployment_ref(resource, deployment))
            rolled_out = min(observed.available_replicas, observed.updated_replicas) if observed else -1
            if observed is None or rolled_out < observed.replicas:
                return
        value = self._static_value(resource, state)
        if value is None:
            value = self._setup_job_message(resource, "Succeeded")
            if value is None:
                return  # the Job is Complete but its pod is not observed yet
        rs.phase, rs.reason, rs.message, rs.value, rs.ready_at = READY, READY, "", value, self.now

    def _deployment_ref(self, resource: ResourceSpec, deployment: DeploymentSpec) -> _ObjectRef:
        return _ObjectRef("apps/v1", "Deployment", names.deployment_name(self.run.name, resource.name, deployment.name))

    def _setup_failure(self, resource: ResourceSpec, rs: ResourceState, state: _State) -> tuple[str, str] | None:
        context = self._context(state)
        for deployment in resource.setup.deployments:
            if _replicas(deployment, context) is None:
                return (
                    "InvalidValue",
                    f"deployment {deployment.name}: replicas {deployment.replicas!r} is not a non-negative integer",
                )
        refusals = [r for r in map(self._refusal, self._setup_objects(resource)) if r is not None]
        if refusals:
            return CREATE_REFUSED, "; ".join(refusals)
        job = self._setup_job(resource)
        failed = job.failed_condition if job is not None else None
        if failed is not None:
            details = [d for d in (failed.reason, failed.message, self._setup_job_message(resource, "Failed")) if d]
            return "SetupJobFailed", "setup job failed: " + "; ".join(details)
        for deployment in resource.setup.deployments:
            observed = self.children.find(self._deployment_ref(resource, deployment))
            for cond in observed.conditions if observed is not None else ():
                if cond.type == "Progressing" and cond.status == "False":
                    return "DeploymentFailed", f"deployment {deployment.name}: {cond.reason}: {cond.message}"
        started = rs.setup_started_at or self.now
        if self.now >= started + timedelta(seconds=resource.setup.timeout_seconds):
            return "SetupTimeout", f"not Ready within timeoutSeconds={resource.setup.timeout_seconds}"
        return None

    def _static_value(self, resource: ResourceSpec, state: _State) -> str | None:
        """The block's value when it does not depend on the setup job's result, else None."""
        if resource.value is not None:
            return substitute(resource.value, self._context(state))
        if resource.setup.job is not None:
            return None
        with_service = next((d for d in resource.setup.deployments if d.ports), None)
        if with_service is not None:
            return names.service_dns_name(self.run.name, resource.name, with_service.name, self.run.namespace)
        return resource.name

    def _fallback_value(self, resource: ResourceSpec, state: _State) -> str:
        """The value handed to the cleanup of a block that never became Ready: what is known,
        else whatever the setup job wrote (e.g. the id of a half-created VM), else empty."""
        value = self._static_value(resource, state)
        if value is None:
            value = self._setup_job_message(resource, None)
        return value or ""

    def _setup_job_running(self, resource: ResourceSpec) -> bool:
        job = self._setup_job(resource)
        if job is not None and not job.deleting and not job.complete and job.failed_condition is None:
            return True
        return any(not p.finished for p in self.children.job_pods(names.setup_job_name(self.run.name, resource.name)))

    def _progress_cleanup(self, resource: ResourceSpec, rs: ResourceState) -> None:
        self._cleanup_steps(resource, rs)
        started = rs.cleanup_started_at or self.now
        timeout = resource.cleanup.timeout_seconds
        if rs.phase == CLEANING_UP and self.now >= started + timedelta(seconds=timeout):
            # Whatever is left is deleted best-effort by plan(); the block stays CleanupFailed.
            error = f"cleanup did not finish within timeoutSeconds={timeout}"
            # Say why it did not finish: a failed cleanup job attempt (e.g. timed out in backoff).
            cause = rs.cleanup_error or self._last_cleanup_job_failure(resource, rs)
            if cause:
                error = f"{cause}; {error}"
            rs.phase, rs.reason, rs.message, rs.cleanup_error = CLEANUP_FAILED, "CleanupTimeout", error, error
            rs.next_cleanup_attempt_at = None

    def _last_cleanup_job_failure(self, resource: ResourceSpec, rs: ResourceState) -> str | None:
        """Why the latest failed cleanup job attempt failed, from the observed Jobs; else None."""
        for attempt in range(rs.cleanup_attempts, 0, -1):
            job = self.children.jobs.get(names.cleanup_job_name(self.run.name, resource.name, attempt))
            failed = job.failed_condition if job is not None else None
            if failed is not None:
                return f"cleanup job attempt {attempt} failed ({failed.reason or 'Failed'}: {failed.message})"
        return None

    def _cleanup_steps(self, resource: ResourceSpec, rs: ResourceState) -> None:
        """Stop the setup job, run the cleanup job attempts, delete what setup created."""
        cleanup = resource.cleanup
        if rs.reason == STOPPING_SETUP:
            if self._setup_job_running(resource):
                rs.message = _with_setup_error(rs, "stopping the setup job")
                return
            if cleanup.job_template is not None:
                rs.reason, rs.cleanup_attempts = CLEANUP_JOB_RUNNING, max(1, rs.cleanup_attempts)
            else:
                rs.reason = DELETING_OBJECTS
        if rs.reason == CLEANUP_JOB_BACKOFF and (
            rs.next_cleanup_attempt_at is None or self.now >= rs.next_cleanup_attempt_at
        ):
            rs.reason, rs.cleanup_attempts, rs.next_cleanup_attempt_at = (
                CLEANUP_JOB_RUNNING,
                rs.cleanup_attempts + 1,
                None,
            )
        if rs.reason == CLEANUP_JOB_RUNNING:
            rs.message = _with_setup_error(rs, f"cleanup job attempt {rs.cleanup_attempts} running")
            name = names.cleanup_job_name(self.run.name, resource.name, rs.cleanup_attempts)
            job = self.children.jobs.get(name)
            failed = job.failed_condition if job is not None else None
            refusal = self._refusal(_ObjectRef("batch/v1", "Job", name)) if job is None else None
            if job is not None and job.complete:
                rs.reason = DELETING_OBJECTS
            elif failed is not None or refusal is not None:
                if failed is not None:
                    cause = f"{failed.reason or 'Failed'}: {failed.message}"
                else:
                    cause = f"{CREATE_REFUSED}: {refusal}"
                what = f"cleanup job attempt {rs.cleanup_attempts} failed ({cause})"
                if rs.cleanup_attempts < 1 + cleanup.retries:
                    rs.reason = CLEANUP_JOB_BACKOFF
                    rs.message = _with_setup_error(rs, f"{what}; retrying in {CLEANUP_BACKOFF_SECONDS}s")
                    rs.next_cleanup_attempt_at = self.now + timedelta(seconds=CLEANUP_BACKOFF_SECONDS)
                else:
                    rs.reason, rs.cleanup_error = DELETING_OBJECTS, f"{what}, no retries left"
        if rs.reason == DELETING_OBJECTS:
            remaining = [str(ref) for ref in self._setup_objects(resource) if self.children.find(ref) is not None]
            remaining += [f"Pod/{p.name}" for p in self.children.block_pods(resource.name)]
            if remaining:
                rs.message = _with_setup_error(rs, "waiting for deletion of " + ", ".join(remaining))
            elif rs.cleanup_error:
                rs.phase, rs.reason, rs.message = CLEANUP_FAILED, "CleanupJobFailed", rs.cleanup_error
            else:
                # The reason keeps a failed setup visible after its cleanup.
                rs.phase, rs.cleaned_up_at = CLEANED_UP, self.now
                rs.reason = SETUP_FAILED if rs.setup_error else CLEANED_UP
                rs.message = _with_setup_error(rs, "cleaned up")

    # -- the run -------------------------------------------------------------------------------

    def _done(self, state: _State) -> bool:
        return all(ts.phase in TERMINAL for ts in state.tasks.values()) and all(
            self._final(r, state) for r in self.spec.resources
        )

    def _update_run(self, state: _State) -> None:
        if self._done(state):
            if state.phase not in RUN_FINAL:
                state.phase = self._final_phase(state)
            state.finished_at = state.finished_at or self.now
        else:
            state.phase, state.finished_at = (RUNNING if state.started_at else PENDING), None

    def _final_phase(self, state: _State) -> str:
        # A cancelled run stays Cancelled even if a cleanup failed (ResourcesReleased=False shows it).
        if self.spec.cancel or any(ts.phase == CANCELLED for ts in state.tasks.values()):
            return CANCELLED
        failed = any(_is_failure(ts) for ts in state.tasks.values())
        if failed or any(rs.phase == CLEANUP_FAILED for rs in state.resources.values()):
            return FAILED
        return SUCCEEDED

    def _context(self, state: _State, placeholder: str | None = None) -> Context:
        run = self.run
        services = {
            (r.name, d.name): names.service_dns_name(run.name, r.name, d.name, run.namespace)
            for r in self.spec.resources
            for d in r.setup.deployments
            if d.ports
        }
        return Context(
            params=self.spec.param_values,
            flowrun={"name": run.name, "namespace": run.namespace, "uid": run.uid},
            task_results={
                n: placeholder
                if placeholder is not None
                else (ts.result if ts.phase == SUCCEEDED and ts.result else "")
                for n, ts in state.tasks.items()
            },
            resource_values={
                n: placeholder if placeholder is not None else (rs.value or "") for n, rs in state.resources.items()
            },
            services=services,
        )

    # -- actions -------------------------------------------------------------------------------

    def plan(self, state: _State) -> list[Action]:
        captures: list[Action] = []
        deletes: list[Action] = []
        creates: list[Action] = []
        context = self._context(state)
        live = _expected_pods(state)
        for task in self.order:
            ts = state.tasks[task.name]
            pod = self.children.pod(ts.pod_name)
            if ts.phase in (FAILED, CANCELLED) and ts.logs is None and pod is not None:
                captures.append(CaptureLogs(task.name, pod.name, main_container_name(task.template)))
            if ts.pod_name in live and pod is None:
                manifest = manifests.build_task_pod(self.identity, self.spec, task, ts.attempts, context)
                creates.append(CreateObject(manifest))
        for pod in sorted(self.children.task_pods(), key=lambda p: p.name):
            if pod.name not in live and not pod.finished and not pod.deleting:
                deletes.append(DeleteObject("v1", "Pod", pod.name))
        for resource in self.resource_order:
            rs = state.resources[resource.name]
            if rs.phase == SETTING_UP:
                for _, manifest in self._setup_manifests(resource, state, context):
                    ref = _ObjectRef(manifest["apiVersion"], manifest["kind"], manifest["metadata"]["name"])
                    if self.children.find(ref) is None:
                        creates.append(CreateObject(manifest))
            elif rs.phase == CLEANING_UP and rs.reason == STOPPING_SETUP:
                job = self._setup_job(resource)
                if job is not None and not job.deleting and self._setup_job_running(resource):
                    deletes.append(DeleteObject("batch/v1", "Job", job.name))
            elif rs.phase == CLEANING_UP and rs.reason == CLEANUP_JOB_RUNNING:
                name = names.cleanup_job_name(self.run.name, resource.name, rs.cleanup_attempts)
                if name not in self.children.jobs:
                    manifest = manifests.build_cleanup_job(
                        self.identity, self.spec, resource, rs.cleanup_attempts, context, rs.value or ""
                    )
                    creates.append(CreateObject(manifest))
            if (rs.phase == CLEANING_UP and rs.reason == DELETING_OBJECTS) or rs.phase == CLEANUP_FAILED:
                for ref in self._setup_objects(resource):
                    obj = self.children.find(ref)
                    if obj is not None and not obj.deleting:
                        deletes.append(DeleteObject(ref.api_version, ref.kind, ref.name))
        actions = captures + deletes + creates
        if self._ttl_expired(state):
            actions.append(DeleteFlowRun())
        return actions

    def _setup_manifests(
        self, resource: ResourceSpec, state: _State, context: Context, *, dry_run: bool = False
    ) -> list[tuple[str, dict[str, Any]]]:
        """(spec field, manifest) of every object setup creates."""
        value = None if dry_run else self._static_value(resource, state)
        path = f"spec.resources[{self.spec.resources.index(resource)}].setup"
        built: list[tuple[str, dict[str, Any]]] = []
        if resource.setup.job is not None:
            job = manifests.build_setup_job(self.identity, self.spec, resource, context, value)
            built.append((f"{path}.job.template", job))
        for j, deployment in enumerate(resource.setup.deployments):
            replicas = _replicas(deployment, context)
            if replicas is None and not dry_run:
                continue  # reported as InvalidValue by _setup_failure
            # A count that is not known before the run (a placeholder) is dry-run as 0.
            count = 0 if replicas is None else replicas
            deployment_manifest = manifests.build_deployment(
                self.identity, self.spec, resource, deployment, count, context, value
            )
            built.append((f"{path}.deployments[{j}]", deployment_manifest))
            if deployment.ports:
                built.append((f"{path}.deployments[{j}]", manifests.build_service(self.identity, resource, deployment)))
        for j, manifest in enumerate(resource.setup.manifests):
            built.append((f"{path}.manifests[{j}]", manifests.build_manifest(self.identity, resource, manifest)))
        return built

    def dry_run(self, state: _State) -> ValidateObjects:
        """Every child this run may create, with results and values as placeholders."""
        context = self._context(state, placeholder=DRY_RUN_PLACEHOLDER)
        built = [
            (f"spec.tasks[{i}].template", manifests.build_task_pod(self.identity, self.spec, t, 1, context))
            for i, t in enumerate(self.spec.tasks)
        ]
        for k, resource in enumerate(self.spec.resources):
            built += self._setup_manifests(resource, state, context, dry_run=True)
            if resource.cleanup.job_template is not None:
                job = manifests.build_cleanup_job(self.identity, self.spec, resource, 1, context, DRY_RUN_PLACEHOLDER)
                built.append((f"spec.resources[{k}].cleanup.job.template", job))
        return ValidateObjects(tuple(m for _, m in built), tuple(f for f, _ in built))

    def _ttl_expired(self, state: _State) -> bool:
        expiry = self._ttl_expiry(state)
        return expiry is not None and self.now >= expiry and not self.run.deleting

    def _ttl_expiry(self, state: _State) -> datetime | None:
        ttl = self.spec.ttl_seconds_after_finished
        if ttl is None or state.phase not in RUN_FINAL or state.finished_at is None:
            return None
        return state.finished_at + timedelta(seconds=ttl)

    # -- time ----------------------------------------------------------------------------------

    def requeue_after(self, state: _State) -> float | None:
        """Seconds until the next decision that depends on time alone."""
        moments: list[datetime | None] = [self._ttl_expiry(state)]
        if state.phase not in RUN_FINAL:
            moments.append(self._run_deadline(state))
        for task in self.spec.tasks:
            ts = state.tasks[task.name]
            if ts.phase == RUNNING and ts.reason == RETRY_BACKOFF:
                moments.append(ts.next_attempt_at)
            pod = self.children.pod(ts.pod_name) if ts.pod_name in _expected_pods(state) else None
            if pod is not None and pod.start_time is not None and task.active_deadline_seconds is not None:
                moments.append(pod.start_time + timedelta(seconds=task.active_deadline_seconds))
        for resource in self.spec.resources:
            rs = state.resources[resource.name]
            if rs.phase == SETTING_UP and rs.setup_started_at is not None:
                moments.append(rs.setup_started_at + timedelta(seconds=resource.setup.timeout_seconds))
            if rs.phase == CLEANING_UP and rs.cleanup_started_at is not None:
                moments.append(rs.cleanup_started_at + timedelta(seconds=resource.cleanup.timeout_seconds))
                moments.append(rs.next_cleanup_attempt_at)
        future = [m for m in moments if m is not None and m > self.now]
        if not future:
            return None
        return max(0.0, (min(future) - self.real_now).total_seconds())

    # -- status and events ---------------------------------------------------------------------

    def render(self, state: _State, prev: Mapping[str, Any], validated: bool) -> dict[str, Any]:
        conds = _prev_conditions(prev)
        gen = self.run.generation
        message = self._message(state)
        succeeded = self._succeeded_condition(state)
        released = self._released_condition(state)
        spec_valid = (
            ("True", SPEC_VALID_VALIDATED, "the API server accepted every child in a dry run")
            if validated
            else ("True", SPEC_VALID_PARSED, "the spec is valid; children are dry-run before the first is created")
        )
        terminal = sum(ts.phase in TERMINAL for ts in state.tasks.values())
        return {
            "phase": state.phase,
            "startedAt": _time(state.started_at),
            "finishedAt": _time(state.finished_at),
            # Only once finished: a duration that grows with `now` would change status every pass.
            "duration": _duration(state.started_at, state.finished_at),
            "observedGeneration": gen,
            "progress": f"{terminal}/{len(state.tasks)}",
            "message": message,
            "conditions": [
                _condition(conds, "Succeeded", *succeeded, message if succeeded[1] != "Pending" else "", self.now, gen),
                _condition(conds, "ResourcesReleased", *released, self.now, gen),
                _condition(conds, "SpecValid", *spec_valid, self.now, gen),
            ],
            "tasks": {t.name: _dump_task(state.tasks[t.name]) for t in self.spec.tasks},
            "resources": {r.name: _dump_resource(state.resources[r.name]) for r in self.spec.resources},
        }

    def _final_reason(self, state: _State) -> str:
        """Succeeded=False reason: the first that applies."""
        if state.phase == CANCELLED:
            return "Cancelled"
        if any(ts.reason == STOP_DEADLINE for ts in state.tasks.values()):
            return "DeadlineExceeded"
        if any(ts.phase == FAILED for ts in state.tasks.values()):
            return "TasksFailed"
        if any(rs.setup_error for rs in state.resources.values()):
            return "SetupFailed"
        if any(rs.phase == CLEANUP_FAILED for rs in state.resources.values()):
            return "CleanupFailed"
        return "TasksFailed"

    def _succeeded_condition(self, state: _State) -> tuple[str, str]:
        if state.phase == SUCCEEDED:
            return "True", "Succeeded"
        if state.phase in RUN_FINAL:
            return "False", self._final_reason(state)
        stop = self._stop_reason(state)
        if stop is not None:
            return "Unknown", {STOP_DELETED: "Deleting", STOP_CANCELLED: "Cancelling"}.get(stop, stop)
        if all(ts.phase in TERMINAL for ts in state.tasks.values()):
            return "Unknown", "CleaningUp"
        return "Unknown", RUNNING if state.started_at else PENDING

    def _released_condition(self, state: _State) -> tuple[str, str, str]:
        phases = {name: rs.phase for name, rs in state.resources.items()}
        failed = [n for n, p in phases.items() if p == CLEANUP_FAILED]
        if failed:
            message = "cleanup failed for " + ", ".join(failed) + ": " + state.resources[failed[0]].message
            if self.run.deleting and not self.run.skip_cleanup:
                message += f'; the finalizer stays until annotation {api.SKIP_CLEANUP_ANNOTATION}="true" is set'
                return "False", CLEANUP_BLOCKED, message
            return "False", "CleanupFailed", message
        held = [n for n, p in phases.items() if p in (SETTING_UP, READY, SETUP_FAILED, CLEANING_UP)]
        if held:
            return "False", "ResourcesInUse", "set up and not yet cleaned up: " + ", ".join(held)
        if any(p == CLEANED_UP for p in phases.values()):
            return "True", "Released", "every resource that was set up is cleaned up"
        return "True", "NothingToRelease", "no resource was set up"

    def _message(self, state: _State) -> str:
        tasks, resources = state.tasks, state.resources
        cleanup_failed = [
            f"cleanup of resource {n} failed: {rs.message}" for n, rs in resources.items() if rs.phase == CLEANUP_FAILED
        ]
        if state.phase == SUCCEEDED:
            counts = [f"{sum(ts.phase == p for ts in tasks.values())} {p.lower()}" for p in (SUCCEEDED, SKIPPED)]
            return ", ".join(c for c in counts if not c.startswith("0 "))
        if state.phase == CANCELLED:
            stopped = (
                "cancelled" if self.spec.cancel or not self.run.deleting else "stopped: the FlowRun is being deleted"
            )
            return "; ".join([stopped, *cleanup_failed])
        if state.phase == FAILED:
            if self._final_reason(state) == "DeadlineExceeded":
                return f"the run's activeDeadlineSeconds={self.spec.active_deadline_seconds} was exceeded"
            for phase in (FAILED, SKIPPED, CANCELLED):
                for task in self.order:
                    ts = tasks[task.name]
                    if ts.phase == phase and _is_failure(ts):
                        return f"task {task.name} {phase.lower()}: {ts.reason}: {ts.message}"
            return "; ".join(cleanup_failed)
        parts = []
        for label, names_ in (
            ("running", [n for n, ts in tasks.items() if ts.phase == RUNNING and ts.reason != RETRY_BACKOFF]),
            ("retrying", [n for n, ts in tasks.items() if ts.phase == RUNNING and ts.reason == RETRY_BACKOFF]),
            ("setting up", [n for n, rs in resources.items() if rs.phase == SETTING_UP]),
            ("cleaning up", [n for n, rs in resources.items() if rs.phase == CLEANING_UP]),
        ):
            if names_:
                parts.append(f"{label}: {', '.join(names_)}")
        stop = self._stop_reason(state)
        if stop is not None:
            parts.insert(0, {STOP_DELETED: "deleting", STOP_CANCELLED: "cancelling"}.get(stop, "run deadline exceeded"))
        return "; ".join(parts) or "waiting to start"

    def outcome(self, prev: Mapping[str, Any]) -> Outcome:
        state = self.load(prev)
        # Every step only moves tasks and blocks forward, so this converges well within the bound.
        for _ in range(4 * (len(self.spec.tasks) + len(self.spec.resources)) + 8):
            after = self.step(state)
            if after == state:
                break
            state = after
        actions = self.plan(state)
        spec_valid = _map(_prev_conditions(prev).get("SpecValid"))
        validated = spec_valid.get("status") == "True" and spec_valid.get("reason") == SPEC_VALID_VALIDATED
        if not validated and any(isinstance(a, CreateObject) for a in actions):
            actions.insert(0, self.dry_run(state))
            validated = True
        status = self.render(state, prev, validated)
        done = state.phase in RUN_FINAL
        return Outcome(
            status=status,
            actions=tuple(actions),
            events=tuple(_events(prev, status)),
            requeue_after=self.requeue_after(state),
            finalizer_releasable=self._finalizer_releasable(state),
            done=done,
        )

    def _finalizer_releasable(self, state: _State) -> bool:
        if not self.run.deleting:
            return False
        if self.run.skip_cleanup:
            return True
        return (
            state.phase in RUN_FINAL
            and all(rs.phase != CLEANUP_FAILED for rs in state.resources.values())
            and all(p.finished for p in self.children.pods)
        )


def _duration(start: datetime | None, end: datetime | None) -> str | None:
    """`1h2m3s` style, like Kubernetes printer columns show durations."""
    if start is None or end is None:
        return None
    seconds = max(0, int((end - start).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if hours or minutes else "", f"{seconds}s"]
    return "".join(parts)


def _with_setup_error(rs: ResourceState, text: str) -> str:
    return f"setup failed ({rs.setup_error}); {text}" if rs.setup_error else text


def _replicas(deployment: DeploymentSpec, context: Context) -> int | None:
    if isinstance(deployment.replicas, int):
        return deployment.replicas
    value = substitute(deployment.replicas, context).strip()
    return int(value) if value.isascii() and value.isdigit() else None


def _expected_pods(state: _State) -> set[str]:
    """Names of the pods that should exist and run now: the current attempt of running tasks."""
    return {
        ts.pod_name
        for ts in state.tasks.values()
        if ts.phase == RUNNING and ts.reason != RETRY_BACKOFF and ts.pod_name is not None
    }


def _resource_order(spec: FlowSpec) -> list[ResourceSpec]:
    """Resources after the resources they use (the spec is acyclic)."""
    order: list[ResourceSpec] = []
    while len(order) < len(spec.resources):
        placed = {r.name for r in order}
        order.append(next(r for r in spec.resources if r.name not in placed and set(r.uses) <= placed))
    return order


_TASK_EVENTS = {
    RUNNING: ("Normal", "TaskStarted"),
    SUCCEEDED: ("Normal", "TaskSucceeded"),
    FAILED: ("Warning", "TaskFailed"),
    SKIPPED: ("Normal", "TaskSkipped"),
    CANCELLED: ("Normal", "TaskCancelled"),
}
_RESOURCE_EVENTS = {
    SETTING_UP: ("Normal", "SetupStarted"),
    READY: ("Normal", "ResourceReady"),
    CLEANING_UP: ("Normal", "CleanupStarted"),
    CLEANED_UP: ("Normal", "CleanedUp"),
    CLEANUP_FAILED: ("Warning", "CleanupFailed"),
}
# Succeeded=Unknown reasons that announce a stage of the run
_RUN_EVENTS = {
    RUNNING: "Started",
    "Cancelling": "Cancelling",
    "Deleting": "Deleting",
    STOP_DEADLINE: "DeadlineExceeded",
    "CleaningUp": "CleaningUp",
}


def _events(prev: Mapping[str, Any], status: Mapping[str, Any]) -> list[Event]:
    events: list[Event] = []
    prev_conds, conds = _prev_conditions(prev), _prev_conditions(status)
    prev_tasks, prev_resources = _map(prev.get("tasks")), _map(prev.get("resources"))
    for name, task in status["tasks"].items():
        old = _map(prev_tasks.get(name))
        backoff = task["phase"] == RUNNING and task["reason"] == RETRY_BACKOFF
        was_backoff = old.get("phase") == RUNNING and old.get("reason") == RETRY_BACKOFF
        if task["phase"] == PENDING or (old.get("phase"), old.get("attempts"), was_backoff) == (
            task["phase"],
            task["attempts"],
            backoff,
        ):
            continue
        kind, reason = ("Warning", "TaskRetrying") if backoff else _TASK_EVENTS[task["phase"]]
        if task["phase"] == SKIPPED and task["reason"] != TRIGGER_NOT_MET:
            kind = "Warning"
        if backoff:
            message = f"task {name}: {task['message']}; next attempt at {task['nextAttemptAt']}"
        elif task["phase"] == RUNNING:
            message = f"task {name}: attempt {task['attempts']} started (pod {task['podName']})"
            if task["attempts"] > 1:
                message += f" after {task['message']}"
        elif task["phase"] == SUCCEEDED:
            message = f"task {name} succeeded"
        else:
            message = f"task {name}: {task['reason']}: {task['message']}"
        events.append(Event(kind, reason, message))
    for name, resource in status["resources"].items():
        old = _map(prev_resources.get(name))
        # A failed setup may already be cleaning up within the same pass: report the failure itself.
        if resource["setupError"] and resource["setupError"] != old.get("setupError"):
            events.append(Event("Warning", "SetupFailed", f"resource {name}: {resource['setupError']}"))
        if old.get("phase") != resource["phase"] and resource["phase"] in _RESOURCE_EVENTS:
            kind, reason = _RESOURCE_EVENTS[resource["phase"]]
            detail = f": {resource['message']}" if resource["message"] else ""
            events.append(Event(kind, reason, f"resource {name}{detail}"))
        elif resource["reason"] == CLEANUP_JOB_BACKOFF and (old.get("reason"), old.get("cleanupAttempts")) != (
            resource["reason"],
            resource["cleanupAttempts"],
        ):
            events.append(Event("Warning", "CleanupRetrying", f"resource {name}: {resource['message']}"))
    succeeded, old_succeeded = conds["Succeeded"], _map(prev_conds.get("Succeeded"))
    if (succeeded["status"], succeeded["reason"]) != (old_succeeded.get("status"), old_succeeded.get("reason")):
        reason = succeeded["reason"]
        if succeeded["status"] == "True":
            events.append(Event("Normal", "Succeeded", succeeded["message"]))
        elif succeeded["status"] == "False":
            kind, name = ("Normal", "Cancelled") if reason == "Cancelled" else ("Warning", "Failed")
            events.append(Event(kind, name, succeeded["message"]))
        elif reason in _RUN_EVENTS:
            kind = "Warning" if reason == STOP_DEADLINE else "Normal"
            events.append(Event(kind, _RUN_EVENTS[reason], succeeded["message"]))
    released, old_released = conds["ResourcesReleased"], _map(prev_conds.get("ResourcesReleased"))
    if released["reason"] == CLEANUP_BLOCKED and old_released.get("reason") != CLEANUP_BLOCKED:
        events.append(Event("Warning", CLEANUP_BLOCKED, released["message"]))
    return events
