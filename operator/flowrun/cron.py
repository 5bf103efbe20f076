"""CronFlowRuns: FlowRuns created on a cron schedule, with a CronJob's fields and behaviour. Pure:
`decide` maps the CronFlowRun's spec and status, the runs it owns and the time (injected) to what
to do; a pass applies it and wakes again after `requeue_after` (and whenever an owned run
changes). Level-triggered: the same inputs always give the same decision, and a run's name comes
from its scheduled time, so a restarted operator never creates one scheduled run twice.

Schedules are checked as a CronJob checks them (schedule.py) and their times computed by croniter,
in the spec's time zone (zoneinfo). The users' contract:
docs/api.md ("CronFlowRun") and docs/semantics.md ("Schedules").
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter

from flowrun import api, names
from flowrun.api import (
    CANCELLED,
    CONDITION_READY,
    CONDITION_STALLED,
    CRON_RUN_REFUSED,
    CRON_SCHEDULING,
    CRON_SUSPENDED,
    FAILED,
    INVALID_SPEC,
    RUN_FINAL,
    SUCCEEDED,
)
from flowrun.conditions import condition, health
from flowrun.engine.interface import Event
from flowrun.lenient import as_map, conditions_by_type
from flowrun.model import SpecError, parse_spec
from flowrun.schedule import parse_schedule
from flowrun.schema import kinds
from flowrun.schema.cronflowrun import DEFAULT_FAILED_HISTORY, DEFAULT_SUCCESSFUL_HISTORY
from flowrun.schema.nodes import mapping
from flowrun.timestamps import format_time, parse_time

VALID = ("True", "Valid", "schedule, time zone and template are valid")  # SpecValid of a valid spec


@dataclass(frozen=True)
class CronSpec:
    schedule: str  # as croniter reads it: each field `*` or a list of values (schedule.py)
    time_zone: ZoneInfo
    concurrency_policy: str = "Allow"
    starting_deadline_seconds: int | None = None
    suspend: bool = False
    successful_history: int = DEFAULT_SUCCESSFUL_HISTORY
    failed_history: int = DEFAULT_FAILED_HISTORY
    template_metadata: Mapping[str, Any] | None = None
    template_spec: Mapping[str, Any] | None = None

    @property
    def every_hour(self) -> bool:
        """The schedule names no particular hour (its hour field is `*`)."""
        hours = croniter(self.schedule).expanded[1]
        return hours == ["*"] or len(set(hours)) == 24


def parse_cron_spec(spec: object) -> CronSpec:
    """Check a CronFlowRun spec (each field as declared, then what no field says alone); raises
    SpecError naming the first bad field."""
    given = mapping(spec, "spec")
    raw = kinds.SCHEMAS.cronflowrun.spec.check(given, "spec")
    schedule = parse_schedule(raw["schedule"])  # as croniter must read it (schedule.py); checked already
    zone = ZoneInfo(raw.get("timeZone", "UTC"))
    try:
        croniter(schedule, datetime(2000, 1, 1, tzinfo=zone)).get_next(datetime)
    except CroniterError:
        raise SpecError("spec.schedule", f"{raw['schedule'].strip()!r} never matches a date") from None
    template = raw["flowRunTemplate"]
    return CronSpec(
        schedule=schedule,
        time_zone=zone,
        concurrency_policy=raw["concurrencyPolicy"],
        starting_deadline_seconds=raw.get("startingDeadlineSeconds"),
        suspend=raw["suspend"],
        successful_history=raw["successfulRunsHistoryLimit"],
        failed_history=raw["failedRunsHistoryLimit"],
        template_metadata=template.get("metadata", {}),
        # As given, not with the defaults filled in: the runs are created from it.
        template_spec=_template_spec(given["flowRunTemplate"]["spec"]),
    )


def _template_spec(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    path = "spec.flowRunTemplate.spec"
    if "flowRef" in raw:
        for key in ("tasks", "resources"):
            if key in raw:
                raise SpecError(f"{path}.{key}", "flowRef excludes tasks and resources (the Flow supplies them)")
        return raw
    try:
        parse_spec(raw)  # a template with its own tasks is checked as the runs' spec will be
    except SpecError as error:
        raise SpecError(f"spec.flowRunTemplate.{error.field}", error.message) from None
    return raw


@dataclass(frozen=True)
class OwnedRun:
    """A FlowRun this CronFlowRun created, as observed."""

    name: str
    phase: str  # the run's status.phase ("" before its first pass)
    scheduled_time: datetime | None
    finished_at: datetime | None = None
    cancel_requested: bool = False  # spec.cancel is already true
    deleting: bool = False

    @property
    def finished(self) -> bool:
        return self.phase in RUN_FINAL


def owned_run_from_object(body: Mapping[str, Any]) -> OwnedRun:
    metadata, status = as_map(body.get("metadata")), as_map(body.get("status"))
    return OwnedRun(
        name=str(metadata.get("name") or ""),
        phase=str(status.get("phase") or ""),
        scheduled_time=parse_time(as_map(metadata.get("annotations")).get(api.SCHEDULED_TIME_ANNOTATION)),
        finished_at=parse_time(status.get("finishedAt")),
        cancel_requested=as_map(body.get("spec")).get("cancel") is True,
        deleting=bool(metadata.get("deletionTimestamp")),
    )


@dataclass(frozen=True)
class NewRun:
    name: str
    scheduled_time: datetime


@dataclass(frozen=True)
class CronDecision:
    """What one pass does: create `create` (if any; AlreadyExists is success), set spec.cancel
    on each run in `cancel`, delete each run in `delete` (its finalizer runs its cleanup), post
    `events`, write `status` (a merge patch, every key present), and pass again after
    `requeue_after` seconds (None: only when something changes)."""

    status: dict[str, Any]
    create: NewRun | None = None
    cancel: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None


def run_name(cron_name: str, scheduled_time: datetime) -> str:
    """`<cron>-<scheduled time in minutes since the epoch>`, as a CronJob names its Jobs."""
    return f"{cron_name}-{int(scheduled_time.timestamp()) // 60}"


def _second_occurrence(moment: datetime, zone: ZoneInfo) -> bool:
    """`moment` is the repeat of a wall-clock time (the hour a fall-back transition repeats)."""
    local = moment.astimezone(zone)
    first = local.replace(tzinfo=zone, fold=0)
    return first.utcoffset() != local.utcoffset()


def _counts(cron: CronSpec, moment: datetime) -> bool:
    """A schedule naming particular hours runs once in a repeated hour (at its first occurrence),
    as cron daemons do; one running every hour runs in both."""
    return cron.every_hour or not _second_occurrence(moment, cron.time_zone)


def latest_due(cron: CronSpec, now: datetime) -> datetime | None:
    """The latest scheduled time at or before `now` (UTC)."""
    it = croniter(cron.schedule, (now + timedelta(microseconds=1)).astimezone(cron.time_zone))
    for _ in range(3):  # at most one repeated wall-clock time to step over
        try:
            moment: datetime = it.get_prev(datetime)
        except CroniterError:
            return None
        if _counts(cron, moment):
            return moment.astimezone(UTC)
    return None


def next_due(cron: CronSpec, now: datetime) -> datetime | None:
    """The first scheduled time after `now` (UTC)."""
    it = croniter(cron.schedule, now.astimezone(cron.time_zone))
    for _ in range(3):
        try:
            moment: datetime = it.get_next(datetime)
        except CroniterError:
            return None
        if _counts(cron, moment):
            return moment.astimezone(UTC)
    return None


def decide(
    name: str,
    spec: object,
    status: object,
    runs: Sequence[OwnedRun],
    now: datetime,
    *,
    created_at: datetime | None,
    generation: int = 0,
) -> CronDecision:
    """One pass over a CronFlowRun named `name`: see CronDecision. `runs` are the FlowRuns it owns
    (label flowrun.dev/cron), `created_at` its creationTimestamp (the earliest time a run may be
    scheduled for)."""
    prev = as_map(status)
    active = sorted((r for r in runs if not r.finished), key=_order)
    try:
        cron = parse_cron_spec(spec)
    except SpecError as error:
        message = str(error)
        reported = as_map(conditions_by_type(prev).get("SpecValid")).get("status") == "False"
        invalid = (("False", INVALID_SPEC, message), (CONDITION_STALLED, INVALID_SPEC))
        return CronDecision(
            status=_status(prev, generation, now, active, None, message, invalid),
            events=() if reported else (Event("Warning", INVALID_SPEC, message),),
        )
    scheduled = _schedule_due(name, cron, parse_time(prev.get("lastScheduleTime")), runs, active, now, created_at)
    delete = _pruned(cron, runs)
    pruned = [Event("Normal", "RunDeleted", f"deleted {n}: over the history limit") for n in delete]
    upcoming = None if cron.suspend else next_due(cron, now)
    requeue = None if upcoming is None else max(1.0, (upcoming - now).total_seconds())
    message = scheduled.message
    if not message and upcoming is not None:
        message = f"next run at {format_time(upcoming)}"
    valid = (VALID, (CONDITION_READY, CRON_SUSPENDED if cron.suspend else CRON_SCHEDULING))
    return CronDecision(
        status=_status(prev, generation, now, scheduled.active, upcoming, message, valid, scheduled.last, runs),
        create=scheduled.create,
        cancel=scheduled.cancel,
        delete=delete,
        events=(*scheduled.events, *pruned),
        requeue_after=requeue,
    )


@dataclass(frozen=True)
class _Scheduled:
    """What the time due now asks for: a run to create, runs to cancel (Replace), the events, the
    message, the latest time scheduled and the active runs after it."""

    last: datetime | None
    active: list[OwnedRun]
    create: NewRun | None = None
    cancel: tuple[str, ...] = ()
    events: tuple[Event, ...] = ()
    message: str = ""


def _schedule_due(
    name: str,
    cron: CronSpec,
    last: datetime | None,
    runs: Sequence[OwnedRun],
    active: list[OwnedRun],
    now: datetime,
    created_at: datetime | None,
) -> _Scheduled:
    earliest = last or created_at or now
    if cron.starting_deadline_seconds is not None:
        earliest = max(earliest, now - timedelta(seconds=cron.starting_deadline_seconds))
    due = None if cron.suspend else latest_due(cron, now)
    message = "suspended" if cron.suspend else ""
    if due is None or due <= earliest or (last is not None and due <= last):
        if due is not None and cron.starting_deadline_seconds is not None and due > (last or created_at or now):
            message = f"missed {format_time(due)}: later than startingDeadlineSeconds={cron.starting_deadline_seconds}"
        return _Scheduled(last, active, message=message)
    new_name = run_name(name, due)
    others = [r for r in active if r.name != new_name]
    create: NewRun | None = None
    events: list[Event] = []
    if any(r.name == new_name for r in runs):
        last = due  # created by a pass whose status write was lost
    elif others and cron.concurrency_policy == "Forbid":
        message = f"run for {format_time(due)} not started: {others[-1].name} is still active (Forbid)"
    else:
        create, last = NewRun(new_name, due), due
        events.append(Event("Normal", "RunCreated", f"created FlowRun {new_name} for {format_time(due)}"))
        active = sorted([*active, OwnedRun(new_name, "", due)], key=_order)
    cancel: list[str] = []
    if last == due and cron.concurrency_policy == "Replace":
        # Also when the run exists already: the pass that created it may have lost its cancels.
        cancel = [run.name for run in others if not run.cancel_requested and not run.deleting]
        events = [Event("Normal", "RunReplaced", f"cancelled {n}: replaced (Replace)") for n in cancel] + events
    return _Scheduled(last, active, create, tuple(cancel), tuple(events), message)


def _order(run: OwnedRun) -> tuple[datetime, str]:
    return (run.scheduled_time or datetime.min.replace(tzinfo=UTC), run.name)


def _pruned(cron: CronSpec, runs: Sequence[OwnedRun]) -> tuple[str, ...]:
    """Finished runs over the history limits, oldest first (runs already being deleted are
    neither counted nor deleted again)."""
    delete: list[str] = []
    for phases, limit in (((SUCCEEDED,), cron.successful_history), ((FAILED, CANCELLED), cron.failed_history)):
        kept = sorted((r for r in runs if r.phase in phases and not r.deleting), key=_order)
        delete.extend(r.name for r in kept[: max(0, len(kept) - limit)])
    return tuple(sorted(delete))


def _status(
    prev: Mapping[str, Any],
    generation: int,
    now: datetime,
    active: Sequence[OwnedRun],
    upcoming: datetime | None,
    message: str,
    valid: tuple[tuple[str, str, str], tuple[str, str]],
    last: datetime | None = None,
    runs: Sequence[OwnedRun] = (),
) -> dict[str, Any]:
    """The status (every key present): `valid` is SpecValid's (status, reason, message) and which of
    Ready and Stalled is True, with the reason; Ready's message is `message`."""
    last = last or parse_time(prev.get("lastScheduleTime"))
    conds = conditions_by_type(prev)
    spec_valid, (state, reason) = valid
    successes = [r.finished_at for r in runs if r.phase == SUCCEEDED and r.finished_at is not None]
    previous_success = parse_time(prev.get("lastSuccessfulTime"))
    if previous_success is not None:
        successes.append(previous_success)
    return {
        "observedGeneration": generation,
        "lastScheduleTime": None if last is None else format_time(last),
        "lastSuccessfulTime": format_time(max(successes)) if successes else None,
        "nextScheduleTime": None if upcoming is None else format_time(upcoming),
        "active": [
            {"name": r.name, "scheduledTime": None if r.scheduled_time is None else format_time(r.scheduled_time)}
            for r in active
        ],
        "activeCount": len(active),
        "message": message,
        "conditions": [
            condition(conds, "SpecValid", *spec_valid, now, generation),
            *health(conds, state, reason, message, now, generation),
        ],
    }


