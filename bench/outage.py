"""Outage: the API server stopped for a while under an operator holding many FlowRuns (1,000
finished and 100 running by default), then started again. Prints what the outage cost: the
operator's log lines (WARNING and above), its API requests while the API server was away and in
the minute after it came back, and how long until every running run had finished.

    .venv/bin/python -m bench.outage [--finished 1000] [--running 100] [--outage 60]

Prints figures; a run that does not succeed is an error.
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor

from bench import harness, stats, workloads
from bench.drivers import API_REQUESTS_METRIC
from devcluster import cluster as devcluster
from flowrun import api

LOUD = ("WARNING", "ERROR", "CRITICAL")


def warnings(log: str) -> int:
    """Log records at WARNING and above (the operator's text format: date time LEVEL logger message)."""
    return sum(1 for line in log.splitlines() if len(parts := line.split(" ", 3)) > 2 and parts[2] in LOUD)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--finished", type=int, default=1000)
    parser.add_argument("--running", type=int, default=100)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the API server is down")
    args = parser.parse_args(argv)
    with harness.session() as session:
        namespace = session.namespace("outage")
        operator = harness.flowrun_operator(session, namespace, session.identity("operator-outage"))
        operator.start()
        try:
            harness.wait_for("the operator's metrics", lambda: operator.metrics() is not None, 60)

            def create(name: str, duration: str) -> None:
                body = workloads.flowrun(name, workloads.chain(1), duration)
                session.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, body)

            def phases() -> dict[str, str]:
                listed = session.custom.list_namespaced_custom_object(
                    api.GROUP, api.VERSION, namespace, api.PLURAL, _preload_content=False
                )
                items = json.loads(listed.data)["items"]
                return {r["metadata"]["name"]: (r.get("status") or {}).get("phase", "") for r in items}

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: create(f"done-{i:05d}", "100ms"), range(args.finished)))
            harness.wait_for(
                f"{args.finished} runs to finish",
                lambda: sum(p == "Succeeded" for p in phases().values()) == args.finished,
                900,
                interval=2.0,
            )
            # Long enough to outlast the outage: they finish after it.
            running_for = f"{int(args.outage + 30)}s"
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda i: create(f"live-{i:04d}", running_for), range(args.running)))
            harness.wait_for(
                f"{args.running} runs to run",
                lambda: sum(p == "Running" for p in phases().values()) == args.running,
                300,
                interval=1.0,
            )
            time.sleep(5)  # settled: what follows is the outage's cost, not the start's
            log_before = warnings(operator.log_path.read_text())
            requests_before = stats.counter_total(operator.metrics() or "", API_REQUESTS_METRIC)
            with devcluster.stopped("kube-apiserver"):
                time.sleep(args.outage)  # the outage itself
                requests_down = stats.counter_total(operator.metrics() or "", API_REQUESTS_METRIC) - requests_before
                lines_down = warnings(operator.log_path.read_text()) - log_before
            back = time.monotonic()
            harness.wait_for(
                "every run to succeed",
                lambda: sum(p == "Succeeded" for p in phases().values()) == args.finished + args.running,
                600,
                interval=1.0,
            )
            resumed = time.monotonic() - back
            requests_after = stats.counter_total(operator.metrics() or "", API_REQUESTS_METRIC) - requests_before
            lines_after = warnings(operator.log_path.read_text()) - log_before
        finally:
            operator.stop()
    print(f"outage: kube-apiserver down {args.outage:.0f}s, {args.finished} finished and {args.running} running runs")
    print(f"  while down: {requests_down:.0f} API requests, {lines_down} log lines at WARNING or above")
    print(f"  every running run Succeeded {resumed:.1f}s after the API server was back")
    print(f"  in all, from the outage to the last run: {requests_after:.0f} requests, {lines_after} log lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
