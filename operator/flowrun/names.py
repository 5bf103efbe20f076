"""Deterministic names of a FlowRun's children (docs/api.md, "Children").

A name that would be too long is shortened to a readable prefix, `-`, and the first 8 hex digits
of the sha256 of the full name; an attempt suffix stays readable at the end. The limit is 63 for
every generated name: Job names become label values (`job-name`) and pod hostnames, and Services
need a DNS-1035 label. Manifests keep the names their authors gave them.
"""

from __future__ import annotations

import hashlib
import re

MAX_NAME = 63
HASH_LEN = 8

_NOT_DNS1035 = re.compile(r"[^a-z0-9-]")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LEN]


def _bounded(base: str, suffix: str = "", *, force_hash: bool = False, full: str = "") -> str:
    """`base + suffix` if it fits, else `<prefix of base>-<hash><suffix>` of exactly 63 chars.

    `full` is what the hash is taken of (default `base + suffix`); `force_hash` adds the hash even
    when the name fits, for names that had to be rewritten and could otherwise collide.
    """
    name = base + suffix
    if len(name) <= MAX_NAME and not force_hash:
        return name
    digest = _digest(full or name)
    keep = MAX_NAME - len(suffix) - HASH_LEN - 1
    prefix = base[:keep].rstrip("-.")
    return f"{prefix}-{digest}{suffix}" if prefix else f"{digest}{suffix}"


def task_pod_name(flowrun: str, task: str, attempt: int, index: int | None = None) -> str:
    """`<flowrun>-<task>-<attempt>`, attempt counted from 1; for instance `index` of a forEach
    task, `<flowrun>-<task>-<index>-<attempt>`, the index kept readable beside the attempt (so two
    instances never share a name, however long the run's name)."""
    if index is not None:
        return _bounded(f"{flowrun}-{task}", f"-{index}-{attempt}")
    return _bounded(f"{flowrun}-{task}", f"-{attempt}")


def setup_job_name(flowrun: str, resource: str) -> str:
    return _bounded(f"{flowrun}-{resource}-setup")


def cleanup_job_name(flowrun: str, resource: str, attempt: int) -> str:
    return _bounded(f"{flowrun}-{resource}-cleanup", f"-{attempt}")


def deployment_name(flowrun: str, resource: str, deployment: str) -> str:
    """Name of a setup Deployment and of its Service: a DNS-1035 label.

    A FlowRun name may contain dots or start with a digit, which a Service name may not; such a
    name is rewritten (dots to `-`, an `fr-` prefix) and always carries the hash, so two FlowRun
    names that rewrite to the same text still get different Services.
    """
    full = f"{flowrun}-{resource}-{deployment}"
    rewritten = _NOT_DNS1035.sub("-", full)
    if not rewritten[0].isalpha():
        rewritten = f"fr-{rewritten}"
    return _bounded(rewritten, force_hash=rewritten != full, full=full)


def service_dns_name(flowrun: str, resource: str, deployment: str, namespace: str) -> str:
    """The cluster DNS name tasks use to reach a setup Deployment's Service."""
    return f"{deployment_name(flowrun, resource, deployment)}.{namespace}.svc"


def label_value(text: str) -> str:
    """`text` as a label value (at most 63 chars): FlowRun names may be longer."""
    return _bounded(text)


def result_config_map(flowrun: str, task: str, index: int | None = None) -> str:
    """`<flowrun>-<task>-result`: the ConfigMap a task's result moves to when the status is full;
    `<flowrun>-<task>-<index>-result` for instance `index` of a forEach task."""
    return _bounded(f"{flowrun}-{task}", "-result" if index is None else f"-{index}-result")


_NOT_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")


def lock_lease(lock: str, slot: int) -> str:
    """`flowrun-<kind>-<name>[-<key>]-<slot>`: the Lease of one slot of a lock (`mutex/NAME` or
    `semaphore/CONFIGMAP/KEY`), the same for every run of the namespace, so that of two passes
    taking the same slot the API server lets one create it. A semaphore's name always carries the
    hash (its ConfigMap and key could otherwise read alike: `a-b`/`c` and `a`/`b-c`), as does any
    name rewritten to be a valid one (a key may hold capitals and `_`)."""
    kind, _, rest = lock.partition("/")
    readable = f"flowrun-{kind}-{rest.replace('/', '-')}"
    rewritten = _NOT_DNS1035.sub("-", readable.lower())
    return _bounded(rewritten, f"-{slot}", force_hash=rewritten != readable or kind != "mutex", full=lock)


def lock_label(lock: str) -> str:
    """The lock as a label value (`mutex.nightly`; hashed when longer than 63 characters), so that
    `kubectl get leases -l flowrun.dev/lock=mutex.nightly` lists its holders."""
    text = _NOT_LABEL_VALUE.sub(".", lock.replace("/", "."))
    return _bounded(text.strip("._-") or "lock", force_hash=len(text) > MAX_NAME, full=lock)
