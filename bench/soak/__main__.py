"""The fault soak: for M minutes, seeded workloads (flow runs, Flows, reruns, CronFlowRuns, runs on
the real node) started while others run, with faults injected at random moments of their lives;
the invariants (runner.py) are checked all along. Prints one line per workload and fault, then a
summary; each failure names the invariant, the faults that touched its workload and the command
that replays that workload alone with the same faults. Exits 1 if any invariant failed.

    .venv/bin/python -m bench.soak [--minutes 30] [--seed 1] [--faults all|none|api,kill,...]
                                   [--only N] [--real-node]
"""

from __future__ import annotations

import argparse
import signal
import sys

from bench import harness
from bench.soak import faults
from bench.soak.runner import Soak
from devcluster import images
from devcluster import node as devcluster_node


def fault_kinds(text: str) -> tuple[str, ...]:
    if text == "all":
        return faults.KINDS
    if text == "none":
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in faults.KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown fault {', '.join(unknown)}; known: {', '.join(faults.KINDS)}")
    return kinds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long new workloads are started")
    parser.add_argument("--seed", type=int, default=1, help="the same seed gives the same workloads and faults")
    parser.add_argument("--faults", type=fault_kinds, default=faults.KINDS, help="all, none, or a comma list")
    parser.add_argument("--only", type=int, default=None, help="replay workload N of the seed alone")
    parser.add_argument("--real-node", action="store_true", help="include workloads that run on the real node")
    args = parser.parse_args(argv)
    # SIGTERM ends the soak as Ctrl-C does: the operator it started is stopped, its namespaces go.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with harness.session() as session:
        image = real_node_image(session) if args.real_node else None
        soak = Soak(session, args.seed, args.minutes, args.faults, args.only, image)
        return soak.run()


def real_node_image(session: harness.Session) -> str:
    """The shell image the dev cluster loaded on its real node (the soak needs that node)."""
    nodes = session.core.list_node(label_selector=f"{devcluster_node.LABEL}=true").items
    if not nodes:
        raise SystemExit("--real-node: the dev cluster has no real node")
    return images.SHELL_IMAGE


if __name__ == "__main__":
    raise SystemExit(main())
