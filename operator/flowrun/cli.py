"""The `flowrun` command."""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
from pathlib import Path

import kopf
import prometheus_client

from flowrun import api, structured_logging
from flowrun.controller.settings import LeaderElection, OrphanPolicy, Settings

# Where a pod finds its own namespace (its ServiceAccount's token is mounted beside it).
POD_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class UsageError(Exception):
    """A command line that cannot run: the message names the flag."""


def leader_election(args: argparse.Namespace) -> LeaderElection | None:
    """The leader election the flags ask for (None: off). The Lease's namespace defaults to the
    pod's; the identity is the pod's name (POD_NAME, from the downward API), else the host's name
    and the process id."""
    if not args.leader_election:
        return None
    namespace = args.leader_election_namespace
    if not namespace and POD_NAMESPACE_FILE.is_file():
        namespace = POD_NAMESPACE_FILE.read_text().strip()
    if not namespace:
        raise UsageError("--leader-election-namespace: required outside a pod (the Lease's namespace)")
    lease, renew, retry = (
        args.leader_election_lease_seconds,
        args.leader_election_renew_deadline,
        args.leader_election_retry,
    )
    if not lease > renew > retry > 0:
        raise UsageError(
            "--leader-election-lease-seconds, --leader-election-renew-deadline, --leader-election-retry:"
            f" need lease > renew deadline > retry > 0, got {lease} > {renew} > {retry}"
        )
    identity = os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
    return LeaderElection(namespace, args.leader_election_lease_name, identity, lease, renew, retry)


def _run(args: argparse.Namespace) -> int:
    from flowrun.controller import wiring

    if not args.all_namespaces and not args.namespace:
        print("flowrun run: give --all-namespaces or at least one --namespace", file=sys.stderr)
        return 2
    try:
        election = leader_election(args)
    except UsageError as error:
        print(f"flowrun run: {error}", file=sys.stderr)
        return 2
    settings = Settings(
        namespaces=() if args.all_namespaces else tuple(args.namespace),
        workers=args.workers,
        qps=args.qps,
        burst=args.burst,
        resync_seconds=args.resync_seconds,
        orphans=OrphanPolicy(grace=args.orphan_grace, delete_after=args.delete_orphans_after),
        stall_seconds=args.liveness_stall_seconds,
        leader_election=election,
    )
    structured_logging.configure(args.log_level, args.log_format)
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port, addr=args.metrics_address)
    kopf.run(
        # kopf's peering is off: it pauses a whole operator by priority, it does not elect one.
        # Replicas elect the one that reconciles through a Lease (controller/election.py).
        standalone=True,
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(settings=settings),
        registry=wiring.REGISTRY,
    )
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError("must be between 1 and 256")
    return value


def _positive_seconds(text: str) -> float:
    value = float(text)
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 3600")
    return value


def _qps(text: str) -> float:
    complaint = f"must be a number of requests a second, at most 100000 (0 or less: no limit), got {text!r}"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(complaint) from None
    if not math.isfinite(value) or value > 100_000:
        raise argparse.ArgumentTypeError(complaint)
    return value


def _burst(text: str) -> int:
    complaint = f"must be a whole number of requests from 1 to 100000, got {text!r}"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(complaint) from None
    if not 1 <= value <= 100_000:
        raise argparse.ArgumentTypeError(complaint)
    return value


def _seconds(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 31_536_000:
        raise argparse.ArgumentTypeError("must be between 0 and 31536000 (a year)")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowrun", description="flowrun-operator: runs FlowRuns on Kubernetes")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator (KUBECONFIG, else in-cluster credentials)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch FlowRuns in every namespace")
    scope.add_argument("--namespace", "-n", action="append", help="watch this namespace (repeatable)")
    run.add_argument("--liveness", metavar="URL", help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument(
        "--liveness-stall-seconds",
        type=_seconds,
        default=300,
        help="the liveness probe fails once passes have been due this long with none finishing (or a watch"
        " failing this long) while the API server answers (default 300)",
    )
    run.add_argument(
        "--workers",
        type=_positive,
        default=16,
        help="reconcile passes of different FlowRuns run at once (default 16; never two of one run)",
    )
    run.add_argument(
        "--qps",
        type=_qps,
        default=Settings.qps,
        help=f"requests a second to the API server, sustained, once the burst is spent; every request but the"
        f" Lease's waits its turn (default {Settings.qps:g}; 0: no limit)",
    )
    run.add_argument(
        "--burst",
        type=_burst,
        default=Settings.burst,
        help=f"requests sent at once before --qps paces them (default {Settings.burst})",
    )
    run.add_argument(
        "--resync-seconds",
        type=_positive_seconds,
        default=Settings.resync_seconds,
        help=f"a run that has not finished gets a pass at least this often, events or not (default"
        f" {Settings.resync_seconds:g}; more than 0, at most 3600)",
    )
    run.add_argument(
        "--orphan-grace",
        type=_seconds,
        default=60,
        help="report an object whose FlowRun is gone this many seconds after it is first seen (default 60)",
    )
    run.add_argument(
        "--delete-orphans-after",
        type=_seconds,
        default=None,
        help="delete reported orphans this many seconds later (default: report only)",
    )
    election = run.add_argument_group("leader election (docs/install.md, high availability)")
    election.add_argument(
        "--leader-election",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="replicas elect the one that reconciles through a Lease; the others stand by (default: off,"
        " this process reconciles alone)",
    )
    election.add_argument(
        "--leader-election-namespace", metavar="NS", help="the Lease's namespace (default: the pod's own)"
    )
    election.add_argument(
        "--leader-election-lease-name", metavar="NAME", default=api.LEASE_NAME, help=f"default {api.LEASE_NAME}"
    )
    election.add_argument(
        "--leader-election-lease-seconds",
        type=_positive,
        default=15,
        help="a standby takes the Lease once it has not been renewed this long (default 15)",
    )
    election.add_argument(
        "--leader-election-renew-deadline",
        type=_positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="the leader stops reconciling once it could not renew the Lease this long (default 10)",
    )
    election.add_argument(
        "--leader-election-retry",
        type=_positive_seconds,
        default=2.0,
        metavar="SECONDS",
        help="how often the leader renews and a standby tries to take the Lease (default 2)",
    )
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--log-format", default="text", choices=["text", "json"], help="json: one object per line")
    run.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)")
    run.add_argument("--metrics-address", default="0.0.0.0", help="address the metrics server binds to")
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
