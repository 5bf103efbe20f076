"""Tasks: recovering attempts from the observed pods, starting, observing, retrying and stopping
attempts, and the pods to create, capture logs of and delete. The users' contract:
docs/semantics.md, "Tasks" (pods that do not start, parallelism, retries and backoff, refused
creates)."""

from __future__ import annotations

from datetime import datetime

from flowrun import manifests, when
from flowrun.api import (
    CANCELLED,
    CREATE_REFUSED,
    FAILED,
    PENDING,
    PENDING_TIMEOUT,
    POD_CREATING,
    POD_PENDING,
    POD_RUNNING,
    READY,
    RESULT_LOST,
    RETRY_BACKOFF,
    RUNNING,
    SETTING_UP,
    SETUP_FAILED,
    SKIPPED,
    STOP_CANCELLED,
    STOP_DEADLINE,
    SUCCEEDED,
    TERMINAL,
    TRIGGER_NOT_MET,
    WAITING_PARALLELISM,
    WAITING_RESOURCES,
    WAITING_UPSTREAM,
    WHEN_ERROR,
    WHEN_FALSE,
)
from flowrun.engine.children import ObjectRef, result, started, termination, why_waiting
from flowrun.engine.clock import after
from flowrun.engine.context import PassContext, refusal, result_of, substitutions
from flowrun.engine.dag import skip_reason, trigger
from flowrun.engine.fanout import LOST, instance_specs, lost_item
from flowrun.engine.interface import Action, CaptureLogs, CreateObject, DeleteObject
from flowrun.engine.locks import Turn, task_turn, wait_for_lock
from flowrun.engine.state import RunState, TaskState
from flowrun.model import TaskSpec, instance_name, main_container_name
from flowrun.observed import ObservedPod
from flowrun.references import Context


def recover_task(ctx: PassContext, task: TaskSpec, ts: TaskState, state: RunState) -> None:
    """Align a task with its observed pods: what they show wins over what the status claims (a lost,
    garbage or foreign status), so that the engine neither reuses an attempt's name, nor loses or
    kills a pod that exists, nor hands on a result its pod did not write."""
    latest = ctx.children.max_attempt(task.name)
    if latest > ts.attempts or contradicted(ctx, task, ts, latest):
        # The latest attempt's pod is judged afresh (observe_attempt) in this pass.
        pod = ctx.children.pod(task.pod_name(ctx.run.name, latest))
        ts.attempts, ts.result, ts.result_from, ts.exit_code, ts.finished_at = latest, None, None, None, None
        ts.phase, ts.reason, ts.next_attempt_at = RUNNING, POD_CREATING, None
        ts.started_at = ts.started_at or (pod.start_time if pod is not None else None) or ctx.now
        state.started_at = state.started_at or ts.started_at
    elif ts.phase == RUNNING and ts.attempts == 0:
        ts.phase, ts.reason = PENDING, ""  # garbage: running without an attempt
    elif ts.phase == PENDING and ts.attempts:
        ts.phase, ts.reason, ts.next_attempt_at = RUNNING, RETRY_BACKOFF, None  # garbage: go to the next attempt
    if ts.attempts:
        ts.pod_name = task.pod_name(ctx.run.name, ts.attempts)


def contradicted(ctx: PassContext, task: TaskSpec, ts: TaskState, latest: int) -> bool:
    """Whether the status of a task contradicts the pod of its latest attempt (one that exists
    and is not being deleted): it runs, but the task is not running that attempt; it succeeded,
    but the task did not, or with another result; it failed, but the task succeeded."""
    pod = ctx.children.pod(task.pod_name(ctx.run.name, latest)) if latest else None
    if pod is None or pod.deleting:
        return False
    if ts.attempts != latest:
        # A later attempt (whose pod may not exist: refused, or not observed yet) follows only a
        # failed one.
        return pod.phase != "Failed"
    if not pod.finished:
        return ts.phase != RUNNING or ts.reason == RETRY_BACKOFF
    if pod.phase == "Succeeded":
        # A result moved to a ConfigMap (the status was full) is no contradiction.
        moved = ts.result is None and ts.result_from is not None
        pod_result = result(termination(pod, main_container_name(task.template)))[0]
        return ts.phase != SUCCEEDED or (not moved and ts.result != pod_result)
    return ts.phase in (SUCCEEDED, PENDING)


def expected_pods(state: RunState) -> set[str]:
    """Names of the pods that should exist and run now: the current attempt of running tasks."""
    return {
        ts.pod_name
        for ts in state.tasks.values()
        if ts.phase == RUNNING and ts.reason != RETRY_BACKOFF and ts.pod_name is not None
    }