def refused_status(prev: object, generation: int, now: datetime, message: str) -> dict[str, Any]:
    """What a pass writes when the API server refused the run it created (invalid, forbidden, over
    a quota: a refusal that does not pass by itself), `message` saying why: Stalled, and nothing
    else of what it decided (no run exists for that time; the next pass decides again). A merge
    patch: the other fields stay as they were."""
    conds = conditions_by_type(as_map(prev))
    return {
        "observedGeneration": generation,
        "message": message,
        "conditions": [
            condition(conds, "SpecValid", *VALID, now, generation),
            *health(conds, CONDITION_STALLED, CRON_RUN_REFUSED, message, now, generation),
        ],
    }


def run_manifest(cron: Mapping[str, Any], new: NewRun) -> dict[str, Any]:
    """The FlowRun to create for `new`, from the CronFlowRun object (as the API returns it):
    the template's labels and annotations plus the cron label, the scheduled time and a
    controller owner reference, so deleting the CronFlowRun deletes its runs."""
    metadata, spec = as_map(cron.get("metadata")), as_map(cron.get("spec"))
    template = as_map(spec.get("flowRunTemplate"))
    template_metadata = as_map(template.get("metadata"))
    name = str(metadata.get("name") or "")
    labels = {**as_map(template_metadata.get("labels")), api.LABEL_CRON: names.label_value(name)}
    annotations = {
        **as_map(template_metadata.get("annotations")),
        api.SCHEDULED_TIME_ANNOTATION: format_time(new.scheduled_time),
    }
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {
            "name": new.name,
            "namespace": metadata.get("namespace"),
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": api.API_VERSION,
                    "kind": api.CRON_KIND,
                    "name": name,
                    "uid": metadata.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": copy.deepcopy(dict(as_map(template.get("spec")))),
    }
