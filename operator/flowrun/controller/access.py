"""What the operator may do with the kinds of setup manifests, asked once per kind and namespace
(SelfSubjectAccessReviews, cached): a run naming a kind the operator may not create, read, list,
watch or delete there is refused before anything of that kind is listed or created, and a run
being deleted never waits on a kind it cannot list."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

# What the operator does with a manifest's kind: creates (and dry-runs) it, reads it on a name
# conflict, lists and watches it (its cache), deletes it in cleanup.
VERBS = ("create", "get", "list", "watch", "delete")
# How long an answer is kept: RBAC changes rarely; a grant added after a refusal is seen soon.
ALLOWED_SECONDS, DENIED_SECONDS = 600.0, 60.0

# (namespace, API group, plural, verb) -> allowed
Ask = Callable[[str, str, str, str], bool]


class Access:
    def __init__(self, ask: Ask, clock: Callable[[], float] = time.monotonic) -> None:
        self._ask, self._clock = ask, clock
        self._answers: dict[tuple[str, str, str], tuple[float, tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def denied(self, namespace: str, group: str, plural: str) -> tuple[str, ...]:
        """The verbs of VERBS the operator may not use on `plural` in `namespace`."""
        key = (namespace, group, plural)
        with self._lock:
            cached = self._answers.get(key)
        now = self._clock()
        if cached is not None and now < cached[0]:
            return cached[1]
        denied = tuple(verb for verb in VERBS if not self._ask(namespace, group, plural, verb))
        with self._lock:
            self._answers[key] = (now + (DENIED_SECONDS if denied else ALLOWED_SECONDS), denied)
        return denied
