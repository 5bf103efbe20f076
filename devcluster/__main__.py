"""`python -m devcluster build|install-deps|up|down|status|kubeconfig|env|images`: the dev cluster's commands."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from devcluster import build, cluster, images, node, node_deps
from devcluster.paths import state_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build (or reuse) the binaries from the pinned Go modules")
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
    args = parser.parse_args(argv)

    if args.command == "build":
        return build.main()
    if args.command == "install-deps":
        return node_deps.main()
    if args.command == "up":
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
    if args.command == "down":
        print("devcluster: stopped" if cluster.down() else "devcluster: was not running")
        return 0
    if args.command == "status":
        healthy, text = cluster.status()
        print(text)
        return 0 if healthy else 1
    if args.command == "kubeconfig":
        print(state_dir() / "kubeconfig")
        return 0
    if args.command == "env":
        print(f"export KUBECONFIG={state_dir() / 'kubeconfig'}")
        print(f'export PATH="{build.bin_dir()}:$PATH"')
        return 0
    if args.command == "images":
        return images.main(install=args.install_deps)
    return 2


if __name__ == "__main__":
    sys.exit(main())
