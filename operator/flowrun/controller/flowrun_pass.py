"""One pass of a FlowRun: given the FlowRun and its children as the watch caches hold them, resolve
the spec it executes (its own, or the snapshot of its Flow or of the run it reruns), let the pure
engine decide, apply its actions, write the status (once; the first pass of a run of a Flow or a
rerun stores its snapshot before anything is created), post the events of the transitions, and
keep the finalizer (put on before anything is created, taken off when cleanup is done).
Synchronous (runs in a worker thread). What it wrote, created and deleted is handed back
(PassResult) so that the controller's caches do not lag this process's own writes.

Every decision comes from the engine, from what exists now; this module only carries it out, so
the operator can be killed at any instant and the next pass continues where this one stopped.
What a pass needs of the API and of the caches is written down as two protocols (PassApi,
PassCaches): kube.Kube and caches.Caches in the operator, fakes in the unit tests.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from flowrun import api, engine, metrics, resolution
from flowrun.controller import failpoints
from flowrun.controller.access import Access
from flowrun.controller.caches import FOREIGN_STATUS, OWN_STATUS, STORED_BYTES
from flowrun.controller.dry_runs import AcceptedDryRuns
from flowrun.controller.failures import FAILURE_REQUEUE_SECONDS, ReportOnce
from flowrun.controller.pod_refusals import PodRefusals
from flowrun.engine import (
    CaptureLogs,
    CreateObject,
    DeleteFlowRun,
    DeleteObject,
    Outcome,
    RunInput,
    TakeLock,
    ValidateObjects,
    budget,
)
from flowrun.engine.status import invalid_outcome, validated
from flowrun.kube import (
    CHILD_KINDS,
    PERMANENT_REJECTIONS,
    ChildrenUnreadable,
    ForeignObject,
    UnknownKind,
    api_message,
    manifest_fields,
    manifest_kinds,
    refusal_message,
    refused_as_terminating,
)
from flowrun.lenient import as_map, conditions_by_type
from flowrun.locks import LockView, wanted_locks
from flowrun.manifests import build_result_config_map
from flowrun.merge_patch import changes
from flowrun.model import Lock, RunIdentity, SpecError, parse_spec
from flowrun.observed import (
    ChildKey,
    Observed,
    ObservedChild,
    ObservedPod,
    child_key,
    observe,
    observed_from_children,
    run_of,
    with_pod_create_failures,
)


class PassApi(Protocol):
    """What a pass asks of the API server (kube.Kube)."""

    def add_finalizer(self, body: Mapping[str, Any]) -> dict[str, Any]: ...
    def remove_finalizer(self, body: Mapping[str, Any]) -> dict[str, Any] | None: ...
    def patch_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> dict[str, Any]: ...
    def get_flowrun(self, namespace: str, name: str) -> dict[str, Any] | None: ...
    def create(self, manifest: Mapping[str, Any], uid: str) -> dict[str, Any] | None: ...
    def take_lock(self, lease: Mapping[str, Any]) -> dict[str, Any] | None: ...
    def dry_run_create(self, manifest: Mapping[str, Any]) -> None: ...
    def namespace_terminating(self, namespace: str) -> bool: ...
    def delete(self, namespace: str, api_version: str, kind: str, name: str, propagation: str) -> None: ...
    def delete_flowrun(self, namespace: str, name: str) -> None: ...
    def get_child(self, api_version: str, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def patch_labels(
        self, api_version: str, kind: str, namespace: str, name: str, labels: Mapping[str, str]
    ) -> None: ...
    def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str: ...
    def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...
    def event_messages(self, namespace: str, field_selector: str) -> list[str]: ...
    def resource(self, api_version: str, kind: str) -> Any: ...
    def allowed(self, namespace: str, group: str, plural: str, verb: str) -> bool: ...


class PassCaches(Protocol):
    """What a pass reads from the watch caches (caches.Caches), besides the run and its children of
    the watched kinds, which it is handed."""

    def other_children(self, namespace: str, uid: str, kinds: Sequence[tuple[str, str]]) -> list[ObservedChild]: ...
    def children_unreadable(self, namespace: str) -> ChildrenUnreadable | None: ...
    def flow(self, namespace: str, name: str) -> Mapping[str, Any] | None: ...
    def lock_views(self, namespace: str, locks: Sequence[Lock]) -> dict[str, LockView]: ...


logger = logging.getLogger(__name__)

# How soon the pass after a permanent refusal comes: that pass turns it into a status. Each such
# pass consumes an attempt or fails a block, so this cannot loop hot for long.
REFUSAL_REQUEUE_SECONDS = 1.0
# The children cannot be read (ChildrenUnreadable): the reason of the Warning event, and how soon
# the next pass tries again.
CHILDREN_UNREADABLE = "ChildrenUnreadable"
UNREADABLE_REQUEUE_SECONDS = 10.0
# A child that had lost the operator's labels got them back: the next pass comes with its watch
# event, or after this at the latest.
RELABEL_REQUEUE_SECONDS = 1.0
# A deleted run held by a failed cleanup is passed again this often: its namespace may be deleted
# later (one dry-run create to find out), and then the run goes with it.
BLOCKED_RECHECK_SECONDS = 60.0
# How long a status whose only news is that pods started running may wait for more news (a short
# task's end) to be written with it: `kubectl get` shows a pod running this much later at most.
HOLD_STARTED_SECONDS = 2.0
LABELS_RESTORED = "LabelsRestored"
# The Warning event of a run whose status someone else wrote, and the operator wrote its own back.
STATUS_OVERRULED = "StatusOverruled"
# Room kept beside the status under the object's limit: fields that grow between two passes.
BUDGET_SLACK = 8192
# Captured logs keep their end: the last lines say why a task failed. Status objects stay small.
LOG_LIMIT = 4096


@dataclass(frozen=True)
class PassResult:
    gone: bool = False  # the FlowRun no longer exists
    deleting: bool = False
    released: bool = False  # the finalizer is off (or was never on): nothing more to do for the run
    done: bool = False
    requeue_after: float | None = None
    phase: str = ""
    message: str = ""
    waiting_for_flow: str | None = None  # the run waits for this Flow to appear (FlowNotFound)
    # What this pass wrote: the FlowRun as the API server stored it after the last patch, the
    # children of the watched kinds (CHILD_KINDS) it created (as created) and deleted.
    written: Mapping[str, Any] | None = None
    created: tuple[ObservedChild, ...] = ()
    deleted: tuple[ChildKey, ...] = ()


@dataclass
class _Writes:
    """What one pass wrote so far (see PassResult), and what applying its actions gave back: the
    captured logs (task -> text), the failures to report as ActionFailed events (transient errors
    and refused deletes), and the creates refused for good ("Kind/name" -> message) for the next
    pass's engine, which reports those itself as transitions."""

    body: Mapping[str, Any] | None = None
    created: list[ObservedChild] = dataclasses.field(default_factory=list)
    deleted: list[ChildKey] = dataclasses.field(default_factory=list)
    logs: dict[str, str] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)
    refusals: dict[str, str] = dataclasses.field(default_factory=dict)

    def result(self, **fields: Any) -> PassResult:
        return PassResult(written=self.body, created=tuple(self.created), deleted=tuple(self.deleted), **fields)


