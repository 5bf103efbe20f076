"""Conditions as every kind writes them (metav1.Condition), and the three that tell tools how an
object is doing the way Kubernetes tooling reads it: Ready, Reconciling and Stalled, after
sigs.k8s.io/cli-utils' kstatus (the library Flux, kpt and kubectl-style waiters compute readiness
with) and read by the Argo CD health checks in gitops/argocd/.

kstatus reads `status.observedGeneration` first (a generation the operator has not seen yet is
InProgress), then Reconciling=True (InProgress) and Stalled=True (Failed); failing those, Ready. So
the three are written together, exactly one of them True, on every status write of a FlowRun, a
Flow and a CronFlowRun. Pure. The users' contract: docs/api.md ("Conditions")."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from flowrun.api import CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED
from flowrun.lenient import as_map
from flowrun.timestamps import format_time, parse_time

HEALTH_STATES = (CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED)


def condition(
    prev: Mapping[str, Any], kind: str, status: str, reason: str, message: str, now: datetime, generation: int
) -> dict[str, Any]:
    """A metav1.Condition whose lastTransitionTime only moves when its status changes. `prev` is
    the previous conditions by type."""
    old = as_map(as_map(prev).get(kind))
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


def health(
    prev: Mapping[str, Any], state: str, reason: str, message: str, now: datetime, generation: int
) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled for an object in `state` (the one of the three that is True),
    all with `reason`. Ready carries `message` whatever its status (what `kubectl get` and Argo CD
    show); Reconciling and Stalled carry it only while True (they are abnormal-true: their False
    says nothing more)."""
    if state not in HEALTH_STATES:
        raise ValueError(f"unknown health state {state!r}")
    return [
        condition(
            prev,
            kind,
            "True" if kind == state else "False",
            reason,
            message if kind in (state, CONDITION_READY) else "",
            now,
            generation,
        )
        for kind in HEALTH_STATES
    ]
