"""Moments a duration after another, never overflowing.

The spec bounds every duration (one year at most), but the moments they are added to come from
the previous status, which may hold any date a client wrote (`9999-12-31T...`): adding to those
must not raise OverflowError on every pass. Past the last representable moment, it is that
moment: a deadline that far away never passes, which is what it means.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

LAST = datetime.max.replace(tzinfo=UTC)


def after(moment: datetime, seconds: float) -> datetime:
    """`moment` + `seconds`, or the last representable moment when that is beyond it."""
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return LAST if seconds > 0 else datetime.min.replace(tzinfo=UTC)
