"""The Debian packages the real node needs, installed with apt-get when missing (idempotent).

`python -m devcluster install-deps` is what `scripts/test` and `scripts/demo` run first. On a host
that cannot have a real node (not Linux, not root, no apt-get) it says so in one line and the
dev cluster runs with simulated nodes only; with CI=true that is an error instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

from devcluster import images

# containerd and runc run the containers, the CNI plugins wire pods to the node's bridge, iptables
# and conntrack serve kube-proxy and the kubelet, util-linux's nsenter starts the node's processes
# inside the node's network namespace; busybox-static, umoci and skopeo make the local images.
PACKAGES = (
    "containerd",
    "runc",
    "containernetworking-plugins",
    "iptables",
    "conntrack",
    "util-linux",
    "iproute2",
    "busybox-static",
    "umoci",
    "skopeo",
)


def ci_requires_real_node() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def host_problem() -> str | None:
    """Why this host cannot run the real node at all (package installation aside), or None."""
    if not sys.platform.startswith("linux"):
        return f"the real node needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return "the real node needs root (kubelet, containerd and network namespaces)"
    return None


def missing_packages() -> list[str]:
    if shutil.which("dpkg-query") is None:
        return list(PACKAGES)
    missing = []
    for package in PACKAGES:
        result = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Status}", package], capture_output=True, text=True)
        if result.returncode != 0 or result.stdout.strip() != "installed":
            missing.append(package)
    return missing


def install() -> str | None:
    """Install what is missing. Returns None when everything is there, else why not."""
    problem = host_problem()
    if problem:
        return problem
    missing = missing_packages()
    if not missing:
        return None
    if shutil.which("apt-get") is None:
        return f"missing packages {', '.join(missing)} and no apt-get to install them"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"devcluster: installing {' '.join(missing)} for the real node", flush=True)
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            return f"`{' '.join(argv[:2])}` failed:\n{tail}"
    still = missing_packages()
    if still:
        return f"packages still missing after apt-get: {', '.join(still)}"
    return None


def _install_image_tools() -> str | None:
    """The image builder's own packages, when it has an installer (one command installs all)."""
    try:
        images.install_deps()
    except Exception as error:  # apt-get's failure, named in one line
        return f"installing the image builder's packages failed: {error}"
    return None


def main() -> int:
    problem = install() or _install_image_tools()
    if problem is None:
        print("devcluster: the real node's packages are installed", flush=True)
        return 0
    if ci_requires_real_node():
        print(f"devcluster: the real node is required (CI=true) but {problem}", file=sys.stderr)
        return 1
    print(f"devcluster: no real node on this host: {problem}", flush=True)
    return 0