class FlowRunPass:
    def __init__(
        self,
        kube: PassApi,
        caches: PassCaches,
        clock: Callable[[], float] = time.monotonic,
        hold_started: float = HOLD_STARTED_SECONDS,
    ) -> None:
        self.kube = kube
        self.caches = caches
        # Per run: the failed actions already reported, so a failure repeated on every pass
        # gives one Warning event, not one per pass.
        self._reported = ReportOnce()
        # Per run: the creates the API server refused for good in the last pass ("Kind/name" ->
        # its message), handed to the engine in the next pass (RunInput.refused) so that what
        # waits for the child fails with a reason instead of waiting forever. Kept in memory only:
        # after a restart the next pass sends the create again, is refused again, and the pass
        # after that records it.
        self._refused: dict[str, dict[str, str]] = {}
        # Per run: a create of the last pass was refused because the namespace is being deleted
        # (RunInput.namespace_terminating). Like the refusals, for the next pass only.
        self._namespace_terminating: set[str] = set()
        # uid -> the status the pass of a run wrote or was writing last (whether the write returned
        # or not); the controller takes it when the pass ends: a pass that raised after it leaves a
        # status that may or may not have landed (expectations.py, `unsure`).
        self.attempted: dict[str, Mapping[str, Any]] = {}
        # Why a setup or cleanup Job's pod cannot be created (read from its FailedCreate Event).
        self.pod_refusals = PodRefusals(kube.event_messages)
        # What the operator may do with the kinds of setup manifests (asked once, cached).
        self.access = Access(kube.allowed)
        # Dry runs of the same templates in the same namespace, accepted lately (dry_runs.py).
        self.dry_runs = AcceptedDryRuns()
        # Per run: since when a status whose only news is pods that started running is held back
        # (engine.only_pods_started), at most HOLD_STARTED_SECONDS.
        self._held: dict[str, float] = {}
        # Per run: the task pods this process created or deleted that no status write of the run has
        # recorded since (name -> the pod as created or last seen). A pass whose status write fails
        # after its creates and deletes (the API server went away between them) leaves a status
        # that does not know of them: a pod created then, and deleted by someone before the next
        # pass saw it, would be created again under the same name; a pod deleted for its deadline
        # would be taken for deleted by someone else (PodDeleted). Until a status write of the run
        # lands, a pod of these that the caches lack is handed to the passes as being deleted.
        # Memory only: a restart between the two loses it.
        self._unrecorded_pods: dict[str, dict[str, ObservedPod]] = {}
        self._clock, self._hold_started = clock, hold_started

    def forget(self, uid: str) -> None:
        """The run is gone: drop what is remembered about it."""
        self._held.pop(uid, None)
        self._unrecorded_pods.pop(uid, None)
        self._reported.forget(uid)
        self._refused.pop(uid, None)
        self._namespace_terminating.discard(uid)
        self.pod_refusals.forget(uid)
        self.attempted.pop(uid, None)

    def run(self, body: Mapping[str, Any] | None, children: Sequence[ObservedChild]) -> PassResult:
        """One pass over the FlowRun `body` (None: it is gone) with `children`, the run's children
        of the watched kinds (CHILD_KINDS); children of a setup manifest's other kinds are read
        from their caches."""
        if body is None:
            return PassResult(gone=True)
        try:
            return self._run(body, children)
        except ApiException as error:
            if error.status != 404:
                raise
            # The FlowRun was deleted while the pass ran (a write of it met NotFound): an ordinary
            # race, not an error; its DELETED event ends it.
            logger.debug("FlowRun %s/%s is gone: %s", body["metadata"]["namespace"], body["metadata"]["name"], error)
            return PassResult(gone=True)

    def _run(self, body: Mapping[str, Any], children: Sequence[ObservedChild]) -> PassResult:
        failpoints.hang_if("pass-hangs")
        writes = _Writes()
        metadata = body["metadata"]
        if api.FINALIZER not in (metadata.get("finalizers") or []) and metadata.get("deletionTimestamp"):
            # Taken off already (by this operator, or by hand): nothing more to do.
            return PassResult(deleting=True, released=True, phase=_phase(body))
        body = self._with_finalizer(body, writes)
        run = self._run_input(body)
        if run.deleting and run.skip_cleanup:
            # Looked at before anything else is read: whatever else fails (a kind of child that
            # cannot be listed, a Flow that cannot be read), the annotation releases the finalizer.
            return self._release(body, writes)
        now = datetime.now(UTC)
        resolved = self._resolve(run, now)
        if isinstance(resolved, resolution.Waiting):
            return self._wait(body, run, resolved, writes)
        if isinstance(resolved, resolution.Refused):
            return self._refuse(body, run, resolved, now, writes)
        if resolved.snapshot:
            # The first pass of a run with flowRef or rerunOf: the snapshot is stored before anything
            # is created, so a pass after a crash executes the same spec even if the Flow (or the
            # original run) has changed or gone meanwhile.
            writes.body = self.kube.patch_status(run.namespace, run.name, {**resolved.snapshot, **resolved.seed})
        run = dataclasses.replace(run, spec=resolved.spec, status=resolved.engine_status(run.status))
        return self._drive(body, run, resolved, children, now, writes)

    def _drive(
        self,
        body: Mapping[str, Any],
        run: RunInput,
        resolved: resolution.Resolved,
        children: Sequence[ObservedChild],
        now: datetime,
        writes: _Writes,
    ) -> PassResult:
        """The run's spec is known: observe its children, let the engine decide, apply, write."""
        problem = None if validated(run.status) else too_large(body, run) or self._manifest_problem(run)
        if problem is not None:
            # Before anything of the kind is listed or created: nothing exists yet.
            return self._write(body, invalid_outcome(run, run.status, now, problem), resolved, writes)
        try:
            observed = self._observed(body, run, children, now)
        except ChildrenUnreadable as error:
            return self._unreadable(body, str(error), writes)
        if self._labels_restored(body, engine.missing_children(run, observed, now)):
            # Back in the caches within moments (their watch event asks for the next pass).
            return writes.result(requeue_after=RELABEL_REQUEUE_SECONDS, phase=_phase(body))
        outcome = self._apply(body, run, engine.decide(run, observed, now), observed, now, writes)
        if cleanup_blocked(outcome.status) and self.kube.namespace_terminating(run.namespace):
            # Held by a failed cleanup, it would hold its namespace for ever: it goes with it.
            run = dataclasses.replace(run, namespace_terminating=True)
            outcome = self._apply(body, run, engine.decide(run, observed, now), observed, now, writes)
            self._post_outside(body, "CleanupFailed", f"released with its namespace; {_left_outside(outcome.status)}")
        if writes.refusals:
            # Only this pass's refusals: an object created or no longer asked for drops out.
            self._refused[run.uid] = writes.refusals
        if run.namespace_terminating:
            self._report_outside(body, outcome)
        return self._write(body, outcome, resolved, writes)

    def _with_finalizer(self, body: Mapping[str, Any], writes: _Writes) -> Mapping[str, Any]:
        """The run with the operator's finalizer on. Nothing is created before it is in place: it is
        what guarantees cleanup."""
        if api.FINALIZER in (body["metadata"].get("finalizers") or []):
            return body
        writes.body = self.kube.add_finalizer(body)
        kept = {key: body[key] for key in (OWN_STATUS, FOREIGN_STATUS) if key in body}
        return {**writes.body, **kept} if kept else writes.body

    def _refuse(
        self, body: Mapping[str, Any], run: RunInput, refused: resolution.Refused, now: datetime, writes: _Writes
    ) -> PassResult:
        """The spec cannot run (its Flow, or the run it reruns, says why): reported as any invalid spec."""
        outcome = invalid_outcome(run, run.status, now, str(refused.error))
        return self._write(body, outcome, resolution.Resolved(run.spec), writes)

    def _labels_restored(self, body: Mapping[str, Any], vouched: Sequence[engine.Vouched]) -> bool:
        """Look up each child the status vouches for that the caches lack: one that exists and is
        this run's (its owner reference) lost the operator's labels to someone's edit and left the
        watch; it gets them back, and is not taken for gone."""
        metadata = body["metadata"]
        restored = False
        for child in vouched:
            ref = child.ref
            found = self.kube.get_child(ref.api_version, ref.kind, metadata["namespace"], ref.name)
            if found is None or run_of(found) != metadata["uid"]:
                continue  # gone (or no longer the run's): the engine decides what that means
            self.kube.patch_labels(ref.api_version, ref.kind, metadata["namespace"], ref.name, child.labels)
            message = f"{ref} had lost the operator's labels (edited by someone else): restored"
            logger.info("FlowRun %s/%s: %s", metadata["namespace"], metadata["name"], message)
            self.kube.post_event(body, "Warning", LABELS_RESTORED, message)
            restored = True
        return restored

    def _run_input(self, body: Mapping[str, Any]) -> RunInput:
        """The engine's input, with what the last pass learnt of refused creates. Taken out, not
        read: a pass that fails half way forgets them, which is as safe as a restart."""
        uid = body["metadata"]["uid"]
        own = body.get(OWN_STATUS)
        believed = body if own is None else {**body, "status": own}
        run = engine.run_input_from_object(believed, refused=self._refused.pop(uid, {}))
        if uid in self._namespace_terminating:
            self._namespace_terminating.discard(uid)
            run = dataclasses.replace(run, namespace_terminating=True)
        return run

    def _manifest_problem(self, run: RunInput) -> str | None:
        """Why a setup manifest cannot be made (its field, then why): its kind is cluster-scoped, or
        the operator may not create, read, list, watch or delete it in the run's namespace. A kind
        the API server does not serve is left to the dry run (it says so, naming the field); a spec
        that does not parse, to the engine."""
        try:
            parse_spec(run.spec, run.namespace)
        except SpecError:
            return None
        for field, api_version, kind in manifest_fields(run.spec):
            try:
                resource = self.kube.resource(api_version, kind)
            except UnknownKind:
                continue
            if not resource.namespaced:
                return f"{field}: {kind} in {api_version} is cluster-scoped: children must be namespaced"
            denied = self.access.denied(run.namespace, api_version.rpartition("/")[0], resource.name)
            if denied:
                return (
                    f"{field}: the operator may not {', '.join(denied)} {resource.name} in namespace {run.namespace}"
                    " (grant it, e.g. in the chart's rbac.extraRules)"
                )
        return None

    def _observed(
        self, body: Mapping[str, Any], run: RunInput, children: Sequence[ObservedChild], now: datetime
    ) -> Observed:
        """The run's children: those handed to the pass, those of a setup manifest's other kinds, and
        why a Job's pod is refused. ChildrenUnreadable if a kind cannot be read, but for a run being
        deleted: its deletion never waits on a kind the operator cannot list (what is left of it
        goes with the FlowRun, by its owner reference), and a Warning event says so. So does a
        watched kind the operator may not list (EndpointSlices without their RBAC rule: a block
        would wait for ever for endpoints it cannot see), but for a run being deleted."""
        unreadable = self.caches.children_unreadable(run.namespace)
        if unreadable is not None and not run.deleting:
            raise unreadable
        others: list[ObservedChild] = []
        kinds = [*manifest_kinds(run.spec), *([api.CONFIG_MAP] if results_moved(run.status) else [])]
        for kind in dict.fromkeys(k for k in kinds if k not in CHILD_KINDS):
            try:
                others += self.caches.other_children(run.namespace, run.uid, [kind])
            except ChildrenUnreadable as error:
                if not run.deleting:
                    raise
                message = f"cannot read the run's children: {error}; left to the garbage collector"
                for fresh in self._reported.fresh((run.uid, "unreadable", kind), [message]):
                    self.kube.post_event(body, "Warning", CHILDREN_UNREADABLE, fresh)
        present = {child_key(child) for child in children}
        # Not for a run being deleted: it creates nothing and keeps no reason, and a pod that is
        # not there must not hold its finalizer while its status cannot be written.
        unrecorded = self._unrecorded_pods.get(run.uid, {}) if not run.deleting else {}
        gone = [dataclasses.replace(pod, deleting=True) for pod in unrecorded.values() if child_key(pod) not in present]
        observed = observed_from_children([*children, *others, *gone])
        refusals = self.pod_refusals.read(run.uid, run.namespace, observed.jobs, now)
        locks = wanted_locks(run.spec)
        if locks:
            # Every lock the run names, as the namespace shows it (its holders, who waits, a
            # semaphore's limit): the engine decides who takes a free slot.
            observed = dataclasses.replace(observed, locks=self.caches.lock_views(run.namespace, locks))
        return with_pod_create_failures(observed, refusals)

    def _release(self, body: Mapping[str, Any], writes: _Writes) -> PassResult:
        """Take the finalizer off: the FlowRun goes (its remaining children with it, by owner
        references)."""
        stored = self.kube.remove_finalizer(body)
        if stored is not None:
            writes.body = stored
        return writes.result(deleting=True, released=True, phase=_phase(body), gone=stored is None)

    def _report_outside(self, body: Mapping[str, Any], outcome: Outcome) -> None:
        """A terminating namespace accepts no Event either: its Warning events are logged and posted
        on the Namespace (as Events of cluster-scoped objects are, in namespace `default`)."""
        for event in outcome.events:
            if event.type == "Warning":
                self._post_outside(body, event.reason, event.message)

    def _post_outside(self, body: Mapping[str, Any], reason: str, message: str) -> None:
        metadata = body["metadata"]
        namespace, name = metadata["namespace"], metadata["name"]
        where = {"name": namespace, "namespace": "default", "uid": ""}
        involved = {"apiVersion": "v1", "kind": "Namespace", "metadata": where}
        text = f"FlowRun {namespace}/{name}: {message}"
        logger.warning("%s: %s", reason, text)
        self.kube.post_event(involved, "Warning", reason, text)

    def _resolve(self, run: RunInput, now: datetime) -> resolution.Resolution:
        """The spec this pass executes: see resolution.py. The Flow comes from the lookup; the
        original of a rerun is read once, on its first pass (then its snapshot is in status)."""
        found: Mapping[str, Any] | None = None
        kind = resolution.needs_lookup(run.spec, run.status, run.name)
        if kind == api.FLOW_KIND:
            found = self.caches.flow(run.namespace, resolution.ref_name(run.spec, "flowRef") or "")
        elif kind == api.KIND:
            original = resolution.ref_name(run.spec, "rerunOf") or ""
            found = self.kube.get_flowrun(run.namespace, original) if original else None
        return resolution.resolve_run(
            run.spec,
            run.status,
            found=found,
            created_at=run.created_at,
            now=now,
            name=run.name,
            generation=run.generation,
            namespace=run.namespace,
        )

    def _wait(self, body: Mapping[str, Any], run: RunInput, waiting: resolution.Waiting, writes: _Writes) -> PassResult:
        """The Flow does not exist yet: nothing is created, so a run being deleted may go at once."""
        if run.deleting:
            return self._release(body, writes)
        if changes(waiting.status, body.get("status") or {}):
            writes.body = self.kube.patch_status(run.namespace, run.name, waiting.status)
        for event in waiting.events:
            self.kube.post_event(body, event.type, event.reason, event.message)
        return writes.result(
            requeue_after=waiting.requeue_after,
            phase=str(waiting.status.get("phase") or ""),
            message=str(waiting.status.get("message") or ""),
            waiting_for_flow=resolution.ref_name(run.spec, "flowRef"),
        )

    def _unreadable(self, body: Mapping[str, Any], error: str, writes: _Writes) -> PassResult:
        """The children cannot be read: the engine cannot decide anything (a child it does not
        see may exist). The status says why (the rest of it is kept), a Warning event once; the
        pass is retried, and a run being deleted keeps its finalizer until skip-cleanup."""
        metadata = body["metadata"]
        namespace, name, uid = metadata["namespace"], metadata["name"], metadata["uid"]
        deleting = bool(metadata.get("deletionTimestamp"))
        message = f"cannot read the run's children: {error}"
        if deleting:
            message += f'; the finalizer stays until annotation {api.SKIP_CLEANUP_ANNOTATION}="true" is set'
        previous = body.get("status") or {}
        if previous.get("message") != message:
            writes.body = self.kube.patch_status(namespace, name, {"message": message})
        for fresh in self._reported.fresh(uid, [message]):
            self.kube.post_event(body, "Warning", CHILDREN_UNREADABLE, fresh)
        return writes.result(
            deleting=deleting,
            requeue_after=UNREADABLE_REQUEUE_SECONDS,
            phase=str(previous.get("phase") or ""),
            message=message,
        )

    def _write(
        self, body: Mapping[str, Any], outcome: Outcome, resolved: resolution.Resolved, writes: _Writes
    ) -> PassResult:
        """Write the status (if it changed), post the events, report the failed actions once; take
        the finalizer off when the run being deleted is cleaned up."""
        metadata = body["metadata"]
        uid = metadata["uid"]
        previous = body.get("status") or {}
        decided = engine.with_pods_created(
            outcome.status, {c.name for c in writes.created if isinstance(c, ObservedPod)}
        )
        status = self._fitted(body, resolved, _with_logs(resolved.written(decided), writes.logs), writes)
        metrics.record_pass(previous, status)
        releasing = bool(metadata.get("deletionTimestamp")) and outcome.finalizer_releasable
        held = self._hold_back(uid, previous, status) if not releasing else None
        if held is None and changes(status, previous):
            written = self._patch_status(body, status, releasing)
            writes.body = written or writes.body
            if written is not None:
                self._unrecorded_pods.pop(uid, None)  # the status knows of them now
            if body.get(FOREIGN_STATUS):
                overruled = "its status was written by someone else: the operator's own is written back"
                self.kube.post_event(body, "Warning", STATUS_OVERRULED, overruled)
        elif held is None:
            self._unrecorded_pods.pop(uid, None)  # the status says it already
        for event in outcome.events:
            self.kube.post_event(body, event.type, event.reason, event.message)
        for failure in self._reported.fresh(uid, writes.failures):
            self.kube.post_event(body, "Warning", "ActionFailed", failure)
        if releasing:
            return self._release(writes.body or body, writes)
        requeue = _sooner(_requeue_after(outcome.requeue_after, writes.failures, writes.refusals), held)
        # A run held by a failed cleanup is looked at again now and then: its namespace may go.
        recheck = BLOCKED_RECHECK_SECONDS if cleanup_blocked(status) else None
        return writes.result(
            deleting=bool(metadata.get("deletionTimestamp")),
            done=outcome.done,
            requeue_after=_sooner(requeue, recheck),
            phase=str(status.get("phase") or ""),
            message=str(status.get("message") or ""),
        )

    def _hold_back(self, uid: str, previous: Mapping[str, Any], status: Mapping[str, Any]) -> float | None:
        """Seconds the write of `status` is held back for (None: written now). A status whose only
        news is that pods started is held for up to `hold_started` seconds: a short task ends within
        them, and its start and end are one write instead of two."""
        if not engine.only_pods_started(previous, status):
            self._held.pop(uid, None)
            return None
        now = self._clock()
        since = self._held.setdefault(uid, now)
        left = self._hold_started - (now - since)
        if left <= 0:
            del self._held[uid]
            return None
        return left

    def _fitted(
        self, body: Mapping[str, Any], resolved: resolution.Resolved, status: dict[str, Any], writes: _Writes
    ) -> dict[str, Any]:
        """The status as it fits the object's byte budget (engine/budget.py); the results it moves
        go to ConfigMaps of their own first (a result whose ConfigMap cannot be made stays)."""
        metadata = body["metadata"]
        fitted = budget.fit(status, status_budget(body), metadata["name"], budget.referenced_results(resolved.spec))
        if not fitted.fits:
            logger.warning("FlowRun %s/%s: its status exceeds its byte budget", metadata["namespace"], metadata["name"])
        identity = RunIdentity(metadata["name"], metadata["namespace"], metadata["uid"])
        for task, (config_map, text) in fitted.moved.items():
            manifest = build_result_config_map(identity, task, text, config_map)
            if not self._create(metadata["uid"], CreateObject(manifest), writes):
                entry = fitted.status["tasks"][task]
                entry["result"], entry["resultFrom"] = text, None
        return fitted.status

    def _patch_status(self, body: Mapping[str, Any], status: dict[str, Any], releasing: bool) -> dict[str, Any] | None:
        """Write the status; a run whose cleanup is done is released even if the write fails (too
        large, a webhook, a conflict storm): deletion never depends on a status write."""
        metadata = body["metadata"]
        self.attempted[metadata["uid"]] = status
        try:
            return self.kube.patch_status(metadata["namespace"], metadata["name"], status)
        except ApiException as error:
            if error.status == 404 or not releasing:
                raise
            logger.warning(
                "could not write the status of FlowRun %s/%s (%s %s); its cleanup is done: releasing it all the same",
                metadata["namespace"],
                metadata["name"],
                error.status,
                api_message(error),
            )
            return None

    def _apply(
        self,
        body: Mapping[str, Any],
        run: RunInput,
        outcome: Outcome,
        observed: Observed,
        now: datetime,
        writes: _Writes,
    ) -> Outcome:
        """Apply the actions in order, noting in `writes` what each gave back. A rejected dry run
        turns the pass into a spec error: its outcome is returned instead, nothing else applied."""
        namespace = run.namespace
        for action in outcome.actions:
            if isinstance(action, ValidateObjects):
                error = self.dry_run(action)
                if error is not None:
                    return engine.decide(dataclasses.replace(run, dry_run_error=error), observed, now)
            elif isinstance(action, CaptureLogs):
                writes.logs[action.task] = self.kube.pod_log_tail(
                    namespace, action.pod_name, action.container, action.tail_lines
                )
            elif isinstance(action, DeleteObject):
                self._delete(run, action, observed, writes)
            elif isinstance(action, CreateObject):
                self._create(run.uid, action, writes)
            elif isinstance(action, TakeLock):
                self._take(action, writes)
            elif isinstance(action, DeleteFlowRun):
                self.kube.delete_flowrun(namespace, body["metadata"]["name"])
        return outcome

    def _delete(self, run: RunInput, action: DeleteObject, observed: Observed, writes: _Writes) -> None:
        try:
            self.kube.delete(run.namespace, action.api_version, action.kind, action.name, action.propagation)
        except ApiException as error:
            writes.failures.append(f"deleting {action.kind} {action.name}: {error.status} {error.reason}")
            return
        if (action.api_version, action.kind) in CHILD_KINDS:
            writes.deleted.append((action.api_version, action.kind, action.name))
        pod = next((p for p in observed.pods if p.name == action.name), None) if action.kind == "Pod" else None
        if pod is not None:
            self._unrecorded_pods.setdefault(run.uid, {})[pod.name] = dataclasses.replace(pod, deleting=True)

    def _create(self, uid: str, action: CreateObject, writes: _Writes) -> bool:
        """Create if absent; whether it exists now. A refusal or a failure is noted in `writes`."""
        manifest = action.manifest
        kind, name = manifest.get("kind"), (manifest.get("metadata") or {}).get("name")
        try:
            created = self.kube.create(manifest, uid)
            # Existing already (an earlier pass made it): what is seen of it is the manifest.
            seen = observe(created if created is not None else manifest)
            if seen is not None:
                writes.created.append(seen)
            if isinstance(seen, ObservedPod):
                self._unrecorded_pods.setdefault(uid, {})[seen.name] = seen
            return True
        except (ForeignObject, UnknownKind) as error:
            writes.refusals[f"{kind}/{name}"] = str(error)
        except ApiException as error:
            refusal = refusal_message(error)
            if refusal is None:
                writes.failures.append(f"creating {kind} {name}: {error.status} {api_message(error)}")
                return False
            writes.refusals[f"{kind}/{name}"] = refusal
            if refused_as_terminating(error):
                self._namespace_terminating.add(uid)
        return False

    def _take(self, action: TakeLock, writes: _Writes) -> None:
        """Take a lock's slot: create its Lease if absent. Taken first by another run (or by an
        earlier pass of this one), it is no failure: the Lease's watch event brings the next pass,
        which sees who holds it. A refusal is noted for the next pass's engine."""
        name = action.manifest["metadata"]["name"]
        try:
            created = self.kube.take_lock(action.manifest)
        except ForeignObject as error:
            writes.refusals[f"Lease/{name}"] = str(error)
            return
        except ApiException as error:
            refusal = refusal_message(error)
            if refusal is None:
                writes.failures.append(f"creating Lease {name}: {error.status} {api_message(error)}")
            else:
                writes.refusals[f"Lease/{name}"] = refusal
            return
        seen = observe(created) if created is not None else None
        if seen is not None:
            writes.created.append(seen)

    def dry_run(self, action: ValidateObjects) -> str | None:
        """The server-side dry run of every child: `FIELD: the API server's message` for the first
        one refused, None if all pass. A transient error raises (the caller tries again later)."""
        for manifest, field in zip(action.manifests, action.fields, strict=False):
            if self.dry_runs.accepted(manifest):
                continue
            try:
                self.kube.dry_run_create(manifest)
                self.dry_runs.remember(manifest)
            except UnknownKind as error:
                return f"{field}: {error}"
            except ApiException as error:
                if error.status in PERMANENT_REJECTIONS:
                    return f"{field}: {api_message(error)}"
                if error.status != 409:
                    raise
        return None


