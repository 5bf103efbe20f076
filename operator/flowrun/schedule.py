"""Cron schedules as a Kubernetes CronJob reads them. Pure.

A CronJob's schedule is parsed by robfig/cron's standard parser: five fields (minute 0-59, hour
0-23, day of month 1-31, month 1-12 or jan-dec, day of week 0-6 or sun-sat), each a list of items
`*`, `?` (as `*`), `N`, `N-M`, each optionally followed by `/STEP`, where `N/STEP` means
`N-max/STEP`; or a macro. `parse_schedule` refuses what that parser refuses, with its reasons
(a reversed range, a bound out of range, a step of 0, a name in a field that has none), and a few
things it lets through by accident (an empty list item, a sign, `*-5`, which it reads as `*`).

What it returns is the schedule as croniter (which computes the times) must read it to mean what
a CronJob means: each field a `*` or the plain list of its values. croniter alone would read a
reversed range as a wrap-around (`1-0` = every minute), accept `7` as Sunday and its own
extensions (`L`, `#`, `W`, `H`), and refuse `?` outside the day fields. The day fields combine
as in a CronJob: when both are restricted a day matching either runs; when one is `*` or `?`
(without a step above 1) only the other restricts. The users' contract: docs/semantics.md
("Schedules").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

FIELD_NAMES = "minute hour day-of-month month day-of-week"
# The macros, as five fields: robfig/cron's descriptors but `@every` (a CronJob takes it, but an
# interval is no cron schedule: croniter, which computes the times, has no such thing).
MACROS: Mapping[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_NUMBER = re.compile(r"[0-9]+")  # ASCII digits only: int() would also take "٣" or "+3"
_MAX_DIGITS = 9  # longer is out of range in any field (and int() refuses thousands of digits)


class ScheduleError(ValueError):
    """What is wrong with a schedule, in one line."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: Mapping[str, int] = field(default_factory=dict)


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, {name: i + 1 for i, name in enumerate(_MONTHS)}),
    _Field("day-of-week", 0, 6, {name: i for i, name in enumerate(_DAYS)}),
)


def parse_schedule(schedule: str) -> str:
    """The schedule as croniter must read it (see the module's docstring); raises ScheduleError
    saying what a CronJob would refuse in it."""
    text = schedule.strip()
    if "TZ" in text:
        raise ScheduleError("TZ= and CRON_TZ= are not supported in a schedule: set spec.timeZone")
    if text.startswith("@"):
        if text not in MACROS:
            raise ScheduleError(f"not one of the macros {', '.join(MACROS)}")
        text = MACROS[text]
    fields = text.split()
    if len(fields) != len(_FIELDS):
        raise ScheduleError(f"has {len(fields)} fields, not 5 ({FIELD_NAMES})")
    return " ".join(_canonical(value, spec) for value, spec in zip(fields, _FIELDS, strict=True))


def _canonical(text: str, spec: _Field) -> str:
    """One field as croniter must read it: `*`, or its values listed."""
    values: set[int] = set()
    star = False
    for item in text.split(","):
        if not item:
            raise ScheduleError(f"{spec.name} {text!r}: an empty item in the list")
        item_values, item_star = _item(item, spec)
        values |= item_values
        star = star or item_star
    return "*" if star else ",".join(str(v) for v in sorted(values))


def _item(item: str, spec: _Field) -> tuple[set[int], bool]:
    """The values of one list item, and whether it counts as `*` (`*` or `?`, step 1)."""
    where = f"{spec.name} {item!r}"
    span, slash, step_text = item.partition("/")
    if "/" in step_text:
        raise ScheduleError(f"{where}: too many slashes")
    bounds = span.split("-")
    star = span in ("*", "?")
    if star:
        start, end = spec.low, spec.high
    elif len(bounds) > 2:
        raise ScheduleError(f"{where}: too many hyphens")
    else:
        start = _value(bounds[0], spec, where)
        end = _value(bounds[-1], spec, where)
    step = 1
    if slash:
        step = _number(step_text, f"{where}: step")
        if len(bounds) == 1:
            end = spec.high  # N/STEP means N-max/STEP
        star = star and step == 1
    _check_range(start, end, step, spec, where)
    return set(range(start, end + 1, step)), star


def _check_range(start: int, end: int, step: int, spec: _Field, where: str) -> None:
    if start < spec.low:
        raise ScheduleError(f"{where}: beginning of range ({start}) below minimum ({spec.low})")
    if end > spec.high:
        raise ScheduleError(f"{where}: end of range ({end}) above maximum ({spec.high})")
    if start > end:
        raise ScheduleError(f"{where}: beginning of range ({start}) beyond end of range ({end})")
    if step == 0:
        raise ScheduleError(f"{where}: step of range should be a positive number")


def _value(text: str, spec: _Field, where: str) -> int:
    named = spec.names.get(text.lower())
    if named is not None:
        return named
    names = f" or a name ({_names(spec)})" if spec.names else ""
    return _number(text, where, names)


def _number(text: str, where: str, names: str = "") -> int:
    if not _NUMBER.fullmatch(text):
        raise ScheduleError(f"{where}: {text!r} is not a number{names}")
    if len(text.lstrip("0")) > _MAX_DIGITS:
        raise ScheduleError(f"{where}: {text} is out of range")
    return int(text.lstrip("0") or "0")


def _names(spec: _Field) -> str:
    ordered = sorted(spec.names, key=lambda name: spec.names[name])
    return f"{ordered[0]}-{ordered[-1]}"
