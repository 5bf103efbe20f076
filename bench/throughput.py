"""Throughput: many runs submitted at once (by default 100 runs x 10 sequential tasks, then 1,000 runs
x 1 task), against the bare client: wall time, tasks/s, API requests per task (the API server's audit
log, and the operator's own flowrun_api_requests_total where it exports it), the controller's CPU
seconds and peak RSS (from /proc of the process the benchmark starts).

    .venv/bin/python -m bench.throughput [--workloads 100x10,1000x1] [--rounds 1] [--drivers operator,bare]
    .venv/bin/python -m bench.throughput --workloads 20x5 --rounds 1     # a quick look

Each workload gets fresh namespaces and a fresh controller process. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse

from bench import compare, workloads


def parse_workloads(text: str) -> list[tuple[int, int]]:
    """ "100x10,1000x1" -> [(100, 10), (1000, 1)]: runs x sequential tasks."""
    parsed = []
    for item in text.split(","):
        runs, _, tasks = item.strip().partition("x")
        if not (runs.isdigit() and tasks.isdigit() and int(runs) > 0 and int(tasks) > 0):
            raise SystemExit(f"--workloads: {item!r} is not RUNSxTASKS, e.g. 100x10")
        parsed.append((int(runs), int(tasks)))
    return parsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--workloads", default="100x10,1000x1", help="comma-separated RUNSxTASKS (default 100x10,1000x1)"
    )
    compare.add_arguments(parser, rounds=1)
    args = parser.parse_args(argv)
    kinds = compare.driver_kinds(args.drivers)
    for runs, tasks in parse_workloads(args.workloads):
        compare.run(
            "throughput",
            workloads.chain(tasks),
            runs,
            kinds,
            args.rounds,
            args.duration,
            timeout=300 + runs * tasks * 2.0,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
