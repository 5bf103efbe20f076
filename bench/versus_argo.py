"""Side by side with Argo Workflows: the chain, throughput and fan-out benchmarks, each run by the
operator, the bare client and Argo's workflow-controller at its defaults and tuned
(bench/argo_controller.py says how Argo is built, run and set up, and what "tuned" is).

    .venv/bin/python -m bench.versus_argo [--chain 20] [--workloads 100x10,1000x1] [--width 50] [--rounds 1]
    .venv/bin/python -m bench.versus_argo --chain 5 --workloads 20x3 --width 10     # a quick look

Every figure of one table comes from one session (the drivers interleaved round by round).
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse

from bench import chain, fanout, throughput

ALL = "operator,bare,argo,argo-tuned"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chain", type=int, default=20, help="tasks of the chain (default 20; 0: skip)")
    parser.add_argument("--workloads", default="100x10,1000x1", help="throughput RUNSxTASKS ('' : skip)")
    parser.add_argument("--width", type=int, default=50, help="fan-out width (default 50; 0: skip)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--drivers", default=ALL, help=f"default {ALL}")
    args = parser.parse_args(argv)
    common = ["--rounds", str(args.rounds), "--drivers", args.drivers]
    if args.chain:
        chain.main(["--tasks", str(args.chain), *common])
    if args.workloads:
        throughput.main(["--workloads", args.workloads, *common])
    if args.width:
        fanout.main(["--width", str(args.width), *common])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
