"""High availability on the dev cluster: two operator processes (`flowrun run --leader-election`) on
one namespace elect one through a Lease. Exactly one reconciles, the other sends no write at all;
the leader SIGKILLed in the middle of a run of 10 tasks, or of a run with a resource block, is
replaced by the standby, which creates the next pod within 10 s of the kill (the lease included),
creates no name twice (watches of every kind it creates) and loses no result; a leader stopped
gracefully gives the Lease up and the standby takes over at once. Every run ends with the leak
check.

The operators run with short timings (a lease of 5 s, a renew deadline of 3 s, a retry every
0.5 s) so that a failover fits the 10 s; docs/install.md gives the figures of the defaults
(bench/failover.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from devcluster.pytest_plugin import KubeCluster, wait_for
from flowrun import api
from tests.e2e.helpers import (
    FlowRuns,
    Operator,
    StartOperator,
    Watch,
    deployment,
    job,
    main_container,
    res,
    sim_task,
    task,
)

pytestmark = pytest.mark.e2e

LEASE_SECONDS, RENEW_DEADLINE, RETRY = 5, 3, 0.5
NEXT_POD_WITHIN = 10.0  # seconds from the leader's SIGKILL to the standby's first create


def election(namespace: str) -> tuple[str, ...]:
    return (
        "--leader-election",
        f"--leader-election-namespace={namespace}",
        f"--leader-election-lease-seconds={LEASE_SECONDS}",
        f"--leader-election-renew-deadline={RENEW_DEADLINE}",
        f"--leader-election-retry={RETRY}",
    )


def holder(kube_cluster: KubeCluster, namespace: str) -> str | None:
    try:
        lease = client.CoordinationV1Api(kube_cluster.api).read_namespaced_lease(api.LEASE_NAME, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return lease.spec.holder_identity if lease.spec is not None else None


def leader_gauge(operator: Operator) -> float:
    for family in text_string_to_metric_families(operator.scrape_metrics()):
        if family.name == "flowrun_leader":
            return float(family.samples[0].value)
    raise AssertionError("no flowrun_leader metric")


def writes(operator: Operator) -> dict[tuple[str, str], float]:
    """The requests that change something the operator sent, but those of its Lease."""
    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(operator.scrape_metrics()):
        if family.name != "flowrun_api_requests":
            continue
        for sample in family.samples:
            verb, resource = sample.labels["verb"], sample.labels["resource"]
            if sample.name.endswith("_total") and verb not in ("get", "list") and resource != "leases" and sample.value:
                found[(verb, resource)] = sample.value
    return found


def leadership(operator: Operator) -> str:
    status, answer = operator.health()
    assert status == 200, answer
    return str(answer.get("leader"))


class Pair:
    """Two operators on the test's namespace: `a` leads (it started first), `b` stands by."""

    def __init__(self, start_operator: StartOperator, kube_cluster: KubeCluster, namespace: str) -> None:
        self.kube_cluster, self.namespace = kube_cluster, namespace
        args = election(namespace)
        self.a = start_operator(*args, metrics=True, liveness=True, env={"POD_NAME": "replica-a"})
        wait_for("replica-a to lead", lambda: holder(kube_cluster, namespace) == "replica-a", timeout=60)
        self.b = start_operator(*args, metrics=True, liveness=True, env={"POD_NAME": "replica-b"})
        wait_for(
            "replica-b to stand by",
            lambda: self.b.health()[1].get("leader") == "standby: the Lease is held by replica-a",
            timeout=60,
        )

    def holder(self) -> str | None:
        return holder(self.kube_cluster, self.namespace)


def chain(name: str, length: int, duration: str) -> dict[str, Any]:
    """`length` tasks one after the other, each handed the result of the one before."""
    tasks = [sim_task("t0", duration=duration, message="R0")]
    for i in range(1, length):
        tasks.append(
            sim_task(
                f"t{i}", run_after=[f"t{i - 1}"], duration=duration, message=f"R{i}", args=[f"$(tasks.t{i - 1}.result)"]
            )
        )
    return {"metadata": {"name": name}, "spec": {"tasks": tasks}}


def test_exactly_one_of_two_operators_reconciles_and_a_graceful_stop_hands_over_at_once(
    start_operator: StartOperator, kube_cluster: KubeCluster, namespace: str, flowruns: FlowRuns
) -> None:
    pair = Pair(start_operator, kube_cluster, namespace)
    flowruns.create(chain("first", 3, "300ms"))
    run = flowruns.wait_phase("first", "Succeeded", timeout=60)
    assert run["status"]["progress"] == "3/3"
    assert (leader_gauge(pair.a), leader_gauge(pair.b)) == (1, 0)
    assert writes(pair.a).get(("create", "pods"), 0) >= 3  # each pod's dry run and create
    assert writes(pair.b) == {}, "the standby wrote something"
    assert leadership(pair.a).startswith("leading (term ")
    assert leadership(pair.b) == "standby: the Lease is held by replica-a"

    # SIGTERM: the leader gives the Lease up, the standby takes it at its next try, not a lease later.
    stopped = time.monotonic()
    pair.a.stop()
    wait_for("replica-b to lead", lambda: pair.holder() == "replica-b", timeout=LEASE_SECONDS, interval=0.05)
    handed_over = time.monotonic() - stopped
    assert handed_over < LEASE_SECONDS, handed_over
    wait_for("replica-b's gauge", lambda: leader_gauge(pair.b) == 1, timeout=5)
    flowruns.create(chain("second", 2, "300ms"))
    assert flowruns.wait_phase("second", "Succeeded", timeout=60)["status"]["progress"] == "2/2"
    assert writes(pair.b).get(("create", "pods"), 0) >= 2
    print(f"\ngraceful hand-over (SIGTERM to the new leader holding the Lease): {handed_over:.1f}s")
    flowruns.delete_and_check_nothing_leaked("first")
    flowruns.delete_and_check_nothing_leaked("second")


