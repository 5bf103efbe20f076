"""Fan-out and join: one task, then 50 tasks after it, then one task after all 50; the gap from the
root finishing to the 50 pods' creation, and from the last of them finishing to the join's pod.

    .venv/bin/python -m bench.fanout [--width 50] [--rounds 3] [--drivers operator,bare,argo,argo-tuned]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse

from bench import compare, workloads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--width", type=int, default=50, help="tasks between the root and the join (default 50)")
    compare.add_arguments(parser, rounds=3)
    args = parser.parse_args(argv)
    compare.run(
        "fan-out and join",
        workloads.fan_out_and_join(args.width),
        1,
        compare.driver_kinds(args.drivers),
        args.rounds,
        args.duration,
        timeout=300 + 2 * args.width,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