def live_pods(ctx: PassContext, state: RunState) -> set[str]:
    """Task pods that hold a parallelism slot: expected to run, or still running."""
    return expected_pods(state) | {p.name for p in ctx.children.task_pods() if not p.finished}


def advance_task(
    ctx: PassContext,
    task: TaskSpec,
    state: RunState,
    stop: str | None,
    live: set[str],
    held: str | None = None,
    gate: Turn | None = None,
) -> bool:
    """Move one task (or instance of a forEach task) as far as the state allows; a started attempt
    takes a slot in `live`. `held`: why an instance may not start now (its task's own parallelism
    is used up); `gate`: the run waits for its own lock (nothing of it starts). Whether an attempt
    started."""
    ts = state.tasks[task.name]
    backoff = ts.phase == RUNNING and ts.reason == RETRY_BACKOFF
    if ts.phase == RUNNING and not backoff:
        observe_attempt(ctx, task, ts, stop)
    if ts.phase in TERMINAL:
        return False
    if stop is not None:
        stop_task(ctx, ts, stop)
        return False
    ready = retry_due(ctx, task, ts, state) if backoff else ts.phase != RUNNING and upstream_ready(ctx, task, ts, state)
    if not ready or lost_item(ctx, task, ts):
        return False
    if gate is not None:
        wait_for_lock(ctx, ts, gate)
        return False
    why = held_back_by(ctx, task, state, live, held)
    if backoff and why is not None:
        return False  # the next attempt goes as soon as it can; the reason stays RetryBackoff
    if why is not None:
        ts.reason, ts.message = why
    elif (turn := task_turn(ctx, task, ts, state, stop)) is not None:
        wait_for_lock(ctx, ts, turn)  # only once nothing else holds it back: it waits holding nothing
    else:
        start_attempt(ctx, task, ts, state, live)
        return True
    return False


def held_back_by(
    ctx: PassContext, task: TaskSpec, state: RunState, live: set[str], held: str | None
) -> tuple[str, str] | None:
    """(reason, message) of what keeps a ready task from starting, but its lock: its blocks not
    Ready, the run's parallelism used up, or `held` (its forEach task's)."""
    waiting = [r for r in task.resources if state.resources[r].phase != READY]
    parallelism = ctx.spec.parallelism
    if waiting:
        return WAITING_RESOURCES, "waiting for resources " + ", ".join(waiting)
    if parallelism is not None and len(live) >= parallelism:
        return WAITING_PARALLELISM, f"waiting for a slot (parallelism {parallelism})"
    if held:
        return WAITING_PARALLELISM, held
    return None


def retry_due(ctx: PassContext, task: TaskSpec, ts: TaskState, state: RunState) -> bool:
    """Whether the next attempt of a task in RetryBackoff may start now; a block it needs that broke
    meanwhile fails the task instead."""
    broken = next((r for r in task.resources if state.resources[r].phase not in (SETTING_UP, READY)), None)
    if broken is not None:
        # The block broke (or failed) while the task waited to retry: no attempt can run in it.
        rs = state.resources[broken]
        ts.phase, ts.reason, ts.finished_at, ts.next_attempt_at = FAILED, SETUP_FAILED, ctx.now, None
        ts.message = f"{ts.message}; no next attempt: resource {broken} is not available ({rs.phase}: {rs.message})"
        return False
    return ts.next_attempt_at is None or ctx.now >= ts.next_attempt_at


def upstream_ready(ctx: PassContext, task: TaskSpec, ts: TaskState, state: RunState) -> bool:
    """Whether a Pending task may start as far as its upstream tasks and its conditions say: skipped
    if its trigger can never hold, or a condition is false; waiting while its trigger does not hold
    yet; failed if a result it reads is lost or a condition cannot be evaluated."""
    skip = skip_reason(ctx.spec, task, state)
    if skip is not None:
        ts.phase, (ts.reason, ts.message), ts.finished_at = SKIPPED, skip, ctx.now
        return False
    if trigger(task, state) != "go":
        waiting_for = [u for u in task.run_after if state.tasks[u].phase not in TERMINAL]
        ts.reason, ts.message = WAITING_UPSTREAM, "waiting for " + ", ".join(waiting_for)
        return False
    skip = missing_results(task, state)
    if skip is not None:
        ts.phase, (ts.reason, ts.message), ts.finished_at = SKIPPED, skip, ctx.now
        return False
    lost = [u for u in task.result_refs if result_lost(ctx, u, state)]
    if lost:
        where = state.tasks[lost[0]]
        ts.phase, ts.reason, ts.finished_at = FAILED, RESULT_LOST, ctx.now
        ts.message = f"the result of task {lost[0]} is lost: {where.result_from} and pod {where.pod_name} are gone"
        return False
    return conditions_hold(ctx, task, ts, state)