def _phase(body: Mapping[str, Any]) -> str:
    return str((body.get("status") or {}).get("phase") or "")


def cleanup_blocked(status: Mapping[str, Any]) -> bool:
    """A failed cleanup holds the finalizer of the deleted run (ResourcesReleased says
    CleanupBlocked; never so once its namespace is known to be going)."""
    released = as_map(conditions_by_type(status).get("ResourcesReleased"))
    return released.get("reason") == api.CLEANUP_BLOCKED


def _left_outside(status: Mapping[str, Any]) -> str:
    """What a run released with its namespace may have left (its ResourcesReleased message)."""
    released = as_map(conditions_by_type(status).get("ResourcesReleased"))
    return f"what its failed cleanup would have removed outside the cluster may remain ({released.get('message')})"


def _sooner(first: float | None, second: float | None) -> float | None:
    present = [delay for delay in (first, second) if delay is not None]
    return min(present) if present else None


def _requeue_after(engine_requeue: float | None, failures: list[str], refusals: Mapping[str, str]) -> float | None:
    limit = REFUSAL_REQUEUE_SECONDS if refusals else FAILURE_REQUEUE_SECONDS if failures else None
    if limit is None or engine_requeue is None:
        return engine_requeue if limit is None else limit
    return min(engine_requeue, limit)


