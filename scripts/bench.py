"""Benchmark: the gap between one task finishing and the next task's pod being created.

Runs, side by side on the dev cluster, a chain of sequential pods driven two ways:
- by the operator, as a FlowRun of N tasks with `runAfter` on the previous one;
- by a bare client that watches each pod and creates the next one as soon as it has finished
  (the floor: what any controller on this cluster could do at best).
Each gap is measured by one watcher of the namespace's pods, on one clock: from the watch event
that shows a pod finished to the watch event that shows the next pod created.

Usage: .venv/bin/python scripts/bench.py [--tasks 10] [--rounds 3]
Prints medians and the ratio; asserts nothing (performance is measured, not tested).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import secrets
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devcluster import cluster as devcluster
from flowrun import api

DURATION = "200ms"


class PodClock(threading.Thread):
    """Watches every pod of the namespace; notes when each was first seen and first seen finished."""

    def __init__(self, core: client.CoreV1Api, namespace: str) -> None:
        super().__init__(daemon=True)
        self.core, self.namespace = core, namespace
        self.created: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.stream = watch.Watch()

    def run(self) -> None:
        for event in self.stream.stream(self.core.list_namespaced_pod, self.namespace, timeout_seconds=3600):
            pod, now = event["object"], time.monotonic()
            self.created.setdefault(pod.metadata.name, now)
            if pod.status.phase in ("Succeeded", "Failed"):
                self.finished.setdefault(pod.metadata.name, now)

    def gaps(self, names: list[str]) -> list[float]:
        return [self.created[following] - self.finished[previous] for previous, following in itertools.pairwise(names)]


def pod_body(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels, "annotations": {"sim.flowrun.dev/duration": DURATION}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]},
    }


def bare_chain(core: client.CoreV1Api, namespace: str, tasks: int, label: str, clock: PodClock) -> list[float]:
    names = [f"bare-{label}-{index}" for index in range(tasks)]
    for index in range(tasks):
        name = f"bare-{label}-{index}"
        core.create_namespaced_pod(namespace, pod_body(name, {"bench": label}))
        stream = watch.Watch()
        for event in stream.stream(
            core.list_namespaced_pod, namespace, field_selector=f"metadata.name={name}", timeout_seconds=60
        ):
            if event["object"].status.phase in ("Succeeded", "Failed"):
                stream.stop()
    return clock.gaps(names)


def operator_chain(
    custom: client.CustomObjectsApi, namespace: str, tasks: int, label: str, clock: PodClock
) -> list[float]:
    name = f"chain-{label}"
    task_list = []
    for index in range(tasks):
        task: dict[str, Any] = {
            "name": f"t{index}",
            "template": {
                "metadata": {"annotations": {"sim.flowrun.dev/duration": DURATION}},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]},
            },
        }
        if index:
            task["runAfter"] = [f"t{index - 1}"]
        task_list.append(task)
    body = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": name}, "spec": {"tasks": task_list}}
    custom.create_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, body)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
        if (run.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(0.2)
    else:
        raise SystemExit(f"FlowRun {name} did not finish")
    return clock.gaps([f"{name}-t{index}-1" for index in range(tasks)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    running = devcluster.running_cluster()
    started_here = running is None
    running = running or devcluster.up()
    operator: subprocess.Popen[bytes] | None = None
    namespace = f"bench-{secrets.token_hex(3)}"
    api_client = config.new_client_from_config(str(running.kubeconfig))
    core = client.CoreV1Api(api_client)
    try:
        subprocess.run(
            [
                str(running.bin_dir / "kubectl"),
                f"--kubeconfig={running.kubeconfig}",
                "apply",
                "--server-side",
                "-f",
                str(REPO / "crds" / "flowrun.yaml"),
            ],
            check=True,
            capture_output=True,
        )
        core.create_namespace({"metadata": {"name": namespace}})
        while True:
            try:
                core.read_namespaced_service_account("default", namespace)
                break
            except client.ApiException:
                time.sleep(0.1)
        operator = subprocess.Popen(
            [sys.executable, "-m", "flowrun.cli", "run", "--namespace", namespace, "--log-level", "warning"],
            env=dict(os.environ, KUBECONFIG=str(running.kubeconfig)),
        )
        custom = client.CustomObjectsApi(api_client)
        clock = PodClock(core, namespace)
        clock.start()
        bare: list[float] = []
        driven: list[float] = []
        for round_ in range(args.rounds):
            bare += bare_chain(core, namespace, args.tasks, f"r{round_}", clock)
            driven += operator_chain(custom, namespace, args.tasks, f"r{round_}", clock)
        print(f"chain of {args.tasks} sequential tasks x {args.rounds} rounds, each task runs {DURATION}")
        print(f"gap between a task finishing and the next pod's creation ({len(bare)} gaps each):")
        print(f"  bare client (floor): median {statistics.median(bare):.3f}s  max {max(bare):.3f}s")
        print(f"  flowrun-operator:    median {statistics.median(driven):.3f}s  max {max(driven):.3f}s")
        print(
            f"  ratio of medians (operator / floor): "
            f"{statistics.median(driven) / max(statistics.median(bare), 1e-3):.2f}"
        )
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(timeout=30)
        with contextlib.suppress(client.ApiException):
            core.delete_namespace(namespace)
        if started_here:
            devcluster.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
