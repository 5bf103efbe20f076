"""What the engine is handed (RunInput) and what it hands back (Outcome: the new status, the
actions for the pass to apply in order, the events to post)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from flowrun import api
from flowrun.api import LOG_TAIL_LINES
from flowrun.gitops import declared_in_git
from flowrun.lenient import as_map
from flowrun.model import RunIdentity
from flowrun.timestamps import parse_time


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
    # Set by the pass when the ValidateObjects dry run was rejected by the API server.
    dry_run_error: str | None = None
    # "Kind/name" -> why the API server refused to create that child in the previous pass, for a
    # reason that does not go away by itself (Invalid, Forbidden, a foreign object holding the
    # name, an unknown kind). Transient errors never appear here: those creates are just retried.
    refused: Mapping[str, str] = field(default_factory=dict)
    # Set by the pass when a create of the previous pass was refused because the namespace is
    # being deleted: nothing can be created in it any more (a cleanup job cannot run).
    namespace_terminating: bool = False
    # What says the run is declared in Git (gitops.declared_in_git), None if nothing does: then its
    # TTL never deletes it, since the GitOps tool would create it again and it would run again.
    declared_in_git: str | None = None

    @property
    def identity(self) -> RunIdentity:
        return RunIdentity(self.name, self.namespace, self.uid)


def run_input_from_object(
    body: Mapping[str, Any], dry_run_error: str | None = None, refused: Mapping[str, str] | None = None
) -> RunInput:
    """RunInput from a FlowRun object as the API returns it."""
    metadata = as_map(body.get("metadata"))
    annotations = as_map(metadata.get("annotations"))
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
        declared_in_git=declared_in_git(metadata),
    )


@dataclass(frozen=True)
class ValidateObjects:
    """Server-side dry run of every child (references filled with placeholders), applied before
    anything else in the list. On rejection (Invalid, Forbidden, unknown kind; not a transient
    error) the pass applies none of the other actions and decides again with
    RunInput.dry_run_error = f"{fields[i]}: {the API server's message}". AlreadyExists is success."""

    manifests: tuple[dict[str, Any], ...]
    fields: tuple[str, ...]  # fields[i]: the spec field manifests[i] is built from


@dataclass(frozen=True)
class CreateObject:
    """Create if absent: AlreadyExists is success."""

    manifest: dict[str, Any]


@dataclass(frozen=True)
class TakeLock:
    """Create the Lease of one slot of a lock (engine/locks.py), if absent. The API server decides
    between passes of two runs taking the same slot: AlreadyExists with a lock's Lease means another
    took it first (not a failure: the next pass sees who holds it); with any other object of that
    name, the create is refused (RunInput.refused)."""

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


Action = ValidateObjects | CreateObject | TakeLock | CaptureLogs | DeleteObject | DeleteFlowRun


class Event(NamedTuple):
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """The result of one pass. `status` is the complete new status: every key is always present,
    None where unset, so writing it as a JSON merge patch also clears what no longer applies.
    Actions are applied in order; the pass then writes `status` (plus captured logs)."""

    status: dict[str, Any]
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    finalizer_releasable: bool = False
    done: bool = False
