"""controller/failures.py: backoff, reporting a failure once, the throttled log, short()."""

from __future__ import annotations

import logging

import pytest

from flowrun.controller.failures import Backoff, Backoffs, ReportOnce, ThrottledLog, short

# --- Backoff ---------------------------------------------------------------------------------------


def test_backoff_doubles_from_its_initial_delay_up_to_its_maximum() -> None:
    backoff = Backoff(1.0, 10.0)
    assert [backoff.next() for _ in range(7)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    assert backoff.failures == 7


def test_backoff_goes_on_at_its_maximum_however_many_failures() -> None:
    backoff = Backoff(1.0, 5.0)
    delays = [backoff.next() for _ in range(2000)]  # 2.0**1024 alone would overflow
    assert delays[:4] == [1.0, 2.0, 4.0, 5.0] and set(delays[3:]) == {5.0}
    assert backoff.failures == 2000


def test_backoff_with_jitter_draws_each_delay_from_its_upper_half() -> None:
    drawn: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        drawn.append((low, high))
        return low

    backoff = Backoff(1.0, 10.0, jitter=True, _random=uniform)
    assert [backoff.next() for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 5.0]
    assert drawn == [(0.5, 1.0), (1.0, 2.0), (2.0, 4.0), (4.0, 8.0), (5.0, 10.0)]


def test_backoff_with_jitter_stays_in_range_with_the_real_random() -> None:
    backoff = Backoff(2.0, 8.0, jitter=True)
    for ceiling in [2.0, 4.0, 8.0, *[8.0] * 200]:
        assert ceiling / 2 <= backoff.next() <= ceiling


def test_backoff_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(1.0, 10.0)
    for _ in range(5):
        backoff.next()
    backoff.reset()
    assert backoff.failures == 0
    assert [backoff.next(), backoff.next()] == [1.0, 2.0]


# --- Backoffs --------------------------------------------------------------------------------------


def test_backoffs_keep_one_backoff_per_key() -> None:
    backoffs = Backoffs(1.0, 4.0)
    assert [backoffs.next("a"), backoffs.next("a"), backoffs.next("a"), backoffs.next("a")] == [1.0, 2.0, 4.0, 4.0]
    assert backoffs.next("b") == 1.0  # b's failures are its own
    assert (backoffs.failures("a"), backoffs.failures("b"), backoffs.failures("c")) == (4, 1, 0)


def test_backoffs_reset_forgets_one_key_only() -> None:
    backoffs = Backoffs(1.0, 4.0)
    for key in ("a", "a", "b"):
        backoffs.next(key)
    backoffs.reset("a")
    backoffs.reset("never-failed")  # nothing to forget: no error
    assert backoffs.failures("a") == 0 and backoffs.next("a") == 1.0
    assert backoffs.next("b") == 2.0


# --- ReportOnce ------------------------------------------------------------------------------------


def test_report_once_reports_a_failure_once_while_it_lasts() -> None:
    reported = ReportOnce()
    assert reported.fresh("run", ["x", "y", "x"]) == ["x", "y"]  # in order, each once
    assert reported.fresh("run", ["x", "y"]) == []
    assert reported.fresh("run", ["y", "z"]) == ["z"]  # only the new one
    assert reported.fresh("other", ["x"]) == ["x"]  # per key


def test_report_once_reports_it_again_after_a_pass_without_it() -> None:
    reported = ReportOnce()
    assert reported.fresh("run", ["x"]) == ["x"]
    assert reported.fresh("run", ["y"]) == ["y"]  # x is gone from this pass ...
    assert reported.fresh("run", ["x", "y"]) == ["x"]  # ... so it is news again
    assert reported.fresh("run", []) == []
    assert reported.fresh("run", ["x", "y"]) == ["x", "y"]


def test_report_once_forget_drops_what_a_key_reported() -> None:
    reported = ReportOnce()
    reported.fresh("run", ["x"])
    reported.fresh("other", ["x"])
    reported.forget("run")
    reported.forget("never-reported")
    assert reported.fresh("run", ["x"]) == ["x"]
    assert reported.fresh("other", ["x"]) == []


# --- ThrottledLog ----------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records]


def test_throttled_log_warns_once_per_period_and_counts_the_others(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.throttled")
    clock = Clock()
    log = ThrottledLog(logging.getLogger("test.throttled"), 60.0, clock)
    log.warning("first")
    clock.now += 10
    log.warning("second")
    clock.now += 49.9
    log.warning("third")
    clock.now += 0.1  # 60 s after the last WARNING
    log.warning("fourth")
    clock.now += 60
    log.warning("fifth")
    assert records(caplog) == [
        ("WARNING", "first"),
        ("DEBUG", "second"),
        ("DEBUG", "third"),
        ("WARNING", "fourth (2 more failures since the last message)"),
        ("WARNING", "fifth"),
    ]


def test_throttled_log_errors_share_the_warnings_period(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.throttled")
    clock = Clock()
    log = ThrottledLog(logging.getLogger("test.throttled"), 60.0, clock)
    log.error("refused")
    clock.now += 1
    log.warning("timed out")
    clock.now += 60
    log.error("refused again")
    assert records(caplog) == [
        ("ERROR", "refused"),
        ("DEBUG", "timed out"),
        ("ERROR", "refused again (1 more failures since the last message)"),
    ]


# --- short -----------------------------------------------------------------------------------------


def test_short_is_the_first_line_of_an_error_at_most_200_characters() -> None:
    assert short(ConnectionError("refused\n  at some frame\n  at another")) == "refused"
    assert short(ValueError("x" * 500)) == "x" * 200


def test_short_names_the_type_of_an_error_without_text() -> None:
    assert short(TimeoutError()) == "TimeoutError"
