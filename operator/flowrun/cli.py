"""The `flowrun` command."""

from __future__ import annotations

import argparse
import sys

import kopf
import prometheus_client

from flowrun import structured_logging


def _run(args: argparse.Namespace) -> int:
    from flowrun.controller import wiring
    from flowrun.controller.settings import OrphanPolicy, Settings

    if not args.all_namespaces and not args.namespace:
        print("flowrun run: give --all-namespaces or at least one --namespace", file=sys.stderr)
        return 2
    settings = Settings(
        namespaces=() if args.all_namespaces else tuple(args.namespace),
        workers=args.workers,
        orphans=OrphanPolicy(grace=args.orphan_grace, delete_after=args.delete_orphans_after),
        stall_seconds=args.liveness_stall_seconds,
    )
    structured_logging.configure(args.log_level, args.log_format)
    if args.metrics_port:
        prometheus_client.start_http_server(args.metrics_port, addr=args.metrics_address)
    kopf.run(
        # One replica (the chart's Deployment uses strategy Recreate): kopf's peering is priority
        # pausing, not leader election.
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
