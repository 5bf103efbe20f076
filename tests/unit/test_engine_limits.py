"""The engine at the spec's largest numbers: durations of a year run through every timeout path
without overflowing, numbers past the bounds are spec errors naming the field, and a status whose
timestamps are at the end of the calendar does not make any deadline arithmetic raise."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flowrun.engine import decide
from flowrun.model import MAX_SECONDS
from tests.unit.builders import Sim, at, deployment, flow, job, resource, succeed, task

DB = "demo-r-db"


def year_block(cleanup_job: bool = True) -> dict[str, object]:
    cleanup: dict[str, object] = {"timeoutSeconds": MAX_SECONDS}
    if cleanup_job:
        cleanup["job"] = job("teardown")
    return flow(
        task("use", resources=["r"], activeDeadlineSeconds=MAX_SECONDS, retries={"backoffSeconds": MAX_SECONDS}),
        resources=[
            resource("r", setup={"deployments": [deployment("db")], "timeoutSeconds": MAX_SECONDS}, cleanup=cleanup)
        ],
        ttlSecondsAfterFinished=MAX_SECONDS,
    )


def test_a_setup_timeout_of_a_year_passes_after_a_year() -> None:
    sim = Sim(year_block(cleanup_job=False))
    assert sim.step(at(0)).requeue_after == MAX_SECONDS
    sim.step(at(MAX_SECONDS - 1))
    assert sim.res("r")["phase"] == "SettingUp"
    sim.step(at(MAX_SECONDS))
    assert sim.res("r")["phase"] == "CleaningUp" and sim.task("use")["reason"] == "SetupFailed"
    sim.step(at(MAX_SECONDS + 1))
    assert sim.res("r")["phase"] == "CleanedUp" and "SetupTimeout" in sim.res("r")["message"]
    assert sim.status["phase"] == "Failed"


def test_a_cleanup_timeout_of_a_year_passes_after_a_year() -> None:
    sim = Sim(year_block())
    sim.step(at(0))
    sim.cluster.make_available(DB)
    sim.step(at(1))
    succeed(sim, "use")
    assert sim.step(at(2)).requeue_after == MAX_SECONDS
    sim.step(at(2 + MAX_SECONDS - 1))
    assert sim.res("r")["phase"] == "CleaningUp"
    sim.step(at(2 + MAX_SECONDS))
    assert (sim.res("r")["phase"], sim.res("r")["reason"]) == ("CleanupFailed", "CleanupTimeout")
    assert sim.status["phase"] == "Failed"


def test_a_run_deadline_of_a_year_passes_after_a_year() -> None:
    sim = Sim(flow(task("use"), activeDeadlineSeconds=MAX_SECONDS))
    assert sim.step(at(0)).requeue_after == MAX_SECONDS
    sim.step(at(MAX_SECONDS))
    assert sim.status["phase"] == "Failed" and "activeDeadlineSeconds" in sim.status["message"]


@pytest.mark.parametrize(
    ("where", "field"),
    [
        ("run", "spec.activeDeadlineSeconds"),
        ("setup", "spec.resources[0].setup.timeoutSeconds"),
        ("cleanup", "spec.resources[0].cleanup.timeoutSeconds"),
        ("task", "spec.tasks[0].activeDeadlineSeconds"),
    ],
)
@pytest.mark.parametrize("value", [MAX_SECONDS + 1, 2**63 - 1, 300_000_000_000])
def test_a_duration_past_a_year_is_a_spec_error_naming_the_field(where: str, field: str, value: int) -> None:
    spec = year_block()
    if where == "run":
        spec["activeDeadlineSeconds"] = value
    elif where == "task":
        spec["tasks"][0]["activeDeadlineSeconds"] = value  # type: ignore[index]
    else:
        spec["resources"][0][where]["timeoutSeconds"] = value  # type: ignore[index]
    sim = Sim(spec)
    outcome = sim.step(at(0))
    assert sim.status["phase"] == "Failed" and outcome.actions == ()
    valid = sim.condition("SpecValid")
    assert valid["status"] == "False" and valid["message"].startswith(f"{field}: must be <= {MAX_SECONDS}")


def test_timestamps_at_the_end_of_the_calendar_in_the_status_do_not_overflow() -> None:
    # The previous status is whatever a client wrote: adding a year to its last day must not
    # raise on every pass. A deadline past the calendar never passes.
    sim = Sim(year_block())
    sim.step(at(0))
    sim.cluster.make_available(DB)
    sim.step(at(1))
    succeed(sim, "use")
    sim.step(at(2))
    assert sim.res("r")["phase"] == "CleaningUp"
    status = sim.status
    status["resources"]["r"]["cleanupStartedAt"] = "9999-12-31T23:00:00Z"
    outcome = decide(replace(sim.run, status=status), sim.cluster.observed(), at(3))
    # The engine reports what it raises as an InternalError: none here.
    assert [e.reason for e in outcome.events if e.type == "Warning"] == []
    assert outcome.status["resources"]["r"]["phase"] == "CleaningUp"
    assert not str(outcome.status.get("message")).startswith("internal error")
