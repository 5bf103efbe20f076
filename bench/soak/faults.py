"""The faults the soak injects, each planned at a random moment of a workload's life (seeded: the
same seed and workload give the same plan, so a failure can be replayed alone).

Transparent faults must change nothing of a run's outcome: the control plane or the operator away
for a while, labels edited, a stale status written back, a burst of unrelated objects. The others
change the outcome of the workload they target (a child deleted, pods refused by a quota, a cancel,
a deletion, the namespace deleted): of those, only the invariants that hold whatever happens are
checked (the run ends, or goes, and nothing leaks)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException

from devcluster import cluster as devcluster

GLOBAL = ("api", "etcd", "kill", "stop", "restart", "burst")
TARGETED = ("delete-child", "relabel", "quota", "cancel", "delete", "delete-twice", "namespace", "foreign-status")
KINDS = (*GLOBAL, *TARGETED)
TRANSPARENT = frozenset({"api", "etcd", "kill", "stop", "restart", "relabel", "foreign-status", "burst"})
# Faults that end a run's life (it is deleted): its outcome is not checked, its going is.
ENDING = frozenset({"delete", "delete-twice", "namespace"})
# Faults on a whole namespace: they touch every workload in it, and none starts there meanwhile.
NAMESPACE_WIDE = frozenset({"namespace", "quota"})
NAMESPACE_PREFIX = "soak-"  # every namespace the soak makes
NUDGE_ANNOTATION = "soak.flowrun.dev/nudged"


@dataclass(frozen=True)
class Fault:
    kind: str
    at: float  # seconds after its workload started
    seconds: float = 0.0  # how long it lasts (an outage, a stopped operator, a quota)

    def describe(self) -> str:
        return f"{self.kind} {self.seconds:.0f}s" if self.seconds else self.kind


def plan(rng: random.Random, kinds: tuple[str, ...], max_seconds: float) -> list[Fault]:
    """Zero to two faults in a workload's life, at moments while passes are due (its first seconds,
    when pods start, retries fall due and blocks become Ready)."""
    if not kinds:
        return []
    faults = []
    for _ in range(rng.choice((0, 1, 1, 2))):
        kind = rng.choice(kinds)
        nominal = (max_seconds - 15.0) / 1.5  # workloads.bound: the workload's nominal play
        at = rng.uniform(0.5, max(1.0, 0.8 * nominal))  # while it still runs
        seconds = {"api": rng.uniform(5, 60), "etcd": rng.uniform(5, 60), "stop": rng.uniform(2, 60)}.get(kind, 0.0)
        if kind == "quota":
            seconds = rng.uniform(3, 20)
        faults.append(Fault(kind, round(at, 1), round(seconds, 1)))
    return sorted(faults, key=lambda f: f.at)


class Injector:
    """Applies faults to the cluster and the operator. `operator` has start(), stop(kill) and pid;
    `api` the clients (core, apps, custom); `status_history(name)` gives a stale status of a run."""

    def __init__(self, operator: Any, core: Any, custom: Any, status_history: Callable[[str, str], Any]) -> None:
        self.operator, self.core, self.custom = operator, core, custom
        self.status_history = status_history

    def apply(self, fault: Fault, namespace: str, run: str, rng: random.Random) -> str:
        """Apply `fault` (waiting out its duration); returns what was done, for the log."""
        handler: Callable[[Fault, str, str, random.Random], str] = getattr(self, "_" + fault.kind.replace("-", "_"))
        return handler(fault, namespace, run, rng)

    # --- global -------------------------------------------------------------------------------

    def _api(self, fault: Fault, *_: Any) -> str:
        with devcluster.stopped("kube-apiserver"):
            time.sleep(fault.seconds)
        return f"kube-apiserver stopped for {fault.seconds:.0f}s{self._nudge_simulator()}"

    def _etcd(self, fault: Fault, *_: Any) -> str:
        with devcluster.stopped("etcd"):
            time.sleep(fault.seconds)
        return f"etcd stopped for {fault.seconds:.0f}s{self._nudge_simulator()}"

    def _nudge_simulator(self) -> str:
        """Touch every pod of the soak once the control plane is back. KWOK (which plays the pods,
        their deletion included) retries a step that failed during an outage with a backoff that
        doubles up to 32 minutes, so after a few minutes of outages a pod may finish, or go, many
        minutes late: a delay of the simulator, not of the operator. An annotation changed is an
        event that KWOK plays the pod's stage on at once; to the operator it is a change of nothing
        it reads."""
        nudged = 0
        stamp = str(int(time.time()))
        for pod in self.core.list_pod_for_all_namespaces().items:
            if not pod.metadata.namespace.startswith(NAMESPACE_PREFIX):
                continue
            body = {"metadata": {"annotations": {NUDGE_ANNOTATION: stamp}}}
            with contextlib.suppress(ApiException):  # gone meanwhile
                self.core.patch_namespaced_pod(pod.metadata.name, pod.metadata.namespace, body)
                nudged += 1
        return f"; {nudged} pods nudged for the simulator" if nudged else ""

    def _kill(self, *_: Any) -> str:
        self.operator.stop(kill=True)
        self.operator.start()
        return "operator SIGKILLed and started again"

    def _restart(self, *_: Any) -> str:
        self.operator.stop()
        self.operator.start()
        return "operator stopped (SIGTERM) and started again"

    def _stop(self, fault: Fault, *_: Any) -> str:
        os.kill(self.operator.pid, signal.SIGSTOP)
        try:
            time.sleep(fault.seconds)
        finally:
            os.kill(self.operator.pid, signal.SIGCONT)
        return f"operator SIGSTOPped for {fault.seconds:.0f}s"

    def _burst(self, fault: Fault, namespace: str, *_: Any) -> str:
        names = [f"unrelated-{os.getpid()}-{int(time.time() * 1000) % 100000}-{i}" for i in range(500)]
        for name in names:
            self.core.create_namespaced_config_map(namespace, {"metadata": {"name": name}, "data": {"x": "y"}})
        for name in names:
            self.core.delete_namespaced_config_map(name, namespace)
        return f"500 unrelated ConfigMaps created and deleted in {namespace}"

    # --- targeted -----------------------------------------------------------------------------

    def _children(self, namespace: str, run: str) -> list[tuple[str, dict[str, Any]]]:
        uid = self._uid(namespace, run)
        if uid is None:
            return []
        selector = f"flowrun.dev/flowrun-uid={uid}"
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        return [("Pod", pod.to_dict()) for pod in pods if pod.status.phase in ("Pending", "Running")]

    def _uid(self, namespace: str, run: str) -> str | None:
        try:
            body = self.custom.get_namespaced_custom_object("flowrun.dev", "v1alpha1", namespace, "flowruns", run)
        except ApiException:
            return None
        return str(body["metadata"]["uid"])

    def _delete_child(self, fault: Fault, namespace: str, run: str, rng: random.Random) -> str:
        children = self._children(namespace, run)
        if not children:
            return "no live child to delete"
        _, pod = rng.choice(children)
        name = pod["metadata"]["name"]
        try:
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        except ApiException as error:
            return f"deleting pod {name}: {error.status}"
        return f"pod {name} deleted"

    def _relabel(self, fault: Fault, namespace: str, run: str, rng: random.Random) -> str:
        children = self._children(namespace, run)
        if not children:
            return "no live child to relabel"
        _, pod = rng.choice(children)
        name = pod["metadata"]["name"]
        label = rng.choice(["app.kubernetes.io/managed-by", "flowrun.dev/flowrun-uid"])
        try:
            self.core.patch_namespaced_pod(name, namespace, {"metadata": {"labels": {label: None}}})
        except ApiException as error:
            return f"relabelling pod {name}: {error.status}"
        return f"label {label} removed from pod {name}"

    def _quota(self, fault: Fault, namespace: str, *_: Any) -> str:
        name = "soak-no-pods"
        body = {"metadata": {"name": name}, "spec": {"hard": {"count/pods": "0"}}}
        try:
            self.core.create_namespaced_resource_quota(namespace, body)
        except ApiException as error:
            return f"quota: {error.status}"
        try:
            time.sleep(fault.seconds)
        finally:
            self.core.delete_namespaced_resource_quota(name, namespace)
        return f"pods refused by a quota in {namespace} for {fault.seconds:.0f}s"

    def _cancel(self, fault: Fault, namespace: str, run: str, _: random.Random) -> str:
        return self._patch(namespace, run, {"spec": {"cancel": True}}, "cancelled")

    def _delete(self, fault: Fault, namespace: str, run: str, _: random.Random) -> str:
        try:
            self.custom.delete_namespaced_custom_object("flowrun.dev", "v1alpha1", namespace, "flowruns", run)
        except ApiException as error:
            return f"deleting {run}: {error.status}"
        return f"{run} deleted"

    def _delete_twice(self, fault: Fault, namespace: str, run: str, rng: random.Random) -> str:
        first = self._delete(fault, namespace, run, rng)
        second = self._delete(fault, namespace, run, rng)
        return f"{first}; again: {second}"

    def _namespace(self, fault: Fault, namespace: str, *_: Any) -> str:
        try:
            self.core.delete_namespace(namespace)
        except ApiException as error:
            return f"deleting namespace {namespace}: {error.status}"
        return f"namespace {namespace} deleted"

    def _foreign_status(self, fault: Fault, namespace: str, run: str, _: random.Random) -> str:
        stale = self.status_history(namespace, run)
        if not stale:
            return "no earlier status to write back"
        try:
            self.custom.patch_namespaced_custom_object_status(
                "flowrun.dev", "v1alpha1", namespace, "flowruns", run, {"status": stale}
            )
        except ApiException as error:
            return f"writing a stale status of {run}: {error.status}"
        return f"a stale status of {run} written back (phase {stale.get('phase')})"

    def _patch(self, namespace: str, run: str, body: dict[str, Any], what: str) -> str:
        try:
            self.custom.patch_namespaced_custom_object("flowrun.dev", "v1alpha1", namespace, "flowruns", run, body)
        except ApiException as error:
            return f"{what} {run}: {error.status}"
        return f"{run} {what}"
