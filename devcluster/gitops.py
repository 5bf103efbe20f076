"""The GitOps tools' own code, for the tests that check what they make of the operator's objects
(docs/install.md, "GitOps"): kstatus from sigs.k8s.io/cli-utils (what Flux, kpt and kubectl-style
waiters compute readiness with), Argo CD's health checks (its util/lua and util/settings, with the
Lua checks of gitops/argocd/), and Flux's source-controller and kustomize-controller (flux.py runs
them). Each is built from its pinned Go module under devcluster/go/ the first time a test needs
it, and cached like the dev cluster's binaries; `devcluster build` and `up` never build them.

    python -m devcluster gitops-tools     # build (or reuse) them all; print where they are

Each wrapper below runs a tool on JSON objects and returns what it printed, parsed."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from devcluster import build

KSTATUS = build.GoModule(directory="kstatus", binaries={"kstatus": "."})
ARGOCD = build.GoModule(directory="argocd", binaries={"argocd-health": "."})
FLUX = build.GoModule(
    directory="flux",
    binaries={
        "source-controller": "github.com/fluxcd/source-controller",
        "kustomize-controller": "github.com/fluxcd/kustomize-controller",
    },
)
TOOLS = (KSTATUS, ARGOCD, FLUX)
# The Argo CD health checks, laid out as Argo CD's resource_customizations are.
ARGOCD_CHECKS = Path(__file__).resolve().parents[1] / "gitops" / "argocd" / "resource_customizations"


def binary(module: build.GoModule, name: str) -> Path:
    """The cached build of `name` from `module`, built now if missing."""
    return build.ensure_built(module) / name


def _run_json(argv: Sequence[str], objects: Sequence[Mapping[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Run a tool; its JSON lines, parsed. A tool that fails raises, with what it printed."""
    stdin = None if objects is None else json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
    done = subprocess.run(list(argv), input=stdin, capture_output=True, text=True, timeout=120, check=False)
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 and not lines:
        raise RuntimeError(f"{Path(argv[0]).name} failed ({done.returncode}): {done.stderr.strip()}")
    return lines


def kstatus(objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """kstatus's verdict on each object: {kind, namespace, name, status, message}, status one of
    InProgress, Current, Failed, Terminating."""
    return _run_json([str(binary(KSTATUS, "kstatus"))], objects)


def argocd_health(objects: Sequence[Mapping[str, Any]], kubeconfig: Path, namespace: str) -> list[dict[str, Any]]:
    """Argo CD's health of each object ({kind, namespace, name, status, message}; status "" when
    Argo CD has none for it), by the resource customizations of the argocd-cm ConfigMap in
    `namespace` (labelled app.kubernetes.io/part-of=argocd), read by Argo CD's settings manager."""
    argv = [str(binary(ARGOCD, "argocd-health")), "eval", "-kubeconfig", str(kubeconfig), "-namespace", namespace]
    return _run_json(argv, objects)


def argocd_tests(root: Path = ARGOCD_CHECKS) -> tuple[int, list[dict[str, Any]]]:
    """Every health_test.yaml case under `root`, run by Argo CD's code with the Lua standard
    libraries open (as Argo CD tests its own checks) and closed (as argocd-cm runs them): the exit
    status and one result per case and mode."""
    done = subprocess.run(
        [str(binary(ARGOCD, "argocd-health")), "test", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    results = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if not results:
        raise RuntimeError(f"argocd-health test {root} printed nothing: {done.stderr.strip()}")
    return done.returncode, results


def module_dir(module: build.GoModule, path: str) -> Path:
    """Where the Go module cache holds `path` (a module `module` requires): its CRDs are there."""
    listed = subprocess.run(
        ["go", "list", "-m", "-json", path], cwd=module.source, check=True, capture_output=True, text=True
    )
    return Path(json.loads(listed.stdout)["Dir"])


def main() -> int:
    for module in TOOLS:
        started = time.monotonic()
        try:
            where = build.ensure_built(module)
        except build.BuildError as error:
            print(f"devcluster: {error}")
            return 1
        print(f"devcluster: {', '.join(module.binaries)}: {where} ({time.monotonic() - started:.0f}s)", flush=True)
    return 0
