"""Ceiling: N bare pods created at once, no controller; the time from each pod's create request to
its being seen Succeeded, and the wall time until all are (what the dev cluster itself can do: the
API server, the scheduler and KWOK, on this machine).

    .venv/bin/python -m bench.ceiling [--pods 1000] [--rounds 3] [--duration 100ms]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from bench import harness, stats, workloads
from bench.drivers import SUBMITTERS


def one_round(
    session: harness.Session, namespace: str, clock: harness.PodClock, pods: int, duration: str, tag: str
) -> tuple[float, list[float]]:
    runs = {f"{tag}-{index}" for index in range(pods)}
    requested: dict[str, float] = {}

    def create(run: str) -> None:
        requested[run] = time.monotonic()
        session.core.create_namespaced_pod(namespace, workloads.bare_pod(run, "t", duration), _preload_content=False)

    started = time.monotonic()
    with ThreadPoolExecutor(SUBMITTERS) as pool:
        list(pool.map(create, sorted(runs)))
    harness.wait_for(f"{pods} pods to succeed", lambda: clock.finished_count(runs) == pods, 120 + pods * 0.5, 0.1)
    seen = clock.of_runs(runs)
    finished = {pod.run: pod.finished or 0.0 for pod in seen}
    return max(finished.values()) - started, [finished[run] - requested[run] for run in runs]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pods", type=int, default=1000, help="pods created at once (default 1000)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", default="100ms", help="how long each pod runs (default 100ms)")
    args = parser.parse_args(argv)
    print(f"== ceiling: {args.pods} bare pods at once, each runs {args.duration}, {args.rounds} round(s)", flush=True)
    walls: list[float] = []
    latencies: list[float] = []
    with harness.session() as session:
        namespace = session.namespace("bench-ceiling")
        clock = harness.PodClock(session.core, namespace).start()
        try:
            for round_ in range(args.rounds):
                wall, latency = one_round(session, namespace, clock, args.pods, args.duration, f"c{round_}")
                walls.append(wall)
                latencies += latency
                print(f"   round {round_ + 1}: wall {wall:.2f}s, {args.pods / wall:.1f} pods/s", flush=True)
        finally:
            clock.stop()
    wall = stats.median(walls)
    print(f"   wall (median of rounds)       {wall:.2f}s   {args.pods / wall:.1f} pods/s")
    print(
        f"   create to Succeeded           p50 {stats.percentile(latencies, 50):.2f}s   "
        f"p99 {stats.percentile(latencies, 99):.2f}s   (the pod itself runs {args.duration})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
