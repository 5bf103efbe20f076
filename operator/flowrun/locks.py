"""Locks across runs (docs/semantics.md, "Locks"), as a pass sees them: what each FlowRun of the
namespace wants of a lock (its claims, read leniently from the FlowRun as the caches hold it), the
Leases that hold the lock's slots, and a semaphore's limit as its ConfigMap says. `LockView` is one
lock put together: the engine decides from it who takes a free slot (engine/locks.py). Pure.

Who holds a lock is never remembered: it is the Leases the API server keeps (one per held slot,
owned by the holding FlowRun). Who waits is read from the FlowRuns: a run wants its own lock
(spec.synchronization) until it has finished; a task wants its lock while its status says it waits
for it. The line is by the FlowRun's creation time, then its name, then (within a run) its own
lock first and its tasks in spec order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flowrun.api import MAX_SEMAPHORE_LIMIT, RUN_FINAL, SEMAPHORE, WAITING
from flowrun.lenient import as_map, as_str
from flowrun.model import Lock
from flowrun.observed import ObservedLease
from flowrun.timestamps import parse_time

LAST = datetime.max.replace(tzinfo=UTC)  # a FlowRun without a creation time queues last


@dataclass(frozen=True)
class Claim:
    """A run, or one of its tasks, that wants a slot of `lock`. Sorted by its place in line."""

    created: datetime
    run: str  # the FlowRun's name
    order: int  # -1: the run's own lock; else the task's index in the spec
    uid: str
    task: str = ""  # empty for the run's own lock
    lock: str = ""

    @property
    def place(self) -> tuple[datetime, str, int]:
        return (self.created, self.run, self.order)

    @property
    def holder(self) -> tuple[str, str]:
        """Who it is, as a Lease names its holder: (run UID, task)."""
        return (self.uid, self.task)


@dataclass(frozen=True)
class LockView:
    """One lock of a namespace, as a pass sees it: its limit (None: unknown, `problem` says why),
    the Leases of its held slots, and the claims of every run (the deciding run's own included,
    as cached: the engine replaces those by what it decides now)."""

    lock: Lock
    limit: int | None = 1
    problem: str = ""
    leases: tuple[ObservedLease, ...] = ()
    claims: tuple[Claim, ...] = ()


def lock_of(raw: object) -> Lock | None:
    """The lock a synchronization names, read leniently (a spec no one checked: the cache's)."""
    sync = as_map(raw)
    mutex = as_str(as_map(sync.get("mutex")).get("name"))
    if mutex:
        return Lock.mutex(mutex)
    ref = as_map(as_map(sync.get("semaphore")).get("configMapKeyRef"))
    name, key = as_str(ref.get("name")), as_str(ref.get("key"))
    return Lock.semaphore(name, key) if name and key else None


def executed_spec(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The spec a FlowRun executes: its own, or (with flowRef or rerunOf) the copy its first pass
    kept in status.resolvedSpec; None before that copy exists."""
    spec = as_map(body.get("spec"))
    if "flowRef" in spec or "rerunOf" in spec:
        resolved = as_map(body.get("status")).get("resolvedSpec")
        return resolved if isinstance(resolved, Mapping) else None
    return spec


def _tasks(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    tasks = spec.get("tasks")
    return [as_map(t) for t in tasks] if isinstance(tasks, list) else []


def wanted_locks(spec: object) -> list[Lock]:
    """Every lock a (resolved) spec names: the run's own, then its tasks', each once."""
    raw = as_map(spec)
    found = [lock_of(raw.get("synchronization")), *(lock_of(t.get("synchronization")) for t in _tasks(raw))]
    return list(dict.fromkeys(lock for lock in found if lock is not None))


def waiting_tasks(status: Mapping[str, Any]) -> dict[str, str]:
    """Task -> lock of each task a status says waits for its lock (status.locks: the engine writes
    there exactly the claims it makes)."""
    entries = status.get("locks")
    found: dict[str, str] = {}
    for entry in map(as_map, entries if isinstance(entries, list) else []):
        task, lock = as_str(entry.get("task")), as_str(entry.get("lock"))
        if task and lock and entry.get("state") == WAITING:
            found[task] = lock
    return found


def claims_of(body: Mapping[str, Any]) -> tuple[Claim, ...]:
    """What a FlowRun (raw, as cached) wants of locks now: its own lock while it has not finished
    (its spec says so, from its creation on), and each task's while its status says it waits for
    it (status.locks; holders among them are told apart by their Leases). A run being deleted or
    cancelled wants nothing new."""
    metadata, status = as_map(body.get("metadata")), as_map(body.get("status"))
    spec = executed_spec(body)
    cancelled = as_map(body.get("spec")).get("cancel") is True
    if spec is None or cancelled or metadata.get("deletionTimestamp") or status.get("phase") in RUN_FINAL:
        return ()
    uid, name = as_str(metadata.get("uid")), as_str(metadata.get("name"))
    created = parse_time(metadata.get("creationTimestamp")) or LAST
    found: list[Claim] = []
    own = lock_of(spec.get("synchronization"))
    if own is not None:
        found.append(Claim(created, name, -1, uid, "", own.id))
    waiting = waiting_tasks(status)
    for index, task in enumerate(_tasks(spec)):
        lock = lock_of(task.get("synchronization"))
        task_name = as_str(task.get("name"))
        if lock is not None and waiting.get(task_name) == lock.id:
            found.append(Claim(created, name, index, uid, task_name, lock.id))
    return tuple(found)


def semaphore_limit(lock: Lock, data: Mapping[str, str] | None, unreadable: str = "") -> tuple[int | None, str]:
    """(limit, problem) of a semaphore from its ConfigMap's data (None: no such ConfigMap);
    `unreadable` says why the ConfigMap cannot be read. A limit that is not known is None, and the
    problem says why in the user's words."""
    if lock.kind != SEMAPHORE:
        return 1, ""
    where = f"ConfigMap {lock.name}"
    if unreadable:
        return None, f"cannot read {where}: {unreadable}"
    if data is None:
        return None, f"{where} not found"
    if lock.key not in data:
        return None, f"{where} has no key {lock.key}"
    value = str(data[lock.key]).strip()
    if value.isascii() and value.isdigit() and int(value) <= MAX_SEMAPHORE_LIMIT:
        return int(value), ""
    return None, f"{where}: {lock.key}={value!r} is not an integer from 0 to {MAX_SEMAPHORE_LIMIT}"


def lock_view(
    lock: Lock, leases: Iterable[ObservedLease], claims: Iterable[Claim], limit: tuple[int | None, str]
) -> LockView:
    """One lock put together from the namespace's lock Leases and claims (of every lock: those of
    `lock` are kept) and its (limit, problem)."""
    return LockView(
        lock=lock,
        limit=limit[0],
        problem=limit[1],
        leases=tuple(sorted((lease for lease in leases if lease.lock == lock.id), key=lambda lease: lease.name)),
        claims=tuple(sorted((c for c in claims if c.lock == lock.id), key=lambda c: c.place)),
    )


def holder_name(lease: ObservedLease) -> str:
    """Who holds a slot, in words: `FlowRun a`, or `FlowRun a (task t)` for a task's lock."""
    run, _, task = (lease.holder or lease.name).partition("/")
    return f"FlowRun {run}" + (f" (task {task})" if task else "")
