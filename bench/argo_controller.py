"""Argo Workflows as a benchmark peer: its workflow-controller built from its Go module (bench/argo/,
cached like the dev cluster's binaries), its CRDs applied from that module's source, and the
controller run as a local process on one namespace of the dev cluster.

    .venv/bin/python -m bench.argo_controller     # build (or reuse) the binary and print its path

How its pods finish: KWOK plays the kubelet. The dev cluster's own stages already finish any pod
that is not meant to run forever: init containers are reported terminated when the pod starts, and
every container (Argo's `wait` as well as `main`) terminated with exit code 0 after the pod's
sim.flowrun.dev/duration annotation (set on each template's metadata). No Argo-specific stage is
needed.

What stands in for the `wait` container: nothing runs in these pods, so no WorkflowTaskResult is
ever written. Argo 3.7's controller marks a pod node's task result as synced from the start and
only waits for a task result that exists and is labelled incomplete (the `wait` container writes
one when it starts); with none, a node completes as soon as its pod has Succeeded, without the
TASK_RESULT_TIMEOUT_DURATION fallback (10 minutes). So Argo is measured without the cost of its
executor's own API requests (a real `wait` container makes some per pod): this flatters Argo, never
the operator.

Two settings, each its own controller process on its own namespace:
- default: Argo's own defaults (32 workflow workers, client QPS 20 / burst 30, DEFAULT_REQUEUE_TIME
  10s), only its metrics server turned off (it would listen on a fixed port);
- tuned: DEFAULT_REQUEUE_TIME=1s (its lowest sensible value), client QPS 200 / burst 400, 64
  workflow workers, 16 pod-cleanup workers.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from bench import harness, workloads
from bench.drivers import CustomObjectDriver
from bench.workloads import Shape
from devcluster import build as devbuild

MODULE_DIR = harness.REPO / "bench" / "argo"
ARGO_MODULE = "github.com/argoproj/argo-workflows/v3"
CONTROLLER = devbuild.GoModule(
    directory="argo",
    binaries={"workflow-controller": f"{ARGO_MODULE}/cmd/workflow-controller"},
    parent=MODULE_DIR.parent,
)
CONFIGMAP = "workflow-controller-configmap"
TUNED_ARGS = ("--qps", "200", "--burst", "400", "--workflow-workers", "64", "--pod-cleanup-workers", "16")
TUNED_ENV = {"DEFAULT_REQUEUE_TIME": "1s"}


def controller_binary() -> Path:
    return devbuild.ensure_built(CONTROLLER) / "workflow-controller"


def module_source() -> Path:
    """Argo's module in the Go module cache (where its CRDs are)."""
    listed = subprocess.run(
        ["go", "list", "-m", "-json", ARGO_MODULE], cwd=MODULE_DIR, check=True, capture_output=True, text=True
    )
    return Path(json.loads(listed.stdout)["Dir"])


def install_crds(session: harness.Session) -> None:
    crds = sorted((module_source() / "manifests" / "base" / "crds" / "minimal").glob("argoproj.io_*.yaml"))
    session.kubectl("apply", "--server-side", "--force-conflicts", *(f"-f={path}" for path in crds))
    session.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/workflows.argoproj.io")


class ArgoDriver(CustomObjectDriver):
    group, version, plural = workloads.ARGO_GROUP, workloads.ARGO_VERSION, workloads.ARGO_PLURAL

    def __init__(self, session: harness.Session, namespace: str, tuned: bool) -> None:
        self.label = "argo (tuned)" if tuned else "argo"
        binary = controller_binary()
        install_crds(session)
        name = "argo-tuned" if tuned else "argo"
        super().__init__(session, namespace, session.identity(name, namespace=namespace))
        session.core.create_namespaced_config_map(
            namespace,
            {
                "metadata": {"name": CONFIGMAP},
                "data": {"metricsConfig": "enabled: false\n", "telemetryConfig": "enabled: false\n"},
            },
        )
        self.controller = harness.Controller(
            name=name,
            argv=[
                str(binary),
                "--namespaced",
                f"--managed-namespace={namespace}",
                f"--configmap={CONFIGMAP}",
                "--loglevel=warn",
                *(TUNED_ARGS if tuned else ()),
            ],
            identity=self.identity,
            log_path=session.workdir / f"{name}.log",
            env={"LEADER_ELECTION_DISABLE": "true", **(TUNED_ENV if tuned else {})},
        )
        self.controller.start()

    def body(self, name: str, shape: Shape, duration: str) -> dict[str, Any]:
        return workloads.argo_workflow(name, shape, duration)


def main() -> int:
    print(controller_binary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
