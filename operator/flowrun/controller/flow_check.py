"""Validation of a Flow, whenever its spec is new to the operator (created, changed, or changed
while the operator was down): the checks a run's spec gets, the server-side dry run of its
children included, written to the Flow's status (SpecValid, Ready or Stalled, taskCount,
resourceCount, message). Synchronous (runs in a worker thread)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from flowrun import api, flows
from flowrun.api import INVALID_SPEC
from flowrun.controller.flowrun_pass import FlowRunPass
from flowrun.lenient import as_map, conditions_by_type
from flowrun.merge_patch import changes

logger = logging.getLogger(__name__)


def checked(flow: Mapping[str, Any]) -> bool:
    """The Flow's status reflects its current spec (metadata.generation was validated) and has
    every condition this operator writes (a status an older one wrote lacks Ready)."""
    status = as_map(flow.get("status"))
    generation = as_map(flow.get("metadata")).get("generation")
    conditions = conditions_by_type(status)
    return status.get("observedGeneration") == generation and {"SpecValid", api.CONDITION_READY} <= conditions.keys()


class FlowCheckApi(Protocol):
    """What the check of a Flow asks of the API server (kube.Kube)."""

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def patch_object_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> Any: ...
    def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...


class FlowCheck:
    def __init__(self, kube: FlowCheckApi, passes: FlowRunPass) -> None:
        self.kube = kube
        self.passes = passes  # whose dry run of children a Flow's children get too

    def check(self, namespace: str, name: str) -> bool:
        """Validate the Flow unless its status is up to date; True when there is nothing (left)
        to do: checked already, or gone. A transient API error raises (the caller retries)."""
        flow = self.kube.get_object(api.FLOW_KIND, namespace, name)
        if flow is None or checked(flow):
            return True
        now = datetime.now(UTC)
        verdict = flows.check_flow(flow.get("spec"), namespace)
        if verdict.error is None:
            action = flows.flow_dry_run(flow, now)
            rejection = self.passes.dry_run(action) if action is not None else None
            if rejection is not None:
                verdict = flows.rejected_by_dry_run(verdict, rejection)
        previous = as_map(flow.get("status"))
        generation = flow["metadata"].get("generation")
        status = flows.flow_status(verdict, previous, generation if isinstance(generation, int) else 0, now)
        if changes(status, previous):
            try:
                self.kube.patch_object_status(api.FLOW_KIND, namespace, name, status)
            except ApiException as error:
                if error.status != 404:
                    raise
                logger.debug("Flow %s/%s is gone: %s", namespace, name, error)  # deleted meanwhile
                return True
        was_invalid = as_map(conditions_by_type(previous).get("SpecValid")).get("status") == "False"
        if verdict.error is not None and not was_invalid:
            self.kube.post_event(flow, "Warning", INVALID_SPEC, str(verdict.error))
        logger.info("Flow %s/%s: %s", namespace, name, verdict.error or "valid")
        # Checked again on the next call: the Flow may have changed meanwhile.
        return False
