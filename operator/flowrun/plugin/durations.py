"""How long things took and how old they are, in the forms kubectl prints."""

from __future__ import annotations

from datetime import datetime

from flowrun.engine.status import duration
from flowrun.timestamps import parse_time


def elapsed(started: object, finished: object, now: datetime) -> str:
    """`1m23s` from `started` to `finished` (to `now` while unfinished); "" if it never started."""
    start = parse_time(started)
    if start is None:
        return ""
    return duration(start, parse_time(finished) or now) or ""


def age(created: object, now: datetime) -> str:
    """kubectl's AGE column: `45s`, `5m12s` under 10 minutes, `3h` or `2d5h`, coarser as it grows."""
    moment = parse_time(created)
    if moment is None:
        return "<unknown>"
    seconds = max(0, int((now - moment).total_seconds()))
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if seconds < 120:
        return f"{seconds}s"
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"
