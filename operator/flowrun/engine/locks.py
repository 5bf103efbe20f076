"""Locks across runs: the run's own lock (spec.synchronization) and its tasks' (tasks[].synchronization).
The users' contract: docs/semantics.md, "Locks".

What the run holds is the Leases it owns (one per slot, observed: never the status, so a lost
status or a restarted operator loses nothing). A claim is the run, or a task, wanting a lock it
does not hold: the run until it has finished (nothing of it starts before it holds its lock), a
task once nothing else holds it back (reason WaitingForLock). Each pass puts its own claims in
line with the namespace's (locks.LockView: by the FlowRun's creation, its name, then the run's own
lock and its tasks in spec order): the first claims in line take the free slots (TakeLock, a
create of the slot's Lease that the API server lets only one run win), the others wait and say
for whom. A Lease is deleted by the pass that finds its holder done with it: the run finished
(cleanup included) or the task terminal, and none of their pods still running.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flowrun import manifests, names
from flowrun.api import (
    CREATE_REFUSED,
    FAILED,
    HOLDING,
    LABEL_TASK,
    LEASE,
    MUTEX,
    PENDING,
    RETRY_BACKOFF,
    RUN_FINAL,
    RUNNING,
    TERMINAL,
    WAITING,
    WAITING_LOCK,
)
from flowrun.engine.children import ObjectRef
from flowrun.engine.context import PassContext
from flowrun.engine.interface import Action, DeleteObject, TakeLock
from flowrun.engine.state import RunState, TaskState
from flowrun.locks import LAST, Claim, LockView, holder_name
from flowrun.model import Lock, TaskSpec
from flowrun.observed import ObservedLease

RUN = ""  # the "task" of the run's own lock
SHOWN = 3  # holders (or claims ahead) a message names; the rest are counted


@dataclass(frozen=True)
class Turn:
    """What a claim of the run gets in this pass: a slot to take (its Lease's name in the message),
    or a wait and why; `refused`, why the API server refused the slot's Lease for good."""

    slot: int | None
    message: str
    refused: str | None = None


def lock_for(ctx: PassContext, task: str) -> Lock | None:
    """The lock of a claim: the run's own (task RUN), or the task's."""
    if task == RUN:
        return ctx.spec.synchronization
    spec = next((t for t in ctx.spec.tasks if t.name == task), None)
    return spec.synchronization if spec is not None else None


def lease_of(ctx: PassContext, task: str) -> ObservedLease | None:
    """The Lease by which the run (task RUN) or its task holds its lock, if it holds it."""
    lock = lock_for(ctx, task)
    if lock is None:
        return None
    return next((s for s in ctx.children.leases if s.lock == lock.id and s.task == task and not s.deleting), None)


def run_wants(ctx: PassContext, state: RunState, stop: str | None) -> bool:
    """The run wants its own lock until it has finished; a run that stops wants nothing new."""
    return ctx.spec.synchronization is not None and stop is None and state.phase not in RUN_FINAL


def gate(ctx: PassContext, state: RunState, stop: str | None) -> Turn | None:
    """Why nothing of the run may start (it waits for its own lock, or is about to take it); None
    when it holds it or has none."""
    if not run_wants(ctx, state, stop) or lease_of(ctx, RUN) is not None:
        return None
    return turns(ctx, state, stop)[RUN]


def task_wants(ctx: PassContext, ts: TaskState, task: str, stop: str | None, gated: bool) -> bool:
    """A task wants its lock while it waits for it (nothing else holds it back: the run holds its
    own lock), or between attempts once it has lost it (its Lease deleted by someone)."""
    if stop is not None or gated or lock_for(ctx, task) is None:
        return False
    if ts.phase == PENDING and ts.reason == WAITING_LOCK:
        return True
    return ts.phase == RUNNING and ts.reason == RETRY_BACKOFF and lease_of(ctx, task) is None


def own_claims(ctx: PassContext, state: RunState, stop: str | None) -> list[Claim]:
    """The run's claims now: its own lock, then each task's, for those it does not hold."""
    created, run = ctx.run.created_at or LAST, ctx.run
    claims: list[Claim] = []
    own = ctx.spec.synchronization
    gated = own is not None and lease_of(ctx, RUN) is None
    if own is not None and run_wants(ctx, state, stop) and gated:
        claims.append(Claim(created, run.name, -1, run.uid, RUN, own.id))
    for index, task in enumerate(ctx.spec.tasks):
        lock = task.synchronization
        if lock is not None and task_wants(ctx, state.tasks[task.name], task.name, stop, gated):
            claims.append(Claim(created, run.name, index, run.uid, task.name, lock.id))
    return claims


def turns(ctx: PassContext, state: RunState, stop: str | None) -> dict[str, Turn]:
    """Each claim of the run (by task; RUN for its own lock) and what it gets now."""
    mine = own_claims(ctx, state, stop)
    found: dict[str, Turn] = {}
    for lock_id in dict.fromkeys(claim.lock for claim in mine):
        lock = next(lock for lock in ctx.spec.locks() if lock.id == lock_id)
        found.update(line_up(ctx, lock, [c for c in mine if c.lock == lock_id]))
    return found


def task_turn(ctx: PassContext, task: TaskSpec, ts: TaskState, state: RunState, stop: str | None) -> Turn | None:
    """What holds a task back for its own lock, now that nothing else does: None when it holds it
    (or has none). A task that waits claims its lock (reason WaitingForLock); one between attempts
    keeps its reason RetryBackoff."""
    lock = task.synchronization
    if lock is None or lease_of(ctx, task.name) is not None:
        return None
    if ts.phase == PENDING:
        ts.reason = WAITING_LOCK
    return turns(ctx, state, stop).get(task.name) or Turn(None, f"waiting for {lock}")


def wait_for_lock(ctx: PassContext, ts: TaskState, turn: Turn) -> None:
    """A task held back by a lock (its own, or its run's): it fails if the slot's Lease is refused
    for good (CreateRefused), else it waits and says why (between attempts it stays RetryBackoff)."""
    if turn.refused is not None:
        ts.phase, ts.reason, ts.message, ts.finished_at = FAILED, CREATE_REFUSED, turn.message, ctx.now
        ts.next_attempt_at = None
    elif ts.phase == PENDING:
        ts.reason, ts.message = WAITING_LOCK, turn.message


def holders(ctx: PassContext, view: LockView) -> list[ObservedLease]:
    """Every Lease of the lock: the other runs' as the view shows them, the run's own as its
    children do (with this process's own creates and deletes applied)."""
    others = [s for s in view.leases if s.run != ctx.run.uid]
    own = [s for s in ctx.children.leases if s.lock == view.lock.id]
    return sorted(others + own, key=lambda s: (s.slot, s.name))


def line_up(ctx: PassContext, lock: Lock, mine: list[Claim]) -> dict[str, Turn]:
    """Who of the namespace takes the free slots of `lock`: the first claims in line. The run's
    claims among them get a slot each; the others wait."""
    view = ctx.locks.get(lock.id) or LockView(lock, limit=None, problem="not known yet")
    held = holders(ctx, view)
    holding = {(s.run, s.task) for s in held}
    others = [c for c in view.claims if c.uid != ctx.run.uid and c.holder not in holding]
    line = sorted(others + mine, key=lambda c: c.place)
    slots = free_slots(view.limit, held)
    found: dict[str, Turn] = {}
    for place, claim in enumerate(line):
        if claim.uid != ctx.run.uid:
            continue
        if place < len(slots):
            found[claim.task] = taking(ctx, lock, slots[place], published(ctx, claim))
        else:
            found[claim.task] = Turn(None, waiting_for(lock, view, held, line[:place]))
    return found


def free_slots(limit: int | None, held: list[ObservedLease]) -> list[int]:
    """The slots that may be taken now, lowest first: as many as the limit leaves (a lowered limit
    leaves holders their slots, and lets nobody new in until they are fewer than it)."""
    if limit is None:
        return []
    taken = {s.slot for s in held}
    free = max(0, limit - len(held))
    return [slot for slot in range(limit) if slot not in taken][:free]


def published(ctx: PassContext, claim: Claim) -> bool:
    """Whether the other runs can see the claim: the run's own lock always (its spec says it);
    a task's once its run's status says it waits (status.locks). A task's claim takes no slot in
    the pass that makes it: its status is written first, so that runs older than it whose tasks
    became ready at the same moment are in line too (the write's own watch event brings the next
    pass at once)."""
    if claim.task == RUN:
        return True
    entries = ctx.prev.get("locks")
    return isinstance(entries, list) and any(
        isinstance(e, Mapping) and (e.get("lock"), e.get("task"), e.get("state")) == (claim.lock, claim.task, WAITING)
        for e in entries
    )


def taking(ctx: PassContext, lock: Lock, slot: int, now: bool = True) -> Turn:
    """The claim's turn has come: it takes `slot` (`now`), or will in its next pass."""
    name = names.lock_lease(lock.id, slot)
    refused = ctx.run.refused.get(str(ObjectRef(LEASE[0], LEASE[1], name)))
    if refused is not None:
        return Turn(None, f"cannot take {lock}: cannot create Lease {name}: {refused}", refused)
    return Turn(slot if now else None, f"taking {lock} (Lease {name})")


def waiting_for(lock: Lock, view: LockView, held: list[ObservedLease], ahead: list[Claim]) -> str:
    """`waiting for mutex/m, held by FlowRun a (task t)`, with who is ahead in line and the limit
    of a semaphore; or why a semaphore's limit is not known."""
    if view.limit is None:
        return f"waiting for {lock}: {view.problem}"
    text = f"waiting for {lock}"
    if lock.kind != MUTEX:
        text += f" (limit {view.limit})"
    if held:
        text += ", held by " + listed([holder_name(s) for s in held])
    if ahead:
        text += "; ahead in line: " + listed([claim_name(c) for c in ahead])
    return text


def claim_name(claim: Claim) -> str:
    return f"FlowRun {claim.run}" + (f" (task {claim.task})" if claim.task else "")


def listed(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


# --- releases, actions, status ---------------------------------------------------------------------


def kept(ctx: PassContext, state: RunState, lease: ObservedLease) -> bool:
    """Whether the run still holds a Lease: its holder is not done with it. The run keeps its own
    lock until it has finished and none of its pods runs; a task, until it is terminal and none of
    its pods runs. A Lease of a lock its holder does not name is released."""
    lock = lock_for(ctx, lease.task)
    if lock is None or lock.id != lease.lock:
        return False
    if lease.task == RUN:
        return state.phase not in RUN_FINAL or any(not pod.finished for pod in ctx.children.pods)
    running = any(not pod.finished for pod in ctx.children.task_pods() if pod.labels.get(LABEL_TASK) == lease.task)
    return state.tasks[lease.task].phase not in TERMINAL or running


def lock_actions(ctx: PassContext, state: RunState, stop: str | None) -> tuple[list[Action], list[Action]]:
    """(deletes, takes): the Leases the run is done with, and the slots it takes now."""
    deletes: list[Action] = [
        DeleteObject(LEASE[0], LEASE[1], lease.name)
        for lease in ctx.children.leases
        if not lease.deleting and not kept(ctx, state, lease)
    ]
    takes: list[Action] = []
    for task, turn in turns(ctx, state, stop).items():
        lock = lock_for(ctx, task)
        if turn.slot is not None and lock is not None:
            lease = manifests.build_lock_lease(ctx.identity, lock, turn.slot, task or None, micro_time(ctx.now))
            takes.append(TakeLock(lease))
    return deletes, takes


def micro_time(moment: datetime) -> str:
    """A Lease's acquireTime (a MicroTime)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lock_status(ctx: PassContext, state: RunState, stop: str | None) -> list[dict[str, Any]] | None:
    """status.locks: what the run holds (the Leases it keeps), then what it waits for; None when
    neither."""
    entries: list[tuple[int, dict[str, Any]]] = []
    order = {task.name: index for index, task in enumerate(ctx.spec.tasks)}
    for lease in ctx.children.leases:
        if not lease.deleting and kept(ctx, state, lease):
            entry = {"lock": lease.lock, "task": lease.task or None, "state": HOLDING, "lease": lease.name}
            entries.append((order.get(lease.task, -1), {**entry, "message": None}))
    for task, turn in turns(ctx, state, stop).items():
        lock = lock_for(ctx, task)
        entry = {"lock": lock.id if lock else "", "task": task or None, "state": WAITING, "lease": None}
        entries.append((order.get(task, -1), {**entry, "message": turn.message}))
    entries.sort(key=lambda pair: (pair[0], pair[1]["state"] != HOLDING, pair[1]["lock"]))
    return [entry for _, entry in entries] or None
