"""Scale: the operator with many finished FlowRuns kept (10,000 by default): its RSS and CPU while
idle over a minute; then, with 100 runs in flight, a restart (SIGKILL, then a new process): the time
until progress resumes (the first next pod created), until every in-flight run has moved on, and the
API requests of the restart (do the finished runs get replayed against the API server?).

    .venv/bin/python -m bench.scale [--finished 10000] [--in-flight 100] [--idle 60]
    .venv/bin/python -m bench.scale --finished 500 --idle 20      # a quick look

The finished runs are real: one-task FlowRuns run to the end by the operator itself, submitted in
batches. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import drivers, harness, stats, workloads

BATCH = 500


def in_flight_run(name: str, first_duration: str) -> dict[str, Any]:
    """Two sequential tasks: a long first one (the restart happens while it runs), a short second."""
    body = workloads.flowrun(name, workloads.chain(2), "100ms")
    body["spec"]["tasks"][0]["template"]["metadata"]["annotations"]["sim.flowrun.dev/duration"] = first_duration
    return body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--finished", type=int, default=10000, help="finished runs kept (default 10000)")
    parser.add_argument("--in-flight", type=int, default=100, help="runs in flight at the restart (default 100)")
    parser.add_argument("--idle", type=float, default=60, help="seconds of idle measurement (default 60)")
    parser.add_argument(
        "--restart-timeout", type=float, default=600, help="seconds to wait for progress after the restart"
    )
    parser.add_argument(
        "--settle", type=float, default=70, help="seconds after the restart's runs finished until its RSS is read"
    )
    args = parser.parse_args(argv)
    print(f"== scale: {args.finished} finished runs kept, {args.in_flight} in flight at a restart", flush=True)
    with harness.session() as session:
        namespace = session.namespace("bench-scale")
        pods = harness.PodClock(session.core, namespace).start()
        driver = drivers.OperatorDriver(session, namespace)
        operator = driver.controller
        assert operator is not None
        try:
            drivers.warm_up(session, driver, pods, "100ms")
            started = time.monotonic()
            for first in range(0, args.finished, BATCH):
                names = [f"done-{index}" for index in range(first, min(first + BATCH, args.finished))]
                drivers.measure(session, driver, pods, names, workloads.chain(1), "10ms", 600 + len(names) * 2)
                print(f"   {first + len(names)} finished runs ({time.monotonic() - started:.0f}s)", flush=True)
            time.sleep(10)  # let the last status writes settle
            rss_before, _ = operator.memory()
            cpu_before = operator.cpu()
            time.sleep(args.idle)
            idle_cpu = operator.cpu() - cpu_before
            rss, peak = operator.memory()
            print(
                f"   idle with {args.finished} finished runs: CPU {idle_cpu:.2f}s over {args.idle:.0f}s "
                f"({100 * idle_cpu / args.idle:.1f}% of a core), RSS {rss:.0f} MiB "
                f"(at the start of the minute {rss_before:.0f} MiB, peak so far {peak:.0f} MiB)",
                flush=True,
            )

            flight = [f"flight-{index}" for index in range(args.in_flight)]
            for name in flight:
                session.custom.create_namespaced_custom_object(
                    driver.group, driver.version, namespace, driver.plural, in_flight_run(name, "20s")
                )
            harness.wait_for(
                "the in-flight runs' first pods",
                lambda: sum(1 for p in pods.of_runs(set(flight)) if p.task == "t0") == len(flight),
                300,
            )
            rss, _ = operator.memory()
            print(f"   RSS with {args.finished} finished and {len(flight)} running: {rss:.0f} MiB", flush=True)
            operator.stop(kill=True)
            harness.wait_for(
                "the in-flight runs' first pods to finish",
                lambda: pods.finished_count(set(flight)) >= len(flight),
                120,
            )
            offset = session.audit_offset()
            restarted = time.monotonic()
            operator.start()

            def second_pods() -> list[float]:
                return sorted(p.created for p in pods.of_runs(set(flight)) if p.task == "t1")

            try:
                harness.wait_for("progress after the restart", lambda: bool(second_pods()), args.restart_timeout, 0.05)
            except TimeoutError:
                rss, peak = operator.memory()
                print(
                    f"   restart: no progress within {args.restart_timeout:.0f}s; the new process used "
                    f"{operator.cpu():.1f}s of CPU, RSS {rss:.0f} MiB (peak {peak:.0f} MiB)",
                    flush=True,
                )
                return 1
            first_progress = second_pods()[0] - restarted
            harness.wait_for("every in-flight run to move on", lambda: len(second_pods()) == len(flight), 600, 0.1)
            all_progress = second_pods()[-1] - restarted
            harness.wait_for(
                "the in-flight runs to finish", lambda: len(driver.finished(set(flight), pods)) == len(flight), 600
            )
            finished_at = max(driver.finished(set(flight), pods).values()) - restarted
            restart_cpu = operator.cpu()
            time.sleep(1)
            requests = session.audit_requests(offset, driver.identity)
            print(
                f"   restart: first next pod after {first_progress:.2f}s, all {len(flight)} after {all_progress:.2f}s, "
                f"all {len(flight)} runs finished after {finished_at:.2f}s; CPU of the new process "
                f"{restart_cpu:.1f}s (start-up included)",
                flush=True,
            )
            if requests is not None:
                total = sum(requests.values())
                print(
                    f"   restart's API requests until then: {total} ({total / len(flight):.1f} per in-flight run; "
                    f"{args.finished} finished runs kept): {stats.format_counts(requests, 8)}"
                )
            # The finished runs' first passes are spread over the minute after the start.
            time.sleep(args.settle)
            rss, peak = operator.memory()
            print(f"   the new process {args.settle:.0f}s later: RSS {rss:.0f} MiB (peak {peak:.0f} MiB)", flush=True)
        finally:
            driver.close()
            pods.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
