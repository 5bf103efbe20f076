"""The `flowrun` command."""

from __future__ import annotations

import argparse
import logging
import sys

import kopf


def _run(args: argparse.Namespace) -> int:
    import flowrun.handlers  # noqa: F401  (registers the handlers with kopf)

    if not args.all_namespaces and not args.namespace:
        print("flowrun run: give --all-namespaces or at least one --namespace", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.log_level != "debug":
        # kopf reports every handled watch event at INFO: one line per child change is noise.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        # One replica (the chart's Deployment uses strategy Recreate): kopf's peering is priority
        # pausing, not leader election.
        standalone=True,
        clusterwide=args.all_namespaces,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="flowrun", description="flowrun-operator: runs FlowRuns on Kubernetes")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the operator (KUBECONFIG, else in-cluster credentials)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch FlowRuns in every namespace")
    scope.add_argument("--namespace", "-n", action="append", help="watch this namespace (repeatable)")
    run.add_argument("--liveness", metavar="URL", help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if args.command == "run":
        return _run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
