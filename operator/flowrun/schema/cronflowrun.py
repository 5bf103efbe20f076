"""The CronFlowRun's own fields: a CronJob's (schedule, time zone, policies, history) and the
template of the runs it creates, whose spec is the FlowRun's (flowrun.schema.kinds derives it)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from flowrun.schedule import ScheduleError, parse_schedule
from flowrun.schema.common import (
    MAX_COUNT,
    MAX_SECONDS,
    NOT_OBSERVED,
    conditions,
    kopf,
    labels_and_annotations,
    observed_generation,
    ready_column,
)
from flowrun.schema.nodes import Arr, Bool, Format, Int, Obj, Rule, Str

POLICIES = ("Allow", "Forbid", "Replace")
DEFAULT_SUCCESSFUL_HISTORY = 3
DEFAULT_FAILED_HISTORY = 1
# A run is named <cron>-<scheduled minute since the epoch> (up to 9 more characters).
MAX_CRON_NAME = 243

# Five cron fields, or one of the macros a CronJob knows. Each field is a list of `*`, `?`, a
# number or a three-letter name, or a range of two, each optionally with a /STEP: the syntax of a
# CronJob's schedule. Whether the values are in range, the names right for the field and the
# ranges not reversed is the operator's check (flowrun.schedule), which says what is wrong.
_CRON_VALUE = r"([0-9]+|[A-Za-z]{3})"
_CRON_ITEM = rf"(\*|\?|{_CRON_VALUE}(-{_CRON_VALUE})?)(/[0-9]+)?"
_CRON_FIELD = rf"{_CRON_ITEM}(,{_CRON_ITEM})*"


def _schedule_problem(text: str) -> str | None:
    try:
        parse_schedule(text)
    except ScheduleError as error:
        return f"{text.strip()!r}: {error}"
    return None


SCHEDULE = Format(
    rf"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|{_CRON_FIELD}(\s+{_CRON_FIELD}){{4}})$",
    "{value} is not a cron schedule",
    name="cron schedule (see [Schedules](semantics.md#schedules))",
    check=_schedule_problem,
)


def _time_zone_problem(name: str) -> str | None:
    try:
        ZoneInfo(name)
    except Exception:
        # Any failure to load it is the name's fault, whatever zoneinfo raises: not found, a
        # directory of the time zone database (Europe, __pycache__: IsADirectoryError), a file of
        # it that is not a zone (zone.tab: ValueError).
        return f"{name!r} is not a known IANA time zone (e.g. Europe/Paris)"
    return None


# An IANA time zone name such as Europe/Paris or UTC, as a CronJob's timeZone: parts of 1 to 14
# characters, none starting with `-`. Whether it exists is the operator's check.
TIME_ZONE = Format(
    r"^[A-Za-z0-9_+][A-Za-z0-9_+-]{0,13}(/[A-Za-z0-9_+][A-Za-z0-9_+-]{0,13})*$",
    "{value} is not a known IANA time zone (e.g. Europe/Paris)",
    name="IANA time zone name",
    check=_time_zone_problem,
)

TEMPLATE_METADATA = labels_and_annotations(
    "Labels and annotations of each FlowRun created. The operator adds flowrun.dev/cron and an owner reference; name "
    "and namespace are set by the operator and ignored here.",
    "Labels for the FlowRun.",
    "Annotations for the FlowRun.",
)
TEMPLATE_SPEC_DESCRIPTION = "The spec of each FlowRun created: tasks and resources, or a flowRef to a Flow (usual)."
TEMPLATE_SPEC_RULES = (
    Rule("has(self.tasks) || has(self.flowRef)", message="the template's spec needs tasks or flowRef"),
)

# The spec's fields before flowRunTemplate (whose spec is derived from the FlowRun's).
FIELDS = {
    "schedule": Str(
        "Standard 5-field cron expression (minute 0-59, hour 0-23, day-of-month 1-31, month 1-12 or jan-dec, "
        "day-of-week 0-6 or sun-sat; each a list of *, ?, N or N-M, each with an optional /STEP), or @yearly, "
        "@annually, @monthly, @weekly, @daily, @midnight, @hourly: what a CronJob accepts. Read in timeZone.",
        format=SCHEDULE,
        min_length=1,
        max_length=200,
    ),
    "timeZone": Str(
        "IANA time zone name (e.g. Europe/Paris) the schedule is read in. Default: UTC.",
        format=TIME_ZONE,
        min_length=1,
        max_length=64,
    ),
    "concurrencyPolicy": Str(
        "What to do when a run is due while an earlier one is still running: Allow (run both), Forbid (skip the new "
        "one), Replace (cancel the running one, whose cleanup runs as for any cancel, and start the new one). "
        "Default: Allow.",
        enum=POLICIES,
        default="Allow",
    ),
    "startingDeadlineSeconds": Int(
        "A scheduled time missed (the operator was down, or Forbid held it) by more than this many seconds is "
        "skipped. Default: no deadline. After downtime at most one missed run starts: the latest.",
        minimum=0,
        maximum=MAX_SECONDS,
        format="int64",
    ),
    "suspend": Bool("True: create no new runs (running ones go on). Default: false.", default=False),
    "successfulRunsHistoryLimit": Int(
        "Succeeded runs to keep; older ones are deleted (after their cleanup). Default: 3.",
        minimum=0,
        maximum=MAX_COUNT,
        default=DEFAULT_SUCCESSFUL_HISTORY,
    ),
    "failedRunsHistoryLimit": Int(
        "Failed or Cancelled runs to keep; older ones are deleted. Default: 1.",
        minimum=0,
        maximum=MAX_COUNT,
        default=DEFAULT_FAILED_HISTORY,
    ),
}
SPEC_DESCRIPTION = "When to create FlowRuns and what they run, with a CronJob's fields and behaviour."
TEMPLATE_DESCRIPTION = "The FlowRuns to create, named <cron>-<scheduled time in minutes since the epoch>."

_RUN_REF = Obj(
    "A FlowRun this CronFlowRun created.",
    required=("name",),
    fields={
        "name": Str("The FlowRun's name."),
        "scheduledTime": Str("The time it was scheduled for.", date_time=True),
    },
)

STATUS = Obj(
    "Observed state, written by the operator.",
    default=NOT_OBSERVED,
    fields={
        "observedGeneration": observed_generation(),
        "lastScheduleTime": Str("The scheduled time of the latest run created.", date_time=True),
        "lastSuccessfulTime": Str("When the latest Succeeded run finished.", date_time=True),
        "nextScheduleTime": Str("The next scheduled time (unset while suspended or invalid).", date_time=True),
        "active": Arr("Runs created by this CronFlowRun that have not finished, oldest first.", items=_RUN_REF),
        "activeCount": Int("Number of active runs."),
        "message": Str("Human-readable summary (e.g. why the spec is invalid)."),
        "conditions": conditions(
            "SpecValid: whether the schedule, time zone and template are valid; Ready (it schedules, or is suspended: "
            "reason Suspended) or Stalled (invalid, or its latest run was refused), with Reconciling (never True)."
        ),
        "kopf": kopf(),
    },
)

ROOT_RULES = (
    Rule(
        f"self.metadata.name.size() <= {MAX_CRON_NAME}",
        message=f"a CronFlowRun name has at most {MAX_CRON_NAME} characters (runs: <name>-<minutes>)",
    ),
)

PRINTER_COLUMNS = (
    {"name": "Schedule", "type": "string", "jsonPath": ".spec.schedule", "description": "Cron schedule."},
    {"name": "Suspend", "type": "boolean", "jsonPath": ".spec.suspend", "description": "Whether new runs are held."},
    {"name": "Active", "type": "integer", "jsonPath": ".status.activeCount", "description": "Runs not finished."},
    {
        "name": "Last Schedule",
        "type": "date",
        "jsonPath": ".status.lastScheduleTime",
        "description": "Scheduled time of the latest run.",
    },
    ready_column(),
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Time Zone",
        "type": "string",
        "jsonPath": ".spec.timeZone",
        "priority": 1,
        "description": "Schedule's time zone.",
    },
    {
        "name": "Next",
        "type": "date",
        "jsonPath": ".status.nextScheduleTime",
        "priority": 1,
        "description": "Next scheduled time.",
    },
)
