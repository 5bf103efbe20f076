"""Log set-up: plain text for people, or one JSON object per line for log pipelines."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

# Attributes every LogRecord has; anything else on a record is structured context worth keeping.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class RequestRetriesRateLimited(logging.Filter):
    """At most one of kopf's request-retry lines ("Request attempt N failed; will retry: ...") per
    INTERVAL seconds, the next one saying how many were left out. While the API server is away
    each of kopf's watches reports every retry: several lines a second for as long as it lasts.
    The operator reports the outage itself (once, then rarely); kopf's lines add nothing."""

    INTERVAL = 60.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._last: float | None = None
        self._suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if not (record.name.startswith("kopf") and _is_request_retry(record.getMessage())):
            return True
        now = self._clock()
        if self._last is not None and now - self._last < self.INTERVAL:
            self._suppressed += 1
            return False
        if self._suppressed:
            record.msg = f"{record.getMessage()} ({self._suppressed} similar lines left out)"
            record.args = None
        self._last, self._suppressed = now, 0
        return True


def _is_request_retry(message: str) -> bool:
    return message.startswith("Request attempt ") and " failed" in message


def configure(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(RequestRetriesRateLimited())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    if level != "debug":
        # kopf reports every handled watch event at INFO: one line per child change is noise.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
