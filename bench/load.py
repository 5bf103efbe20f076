"""Load: many FlowRuns of 5 sequential tasks and one resource block (a Deployment the tasks use)
created at once (200 by default). Checks that every run succeeded with every task once and its
block cleaned up, that nothing is left once they are deleted, and prints the total time, the
operator's peak RSS and CPU seconds, and its API requests per run.

    .venv/bin/python -m bench.load [--runs 200] [--duration 1s]

Prints figures; asserts only correctness (a wrong outcome is an error, not a figure).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench import harness, stats, workloads
from bench.drivers import API_REQUESTS_METRIC
from flowrun import api

TASKS = 5
CHILD_KINDS = ("pods", "deployments", "replicasets", "services", "jobs")


def load_run(name: str, duration: str) -> dict[str, Any]:
    """5 sequential tasks inside one block whose setup is a Deployment."""
    body = workloads.flowrun(name, workloads.chain(TASKS), duration)
    for task in body["spec"]["tasks"]:
        task["resources"] = ["env"]
    server = {"name": "server", "template": {"spec": {"containers": [{"name": "server", "image": workloads.IMAGE}]}}}
    body["spec"]["resources"] = [{"name": "env", "setup": {"deployments": [server]}}]
    return body


def check(run: dict[str, Any]) -> str | None:
    """Why the run is not what it should be, or None."""
    status = run.get("status") or {}
    tasks = status.get("tasks") or {}
    if status.get("phase") != "Succeeded":
        return f"phase {status.get('phase')}: {status.get('message')}"
    if sorted(tasks) != [f"t{i}" for i in range(TASKS)] or any(t.get("attempts") != 1 for t in tasks.values()):
        return f"tasks {json.dumps(tasks)[:300]}"
    if ((status.get("resources") or {}).get("env") or {}).get("phase") != "CleanedUp":
        return f"block {status.get('resources')}"
    return None


def leftovers(session: harness.Session, namespace: str) -> list[str]:
    found = []
    for kind in CHILD_KINDS:
        listed = session.kubectl("get", kind, "-n", namespace, "-l", api.LABEL_UID, "-o", "name").stdout.split()
        found.extend(listed)
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--duration", default="1s", help="how long each task's pod runs (default 1s)")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args(argv)
    with harness.session() as session:
        namespace = session.namespace("load")
        identity = session.identity("operator-load")
        operator = harness.flowrun_operator(session, namespace, identity)
        operator.start()
        try:
            harness.wait_for("the operator's metrics", lambda: operator.metrics() is not None, 60)
            before = stats.counter_total(operator.metrics() or "", API_REQUESTS_METRIC)
            cpu_before = operator.cpu()
            names = [f"load-{i:04d}" for i in range(args.runs)]
            started = time.monotonic()

            def create(name: str) -> None:
                session.custom.create_namespaced_custom_object(
                    api.GROUP, api.VERSION, namespace, api.PLURAL, load_run(name, args.duration)
                )

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(create, names))
            created = time.monotonic() - started
            peak = 0.0

            def finished() -> bool:
                nonlocal peak
                peak = max(peak, operator.memory()[1])
                listed = session.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)
                done = [r for r in listed["items"] if (r.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
                return len(done) == len(names)

            harness.wait_for(f"{len(names)} runs to finish", finished, args.timeout, interval=1.0)
            wall = time.monotonic() - started
            cpu = operator.cpu() - cpu_before
            requests = stats.counter_total(operator.metrics() or "", API_REQUESTS_METRIC) - before
            listed = session.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL)
            wrong = [(r["metadata"]["name"], why) for r in listed["items"] if (why := check(r)) is not None]
            if wrong:
                raise SystemExit(f"{len(wrong)} runs are wrong, e.g. {wrong[0]}")

            deleted = time.monotonic()
            session.kubectl("delete", api.PLURAL, "--all", "-n", namespace, "--wait=true", "--timeout=600s")
            harness.wait_for("every child to be gone", lambda: not leftovers(session, namespace), 300, interval=1.0)
            gone = time.monotonic() - deleted
            peak = max(peak, operator.memory()[1])
        finally:
            operator.stop()
    print(f"load: {args.runs} FlowRuns x {TASKS} tasks + 1 Deployment block, pods of {args.duration}, created at once")
    print(f"  created in {created:.1f}s; all Succeeded, every task once, every block CleanedUp in {wall:.1f}s")
    print(f"  {args.runs * TASKS / wall:.1f} tasks/s; deleted with nothing left in {gone:.1f}s")
    print(f"  operator: {cpu:.1f} CPU s, peak RSS {peak:.0f} MiB, {requests / args.runs:.1f} API requests per run")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
