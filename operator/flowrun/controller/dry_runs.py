"""Dry runs the API server accepted lately, so that runs of the same templates (a CronFlowRun's
runs, a Flow's, a benchmark's thousand) are validated by one dry run, not one each.

A dry run's answer depends on the manifest and on the namespace (its quotas, limit ranges, pod
security level, admission policies), hardly on what makes each run's children different: their
names, the owner reference and the values of their labels (the operator's run, UID, task and
attempt labels; a user's label naming the run). The key is the manifest without those (label keys
are kept: a policy may require one), and its namespace. What a remembered dry run no longer
catches before the run starts (a label value a policy refuses, a policy or quota changed within
TTL_SECONDS) the real create still meets: its refusal fails what waited for the child, naming the
object and quoting the API server. A refused dry run is never remembered: each run gets the API
server's own message. Plain data, used from the pass threads under a lock.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

TTL_SECONDS = 300.0
MAX_ENTRIES = 4096


def dry_run_key(manifest: Mapping[str, Any]) -> str:
    """The namespace and a digest of what a dry run of `manifest` depends on."""
    metadata = dict(manifest.get("metadata") or {})
    namespace = str(metadata.pop("namespace", "") or "")
    for key in ("name", "generateName", "ownerReferences"):
        metadata.pop(key, None)
    stripped = {**manifest, "metadata": {**metadata, "labels": sorted(metadata.get("labels") or {})}}
    digest = hashlib.sha256(json.dumps(stripped, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"{namespace}/{digest}"


class AcceptedDryRuns:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._accepted: OrderedDict[str, float] = OrderedDict()  # key -> when accepted, oldest first

    def accepted(self, manifest: Mapping[str, Any]) -> bool:
        key = dry_run_key(manifest)
        with self._lock:
            since = self._accepted.get(key)
            if since is None:
                return False
            if self._clock() - since > TTL_SECONDS:
                del self._accepted[key]
                return False
            return True

    def remember(self, manifest: Mapping[str, Any]) -> None:
        key = dry_run_key(manifest)
        with self._lock:
            self._accepted.pop(key, None)
            self._accepted[key] = self._clock()
            while len(self._accepted) > MAX_ENTRIES:
                self._accepted.popitem(last=False)
