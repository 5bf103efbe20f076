"""Chain: one run of 20 sequential tasks; time to first pod and the gap between a task finishing and
the next task's pod being created (p50, p99), against the bare client.

    .venv/bin/python -m bench.chain [--tasks 20] [--rounds 3] [--drivers operator,bare,argo,argo-tuned]

Prints figures; asserts nothing (performance is measured, not tested).
"""

from __future__ import annotations

import argparse

from bench import compare, workloads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=20, help="tasks in the chain (default 20)")
    compare.add_arguments(parser, rounds=3)
    args = parser.parse_args(argv)
    compare.run(
        "chain",
        workloads.chain(args.tasks),
        1,
        compare.driver_kinds(args.drivers),
        args.rounds,
        args.duration,
        timeout=60 + 30 * args.tasks,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
