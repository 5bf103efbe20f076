"""`python -m devcluster build|install-deps|up|down|status|kubeconfig|env|images|gitops-tools`: the dev
cluster's commands."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from devcluster import build, cluster, gitops, images, node, node_deps
from devcluster.paths import state_dir


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    run = COMMANDS.get(args.command)
    return run(args) if run is not None else 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build (or reuse) the binaries from the pinned Go modules")
    commands.add_parser(
        "gitops-tools",
        help="build (or reuse) kstatus, Argo CD's health checker and Flux's controllers (the GitOps tests use them)",
    )
    commands.add_parser(
        "install-deps",
        help="install the real node's Debian packages (containerd, runc, CNI plugins, iptables) if missing",
    )
    up_command = commands.add_parser(
        "up", help="start the cluster; returns once nodes are Ready and ServiceAccounts work"
    )
    up_command.add_argument(
        "--audit-policy",
        type=Path,
        help="also write the API server's audit log by this policy file (the benchmarks count requests with it)",
    )
    commands.add_parser("down", help="stop exactly the processes `up` started and remove the cluster's state")
    commands.add_parser("status", help="show each component; exit 0 only if all are running")
    commands.add_parser("kubeconfig", help="print the path of the admin kubeconfig")
    commands.add_parser("env", help="print shell exports: KUBECONFIG, and PATH with kubectl and helm")
    images_command = commands.add_parser(
        "images", help="build (or reuse) the real node's images; print each reference, its archive and the time"
    )
    images_command.add_argument("--install-deps", action="store_true", help="first apt-get install what the builds use")
    return parser


def _up(args: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        running = cluster.up(args.audit_policy)
    except cluster.AlreadyRunning as error:
        print(f"devcluster: {error}")
        return 0
    except (cluster.ClusterError, build.BuildError, node.NodeError) as error:
        print(f"devcluster: up failed: {error}", file=sys.stderr)
        return 1
    print(f"devcluster: up in {time.monotonic() - started:.1f}s, {running.server}")
    print(f"devcluster: export KUBECONFIG={running.kubeconfig}")
    return 0


def _down(args: argparse.Namespace) -> int:
    print("devcluster: stopped" if cluster.down() else "devcluster: was not running")
    return 0


def _status(args: argparse.Namespace) -> int:
    healthy, text = cluster.status()
    print(text)
    return 0 if healthy else 1


def _kubeconfig(args: argparse.Namespace) -> int:
    print(state_dir() / "kubeconfig")
    return 0


def _env(args: argparse.Namespace) -> int:
    print(f"export KUBECONFIG={state_dir() / 'kubeconfig'}")
    print(f'export PATH="{build.bin_dir()}:$PATH"')
    return 0


# Each command's code: given the parsed arguments, it returns the exit status.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "build": lambda args: build.main(),
    "gitops-tools": lambda args: gitops.main(),
    "install-deps": lambda args: node_deps.main(),
    "up": _up,
    "down": _down,
    "status": _status,
    "kubeconfig": _kubeconfig,
    "env": _env,
    "images": lambda args: images.main(install=args.install_deps),
}


if __name__ == "__main__":
    sys.exit(main())
