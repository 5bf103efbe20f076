"""Leader election's decisions, pure: what a replica does with the `coordination.k8s.io/v1` Lease
it has just read (controller/election.py reads and writes it).

The rules are client-go's (k8s.io/client-go/tools/leaderelection). The Lease names its holder and
how long a holder's lease lasts (`leaseDurationSeconds`). A replica never compares the times
written in the Lease with its own clock: it notes, on its own monotonic clock, when it first saw
the Lease as it is now; a holder that wrote nothing since then for `leaseDurationSeconds` has lost
it. Every write carries the resourceVersion read, so of two replicas that decide to take the same
expired Lease only one succeeds (409 Conflict for the other).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flowrun import api


@dataclass(frozen=True)
class Record:
    """A Lease as leader election reads it."""

    holder: str  # "" when nobody holds it (released)
    lease_seconds: int
    acquired: str | None  # acquireTime, as written (informative)
    renewed: str | None  # renewTime, as written (informative)
    transitions: int  # leaseTransitions: how often the holder changed
    resource_version: str

    @property
    def held(self) -> bool:
        return bool(self.holder)

    def version(self) -> tuple[str, int, str | None, str | None, int]:
        """What a holder's write changes: a replica that sees it unchanged for `lease_seconds`
        takes the Lease."""
        return (self.holder, self.lease_seconds, self.acquired, self.renewed, self.transitions)


def record_of(lease: Mapping[str, Any]) -> Record:
    spec = lease.get("spec") or {}
    metadata = lease.get("metadata") or {}
    return Record(
        holder=str(spec.get("holderIdentity") or ""),
        lease_seconds=_int(spec.get("leaseDurationSeconds")),
        acquired=spec.get("acquireTime"),
        renewed=spec.get("renewTime"),
        transitions=_int(spec.get("leaseTransitions")),
        resource_version=str(metadata.get("resourceVersion") or ""),
    )


def _int(value: object) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


class Step(enum.Enum):
    CREATE = "create"  # no Lease yet: create it, held by this replica
    RENEW = "renew"  # this replica holds it: write a new renewTime
    TAKE = "take"  # free, released, or its holder stopped renewing: take it over
    WAIT = "wait"  # another replica holds it and renewed it less than leaseDurationSeconds ago


def next_step(record: Record | None, me: str, unchanged_since: float, now: float, last: Record | None = None) -> Step:
    """`unchanged_since`: when (this replica's monotonic clock) it first saw the Lease as it is
    now (`record.version()`, or gone). `last`: the Lease as last seen when there was one. A Lease
    deleted while another replica held it is waited for as if it were there: that replica may
    still be acting, and would create it again."""
    if record is None:
        if last is not None and last.held and last.holder != me and now < unchanged_since + last.lease_seconds:
            return Step.WAIT
        return Step.CREATE
    if record.holder == me:
        return Step.RENEW
    if record.held and now < unchanged_since + record.lease_seconds:
        return Step.WAIT
    return Step.TAKE


def micro_time(moment: datetime) -> str:
    """A Lease's times are MicroTime: RFC 3339 in UTC with microseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def written(
    step: Step, record: Record | None, namespace: str, name: str, me: str, lease_seconds: int, now: datetime
) -> dict[str, Any]:
    """The Lease to send for `step` (CREATE, RENEW or TAKE): held by `me`. A renewal keeps the
    acquire time and the count of transitions; a take-over counts one more transition. The
    resourceVersion read makes the write conditional."""
    stamp = micro_time(now)
    keeps = step is Step.RENEW and record is not None
    spec: dict[str, Any] = {
        "holderIdentity": me,
        "leaseDurationSeconds": lease_seconds,
        "acquireTime": (record.acquired if keeps and record is not None else None) or stamp,
        "renewTime": stamp,
        "leaseTransitions": _transitions(step, record),
    }
    return _lease(namespace, name, spec, record)


def _transitions(step: Step, record: Record | None) -> int:
    if record is None:
        return 0
    return record.transitions + (1 if step is Step.TAKE else 0)


def released(record: Record, namespace: str, name: str, now: datetime) -> dict[str, Any]:
    """The Lease its holder gives up on a graceful stop (as client-go's ReleaseOnCancel): no
    holder, so another replica takes it at its next try instead of after leaseDurationSeconds."""
    stamp = micro_time(now)
    spec = {
        "leaseDurationSeconds": 1,
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": record.transitions,
    }
    return _lease(namespace, name, spec, record)


def _lease(namespace: str, name: str, spec: dict[str, Any], record: Record | None) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if record is not None:
        metadata["resourceVersion"] = record.resource_version
    return {"apiVersion": api.LEASE[0], "kind": api.LEASE[1], "metadata": metadata, "spec": spec}