def conditions_hold(ctx: PassContext, task: TaskSpec, ts: TaskState, state: RunState) -> bool:
    """Whether every condition of the task's `when` holds: else Skipped (WhenFalse), quoting the
    first that is false; Failed (WhenError) if one cannot be evaluated, naming it."""
    if not task.when:
        return True
    values = substitutions(ctx, state)
    for j, text in enumerate(task.when):
        try:
            holds = when.evaluate(text, values)
        except when.ConditionError as err:
            ts.phase, ts.reason, ts.finished_at = FAILED, WHEN_ERROR, ctx.now
            ts.message = f"spec.tasks[{ctx.spec.tasks.index(task)}].when[{j}]: {err}"
            return False
        if not holds:
            ts.phase, ts.reason, ts.finished_at = SKIPPED, WHEN_FALSE, ctx.now
            ts.message = f"when[{j}] is false: {text}"
            return False
    return True


def missing_results(task: TaskSpec, state: RunState) -> tuple[str, str] | None:
    """A task that reads the result of a task its `when` skipped is skipped too (TriggerNotMet):
    that result does not exist. (Its dependants that do not read it run: dag.passed.)"""
    skipped = next((u for u in task.result_refs if state.tasks[u].reason == WHEN_FALSE), None)
    if skipped is None or state.tasks[skipped].phase != SKIPPED:
        return None
    return TRIGGER_NOT_MET, f"it uses the result of {skipped}, which its when skipped: there is none"


def result_lost(ctx: PassContext, task: str, state: RunState) -> bool:
    """A succeeded task's result moved to a ConfigMap that is gone, and so is its pod (of a
    forEach task: the result of one of its instances)."""
    ts = state.tasks.get(task)
    if ts is not None and ts.instances:
        return any(result_lost(ctx, instance_name(task, i), state) for i in range(ts.instances))
    return ts is not None and ts.phase == SUCCEEDED and result_of(ctx, task, ts) is None


def start_attempt(ctx: PassContext, task: TaskSpec, ts: TaskState, state: RunState, live: set[str]) -> None:
    ts.attempts += 1
    ts.pod_name = task.pod_name(ctx.run.name, ts.attempts)
    ts.phase, ts.reason, ts.next_attempt_at = RUNNING, POD_CREATING, None
    if ts.attempts == 1:
        ts.message, ts.last_failure = "", None
    ts.started_at = ts.started_at or ctx.now
    state.started_at = state.started_at or ctx.now
    live.add(ts.pod_name)


def observe_attempt(ctx: PassContext, task: TaskSpec, ts: TaskState, stop: str | None) -> None:
    """Judge the running attempt by its pod: succeeded, failed, past its deadline, not started in
    time, or still pending or running."""
    pod = ctx.children.pod(ts.pod_name)
    if pod is None:
        refused = refusal(ctx, ObjectRef("v1", "Pod", ts.pod_name or ""))
        if ts.reason == POD_CREATING and refused is not None:
            # Without this the task would wait for its pod forever (or until the run deadline).
            attempt_failed(ctx, task, ts, CREATE_REFUSED, refused, ctx.now, stop)
        elif ts.reason != POD_CREATING:
            attempt_failed(ctx, task, ts, "PodDeleted", f"pod {ts.pod_name} disappeared", ctx.now, stop)
        return
    if pod.finished:
        observe_finished(ctx, task, ts, pod, stop)
        return
    overdue = overdue_attempt(ctx, task, pod)
    if overdue is not None:
        # No attempt number here: attempt_failed adds it where it says which attempt failed.
        attempt_failed(ctx, task, ts, *overdue, ctx.now, stop)
        return
    ts.reason = POD_RUNNING if pod.phase == "Running" else POD_PENDING
    # What the pod says now, else why this attempt is a retry (nothing on a first attempt).
    now_says = "pod is being deleted" if pod.deleting else (why_waiting(pod) or pod.message)
    ts.message = now_says or ts.last_failure or ""


def observe_finished(ctx: PassContext, task: TaskSpec, ts: TaskState, pod: ObservedPod, stop: str | None) -> None:
    term = termination(pod, main_container_name(task.template))
    finished = (term.finished_at if term is not None else None) or ctx.now
    if term is not None:
        ts.exit_code = term.exit_code
    if pod.phase == "Succeeded":
        (ts.result, note), ts.result_from = result(term), None
        ts.phase, ts.reason, ts.message, ts.finished_at = SUCCEEDED, "Succeeded", note, finished
        return
    reason = pod.reason or (term.reason if term is not None and term.reason else "PodFailed")
    details = [f"exit code {term.exit_code}"] if term is not None else []
    details += [m for m in (pod.message, term.message if term is not None else "") if m]
    attempt_failed(ctx, task, ts, reason, "; ".join(details) or "pod failed", finished, stop)


