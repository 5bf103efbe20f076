"""A resource block: one Deployment (1 replica) set up for one task, then cleaned up. Setup latency
(the run's creation to the Deployment Available) and cleanup latency (the task's pod finished to
the Deployment, its ReplicaSet and its pods all gone), for the operator against a plain script that
does the same with kubectl (apply, wait for Available, create the task's pod, wait for it to
succeed, delete the Deployment in the foreground).

    .venv/bin/python -m bench.resource_block [--rounds 5] [--duration 100ms]

All times are taken by one watch of the namespace's Deployments, ReplicaSets and Pods. Prints
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from typing import Any

from kubernetes import client

from bench import harness, stats, workloads
from flowrun import api

BLOCK, DEPLOYMENT, TASK = "blk", "d", "t"


class BlockClock:
    """When each object of the namespace was first seen Available (Deployments), finished (Pods) and
    deleted."""

    def __init__(self, session: harness.Session, namespace: str) -> None:
        apps = client.AppsV1Api(session.api)
        self.available: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self.lock = threading.Lock()
        self.watches = [
            harness.RawWatch(lambda **kw: apps.list_namespaced_deployment(namespace, **kw), self._seen),
            harness.RawWatch(lambda **kw: apps.list_namespaced_replica_set(namespace, **kw), self._seen),
            harness.RawWatch(lambda **kw: session.core.list_namespaced_pod(namespace, **kw), self._seen),
        ]

    def _seen(self, kind: str, obj: dict[str, Any]) -> None:
        now, name, status = time.monotonic(), obj["metadata"]["name"], obj.get("status") or {}
        with self.lock:
            if kind == "DELETED":
                self.deleted.setdefault(f"{obj.get('kind', '')}/{name}", now)
                return
            if status.get("phase") in harness.TERMINAL_POD_PHASES:
                self.finished.setdefault(name, now)
            for condition in status.get("conditions") or []:
                if condition.get("type") == "Available" and condition.get("status") == "True":
                    self.available.setdefault(name, now)

    def start(self) -> BlockClock:
        for watch in self.watches:
            watch.start()
            watch.synced.wait(60)
        return self

    def stop(self) -> None:
        for watch in self.watches:
            watch.stop()

    def gone(self, prefix: str, kinds: int = 3) -> float | None:
        """When the last object named prefix* was deleted, once a Deployment, a ReplicaSet and a
        Pod of that prefix were all deleted."""
        with self.lock:
            times = {key: seen for key, seen in self.deleted.items() if key.split("/", 1)[1].startswith(prefix)}
        if len({key.split("/", 1)[0] for key in times}) < kinds:
            return None
        return max(times.values())


def deployment_template(run: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"bench.flowrun.dev/block": run}},
        "spec": {"containers": [{"name": "main", "image": workloads.IMAGE}]},
    }


def flowrun_with_block(run: str, duration: str) -> dict[str, Any]:
    body = workloads.flowrun(run, workloads.chain(1), duration)
    body["spec"]["tasks"][0]["name"] = TASK
    body["spec"]["tasks"][0]["resources"] = [BLOCK]
    body["spec"]["tasks"][0]["template"]["metadata"]["labels"][workloads.TASK_LABEL] = TASK
    body["spec"]["resources"] = [
        {
            "name": BLOCK,
            "setup": {"deployments": [{"name": DEPLOYMENT, "replicas": 1, "template": deployment_template(run)}]},
        }
    ]
    return body


def operator_round(
    session: harness.Session, namespace: str, clock: BlockClock, run: str, duration: str
) -> tuple[float, float]:
    started = time.monotonic()
    session.custom.create_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, flowrun_with_block(run, duration)
    )
    block = f"{run}-{BLOCK}-{DEPLOYMENT}"
    harness.wait_for(f"{block} to be gone", lambda: clock.gone(block) is not None, 180, 0.1)
    gone = clock.gone(block)
    assert gone is not None
    return clock.available[block] - started, gone - clock.finished[f"{run}-{TASK}-1"]


def kubectl_round(
    session: harness.Session, namespace: str, clock: BlockClock, run: str, duration: str, kubeconfig: str
) -> tuple[float, float]:
    block = f"{run}-{BLOCK}-{DEPLOYMENT}"
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": block},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"bench.flowrun.dev/block": run}},
            "template": deployment_template(run),
        },
    }
    pod = {"apiVersion": "v1", "kind": "Pod", **workloads.bare_pod(run, TASK, duration)}
    files = session.workdir
    (files / f"{run}-deployment.json").write_text(json.dumps(deployment))
    (files / f"{run}-pod.json").write_text(json.dumps(pod))

    def kubectl(*args: str) -> None:
        session.kubectl(f"--kubeconfig={kubeconfig}", f"--namespace={namespace}", *args)

    started = time.monotonic()
    kubectl("apply", f"--filename={files / f'{run}-deployment.json'}")
    kubectl("wait", "--for=condition=Available", "--timeout=120s", f"deployment/{block}")
    kubectl("create", f"--filename={files / f'{run}-pod.json'}")
    kubectl("wait", "--for=jsonpath={.status.phase}=Succeeded", "--timeout=120s", f"pod/{run}-{TASK}")
    kubectl("delete", "--cascade=foreground", "--wait=true", f"deployment/{block}")
    harness.wait_for(f"{block} to be gone", lambda: clock.gone(block) is not None, 180, 0.1)
    gone = clock.gone(block)
    assert gone is not None
    return clock.available[block] - started, gone - clock.finished[f"{run}-{TASK}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", default="100ms", help="how long the task's pod runs (default 100ms)")
    args = parser.parse_args(argv)
    print(f"== resource block: one Deployment for one task, {args.rounds} round(s)", flush=True)
    figures: dict[str, dict[str, list[float]]] = {"operator": {}, "kubectl": {}}
    with harness.session() as session:
        ours_ns, script_ns = session.namespace("bench-block-operator"), session.namespace("bench-block-kubectl")
        operator = harness.flowrun_operator(session, ours_ns, session.identity("operator"))
        script = session.identity("kubectl")
        clocks = [BlockClock(session, ours_ns).start(), BlockClock(session, script_ns).start()]
        operator.start()
        try:
            operator_round(session, ours_ns, clocks[0], "warm", args.duration)
            for round_ in range(args.rounds):
                for name, measured in (
                    ("operator", operator_round(session, ours_ns, clocks[0], f"r{round_}", args.duration)),
                    (
                        "kubectl",
                        kubectl_round(
                            session, script_ns, clocks[1], f"r{round_}", args.duration, str(script.kubeconfig)
                        ),
                    ),
                ):
                    figures[name].setdefault("setup", []).append(measured[0])
                    figures[name].setdefault("cleanup", []).append(measured[1])
                    print(
                        f"   round {round_ + 1} {name}: setup {measured[0]:.2f}s, cleanup {measured[1]:.2f}s",
                        flush=True,
                    )
        finally:
            operator.stop()
            for clock in clocks:
                clock.stop()
    for phase in ("setup", "cleanup"):
        ours, plain = stats.median(figures["operator"][phase]), stats.median(figures["kubectl"][phase])
        ratio = stats.ratio(ours, plain)
        print(f"   {phase:<8} median: operator {ours:.2f}s, kubectl script {plain:.2f}s, ratio {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