def test_the_leader_sigkilled_during_a_run_of_10_tasks_is_replaced_within_seconds(
    start_operator: StartOperator, kube_cluster: KubeCluster, namespace: str, flowruns: FlowRuns, watch: Watch
) -> None:
    pair = Pair(start_operator, kube_cluster, namespace)
    pods = watch("pods", f"{api.LABEL_FLOWRUN}=ten")
    flowruns.create(chain("ten", 10, "1s"))
    pods.wait("pod t3 created", lambda w: "ten-t3-1" in w.uids_by_name(), timeout=60)
    killed = time.monotonic()
    pair.a.kill()
    # t3 finishes a second later with no leader; the standby takes over and creates t4.
    pods.wait("the standby to create pod t4", lambda w: "ten-t4-1" in w.uids_by_name(), timeout=NEXT_POD_WITHIN)
    next_pod = time.monotonic() - killed
    assert pair.holder() == "replica-b" and leader_gauge(pair.b) == 1
    pair.a.start()  # back as a standby
    wait_for("replica-a to stand by", lambda: pair.a.health()[1].get("leader", "").startswith("standby"), timeout=60)

    run = flowruns.wait_phase("ten", "Succeeded", timeout=120)
    assert run["status"]["progress"] == "10/10"
    assert {name: t["attempts"] for name, t in run["status"]["tasks"].items()} == {f"t{i}": 1 for i in range(10)}
    pods.wait("pod t9 seen", lambda w: "ten-t9-1" in w.uids_by_name())
    assert pods.gaps == 0, "the pod watch missed events: the proof is incomplete"
    assert not pods.duplicated_names(), f"pods created twice: {pods.duplicated_names()}"
    for i in range(1, 10):  # every result handed on, across the failover
        assert main_container(flowruns.read_pod(f"ten-t{i}-1")).args == [f"R{i - 1}"]
    assert writes(pair.a) == {}, "the restarted replica-a wrote something as a standby"
    print(f"\nSIGKILL of the leader to the standby's next pod (lease {LEASE_SECONDS}s): {next_pod:.1f}s")
    flowruns.delete_and_check_nothing_leaked("ten")


def test_the_leader_sigkilled_during_a_resource_block_is_replaced_and_nothing_is_made_twice(
    start_operator: StartOperator, kube_cluster: KubeCluster, namespace: str, flowruns: FlowRuns, watch: Watch
) -> None:
    pair = Pair(start_operator, kube_cluster, namespace)
    jobs, deployments, pods = watch("jobs"), watch("deployments"), watch("pods", f"{api.LABEL_ROLE}={api.ROLE_TASK}")
    flowruns.create(
        {
            "metadata": {"name": "block"},
            "spec": {
                "resources": [
                    {
                        "name": "env",
                        "setup": {"job": job(duration="2s", message="env-42"), "deployments": [deployment("api")]},
                        "cleanup": {"job": job(duration="1s")},
                    }
                ],
                "tasks": [
                    sim_task("work", resources=["env"], args=["$(resources.env.value)"], duration="1s"),
                    sim_task("report", run_after=["work"]),
                ],
            },
        }
    )
    wait_for("the setup job to be created", lambda: jobs.first("block-env-setup"), timeout=60, interval=0.02)
    before = {name for recorder in (jobs, deployments, pods) for name in recorder.uids_by_name()}
    killed = time.monotonic()
    pair.a.kill()

    def made_by_the_standby() -> set[str]:
        return {name for recorder in (jobs, deployments, pods) for name in recorder.uids_by_name()} - before

    first = wait_for("the standby's first create", made_by_the_standby, timeout=NEXT_POD_WITHIN, interval=0.02)
    first_create = time.monotonic() - killed
    pods.wait("the task's pod", lambda w: "block-work-1" in w.uids_by_name(), timeout=30)
    assert pair.holder() == "replica-b"
    pair.a.start()

    run = flowruns.wait_phase("block", ("Succeeded", "Failed"), timeout=90)
    assert run["status"]["phase"] == "Succeeded", run["status"]
    env = res(run, "env")
    assert (env["phase"], env["value"]) == ("CleanedUp", "env-42"), env
    assert main_container(flowruns.read_pod("block-work-1")).args == ["env-42"]
    assert task(run, "work")["attempts"] == 1 and task(run, "report")["attempts"] == 1
    jobs.wait("the cleanup job seen", lambda w: "block-env-cleanup-1" in w.uids_by_name())
    for recorder in (jobs, deployments, pods):
        assert not recorder.duplicated_names(), f"created twice: {recorder.duplicated_names()}"
    assert set(jobs.uids_by_name()) == {"block-env-setup", "block-env-cleanup-1"}
    assert set(deployments.uids_by_name()) == {"block-env-api"}
    print(f"\nSIGKILL of the leader to the standby's first create ({sorted(first)}): {first_create:.1f}s")
    flowruns.delete_and_check_nothing_leaked("block")
