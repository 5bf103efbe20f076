"""One reconcile pass: read the FlowRun and its children, run the pure engine, apply its actions,
write status once, post the events of the transitions. Synchronous (runs in a worker thread).

Every decision comes from the engine, from what exists now; this module only carries it out, so
the operator can be killed at any instant and the next pass continues where this one stopped.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from kubernetes.client.exceptions import ApiException

from flowrun import api, engine, metrics
from flowrun.engine import CaptureLogs, CreateObject, DeleteFlowRun, DeleteObject, Outcome, ValidateObjects
from flowrun.kube import ForeignObject, Kube, UnknownKind, manifest_kinds
from flowrun.observed import observed_from_objects

logger = logging.getLogger(__name__)

# HTTP statuses of a dry run that mean "this object is wrong", not "try again later".
PERMANENT_REJECTIONS = (400, 403, 404, 422)
# Captured logs keep their end: the last lines say why a task failed. Status objects stay small.
LOG_LIMIT = 4096


@dataclass(frozen=True)
class PassResult:
    gone: bool = False  # the FlowRun no longer exists
    waiting_for_finalizer: bool = False
    deleting: bool = False
    finalizer_releasable: bool = False
    done: bool = False
    requeue_after: float | None = None
    phase: str = ""
    message: str = ""


class Reconciler:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        # Per run: the refused actions already reported, so a refusal repeated on every pass
        # gives one Warning event, not one per pass.
        self._reported_failures: dict[str, set[str]] = {}

    def run_pass(self, namespace: str, name: str) -> PassResult:
        body = self.kube.get_flowrun(namespace, name)
        if body is None:
            return PassResult(gone=True)
        metadata = body["metadata"]
        deleting = bool(metadata.get("deletionTimestamp"))
        if api.FINALIZER not in (metadata.get("finalizers") or []) and not deleting:
            # Nothing is created before the finalizer is in place: it is what guarantees cleanup.
            return PassResult(waiting_for_finalizer=True, requeue_after=1.0)

        children = self.kube.list_children(namespace, metadata["uid"], manifest_kinds(body.get("spec")))
        observed = observed_from_objects(children)
        now = datetime.now(timezone.utc)
        outcome = engine.reconcile(engine.run_input_from_object(body), observed, now)
        outcome, logs, failures = self._apply(body, outcome, observed, now)

        status = _with_logs(outcome.status, logs)
        metrics.record_pass(metadata["uid"], body.get("status") or {}, status)
        if _pruned(status) != _pruned({k: v for k, v in (body.get("status") or {}).items() if k != "kopf"}):
            self.kube.patch_status(namespace, name, status)
        for event in outcome.events:
            self.kube.post_event(body, event.type, event.reason, event.message)
        reported = self._reported_failures.setdefault(metadata["uid"], set())
        for failure in failures:
            if failure not in reported:
                self.kube.post_event(body, "Warning", "ActionFailed", failure)
        reported.intersection_update(failures)
        reported.update(failures)
        return PassResult(
            deleting=deleting,
            finalizer_releasable=outcome.finalizer_releasable,
            done=outcome.done,
            # A refused action is retried on the next pass; do not wait long for it.
            requeue_after=min(outcome.requeue_after or 5.0, 5.0) if failures else outcome.requeue_after,
            phase=str(status.get("phase") or ""),
            message=str(status.get("message") or ""),
        )

    def _apply(
        self, body: Mapping[str, Any], outcome: Outcome, observed: Any, now: datetime
    ) -> tuple[Outcome, dict[str, str], list[str]]:
        """Apply the actions in order. A rejected dry run turns the pass into a spec error."""
        metadata = body["metadata"]
        namespace, uid = metadata["namespace"], metadata["uid"]
        logs: dict[str, str] = {}
        failures: list[str] = []
        for action in outcome.actions:
            if isinstance(action, ValidateObjects):
                error = self._dry_run(action)
                if error is not None:
                    rejected = engine.reconcile(engine.run_input_from_object(body, dry_run_error=error), observed, now)
                    return rejected, {}, []
            elif isinstance(action, CaptureLogs):
                logs[action.task] = self.kube.pod_log_tail(namespace, action.pod_name, action.container, action.tail_lines)
            elif isinstance(action, DeleteObject):
                try:
                    self.kube.delete(namespace, action.api_version, action.kind, action.name, action.propagation)
                except ApiException as error:
                    failures.append(f"deleting {action.kind} {action.name}: {error.status} {error.reason}")
            elif isinstance(action, CreateObject):
                manifest = action.manifest
                what = f"{manifest.get('kind')} {manifest.get('metadata', {}).get('name')}"
                try:
                    self.kube.create(manifest, uid)
                except (ForeignObject, UnknownKind) as error:
                    failures.append(f"creating {what}: {error}")
                except ApiException as error:
                    failures.append(f"creating {what}: {error.status} {_api_message(error)}")
            elif isinstance(action, DeleteFlowRun):
                self.kube.delete_flowrun(namespace, metadata["name"])
        return outcome, logs, failures

    def _dry_run(self, action: ValidateObjects) -> str | None:
        for manifest, field in zip(action.manifests, action.fields):
            try:
                self.kube.dry_run_create(manifest)
            except UnknownKind as error:
                return f"{field}: {error}"
            except ApiException as error:
                if error.status in PERMANENT_REJECTIONS:
                    return f"{field}: {_api_message(error)}"
                if error.status != 409:
                    raise
        return None


def _api_message(error: ApiException) -> str:
    try:
        return str(json.loads(error.body).get("message") or error.reason)
    except (TypeError, ValueError):
        return str(error.reason)


def _with_logs(status: dict[str, Any], logs: Mapping[str, str]) -> dict[str, Any]:
    if not logs:
        return status
    tasks = {name: dict(entry) for name, entry in (status.get("tasks") or {}).items()}
    for task, text in logs.items():
        if task in tasks:
            tasks[task]["logs"] = text[-LOG_LIMIT:]
    return {**status, "tasks": tasks}


def _pruned(value: Any) -> Any:
    """The value as the API server stores it after a merge patch: no None-valued keys."""
    if isinstance(value, Mapping):
        return {k: _pruned(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value
