"""Resync: what the resync period (`--resync-seconds`) costs while runs run and nothing happens.
N runs of one long task are started and left running; over a window, the operator's CPU and the
requests it sends (its own flowrun_api_requests_total) are measured, one operator per period, in
one session.

    .venv/bin/python -m bench.resync [--runs 100] [--window 60] [--periods 30,3]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import time

from bench import drivers, harness, stats, workloads


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=100, help="runs left running (default 100)")
    parser.add_argument("--window", type=float, default=60, help="seconds measured (default 60)")
    parser.add_argument("--periods", default="30,3", help="resync periods to compare, seconds (default 30,3)")
    args = parser.parse_args(argv)
    periods = [float(text) for text in args.periods.split(",")]
    print(f"== resync: {args.runs} runs running, {args.window:.0f}s measured per period", flush=True)
    flags = os.environ.get(harness.OPERATOR_FLAGS_ENV, "")
    try:
        for period in periods:
            os.environ[harness.OPERATOR_FLAGS_ENV] = f"{flags} --resync-seconds {period:g}"
            cpu, requests = measure(args.runs, args.window)
            print(
                f"   --resync-seconds {period:g}: CPU {cpu:.2f}s over {args.window:.0f}s"
                f" ({100 * cpu / args.window:.1f}% of a core), {requests:.0f} requests",
                flush=True,
            )
    finally:
        os.environ[harness.OPERATOR_FLAGS_ENV] = flags
    return 0


def measure(runs: int, window: float) -> tuple[float, float]:
    """(CPU seconds, requests) of a new operator over `window`, with `runs` runs running."""
    with harness.session() as session:
        namespace = session.namespace("bench-resync")
        pods = harness.PodClock(session.core, namespace).start()
        driver = drivers.OperatorDriver(session, namespace)
        operator = driver.controller
        assert operator is not None
        try:
            names = {f"long-{index}" for index in range(runs)}
            for name in sorted(names):
                body = workloads.flowrun(name, workloads.chain(1), "1h")
                session.custom.create_namespaced_custom_object(
                    driver.group, driver.version, namespace, driver.plural, body
                )
            harness.wait_for("every run's pod", lambda: len(pods.of_runs(names)) == runs, 300)
            time.sleep(5)  # the starts' status writes settle
            metrics_before, cpu_before = operator.metrics() or "", operator.cpu()
            time.sleep(window)
            cpu = operator.cpu() - cpu_before
            metrics_after = operator.metrics() or ""
            requests = stats.counter_total(metrics_after, drivers.API_REQUESTS_METRIC) - stats.counter_total(
                metrics_before, drivers.API_REQUESTS_METRIC
            )
            return cpu, requests
        finally:
            pods.stop()
            operator.stop()


if __name__ == "__main__":
    raise SystemExit(main())
