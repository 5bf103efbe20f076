"""Build the dev cluster's binaries from the Go module proxy and cache them by content.

Each Go module under ``devcluster/go/`` pins one upstream project. A module's binaries are cached
under a key made of its go.mod, go.sum, sources and the Go version, so a version bump in one module
rebuilds only that module, and a clean checkout on the same machine reuses what is already built.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from devcluster.paths import cache_root

GO_MODULES_DIR = Path(__file__).resolve().parent / "go"


@dataclass(frozen=True)
class GoModule:
    """One pinned upstream project and the binaries built from it."""

    directory: str
    # binary name -> Go package path to build
    binaries: dict[str, str]
    # -X flags stamping the upstream version into the binary, if it has them
    version_stamp: tuple[str, ...] = ()
    # The folder that holds `directory`, if not devcluster/go/ (the benchmarks keep their own).
    parent: Path | None = None

    @property
    def source(self) -> Path:
        return (self.parent or GO_MODULES_DIR) / self.directory

    @property
    def label(self) -> str:
        return f"{self.parent.name if self.parent else 'devcluster/go'}/{self.directory}"


KUBERNETES_VERSION = "v1.36.3"

MODULES: tuple[GoModule, ...] = (
    GoModule(
        directory="kubernetes",
        binaries={
            "kube-apiserver": "./cmd/kube-apiserver",
            "kube-controller-manager": "./cmd/kube-controller-manager",
            "kube-scheduler": "./cmd/kube-scheduler",
            "kubectl": "./cmd/kubectl",
            # The real node's agents, from the same module as the control plane.
            "kubelet": "./cmd/kubelet",
            "kube-proxy": "./cmd/kube-proxy",
        },
        version_stamp=(
            f"k8s.io/component-base/version.gitVersion={KUBERNETES_VERSION}",
            "k8s.io/component-base/version.gitMajor=1",
            "k8s.io/component-base/version.gitMinor=36",
            f"k8s.io/client-go/pkg/version.gitVersion={KUBERNETES_VERSION}",
        ),
    ),
    GoModule(directory="etcd", binaries={"etcd": "."}),
    GoModule(directory="kwok", binaries={"kwok": "sigs.k8s.io/kwok/cmd/kwok"}),
    GoModule(directory="helm", binaries={"helm": "helm.sh/helm/v3/cmd/helm"}),
    # The real node's sandbox process, put alone in the pause image (devcluster/images.py).
    GoModule(directory="pause", binaries={"pause": "."}),
    # The real node's cluster DNS: upstream CoreDNS with a chosen set of plugins (no forwarding).
    GoModule(directory="coredns", binaries={"coredns": "."}),
)


class BuildError(RuntimeError):
    pass


def _go_version() -> str:
    return subprocess.run(["go", "env", "GOVERSION"], check=True, capture_output=True, text=True).stdout.strip()


def module_key(module: GoModule, go_version: str) -> str:
    """Content hash of everything that decides the module's binaries."""
    digest = hashlib.sha256(go_version.encode())
    digest.update(repr(sorted(module.binaries.items())).encode())
    digest.update(repr(module.version_stamp).encode())
    root = module.source
    for path in sorted(root.rglob("*")):
        if path.is_file() and (path.suffix == ".go" or path.name in ("go.mod", "go.sum")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def module_bin_dir(module: GoModule, go_version: str) -> Path:
    return cache_root() / "bin" / f"{module.directory}-{module_key(module, go_version)}"


def bin_dir() -> Path:
    """A directory of links to the current build of every binary (what PATH gets)."""
    return cache_root() / "current"


def binary(name: str) -> Path:
    return bin_dir() / name


def _build_module(module: GoModule, target: Path) -> None:
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    ldflags = ["-s", "-w"] + [f"-X {stamp}" for stamp in module.version_stamp]
    env = dict(os.environ, CGO_ENABLED="0")
    started = time.monotonic()
    print(f"devcluster: building {', '.join(module.binaries)} ({module.label})", flush=True)
    # One `go build` for all of a module's binaries: it compiles shared packages once, in parallel.
    result = subprocess.run(
        ["go", "build", "-trimpath", "-ldflags", " ".join(ldflags), "-o", f"{staging}/", *module.binaries.values()],
        cwd=module.source,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-30:])
        raise BuildError(f"building {module.label} failed:\n{tail}")
    for name, package in module.binaries.items():
        built = staging / Path(package).name if package != "." else staging / module.directory
        if built.name != name:
            built.rename(staging / name)
    print(f"devcluster: built {module.directory} in {time.monotonic() - started:.0f}s", flush=True)
    # Rename last so an interrupted build never looks complete.
    staging.rename(target)


def ensure_built(module: GoModule) -> Path:
    """The cached build of one module (built now if missing): the folder that holds its binaries."""
    if shutil.which("go") is None:
        raise BuildError("the go command is not on PATH; the dev cluster is built from Go modules")
    target = module_bin_dir(module, _go_version())
    if not target.is_dir():
        _build_module(module, target)
    return target


def build(verbose: bool = True) -> Path:
    """Build whatever is missing from the cache and point ``bin_dir()`` at the current builds."""
    if shutil.which("go") is None:
        raise BuildError("the go command is not on PATH; the dev cluster is built from Go modules")
    go_version = _go_version()
    current = bin_dir()
    current.mkdir(parents=True, exist_ok=True)
    for module in MODULES:
        target = module_bin_dir(module, go_version)
        if not target.is_dir():
            _build_module(module, target)
        elif verbose:
            print(f"devcluster: {module.directory} binaries cached ({target.name})", flush=True)
        for name in module.binaries:
            link = current / name
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(target / name)
    return current


def main() -> int:
    try:
        build()
    except BuildError as error:
        print(f"devcluster: {error}", file=sys.stderr)
        return 1
    return 0
