"""controller/failures.py: backoff, reporting a failure once, the throttled log, short()."""

from __future__ import annotations

from flowrun.controller.failures import Backoff


def test_backoff_goes_on_at_its_maximum_however_many_failures() -> None:
    backoff = Backoff(1.0, 5.0)
    delays = [backoff.next() for _ in range(2000)]  # 2.0**1024 alone would overflow
    assert delays[:4] == [1.0, 2.0, 4.0, 5.0] and set(delays[3:]) == {5.0}
    assert backoff.failures == 2000