def results_moved(status: object) -> bool:
    """Whether some task's result is in a ConfigMap (api.CONFIG_MAP) rather than in the status."""
    tasks = status.get("tasks") if isinstance(status, Mapping) else None
    return isinstance(tasks, Mapping) and any(isinstance(t, Mapping) and t.get("resultFrom") for t in tasks.values())


def too_large(body: Mapping[str, Any], run: RunInput) -> str | None:
    """Why a new run cannot keep its status under the object's limit: its metadata and spec leave
    too little room for even the least status its tasks and blocks need (engine/budget.py)."""
    spec = run.spec if isinstance(run.spec, Mapping) else {}
    tasks, resources = (len(spec.get(key) or []) for key in ("tasks", "resources"))
    room = status_budget({**body, "status": {}})
    snapshot = run.status.get("resolvedSpec") if isinstance(run.status, Mapping) else None
    for_each = [str(t.get("name")) for t in spec.get("tasks") or [] if isinstance(t, Mapping) and t.get("forEach")]
    instances = budget.instances_weight(run.name, for_each)
    needed = budget.minimal_weight(tasks, resources) + instances + (budget.size(snapshot) if snapshot else 0)
    if needed <= room:
        return None
    taken = api.OBJECT_LIMIT - room - BUDGET_SLACK
    counted = f" {tasks} tasks" + (f" (and up to {api.MAX_INSTANCES} instances of forEach tasks)" if instances else "")
    return (
        f"spec: the FlowRun takes {taken} bytes without its status (metadata and spec, as stored); the status of its"
        f"{counted} and {resources} resources needs at least {needed} more, over the limit of"
        f" {api.OBJECT_LIMIT} bytes a FlowRun is kept under: make the spec smaller (keep large data out of it)"
    )


def status_budget(body: Mapping[str, Any]) -> int:
    """Bytes the status may take: the object's limit less what the rest of it takes as stored (its
    metadata with managedFields, its spec), with some room for what grows beside it."""
    stored = body.get(STORED_BYTES)
    whole = stored if isinstance(stored, int) else budget.size(body)
    return api.OBJECT_LIMIT - (whole - budget.size(body.get("status") or {})) - BUDGET_SLACK


def _with_logs(status: dict[str, Any], logs: Mapping[str, str]) -> dict[str, Any]:
    if not logs:
        return status
    tasks = {name: dict(entry) for name, entry in (status.get("tasks") or {}).items()}
    for task, text in logs.items():
        if task in tasks:
            tasks[task]["logs"] = text[-LOG_LIMIT:]
    return {**status, "tasks": tasks}
