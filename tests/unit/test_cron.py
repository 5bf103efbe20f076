"""CronFlowRun decisions with an injected clock: when a run is created and under which name, the
concurrency policies, missed schedules (at most one catch-up, within startingDeadlineSeconds),
suspend, history limits, status, time zones and DST transitions, and bad specs."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flowrun import api
from flowrun.cron import (
    CronDecision,
    OwnedRun,
    decide,
    next_due,
    owned_run_from_object,
    parse_cron_spec,
    refused_status,
    run_manifest,
    run_name,
)
from flowrun.model import SpecError
from flowrun.schedule import ScheduleError, parse_schedule
from tests.unit.builders import task

CRON = "nightly"
DAY1 = datetime(2026, 1, 10, tzinfo=UTC)
CREATED = DAY1 + timedelta(hours=1, minutes=30)  # 01:30 UTC
TEMPLATE = {"metadata": {"labels": {"team": "analytics"}}, "spec": {"flowRef": {"name": "summary"}}}
PARIS = ZoneInfo("Europe/Paris")


def spec(**fields: Any) -> dict[str, Any]:
    return {"schedule": "0 2 * * *", "flowRunTemplate": TEMPLATE, **fields}


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def at2(day: int, hour: int = 2, minute: int = 0, second: int = 0) -> datetime:
    return utc(2026, 1, day, hour, minute, second)


def owned(scheduled: datetime, phase: str = "Running", finished: datetime | None = None, **fields: Any) -> OwnedRun:
    return OwnedRun(run_name(CRON, scheduled), phase, scheduled, finished, **fields)


def step(
    now: datetime,
    runs: Sequence[OwnedRun] = (),
    status: dict[str, Any] | None = None,
    created_at: datetime = CREATED,
    **fields: Any,
) -> CronDecision:
    decision = decide(CRON, spec(**fields), status or {}, runs, now, created_at=created_at, generation=2)
    # Level-triggered: the same inputs give the same decision.
    assert decide(CRON, spec(**fields), status or {}, runs, now, created_at=created_at, generation=2) == decision
    return decision


# --- names ---------------------------------------------------------------------------------------


def test_run_names_are_the_scheduled_minute_since_the_epoch() -> None:
    assert run_name("nightly", utc(1970, 1, 1, 0, 1)) == "nightly-1"
    assert run_name("nightly", at2(11)) == f"nightly-{int(at2(11).timestamp()) // 60}"
    assert run_name("n", at2(11, second=59)) == run_name("n", at2(11))


# --- the first runs ------------------------------------------------------------------------------


def test_nothing_before_the_first_scheduled_time_and_a_wake_up_for_it() -> None:
    decision = step(DAY1 + timedelta(hours=1, minutes=59))
    assert decision.create is None and decision.cancel == () and decision.delete == ()
    assert decision.requeue_after == 60
    assert decision.status["nextScheduleTime"] == "2026-01-10T02:00:00Z"
    assert decision.status["lastScheduleTime"] is None and decision.status["activeCount"] == 0
    assert decision.status["conditions"][0]["status"] == "True"


def test_at_the_scheduled_time_one_run_is_created_and_recorded() -> None:
    decision = step(at2(10, second=5))
    assert decision.create is not None
    assert (decision.create.name, decision.create.scheduled_time) == (run_name(CRON, at2(10)), at2(10))
    assert decision.status["lastScheduleTime"] == "2026-01-10T02:00:00Z"
    assert decision.status["active"] == [{"name": run_name(CRON, at2(10)), "scheduledTime": "2026-01-10T02:00:00Z"}]
    assert decision.status["activeCount"] == 1
    assert decision.status["nextScheduleTime"] == "2026-01-11T02:00:00Z"
    assert decision.requeue_after == pytest.approx(24 * 3600 - 5)
    assert [e.reason for e in decision.events] == ["RunCreated"]


def test_once_recorded_the_same_time_is_never_created_again() -> None:
    first = step(at2(10, second=5))
    again = step(at2(10, second=30), [owned(at2(10))], first.status)
    assert again.create is None and again.events == ()


def test_a_run_that_exists_but_whose_status_write_was_lost_is_not_created_twice() -> None:
    decision = step(at2(10, second=30), [owned(at2(10))])
    assert decision.create is None
    assert decision.status["lastScheduleTime"] == "2026-01-10T02:00:00Z"


def test_no_run_for_a_time_before_the_cron_existed() -> None:
    decision = step(at2(10, 2, 30), created_at=at2(10, 2, 10))
    assert decision.create is None and "missed" not in decision.status["message"]


# --- missed schedules ----------------------------------------------------------------------------


def test_after_downtime_only_the_latest_missed_time_runs() -> None:
    status = {"lastScheduleTime": "2026-01-10T02:00:00Z"}
    decision = step(at2(14, 5), [owned(at2(10), "Succeeded", at2(10, 3))], status)
    assert decision.create is not None and decision.create.scheduled_time == at2(14)
    assert [e.reason for e in decision.events] == ["RunCreated"], "one run, never a burst"


def test_a_missed_time_later_than_the_starting_deadline_is_skipped() -> None:
    status = {"lastScheduleTime": "2026-01-10T02:00:00Z"}
    decision = step(at2(14, 5), [], status, startingDeadlineSeconds=600)
    assert decision.create is None
    assert "missed 2026-01-14T02:00:00Z" in decision.status["message"]
    assert decision.status["lastScheduleTime"] == "2026-01-10T02:00:00Z"
    assert decision.status["nextScheduleTime"] == "2026-01-15T02:00:00Z"


def test_a_missed_time_within_the_starting_deadline_runs() -> None:
    status = {"lastScheduleTime": "2026-01-10T02:00:00Z"}
    decision = step(at2(14, 2, 9), [], status, startingDeadlineSeconds=600)
    assert decision.create is not None and decision.create.scheduled_time == at2(14)


def test_hourly_catch_up_is_the_latest_hour_only() -> None:
    status = {"lastScheduleTime": "2026-01-10T02:00:00Z"}
    decision = step(at2(10, 7, 30), [], status, schedule="@hourly")
    assert decision.create is not None and decision.create.scheduled_time == at2(10, 7)
    assert decision.requeue_after == 30 * 60


# --- concurrency policies ------------------------------------------------------------------------

RUNNING = [owned(at2(9))]
LAST = {"lastScheduleTime": "2026-01-09T02:00:00Z"}


def test_allow_starts_the_new_run_beside_the_running_one() -> None:
    decision = step(at2(10, second=1), RUNNING, LAST, concurrencyPolicy="Allow")
    assert decision.create is not None and decision.cancel == ()
    assert [a["name"] for a in decision.status["active"]] == [run_name(CRON, at2(9)), run_name(CRON, at2(10))]


def test_allow_is_the_default() -> None:
    assert step(at2(10, second=1), RUNNING, LAST).create is not None


def test_forbid_skips_while_a_run_is_active_and_keeps_the_time_for_later() -> None:
    decision = step(at2(10, second=1), RUNNING, LAST, concurrencyPolicy="Forbid")
    assert decision.create is None and decision.cancel == ()
    assert decision.status["lastScheduleTime"] == "2026-01-09T02:00:00Z"
    assert "still active (Forbid)" in decision.status["message"]
    assert decision.status["activeCount"] == 1
    # The running one finishes: the held time starts then (no deadline), as a CronJob does.
    done = [owned(at2(9), "Succeeded", at2(10, 2, 30))]
    later = step(at2(10, 2, 31), done, decision.status, concurrencyPolicy="Forbid")
    assert later.create is not None and later.create.scheduled_time == at2(10)


def test_forbid_with_a_deadline_drops_a_time_held_too_long() -> None:
    decision = step(at2(10, second=1), RUNNING, LAST, concurrencyPolicy="Forbid", startingDeadlineSeconds=600)
    assert decision.create is None
    done = [owned(at2(9), "Failed", at2(10, 3))]
    later = step(at2(10, 3, 1), done, decision.status, concurrencyPolicy="Forbid", startingDeadlineSeconds=600)
    assert later.create is None and "missed" in later.status["message"]


def test_forbid_lets_a_run_start_when_nothing_is_active() -> None:
    done = [owned(at2(9), "Succeeded", at2(9, 3))]
    assert step(at2(10, second=1), done, LAST, concurrencyPolicy="Forbid").create is not None


def test_replace_cancels_the_running_run_and_starts_the_new_one() -> None:
    decision = step(at2(10, second=1), RUNNING, LAST, concurrencyPolicy="Replace")
    assert decision.create is not None
    assert decision.cancel == (run_name(CRON, at2(9)),)
    assert [e.reason for e in decision.events] == ["RunReplaced", "RunCreated"]


def test_replace_cancels_again_when_the_new_run_exists_but_the_status_write_was_lost() -> None:
    decision = step(at2(10, second=30), [*RUNNING, owned(at2(10))], LAST, concurrencyPolicy="Replace")
    assert decision.create is None and decision.cancel == (run_name(CRON, at2(9)),)
    assert decision.status["lastScheduleTime"] == "2026-01-10T02:00:00Z"


def test_replace_does_not_cancel_twice_nor_a_run_being_deleted() -> None:
    cancelling = [owned(at2(9), cancel_requested=True), owned(at2(8), deleting=True)]
    decision = step(at2(10, second=1), cancelling, LAST, concurrencyPolicy="Replace")
    assert decision.create is not None and decision.cancel == ()


# --- suspend -------------------------------------------------------------------------------------


def test_suspend_creates_nothing_and_does_not_wake() -> None:
    decision = step(at2(10, second=1), [], LAST, suspend=True)
    assert decision.create is None and decision.requeue_after is None
    assert decision.status["nextScheduleTime"] is None and decision.status["message"] == "suspended"


def test_resuming_runs_at_most_the_latest_missed_time() -> None:
    decision = step(at2(15, 9), [], LAST, suspend=False)
    assert decision.create is not None and decision.create.scheduled_time == at2(15)


# --- history and status --------------------------------------------------------------------------


def finished_runs() -> list[OwnedRun]:
    runs = [owned(at2(day), "Succeeded", at2(day, 3)) for day in (1, 2, 3, 4, 5)]
    runs += [owned(at2(day), "Failed", at2(day, 3)) for day in (6, 7)]
    runs += [owned(at2(8), "Cancelled", at2(8, 3))]
    return runs


def test_history_limits_delete_the_oldest_finished_runs() -> None:
    decision = step(at2(8, 12), finished_runs(), {"lastScheduleTime": "2026-01-08T02:00:00Z"})
    assert decision.delete == tuple(
        sorted([run_name(CRON, at2(1)), run_name(CRON, at2(2)), run_name(CRON, at2(6)), run_name(CRON, at2(7))])
    ), "3 succeeded and 1 failed or cancelled kept (the newest)"
    assert {e.reason for e in decision.events} == {"RunDeleted"}


def test_runs_already_being_deleted_are_neither_counted_nor_deleted_again() -> None:
    runs = [replace(r, deleting=True) if r.scheduled_time == at2(1) else r for r in finished_runs()]
    decision = step(at2(8, 12), runs, {"lastScheduleTime": "2026-01-08T02:00:00Z"})
    assert run_name(CRON, at2(1)) not in decision.delete
    assert run_name(CRON, at2(2)) in decision.delete and run_name(CRON, at2(3)) not in decision.delete


def test_limits_of_zero_keep_no_finished_run_and_never_touch_active_ones() -> None:
    runs = [*finished_runs(), owned(at2(8, 1))]
    decision = step(
        at2(8, 12),
        runs,
        {"lastScheduleTime": "2026-01-08T02:00:00Z"},
        successfulRunsHistoryLimit=0,
        failedRunsHistoryLimit=0,
    )
    assert len(decision.delete) == 8 and run_name(CRON, at2(8, 1)) not in decision.delete


def test_last_successful_time_is_the_latest_success_and_survives_pruning() -> None:
    decision = step(at2(8, 12), finished_runs(), {"lastScheduleTime": "2026-01-08T02:00:00Z"})
    assert decision.status["lastSuccessfulTime"] == "2026-01-05T03:00:00Z"
    pruned = step(at2(8, 13), [], decision.status)
    assert pruned.status["lastSuccessfulTime"] == "2026-01-05T03:00:00Z"


def test_every_status_key_is_present() -> None:
    assert set(step(at2(10, 1)).status) == {
        "observedGeneration",
        "lastScheduleTime",
        "lastSuccessfulTime",
        "nextScheduleTime",
        "active",
        "activeCount",
        "message",
        "conditions",
    }


# --- time zones and DST --------------------------------------------------------------------------


def test_the_schedule_is_read_in_its_time_zone() -> None:
    winter = step(utc(2026, 1, 10, 1, 0, 30), [], {}, created_at=utc(2026, 1, 9), timeZone="Europe/Paris")
    assert winter.create is not None and winter.create.scheduled_time == utc(2026, 1, 10, 1)  # 02:00 CET
    summer = step(utc(2026, 7, 10, 0, 0, 30), [], {}, created_at=utc(2026, 7, 9), timeZone="Europe/Paris")
    assert summer.create is not None and summer.create.scheduled_time == utc(2026, 7, 10, 0)  # 02:00 CEST


def walk(schedule: str, start: datetime, end: datetime, zone: str = "Europe/Paris") -> list[datetime]:
    """Run passes as the handler would (at each requeue_after), every run finishing at once;
    returns the scheduled times of the runs created."""
    now, status, runs, created = start, dict[str, Any](), list[OwnedRun](), list[datetime]()
    while now < end:
        decision = decide(CRON, spec(schedule=schedule, timeZone=zone), status, runs, now, created_at=start)
        if decision.create is not None:
            created.append(decision.create.scheduled_time)
            runs = [owned(decision.create.scheduled_time, "Succeeded", now)]
        status = decision.status
        assert decision.requeue_after is not None
        now += timedelta(seconds=decision.requeue_after)
    return created


def test_spring_forward_a_time_in_the_skipped_hour_runs_once_right_after_it() -> None:
    # 2026-03-29 in Paris: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
    times = walk("30 2 * * *", utc(2026, 3, 27, 12), utc(2026, 3, 31, 12))
    local = [t.astimezone(PARIS).strftime("%m-%d %H:%M") for t in times]
    assert local == ["03-28 02:30", "03-29 03:00", "03-30 02:30", "03-31 02:30"]


def test_fall_back_a_daily_time_in_the_repeated_hour_runs_once() -> None:
    # 2026-10-25 in Paris: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
    times = walk("30 2 * * *", utc(2026, 10, 23, 12), utc(2026, 10, 26, 12))
    assert times == [utc(2026, 10, 24, 0, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)]


def test_fall_back_an_hourly_schedule_runs_in_both_repeated_hours() -> None:
    times = walk("0 * * * *", utc(2026, 10, 24, 23, 30), utc(2026, 10, 25, 2, 30))
    assert times == [utc(2026, 10, 25, 0), utc(2026, 10, 25, 1), utc(2026, 10, 25, 2)]
    assert [t.astimezone(PARIS).hour for t in times] == [2, 2, 3]


def test_a_week_of_passes_creates_one_run_a_day() -> None:
    times = walk("0 2 * * *", utc(2026, 1, 1), utc(2026, 1, 8), zone="UTC")
    assert times == [utc(2026, 1, day, 2) for day in range(1, 8)]


# --- schedules: what a CronJob accepts and refuses ----------------------------------------------
# robfig/cron's standard parser, which a CronJob's schedule goes through, gives the reasons quoted.

ACCEPTED = [
    # schedule, as croniter reads it (each field `*` or its values)
    ("* * * * *", "* * * * *"),
    ("? ? ? ? ?", "* * * * *"),
    ("0 2 * * *", "0 2 * * *"),
    ("  0   2 * * *  ", "0 2 * * *"),
    ("0\t2 * * *", "0 2 * * *"),
    ("59 23 31 12 6", "59 23 31 12 6"),
    ("0 0 1 1 0", "0 0 1 1 0"),
    ("05 007 * * *", "5 7 * * *"),
    ("1-3 * * * *", "1,2,3 * * * *"),
    ("5-5 * * * *", "5 * * * *"),
    ("1,3,5 * * * *", "1,3,5 * * * *"),
    ("5,1,3,3 * * * *", "1,3,5 * * * *"),
    ("*/15 * * * *", "0,15,30,45 * * * *"),
    ("?/20 * * * *", "0,20,40 * * * *"),
    ("*/1 * * * *", "* * * * *"),
    ("*/100 * * * *", "0 * * * *"),
    ("50/5 * * * *", "50,55 * * * *"),
    ("10-20/5 * * * *", "10,15,20 * * * *"),
    ("1-59/60 * * * *", "1 * * * *"),
    ("0-5,*/30 * * * *", "0,1,2,3,4,5,30 * * * *"),
    ("*,5 * * * *", "* * * * *"),
    ("0 0 1-31 * *", "0 0 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31 * *"),
    ("0 0 * jan-mar *", "0 0 * 1,2,3 *"),
    ("0 0 * JAN,Dec *", "0 0 * 1,12 *"),
    ("0 0 * feb/3 *", "0 0 * 2,5,8,11 *"),
    ("0 0 * * mon-fri", "0 0 * * 1,2,3,4,5"),
    ("0 0 * * SUN,sat", "0 0 * * 0,6"),
    ("0 0 * * sun-sat", "0 0 * * 0,1,2,3,4,5,6"),
    ("0 0 * * mon/2", "0 0 * * 1,3,5"),
    ("0 0 * * 0-6/3", "0 0 * * 0,3,6"),
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
]

REFUSED = [
    # schedule, what the error says (robfig/cron's reason where it has one)
    ("1-0 * * * *", "minute '1-0': beginning of range (1) beyond end of range (0)"),
    ("0 5-1 * * *", "hour '5-1': beginning of range (5) beyond end of range (1)"),
    ("0 0 20-10 * *", "day-of-month '20-10': beginning of range (20) beyond end of range (10)"),
    ("0 0 * dec-jan *", "month 'dec-jan': beginning of range (12) beyond end of range (1)"),
    ("0 0 * * sat-sun", "day-of-week 'sat-sun': beginning of range (6) beyond end of range (0)"),
    ("0 0 * * 5-1", "day-of-week '5-1': beginning of range (5) beyond end of range (1)"),
    ("60 * * * *", "minute '60': end of range (60) above maximum (59)"),
    ("0 24 * * *", "hour '24': end of range (24) above maximum (23)"),
    ("0 0 0 * *", "day-of-month '0': beginning of range (0) below minimum (1)"),
    ("0 0 32 * *", "day-of-month '32': end of range (32) above maximum (31)"),
    ("0 0 * 0 *", "month '0': beginning of range (0) below minimum (1)"),
    ("0 0 * 13 *", "month '13': end of range (13) above maximum (12)"),
    ("0 0 * * 7", "day-of-week '7': end of range (7) above maximum (6)"),
    ("0 0 * * 0-7", "day-of-week '0-7': end of range (7) above maximum (6)"),
    ("0 0 * * 1-10/2", "day-of-week '1-10/2': end of range (10) above maximum (6)"),
    ("70/5 * * * *", "minute '70/5': beginning of range (70) beyond end of range (59)"),
    ("*/0 * * * *", "minute '*/0': step of range should be a positive number"),
    ("1-5/0 * * * *", "minute '1-5/0': step of range should be a positive number"),
    ("1-2-3 * * * *", "minute '1-2-3': too many hyphens"),
    ("*/2/3 * * * *", "minute '*/2/3': too many slashes"),
    ("*/ * * * *", "minute '*/': step: '' is not a number"),
    ("/5 * * * *", "minute '/5': '' is not a number"),
    ("-5 * * * *", "minute '-5': '' is not a number"),
    ("5- * * * *", "minute '5-': '' is not a number"),
    ("*/x * * * *", "minute '*/x': step: 'x' is not a number"),
    ("*/mon * * * *", "minute '*/mon': step: 'mon' is not a number"),
    ("jan * * * *", "minute 'jan': 'jan' is not a number"),
    ("0 0 * * monday", "day-of-week 'monday': 'monday' is not a number or a name (sun-sat)"),
    ("0 0 * * jan", "day-of-week 'jan': 'jan' is not a number or a name (sun-sat)"),
    ("0 0 * mon *", "month 'mon': 'mon' is not a number or a name (jan-dec)"),
    ("0 0 L * *", "day-of-month 'L': 'L' is not a number"),
    ("0 0 15W * *", "day-of-month '15W': '15W' is not a number"),
    ("0 0 * * 1#2", "day-of-week '1#2': '1#2' is not a number"),
    ("0 0 * * 5L", "day-of-week '5L': '5L' is not a number"),
    ("H * * * *", "minute 'H': 'H' is not a number"),
    ("0 0 * * 1.5", "day-of-week '1.5': '1.5' is not a number"),
    ("99999999999999999999 * * * *", "minute '99999999999999999999': 99999999999999999999 is out of range"),
    # Let through by robfig/cron by accident, refused here: never what was meant.
    ("1,,2 * * * *", "minute '1,,2': an empty item in the list"),
    (", * * * *", "minute ',': an empty item in the list"),
    ("+5 * * * *", "minute '+5': '+5' is not a number"),
    ("*-5 * * * *", "minute '*-5': '*' is not a number"),
    ("?-5 * * * *", "minute '?-5': '?' is not a number"),
    ("\u0663 * * * *", "minute '\u0663': '\u0663' is not a number"),
    # The number of fields, the macros.
    ("", "has 0 fields, not 5"),
    ("0 2 * *", "has 4 fields, not 5"),
    ("0 0 2 * * *", "has 6 fields, not 5"),
    ("@reboot", "not one of the macros @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"),
    ("@every 1h", "not one of the macros"),  # a CronJob takes it: an interval, not a cron schedule
    ("@DAILY", "not one of the macros"),
    ("TZ=Europe/Paris 0 2 * * *", "TZ= and CRON_TZ= are not supported in a schedule: set spec.timeZone"),
    ("CRON_TZ=UTC 0 2 * * *", "TZ= and CRON_TZ= are not supported"),
]


@pytest.mark.parametrize(("schedule", "expression"), ACCEPTED, ids=[a for a, _ in ACCEPTED])
def test_a_schedule_a_cronjob_accepts_is_read_as_it_reads_it(schedule: str, expression: str) -> None:
    assert parse_schedule(schedule) == expression
    assert parse_cron_spec(spec(schedule=schedule)).schedule == expression


@pytest.mark.parametrize(("schedule", "error"), REFUSED, ids=[r for r, _ in REFUSED])
def test_a_schedule_a_cronjob_refuses_is_refused_saying_why(schedule: str, error: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(error)):
        parse_schedule(schedule)
    with pytest.raises(SpecError) as refused:
        parse_cron_spec(spec(schedule=schedule))
    assert refused.value.field == "spec.schedule"
    assert str(refused.value) == f"spec.schedule: {schedule.strip()!r}: {refused.value.message.split(': ', 1)[1]}"
    assert error in str(refused.value)


def test_a_reversed_range_runs_never_instead_of_every_minute() -> None:
    decision = step(at2(10, second=1), schedule="1-0 * * * *")
    assert decision.create is None and decision.requeue_after is None
    assert decision.status["message"].startswith("spec.schedule: '1-0 * * * *': minute '1-0': beginning of range")


def next_times(schedule: str, start: datetime, count: int) -> list[datetime]:
    times: list[datetime] = []
    cron = parse_cron_spec(spec(schedule=schedule))
    for _ in range(count):
        upcoming = next_due(cron, times[-1] if times else start)
        assert upcoming is not None
        times.append(upcoming)
    return times


@pytest.mark.parametrize(
    ("schedule", "days"),
    [
        # 2026-01: Thursday the 1st; Mondays are the 5th, 12th, 19th and 26th.
        ("0 0 * * 1", [5, 12, 19, 26]),  # day of month `*`: the day of week alone
        ("0 0 ? * mon", [5, 12, 19, 26]),
        ("0 0 */1 * 1", [5, 12, 19, 26]),  # `*/1` counts as `*` (croniter alone: every day)
        ("0 0 13 * *", [13]),
        ("0 0 13 * ?", [13]),
        ("0 0 13 * */1", [13]),
        ("0 0 13,20 * 1", [5, 12, 13, 19, 20, 26]),  # both restricted: either
        ("0 0 1-31 * 1", list(range(1, 32))),
        ("0 0 */2 * 1", [1, 3, 5, 7, 9, 11, 12, 13, 15, 17, 19, 21, 23, 25, 26, 27, 29, 31]),
    ],
)
def test_day_of_month_and_day_of_week_combine_as_in_a_cronjob(schedule: str, days: list[int]) -> None:
    january = [t for t in next_times(schedule, utc(2025, 12, 31, 12), 40) if t.month == 1 and t.year == 2026]
    assert [t.day for t in january] == days


def test_months_and_days_of_week_by_name_run_as_their_numbers() -> None:
    assert next_times("30 1 * feb-mar sat", utc(2026, 1, 1), 3) == [
        utc(2026, 2, 7, 1, 30),
        utc(2026, 2, 14, 1, 30),
        utc(2026, 2, 21, 1, 30),
    ]


ZONES = [
    # a directory of the time zone database: zoneinfo raised IsADirectoryError
    "Europe",
    "America",
    "America/Argentina",
    "Etc",
    "__pycache__",
    # a file of it that is no zone (ValueError), names that do not exist, names that are no names
    "zone.tab",
    "tzdata.zi",
    "Mars/Olympus",
    "Europe/Pari",
    "../etc",
    "/etc/localtime",
    "Europe//Paris",
    "",
    "Europe/Paris\x00",
]


@pytest.mark.parametrize("zone", ZONES)
def test_a_time_zone_that_fails_to_load_is_refused_naming_the_field(zone: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_cron_spec(spec(timeZone=zone))
    assert error.value.field == "spec.timeZone"
    assert error.value.message == f"{zone!r} is not a known IANA time zone (e.g. Europe/Paris)"
    decision = step(at2(10, second=1), timeZone=zone)
    assert decision.status["conditions"][0]["status"] == "False"
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "InvalidSpec")]
    assert decision.status["message"].startswith("spec.timeZone: ")


# --- bad specs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"schedule": "0 2 * *"}, "spec.schedule"),
        ({"schedule": "0 2 * * * *"}, "spec.schedule"),
        ({"schedule": "0 25 * * *"}, "spec.schedule"),
        ({"schedule": "@reboot"}, "spec.schedule"),
        ({"schedule": "0 0 31 2 *"}, "spec.schedule"),
        ({"timeZone": "Mars/Olympus"}, "spec.timeZone"),
        ({"timeZone": "../etc"}, "spec.timeZone"),
        ({"concurrencyPolicy": "Sometimes"}, "spec.concurrencyPolicy"),
        ({"startingDeadlineSeconds": -1}, "spec.startingDeadlineSeconds"),
        ({"successfulRunsHistoryLimit": "3"}, "spec.successfulRunsHistoryLimit"),
        ({"suspend": "yes"}, "spec.suspend"),
        ({"flowRunTemplate": {"spec": {"rerunOf": {"name": "x"}}}}, "spec.flowRunTemplate.spec.rerunOf"),
        ({"flowRunTemplate": {"spec": {"flowRef": {"name": "f"}, "tasks": []}}}, "spec.flowRunTemplate.spec.tasks"),
        (
            {"flowRunTemplate": {"spec": {"tasks": [task("a", "nope")]}}},
            "spec.flowRunTemplate.spec.tasks[0].runAfter[0]",
        ),
        ({"flowRunTemplate": None}, "spec.flowRunTemplate"),
    ],
)
def test_a_bad_spec_is_refused_naming_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_cron_spec(spec(**fields))
    assert error.value.field == field
    decision = step(at2(10, second=1), [], {}, **fields)
    assert decision.create is None and decision.requeue_after is None
    valid = decision.status["conditions"][0]
    assert (valid["type"], valid["status"], valid["reason"]) == ("SpecValid", "False", "InvalidSpec")
    assert field in decision.status["message"]
    assert [e.type for e in decision.events] == ["Warning"]
    again = step(at2(10, second=2), [], decision.status, **fields)
    assert again.events == (), "reported once"


def test_a_template_with_its_own_tasks_is_valid() -> None:
    assert parse_cron_spec(spec(flowRunTemplate={"spec": {"tasks": [task("a")]}})).template_spec is not None


def test_a_template_may_set_the_runs_pending_timeout() -> None:
    template = {"spec": {"flowRef": {"name": "summary"}, "pendingTimeoutSeconds": 300}}
    assert parse_cron_spec(spec(flowRunTemplate=template)).template_spec == template["spec"]


# --- the FlowRun it creates ----------------------------------------------------------------------


def test_the_created_flowrun_carries_the_label_annotation_and_owner() -> None:
    cron = {
        "metadata": {"name": CRON, "namespace": "team", "uid": "cron-uid"},
        "spec": spec(),
    }
    decision = step(at2(10, second=1))
    assert decision.create is not None
    manifest = run_manifest(cron, decision.create)
    assert manifest["kind"] == "FlowRun" and manifest["apiVersion"] == "flowrun.dev/v1alpha1"
    assert manifest["metadata"]["name"] == decision.create.name and manifest["metadata"]["namespace"] == "team"
    assert manifest["metadata"]["labels"] == {"team": "analytics", "flowrun.dev/cron": CRON}
    assert manifest["metadata"]["annotations"] == {api.SCHEDULED_TIME_ANNOTATION: "2026-01-10T02:00:00Z"}
    owner = manifest["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"], owner["controller"]) == ("CronFlowRun", "cron-uid", True)
    assert manifest["spec"] == TEMPLATE["spec"] and manifest["spec"] is not TEMPLATE["spec"]
    observed = owned_run_from_object({**manifest, "status": {"phase": "Running"}})
    assert observed == OwnedRun(decision.create.name, "Running", at2(10))


def test_owned_run_from_a_finished_object() -> None:
    body = {
        "metadata": {"name": "n-1", "deletionTimestamp": "2026-01-10T05:00:00Z"},
        "spec": {"cancel": True},
        "status": {"phase": "Cancelled", "finishedAt": "2026-01-10T04:00:00Z"},
    }
    run = owned_run_from_object(body)
    assert run.finished and run.deleting and run.cancel_requested
    assert run.finished_at == utc(2026, 1, 10, 4) and run.scheduled_time is None


# --- Ready, Reconciling, Stalled -------------------------------------------------------------------


def health(status: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    kinds = ("Ready", "Reconciling", "Stalled")
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"] if c["type"] in kinds}


def test_a_valid_cron_flow_run_is_ready_while_it_schedules() -> None:
    decision = step(at2(10, second=5))
    assert health(decision.status) == {
        "Ready": ("True", "Scheduling", "next run at 2026-01-11T02:00:00Z"),
        "Reconciling": ("False", "Scheduling", ""),
        "Stalled": ("False", "Scheduling", ""),
    }


def test_a_suspended_cron_flow_run_is_ready_and_says_so() -> None:
    decision = step(at2(10, second=5), suspend=True)
    assert health(decision.status)["Ready"] == ("True", "Suspended", "suspended")
    assert decision.status["nextScheduleTime"] is None


def test_an_invalid_cron_flow_run_is_stalled_naming_the_field() -> None:
    decision = step(at2(10, second=5), schedule="0 25 * * *")
    ready, reconciling, stalled = health(decision.status).values()
    assert stalled[:2] == ("True", "InvalidSpec") and stalled[2].startswith("spec.schedule: ")
    assert ready == ("False", "InvalidSpec", stalled[2]) and reconciling[0] == "False"


def test_a_refused_run_stalls_and_keeps_what_was_there() -> None:
    before = step(at2(10, second=5)).status
    status = refused_status(before, 3, at2(10, second=6), "creating FlowRun x: 403 forbidden")
    assert set(status) == {"observedGeneration", "message", "conditions"}, "a merge patch of these only"
    assert status["observedGeneration"] == 3 and status["message"] == "creating FlowRun x: 403 forbidden"
    assert health(status)["Stalled"] == ("True", "RunRefused", "creating FlowRun x: 403 forbidden")
    spec_valid = next(c for c in status["conditions"] if c["type"] == "SpecValid")
    before_valid = next(c for c in before["conditions"] if c["type"] == "SpecValid")
    assert spec_valid["status"] == "True" and spec_valid["lastTransitionTime"] == before_valid["lastTransitionTime"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["lastTransitionTime"] == "2026-01-10T02:00:06Z"
