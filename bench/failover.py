"""Failover: two operators with leader election on one namespace, and the leader SIGKILLed in the
middle of 100 runs x 10 sequential tasks. Per round: how long from the kill until the standby held
the Lease, and until it sent its first pod create (its flowrun_api_requests_total, scraped every
20 ms: the figure a user sees, as the runs stand still meanwhile);
then, once every run succeeded, the pods created twice under one name (must be 0), the runs that
did not succeed, and the objects left once every FlowRun was deleted (leaks, must be 0).

    .venv/bin/python -m bench.failover [--rounds 3] [--runs 100] [--tasks 10] [--duration 1s]
    .venv/bin/python -m bench.failover --lease-seconds 5 --renew-deadline 3 --retry 0.5   # short timings

The leader is killed once a third of the pods have finished; the killed operator is started again
(as a standby) right after the standby's first create. The election's timings default to the
operator's (client-go's): a lease of 15 s, a renew deadline of 10 s, a retry every 2 s. Prints
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client

from bench import harness, stats, workloads
from bench.drivers import API_REQUESTS_METRIC
from devcluster.ports import free_port
from flowrun import api

MANAGED = f"{api.LABEL_MANAGED_BY}={api.MANAGED_BY}"
KILL_AT = 1 / 3  # of the pods finished


@dataclass
class Round:
    lease_taken: float  # seconds from the kill to the standby holding the Lease
    first_create: float  # seconds from the kill to the standby's first pod create
    duplicates: int  # pod names created more than once
    failed: int  # runs that did not succeed
    leaks: int  # objects labelled as the operator's left once every FlowRun was deleted
    wall: float  # seconds from the submission to the last run finished


@dataclass
class Pods:
    """Every pod of the namespace's benchmark runs: the UIDs created under each name, and those
    seen finished."""

    uids: dict[str, set[str]] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)  # uids seen Succeeded or Failed
    lock: threading.Lock = field(default_factory=threading.Lock)

    def seen(self, kind: str, pod: dict[str, Any]) -> None:
        metadata = pod["metadata"]
        with self.lock:
            self.uids.setdefault(metadata["name"], set()).add(metadata["uid"])
            if (pod.get("status") or {}).get("phase") in harness.TERMINAL_POD_PHASES:
                self.finished.add(metadata["uid"])

    def duplicates(self) -> int:
        with self.lock:
            return sum(1 for uids in self.uids.values() if len(uids) > 1)

    def finished_count(self) -> int:
        with self.lock:
            return len(self.finished)


class Replica:
    """One operator process with leader election, its name in the Lease `identity`."""

    def __init__(
        self, session: harness.Session, namespace: str, identity: str, election: list[str], who: harness.Identity
    ) -> None:
        self.controller = harness.flowrun_operator(session, namespace, who)
        self.controller.name = identity
        self.controller.argv += ["--leader-election", f"--leader-election-namespace={namespace}", *election]
        self.liveness = free_port()
        self.controller.argv.append(f"--liveness=http://127.0.0.1:{self.liveness}/healthz")
        self.controller.env["POD_NAME"] = identity
        self.controller.log_path = session.workdir / f"{namespace}-{identity}.log"

    def pod_creates(self) -> float:
        """The pod creates (and their dry runs) it has sent."""
        samples = stats.counter_samples(self.controller.metrics() or "", API_REQUESTS_METRIC)
        return samples.get((("resource", "pods"), ("verb", "create")), 0.0)

    def leadership(self) -> str:
        """What its liveness answer says of its part ("" while it does not answer)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness}/healthz", timeout=5) as response:
                return str(json.loads(response.read()).get("leader") or "")
        except OSError:
            return ""

    def kill(self) -> None:
        assert self.controller.process is not None
        self.controller.process.send_signal(signal.SIGKILL)
        self.controller.process.wait(timeout=30)


def holder(coordination: client.CoordinationV1Api, namespace: str) -> str:
    try:
        lease = coordination.read_namespaced_lease(api.LEASE_NAME, namespace)
    except client.ApiException:
        return ""
    return str((lease.spec.holder_identity if lease.spec is not None else None) or "")


def phases(session: harness.Session, namespace: str) -> dict[str, str]:
    listed = session.custom.list_namespaced_custom_object(
        api.GROUP, api.VERSION, namespace, api.PLURAL, _preload_content=False
    )
    return {r["metadata"]["name"]: (r.get("status") or {}).get("phase", "") for r in json.loads(listed.data)["items"]}


def leftovers(session: harness.Session, namespace: str) -> int:
    """Objects labelled as the operator's in the namespace."""
    apps, batch = client.AppsV1Api(session.api), client.BatchV1Api(session.api)
    listers = (
        session.core.list_namespaced_pod,
        session.core.list_namespaced_service,
        session.core.list_namespaced_config_map,
        batch.list_namespaced_job,
        apps.list_namespaced_deployment,
    )
    return sum(
        len(json.loads(lister(namespace, label_selector=MANAGED, _preload_content=False).data)["items"])
        for lister in listers
    )


