"""Orphaned children: objects labelled with a FlowRun's UID whose FlowRun no longer exists.

A run's children carry an owner reference to it, so Kubernetes' garbage collector deletes them a
few seconds after the run goes. An object still there after a grace period escaped that: its
owner reference was removed, the finalizer was taken off by hand while the collector could not
act, or a bug. The sweep finds them in the operator's watch caches (no request), exports their
count by kind (`flowrun_orphaned_objects`), logs each once by name, and, only when enabled,
deletes them a while later. Only the kinds the operator creates whatever the spec (Pods, Jobs,
Deployments, Services) are swept: an EndpointSlice, watched too, goes with its Service.

`sweep` is pure: what to report and what to delete, from what is cached and when each orphan was
first seen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# (apiVersion, kind, namespace, name)
ObjectRef = tuple[str, str, str, str]


@dataclass(frozen=True)
class Child:
    ref: ObjectRef
    uid: str  # of the FlowRun it is labelled with


@dataclass(frozen=True)
class SweepState:
    first_seen: Mapping[ObjectRef, float] = field(default_factory=dict)  # when each was first seen orphaned
    reported: frozenset[ObjectRef] = frozenset()


@dataclass(frozen=True)
class Sweep:
    orphans: tuple[ObjectRef, ...]  # past the grace period
    newly_reported: tuple[ObjectRef, ...]  # orphans this sweep reports for the first time
    delete: tuple[ObjectRef, ...]  # past the grace period and the deletion delay (deletion enabled)
    state: SweepState  # for the next sweep


def sweep(
    flowrun_uids: Iterable[str],
    children: Iterable[Child],
    state: SweepState,
    now: float,
    grace: float,
    delete_after: float | None,
) -> Sweep:
    """Children whose run is unknown are orphans once seen so for `grace` seconds; with
    `delete_after` set, they are deleted that many seconds after that. An object that is no
    longer an orphan (gone, or its run known again) is forgotten."""
    known = set(flowrun_uids)
    first_seen: dict[ObjectRef, float] = {}
    orphans: list[ObjectRef] = []
    delete: list[ObjectRef] = []
    for child in children:
        if child.uid in known:
            continue
        since = state.first_seen.get(child.ref, now)
        first_seen[child.ref] = since
        if now - since < grace:
            continue
        orphans.append(child.ref)
        if delete_after is not None and now - since >= grace + delete_after:
            delete.append(child.ref)
    newly = [ref for ref in orphans if ref not in state.reported]
    return Sweep(
        orphans=tuple(sorted(orphans)),
        newly_reported=tuple(sorted(newly)),
        delete=tuple(sorted(delete)),
        state=SweepState(first_seen, frozenset(orphans)),
    )