def overdue_attempt(ctx: PassContext, task: TaskSpec, pod: ObservedPod) -> tuple[str, str] | None:
    """(reason, message) if the attempt's pod ran past the task's activeDeadlineSeconds, or has not
    started its main container within its pendingTimeoutSeconds; else None."""
    deadline = task.active_deadline_seconds
    if deadline is not None and pod.start_time is not None and ctx.now >= after(pod.start_time, deadline):
        return "DeadlineExceeded", f"ran longer than activeDeadlineSeconds={deadline}"
    due = start_due(ctx, task, pod)
    if due is not None and ctx.now >= due:
        why = why_waiting(pod, routine=True) or f"the pod is {pod.phase}, no reason reported"
        return PENDING_TIMEOUT, f"not started within pendingTimeoutSeconds={ctx.spec.pending_timeout(task)}: {why}"
    return None


def start_due(ctx: PassContext, task: TaskSpec, pod: ObservedPod) -> datetime | None:
    """When the attempt fails if its pod has not started its main container by then (counted from
    the pod's creation, which a lost status cannot move); None once it has started, while the pod
    is being deleted, or without a pendingTimeoutSeconds."""
    timeout = ctx.spec.pending_timeout(task)
    if timeout is None or pod.created_at is None or pod.deleting or pod.finished:
        return None
    if started(pod, main_container_name(task.template)):
        return None
    return after(pod.created_at, timeout)


def attempt_failed(
    ctx: PassContext, task: TaskSpec, ts: TaskState, reason: str, message: str, finished: datetime, stop: str | None
) -> None:
    """Retry after the backoff while retries remain and nothing stops the run; else Failed."""
    ts.last_failure = f"attempt {ts.attempts} failed ({reason}: {message})"
    if ts.attempts < 1 + task.retries.limit and stop is None:
        delay = task.retries.backoff_seconds
        # It stays the message while the next attempt runs (see observe_attempt): it says why there
        # is a next attempt.
        ts.reason, ts.message = RETRY_BACKOFF, ts.last_failure
        ts.next_attempt_at = after(finished.replace(microsecond=0), delay)
    else:
        prefix = f"attempt {ts.attempts}: " if ts.attempts > 1 else ""
        ts.phase, ts.reason, ts.message, ts.finished_at = FAILED, reason, prefix + message, finished


def stop_task(ctx: PassContext, ts: TaskState, stop: str) -> None:
    if stop == STOP_DEADLINE:
        ts.phase = FAILED if ts.attempts else SKIPPED
        ts.message = f"the run's activeDeadlineSeconds={ctx.spec.active_deadline_seconds} was exceeded"
    else:
        ts.phase = CANCELLED
        ts.message = "the run was cancelled" if stop == STOP_CANCELLED else "the FlowRun is being deleted"
    ts.reason, ts.finished_at, ts.next_attempt_at = stop, ctx.now, None


def pod_tasks(ctx: PassContext, state: RunState) -> list[TaskSpec]:
    """The tasks that run pods, in dependency order: every task but a forEach task, whose
    instances run them instead (in index order, where it stands)."""
    found: list[TaskSpec] = []
    for task in ctx.order:
        found += instance_specs(ctx, task, state) if task.for_each is not None else [task]
    return found


def task_actions(ctx: PassContext, state: RunState, values: Context) -> tuple[list[Action], list[Action], list[Action]]:
    """(log captures, pod deletes, pod creates) that bring the task pods to the state."""
    captures: list[Action] = []
    deletes: list[Action] = []
    creates: list[Action] = []
    live = expected_pods(state)
    for task in pod_tasks(ctx, state):
        ts = state.tasks[task.name]
        pod = ctx.children.pod(ts.pod_name)
        if ts.phase in (FAILED, CANCELLED) and ts.logs is None and pod is not None:
            captures.append(CaptureLogs(task.name, pod.name, main_container_name(task.template)))
        if ts.pod_name in live and pod is None and (task.instance is None or task.instance.item is not LOST):
            manifest = manifests.build_task_pod(ctx.identity, ctx.spec, task, ts.attempts, values)
            creates.append(CreateObject(manifest))
    for pod in sorted(ctx.children.task_pods(), key=lambda p: p.name):
        if pod.name not in live and not pod.finished and not pod.deleting:
            deletes.append(DeleteObject("v1", "Pod", pod.name))
    return captures, deletes, creates
