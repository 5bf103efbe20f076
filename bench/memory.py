"""Memory: where an operator's RSS goes. The interpreter and the libraries the operator imports
(each measured in a new process), the idle operator with no run, and what one finished run costs
in its caches (its FlowRun as kept, packed, and its pod as observed), measured with tracemalloc on
runs the operator ran on the dev cluster.

    .venv/bin/python -m bench.memory [--runs 300]

Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from bench import drivers, harness, workloads
from flowrun.controller.caches import cached_flowrun
from flowrun.observed import observe

IMPORTS = ("kubernetes.client", "kopf", "prometheus_client", "flowrun.cli")


def rss_after_import(module: str | None) -> float:
    """MiB of a new interpreter once `module` is imported (None: nothing)."""
    code = (f"import {module}\n" if module else "") + (
        "import gc; gc.collect()\n"
        "print(next(l for l in open('/proc/self/status') if l.startswith('VmRSS:')).split()[1])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=harness.REPO)
    return int(done.stdout.strip()) / 1024


def bytes_each(make: Callable[[Any], Any], items: Sequence[Any]) -> float:
    """Bytes that keeping make(item) costs, per item (tracemalloc, in this process)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [make(item) for item in items]
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return (after - before) / len(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=300, help="finished one-task runs measured (default 300)")
    args = parser.parse_args(argv)
    bare = rss_after_import(None)
    print(f"== memory: RSS of a new interpreter, {bare:.0f} MiB; after importing (each alone)", flush=True)
    for module in IMPORTS:
        print(f"   {module:<20} {rss_after_import(module):6.0f} MiB", flush=True)
    with harness.session() as session:
        namespace = session.namespace("bench-memory")
        driver = drivers.OperatorDriver(session, namespace)
        operator = driver.controller
        assert operator is not None
        try:
            time.sleep(10)  # started, its informers synced, nothing to do
            print(f"   the operator idle, no run: {operator.memory()[0]:.0f} MiB RSS", flush=True)
            names = [f"done-{index}" for index in range(args.runs)]
            for name in names:
                body = workloads.flowrun(name, workloads.chain(1), "100ms")
                session.custom.create_namespaced_custom_object(
                    driver.group, driver.version, namespace, driver.plural, body
                )

            def succeeded() -> list[dict[str, Any]] | None:
                listed = session.custom.list_namespaced_custom_object(
                    driver.group, driver.version, namespace, driver.plural
                )["items"]
                done = [run for run in listed if (run.get("status") or {}).get("phase") == "Succeeded"]
                return listed if len(done) == len(names) else None

            harness.wait_for(f"{args.runs} runs to succeed", lambda: succeeded() is not None, 600)
            time.sleep(5)
            print(f"   the operator with {args.runs} finished: {operator.memory()[0]:.0f} MiB RSS", flush=True)
        finally:
            operator.stop()
        runs = succeeded() or []
        pods = [
            {**session.api.sanitize_for_serialization(pod), "apiVersion": "v1", "kind": "Pod"}
            for pod in session.core.list_namespaced_pod(namespace).items
        ]
    parsed = bytes_each(lambda body: json.loads(json.dumps(body)), runs)
    print(f"   a finished run as a client parses it: FlowRun {parsed:.0f} B", flush=True)
    cached, pod = bytes_each(cached_flowrun, runs), bytes_each(observe, pods)
    print(f"   in the operator's caches: FlowRun {cached:.0f} B (packed), its pod {pod:.0f} B (observed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
