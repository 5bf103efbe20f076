"""One pass of a CronFlowRun: read it, let `cron.decide` (pure) choose from its spec, its status,
the FlowRuns it owns and the time, then create, cancel and delete runs, post the events and write
its status. Synchronous (runs in a worker thread).

The runs come from the FlowRun watch cache (indexed by the CronFlowRun that made them). It may lag
a create of this process; that costs nothing: a run's name is its scheduled time, so a create
repeated by a pass that did not see it yet is AlreadyExists, which is success. The status is
written only when every action succeeded; otherwise the next pass decides again from what exists,
except for a run the API server refused to create: the CronFlowRun is Stalled, saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from flowrun import api, cron
from flowrun.controller.failures import FAILURE_REQUEUE_SECONDS, ReportOnce
from flowrun.cron import OwnedRun
from flowrun.kube import PERMANENT_REJECTIONS, api_message
from flowrun.merge_patch import changes
from flowrun.timestamps import parse_time

logger = logging.getLogger(__name__)

# A transient failure is retried soon (FAILURE_REQUEUE_SECONDS); a refusal (the template is refused
# by the API server, the operator may not create FlowRuns) is not going to pass by itself: retried,
# but not hot.
REFUSAL_REQUEUE_SECONDS = 60.0

# (uid of the controlling CronFlowRun, the run): what the cache holds of each FlowRun labelled
# flowrun.dev/cron.
Owned = tuple[str, OwnedRun]


class CronApi(Protocol):
    """What a CronFlowRun pass asks of the API server (kube.Kube)."""

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create_flowrun(self, manifest: Mapping[str, Any]) -> bool: ...
    def patch_flowrun(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None: ...
    def delete_flowrun(self, namespace: str, name: str) -> None: ...
    def patch_object_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> Any: ...
    def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...


@dataclass(frozen=True)
class CronPassResult:
    gone: bool = False  # the CronFlowRun no longer exists (or is being deleted)
    requeue_after: float | None = None  # None: nothing is due; only a change wakes it


class CronPass:
    def __init__(self, kube: CronApi, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.kube = kube
        self.clock = clock
        # Per CronFlowRun UID: the failures already reported, so a repeated one gives one event.
        self._reported = ReportOnce()

    def run(self, namespace: str, name: str, owned: Sequence[Owned]) -> CronPassResult:
        body = self.kube.get_object(api.CRON_KIND, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            # Its runs go with it: they carry its owner reference (the garbage collector deletes
            # them, each through its finalizer).
            return CronPassResult(gone=True)
        metadata = body["metadata"]
        uid = metadata["uid"]
        # The label says which CronFlowRun a run belongs to; the controller owner reference proves
        # it (a FlowRun someone labelled by hand is neither counted nor ever deleted).
        runs = [run for owner, run in owned if owner == uid]
        generation = metadata.get("generation")
        decision = cron.decide(
            name,
            body.get("spec"),
            body.get("status") or {},
            runs,
            self.clock(),
            created_at=parse_time(metadata.get("creationTimestamp")),
            generation=generation if isinstance(generation, int) else 0,
        )

        failures, refused, create_refused = self._apply(namespace, body, decision)
        for failure in self._reported.fresh(uid, failures):
            logger.warning("CronFlowRun %s/%s: %s", namespace, name, failure)
            self.kube.post_event(body, "Warning", "ActionFailed", failure)
        if create_refused is not None:
            # Nothing else of the decision happened, but the refusal is the CronFlowRun's state now.
            message = f"{create_refused}; trying again in {REFUSAL_REQUEUE_SECONDS:.0f}s"
            generation = decision.status["observedGeneration"]
            status = cron.refused_status(body.get("status"), generation, self.clock(), message)
            gone = self._write_status(namespace, name, body, status)
            return CronPassResult(gone=gone, requeue_after=None if gone else REFUSAL_REQUEUE_SECONDS)
        if failures:
            return CronPassResult(requeue_after=REFUSAL_REQUEUE_SECONDS if refused else FAILURE_REQUEUE_SECONDS)
        for event in decision.events:
            self.kube.post_event(body, event.type, event.reason, event.message)
        if self._write_status(namespace, name, body, decision.status):
            return CronPassResult(gone=True)
        return CronPassResult(requeue_after=decision.requeue_after)

    def _write_status(self, namespace: str, name: str, body: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
        """Write `status` (a merge patch) unless the CronFlowRun has it already; True if it is gone."""
        if not changes(status, body.get("status") or {}):
            return False
        try:
            self.kube.patch_object_status(api.CRON_KIND, namespace, name, status)
        except ApiException as error:
            if error.status != 404:
                raise
            logger.debug("CronFlowRun %s/%s is gone: %s", namespace, name, error)  # deleted meanwhile
            return True
        return False

    def forget(self, uid: str) -> None:
        self._reported.forget(uid)

    def _apply(
        self, namespace: str, body: dict[str, object], decision: cron.CronDecision
    ) -> tuple[list[str], bool, str | None]:
        """Apply the decision's actions in order; returns the failures, whether one of them is a
        refusal (see PERMANENT_REJECTIONS), and the refusal of the run to create, if it was."""
        failures: list[str] = []
        refused = False
        create_refused: str | None = None

        def failed(what: str, error: ApiException) -> None:
            nonlocal refused
            refused = refused or error.status in PERMANENT_REJECTIONS
            failures.append(f"{what}: {error.status} {api_message(error)}")

        if decision.create is not None:
            try:
                self.kube.create_flowrun(cron.run_manifest(body, decision.create))
            except ApiException as error:
                failed(f"creating FlowRun {decision.create.name}", error)
                create_refused = failures[-1] if error.status in PERMANENT_REJECTIONS else None
        for run in decision.cancel:
            try:
                self.kube.patch_flowrun(namespace, run, {"spec": {"cancel": True}})
            except ApiException as error:
                failed(f"cancelling FlowRun {run}", error)
        for run in decision.delete:
            try:
                self.kube.delete_flowrun(namespace, run)
            except ApiException as error:
                failed(f"deleting FlowRun {run}", error)
        return failures, refused, create_refused