def one_round(session: harness.Session, args: argparse.Namespace, election: list[str], index: int) -> Round:
    namespace = session.namespace("failover")
    coordination = client.CoordinationV1Api(session.api)
    a = Replica(session, namespace, "replica-a", election, session.identity("failover-a"))
    b = Replica(session, namespace, "replica-b", election, session.identity("failover-b"))
    pods = Pods()
    watch = harness.RawWatch(
        lambda **kw: session.core.list_namespaced_pod(namespace, **kw), pods.seen, label_selector=workloads.RUN_LABEL
    )
    watch.start()
    watch.synced.wait(60)
    a.controller.start()
    try:
        harness.wait_for("replica-a to lead", lambda: holder(coordination, namespace) == "replica-a", 120)
        b.controller.start()
        standby = "standby: the Lease is held by replica-a"
        harness.wait_for("replica-b to stand by", lambda: b.leadership() == standby, 120)
        names = [f"r{index}-{i}" for i in range(args.runs)]
        shape = workloads.chain(args.tasks)
        started = time.monotonic()
        for name in names:
            body = workloads.flowrun(name, shape, args.duration)
            session.custom.create_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, body)
        total = args.runs * args.tasks
        harness.wait_for("a third of the pods to finish", lambda: pods.finished_count() >= total * KILL_AT, 600, 0.05)
        killed = time.monotonic()
        a.kill()
        harness.wait_for(
            "replica-b to hold the Lease", lambda: holder(coordination, namespace) == "replica-b", 120, 0.05
        )
        lease_taken = time.monotonic() - killed
        harness.wait_for("replica-b's first pod create", lambda: b.pod_creates() > 0, 120, 0.02)
        first = time.monotonic()
        a.controller.start()  # back, as a standby
        harness.wait_for(
            f"{args.runs} runs to finish",
            lambda: all(p in ("Succeeded", "Failed") for p in phases(session, namespace).values()),
            600 + total,
            1.0,
        )
        wall = time.monotonic() - started
        failed = sum(1 for p in phases(session, namespace).values() if p != "Succeeded")
        for name in names:
            session.custom.delete_namespaced_custom_object(api.GROUP, api.VERSION, namespace, api.PLURAL, name)
        harness.wait_for("every FlowRun gone", lambda: not phases(session, namespace), 300, 1.0)
        # The garbage collector removes the runs' children a moment after the runs.
        deadline = time.monotonic() + 60
        while leftovers(session, namespace) and time.monotonic() < deadline:
            time.sleep(1.0)
        return Round(lease_taken, first - killed, pods.duplicates(), failed, leftovers(session, namespace), wall)
    finally:
        watch.stop()
        for replica in (a, b):
            replica.controller.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--tasks", type=int, default=10, help="sequential tasks per run")
    parser.add_argument("--duration", default="1s", help="how long each task's pod runs (default 1s)")
    parser.add_argument("--lease-seconds", type=int, default=15)
    parser.add_argument("--renew-deadline", type=float, default=10.0)
    parser.add_argument("--retry", type=float, default=2.0)
    args = parser.parse_args(argv)
    election = [
        f"--leader-election-lease-seconds={args.lease_seconds}",
        f"--leader-election-renew-deadline={args.renew_deadline}",
        f"--leader-election-retry={args.retry}",
    ]
    print(
        f"== failover: {args.runs} runs x {args.tasks} tasks ({args.duration} each), the leader SIGKILLed once a"
        f" third of the pods finished; lease {args.lease_seconds}s, renew deadline {args.renew_deadline:g}s,"
        f" retry {args.retry:g}s; {args.rounds} round(s)",
        flush=True,
    )
    rounds: list[Round] = []
    with harness.session() as session:
        for index in range(args.rounds):
            result = one_round(session, args, election, index)
            rounds.append(result)
            print(
                f"   round {index + 1}: Lease taken {result.lease_taken:.1f}s after the kill, first pod"
                f" {result.first_create:.1f}s; {result.duplicates} duplicates, {result.failed} runs not Succeeded,"
                f" {result.leaks} leaks; wall {result.wall:.1f}s",
                flush=True,
            )
    print(f"   kill -> Lease taken, median: {stats.median(r.lease_taken for r in rounds):.1f}s")
    firsts = [r.first_create for r in rounds]
    print(
        f"   kill -> standby's first pod create, median: {stats.median(firsts):.1f}s"
        f" (min {min(firsts):.1f}s, max {max(firsts):.1f}s)"
    )
    print(f"   duplicates: {sum(r.duplicates for r in rounds)}   leaks: {sum(r.leaks for r in rounds)}")
    print(f"   runs not Succeeded: {sum(r.failed for r in rounds)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
