"""CronFlowRun decisions with an injected clock: when a run is created and under which name, the
concurrency policies, missed schedules (at most one catch-up, within startingDeadlineSeconds),
suspend, history limits, status, time zones and DST transitions, and bad specs."""

from __future__ import annotations

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
    owned_run_from_object,
    parse_cron_spec,
    run_manifest,
    run_name,
)
from flowrun.model import SpecError
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
