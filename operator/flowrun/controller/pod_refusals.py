"""Why the Job controller cannot create a setup or cleanup Job's pod.

When admission refuses a Job's pod (a ServiceAccount that does not exist, a quota, Pod Security),
the Job's status shows nothing: no condition, `active: 0`, and it waits forever. The only trace is
a `FailedCreate` Event on the Job. (A Deployment is better off: it surfaces its ReplicaSet's
refusal as the condition `ReplicaFailure`, which the engine reads from the Deployment itself.)

Events are not listed on every pass: only for a Job that has had no pod at all for
STALLED_AFTER_SECONDS, and at most once per READ_INTERVAL_SECONDS per Job, with a field selector
naming that Job, so a thousand healthy runs cost no Event read and a stuck Job costs one read per
interval. A message once found is kept until the Job is gone: the Job will not recover by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from kubernetes.client.exceptions import ApiException

from flowrun.observed import ObservedJob

logger = logging.getLogger(__name__)

# A Job with no pod this long after its creation is looked at (its controller creates the pod
# within a second when admission lets it).
STALLED_AFTER_SECONDS = 5.0
# The least time between two Event reads for the same Job.
READ_INTERVAL_SECONDS = 10.0
FAILED_CREATE = "FailedCreate"


# (namespace, field selector) -> the messages of the Events it selects, oldest first.
EventMessages = Callable[[str, str], list[str]]


def stalled(job: ObservedJob, now: datetime) -> bool:
    """The Job runs (not finished, not being deleted) and has never had a pod, for a while."""
    if job.finished or job.deleting or job.active or job.succeeded or job.failed or job.created_at is None:
        return False
    return now - job.created_at >= timedelta(seconds=STALLED_AFTER_SECONDS)


@dataclass
class _Watched:
    read_at: datetime | None = None
    message: str = ""


class PodRefusals:
    """Per run (by UID) and Job name: the FailedCreate message found, and when it was last read."""

    def __init__(self, events: EventMessages) -> None:
        self.events = events
        self._runs: dict[str, dict[str, _Watched]] = {}

    def read(self, uid: str, namespace: str, jobs: Iterable[ObservedJob], now: datetime) -> dict[str, str]:
        """Job name -> why its pod is refused, for the run's `jobs`."""
        jobs = list(jobs)
        known = self._runs.get(uid, {})
        # Only the Jobs that exist are remembered: one deleted and created again is looked at anew.
        kept = {job.name: known.get(job.name, _Watched()) for job in jobs if job.name in known or stalled(job, now)}
        for job in jobs:
            watched = kept.get(job.name)
            if watched is None or watched.message or not stalled(job, now):
                continue
            if watched.read_at is None or now - watched.read_at >= timedelta(seconds=READ_INTERVAL_SECONDS):
                watched.read_at = now
                watched.message = self._failed_create(namespace, job.name)
        if kept:
            self._runs[uid] = kept
        else:
            self._runs.pop(uid, None)
        return {name: watched.message for name, watched in kept.items() if watched.message}

    def forget(self, uid: str) -> None:
        self._runs.pop(uid, None)

    def _failed_create(self, namespace: str, job: str) -> str:
        """The latest FailedCreate message of the Job, or "" (also when Events cannot be read)."""
        selector = f"involvedObject.kind=Job,involvedObject.name={job},reason={FAILED_CREATE}"
        try:
            messages = self.events(namespace, selector)
        except ApiException as error:
            # The setup timeout still ends the wait; only the early, quoted failure is lost.
            logger.warning("cannot read the events of Job %s/%s: %s %s", namespace, job, error.status, error.reason)
            return ""
        return messages[-1] if messages else ""
