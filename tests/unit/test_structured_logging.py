"""Log set-up: what the operator leaves out of its log."""

from __future__ import annotations

import logging

from flowrun.structured_logging import RequestRetriesRateLimited


def test_kopf_request_retries_are_logged_at_most_once_a_minute_with_a_count() -> None:
    now = [0.0]
    limit = RequestRetriesRateLimited(clock=lambda: now[0])

    def retry(attempt: int) -> logging.LogRecord:
        message = f"Request attempt #{attempt} failed; will retry: GET /api/v1/pods -> ConnectionError()"
        return logging.LogRecord("kopf._cogs.clients.api", logging.ERROR, "", 0, message, None, None)

    passed = []
    for attempt in range(1, 200):  # 199 retries over 99 seconds
        now[0] = attempt * 0.5
        record = retry(attempt)
        if limit.filter(record):
            passed.append(record.getMessage())
    assert len(passed) == 2, passed
    assert passed[1].endswith("(119 similar lines left out)")
    other = logging.LogRecord("kopf.objects", logging.ERROR, "", 0, "Handler 'x' failed", None, None)
    assert limit.filter(other), "any other line passes"
