"""What the GitOps tools make of FlowRuns, Flows and CronFlowRuns, by their own code on live objects
of the dev cluster: kstatus (sigs.k8s.io/cli-utils, what Flux, kpt and kubectl-style waiters use)
and Argo CD (its settings manager reading the argocd-cm snippet users copy, gitops/argocd/
argocd-cm.yaml, and gitops-engine running its Lua). Both are Go programs built from their modules
(devcluster/gitops.py). The Lua checks' own tests (health_test.yaml) run here too."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devcluster import gitops
from devcluster.pytest_plugin import KubeCluster, wait_for
from flowrun import api
from flowrun.timestamps import format_time
from tests.e2e.helpers import REPO, FlowRuns, Objects, StartOperator, job, sim_task

pytestmark = pytest.mark.e2e

ARGOCD_CM = REPO / "gitops" / "argocd" / "argocd-cm.yaml"
# Argo CD puts it on each hook it creates and takes it off once done with the hook; while it is on,
# Argo CD runs the health check on a hook being deleted (gitops-engine's GetResourceHealth).
ARGOCD_HOOK_FINALIZER = "argocd.argoproj.io/hook-finalizer"


class Health:
    """kstatus's and Argo CD's verdicts on live objects of one namespace."""

    def __init__(self, kube_cluster: KubeCluster, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(kube_cluster.api)
        self.kubeconfig, self.namespace = kube_cluster.kubeconfig, namespace

    def live(self, plural: str, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(
            api.GROUP, api.VERSION, self.namespace, plural, name
        )
        return found

    def of(self, plural: str, name: str) -> tuple[tuple[str, str], tuple[str, str]]:
        """((kstatus status, message), (Argo CD status, message)) of the object as it is now."""
        live = self.live(plural, name)
        (kstatus,) = gitops.kstatus([live])
        (argocd,) = gitops.argocd_health([live], self.kubeconfig, self.namespace)
        return (kstatus["status"], kstatus["message"]), (argocd["status"], argocd["message"])

    def until(
        self, plural: str, name: str, kstatus: str, argocd: str, timeout: float = 60.0
    ) -> tuple[tuple[str, str], tuple[str, str]]:
        """Wait until both tools say so of the object; what they said."""

        def agreed() -> tuple[tuple[str, str], tuple[str, str]] | None:
            verdicts = self.of(plural, name)
            return verdicts if (verdicts[0][0], verdicts[1][0]) == (kstatus, argocd) else None

        try:
            found: tuple[tuple[str, str], tuple[str, str]] = wait_for(
                f"{plural}/{name}: kstatus {kstatus}, Argo CD {argocd}", agreed, timeout=timeout, interval=0.5
            )
        except AssertionError as error:
            raise AssertionError(f"{error}; now: {self.of(plural, name)}") from None
        return found


@pytest.fixture
def health(kube_cluster: KubeCluster, namespace: str) -> Iterator[Health]:
    """The argocd-cm snippet of gitops/argocd in the test namespace, and the two tools (built on
    first use; a cold build of both takes minutes, a cached one nothing)."""
    config_map = yaml.safe_load(ARGOCD_CM.read_text())
    config_map["metadata"]["namespace"] = namespace
    kube_cluster.core().create_namespaced_config_map(namespace, config_map)
    gitops.binary(gitops.KSTATUS, "kstatus")
    gitops.binary(gitops.ARGOCD, "argocd-health")
    yield Health(kube_cluster, namespace)


def test_the_argocd_health_checks_pass_their_tests_in_argocds_lua_vm() -> None:
    status, results = gitops.argocd_tests()
    failed = [r for r in results if not r["passed"]]
    assert status == 0 and not failed, failed
    # Every kind, every health it can have, with the libraries open (Argo CD's tests) and closed
    # (argocd-cm's default).
    covered = {(Path(r["script"]).name, r["want"], r["libs"]) for r in results}
    for libs in ("open", "closed"):
        for kind in ("FlowRun", "Flow", "CronFlowRun"):
            for wanted in ("Progressing", "Healthy", "Degraded"):
                assert (kind, wanted, libs) in covered, (kind, wanted, libs)
        assert ("CronFlowRun", "Suspended", libs) in covered


def long_task(name: str) -> dict[str, Any]:
    return sim_task(name, duration="600s")


def test_a_flowrun_reads_right_to_kstatus_and_argocd_in_every_phase(
    start_operator: StartOperator, flowruns: FlowRuns, health: Health
) -> None:
    runs = {
        "runs-then-cancelled": [long_task("work")],
        "succeeds": [sim_task("work", duration="200ms")],
        "fails": [sim_task("work", duration="200ms", outcome="fail", message="disk full")],
        "invalid": [sim_task("a", run_after=["b"]), sim_task("b", run_after=["a"])],
    }
    for name, tasks in runs.items():
        flowruns.create({"metadata": {"name": name}, "spec": {"tasks": tasks}})

    # Before the operator has looked at them: their status reads observedGeneration 0 (the CRD's
    # default), so neither tool takes them for done.
    for name in runs:
        kstatus, argocd = health.of(api.PLURAL, name)
        assert kstatus == ("InProgress", "FlowRun generation is 1, but latest observed generation is 0")
        assert argocd == ("Progressing", "Waiting for the flowrun-operator to look at this generation")

    start_operator()
    flowruns.wait_phase("runs-then-cancelled", "Running")
    kstatus, argocd = health.of(api.PLURAL, "runs-then-cancelled")
    assert kstatus == ("InProgress", "running: work") and argocd == ("Progressing", "running: work")

    kstatus, argocd = health.until(api.PLURAL, "succeeds", "Current", "Healthy")
    assert kstatus == ("Current", "Resource is Ready") and argocd == ("Healthy", "1 succeeded")

    kstatus, argocd = health.until(api.PLURAL, "fails", "Failed", "Degraded")
    message = health.live(api.PLURAL, "fails")["status"]["message"]
    assert message.startswith("task work failed") and "disk full" in message, message
    assert kstatus == ("Failed", message) and argocd == ("Degraded", message)

    kstatus, argocd = health.until(api.PLURAL, "invalid", "Failed", "Degraded")
    assert "dependency cycle" in kstatus[1] and argocd[1] == kstatus[1]

    flowruns.patch("runs-then-cancelled", {"spec": {"cancel": True}})
    kstatus, argocd = health.until(api.PLURAL, "runs-then-cancelled", "Failed", "Degraded")
    assert kstatus == ("Failed", "cancelled") and argocd == ("Degraded", "cancelled")

    for name in runs:
        flowruns.delete_and_check_nothing_leaked(name)


def health_is(kind: str, reason: str) -> Callable[[dict[str, Any]], bool]:
    """A wait_status check: condition `kind` (Ready, Reconciling or Stalled) is True, with `reason`."""
    return lambda status: any(
        (c.get("type"), c.get("status"), c.get("reason")) == (kind, "True", reason)
        for c in status.get("conditions") or []
    )


def true_health(run: dict[str, Any]) -> tuple[str, str, str]:
    """The one of Ready, Reconciling and Stalled that is True: (type, reason, message)."""
    found = [
        (c["type"], c["reason"], c["message"])
        for c in run["status"]["conditions"]
        if c["type"] in (api.CONDITION_READY, api.CONDITION_RECONCILING, api.CONDITION_STALLED)
        and c["status"] == "True"
    ]
    assert len(found) == 1, run["status"]["conditions"]
    return found[0]


def block_run(name: str, cleanup: dict[str, Any], work: str = "200ms", **metadata: Any) -> dict[str, Any]:
    """A run of one task in a block `vm` set up by a job and cleaned up by `cleanup`."""
    block = {"name": "vm", "setup": {"job": job(message="vm-7")}, "cleanup": cleanup}
    return {
        "metadata": {"name": name, **metadata},
        "spec": {"resources": [block], "tasks": [sim_task("work", resources=["vm"], duration=work)]},
    }


def take_off_the_hook_finalizer(flowruns: FlowRuns, name: str) -> None:
    """Take Argo CD's hook finalizer off a run (as Argo CD does once done with a hook), leaving the
    others: a JSON patch that tests the entry it removes."""
    run = flowruns.get(name)
    finalizers = (run or {}).get("metadata", {}).get("finalizers") or []
    if ARGOCD_HOOK_FINALIZER not in finalizers:
        return
    index = finalizers.index(ARGOCD_HOOK_FINALIZER)
    path = f"/metadata/finalizers/{index}"
    patch = [{"op": "test", "path": path, "value": ARGOCD_HOOK_FINALIZER}, {"op": "remove", "path": path}]
    flowruns.custom.patch_namespaced_custom_object(
        api.GROUP, api.VERSION, flowruns.namespace, api.PLURAL, name, patch, _content_type="application/json-patch+json"
    )


def test_a_flowrun_reads_right_to_kstatus_and_argocd_while_it_waits_cleans_up_and_is_deleted(
    start_operator: StartOperator, flowruns: FlowRuns, health: Health
) -> None:
    start_operator()
    # Cleaning up: its task done, the block's cleanup job takes 20 s; deleted meanwhile, the
    # deletion waits for that cleanup.
    cleans_up = flowruns.create(block_run("cleans-up", {"job": job(duration="20s")}))
    # Deleted while its task runs, its cleanup fails: the deletion is held (CleanupBlocked). It is
    # an Argo CD hook, created with Argo CD's finalizer on, as Argo CD creates hooks.
    hook = {"annotations": {"argocd.argoproj.io/hook": "PreSync"}, "finalizers": [ARGOCD_HOOK_FINALIZER]}
    failing_cleanup = {"job": job(outcome="fail", message="cloud API down"), "retries": 0}
    blocked = flowruns.create(block_run("cleanup-fails", failing_cleanup, work="600s", **hook))
    try:
        check_waiting_cleaning_up_and_deleted_runs(flowruns, health)
    finally:
        take_off_the_hook_finalizer(flowruns, "cleanup-fails")  # else the namespace could not go
    flowruns.wait_gone_and_nothing_leaked("cleanup-fails", blocked["metadata"]["uid"])
    flowruns.wait_gone_and_nothing_leaked("cleans-up", cleans_up["metadata"]["uid"])
    for name in ("holds-lock", "waits-for-lock"):
        flowruns.delete_and_check_nothing_leaked(name)


def check_waiting_cleaning_up_and_deleted_runs(flowruns: FlowRuns, health: Health) -> None:
    # A run waiting for a lock held by another run.
    lock = {"mutex": {"name": "warehouse"}}
    flowruns.create(
        {"metadata": {"name": "holds-lock"}, "spec": {"synchronization": lock, "tasks": [long_task("work")]}}
    )
    flowruns.wait_phase("holds-lock", "Running")
    flowruns.create(
        {"metadata": {"name": "waits-for-lock"}, "spec": {"synchronization": lock, "tasks": [sim_task("work")]}}
    )

    # CleaningUp: in progress to both, with the run's message.
    run = flowruns.wait_status("cleans-up", "cleaning up", health_is(api.CONDITION_RECONCILING, "CleaningUp"))
    assert run["status"]["phase"] == "Running"
    kstatus, argocd = health.of(api.PLURAL, "cleans-up")
    assert kstatus == ("InProgress", "cleaning up: vm") and argocd == ("Progressing", "cleaning up: vm")

    # Deleted while its cleanup runs: Reconciling, reason Deleting, until the cleanup has run. Both
    # tools read an object being deleted as such, whatever its conditions.
    flowruns.delete("cleans-up")
    run = flowruns.wait_status("cleans-up", "deleting", health_is(api.CONDITION_RECONCILING, "Deleting"))
    assert true_health(run) == ("Reconciling", "Deleting", "deleting; cleaning up: vm")
    kstatus, argocd = health.of(api.PLURAL, "cleans-up")
    assert kstatus == ("Terminating", "Resource scheduled for deletion") and argocd == (
        "Progressing",
        "Pending deletion",
    )

    # Pending, waiting for the lock: in progress, naming the holder.
    run = flowruns.wait_status("waits-for-lock", "waiting", health_is(api.CONDITION_RECONCILING, "WaitingForLock"))
    waiting = "waiting for mutex/warehouse, held by FlowRun holds-lock"
    assert run["status"]["phase"] == "Pending" and true_health(run) == ("Reconciling", "WaitingForLock", waiting)
    kstatus, argocd = health.of(api.PLURAL, "waits-for-lock")
    assert kstatus == ("InProgress", waiting) and argocd == ("Progressing", waiting)

    # A deletion held by a failed cleanup: Stalled, saying what releases it. kstatus reads it as
    # Terminating; Argo CD runs the check on it while its hook finalizer is on (Degraded, why), and
    # says "Pending deletion" once Argo CD has taken that off.
    flowruns.wait_status(
        "cleanup-fails",
        "work running",
        lambda s: ((s.get("tasks") or {}).get("work") or {}).get("reason") == "PodRunning",
    )
    flowruns.delete("cleanup-fails")
    run = flowruns.wait_status(
        "cleanup-fails", "cleanup blocked", health_is(api.CONDITION_STALLED, api.CLEANUP_BLOCKED), timeout=60
    )
    stalled = true_health(run)[2]
    assert stalled.startswith("cleanup failed for vm: ") and "cloud API down" in stalled, stalled
    assert stalled.endswith(f'the finalizer stays until annotation {api.SKIP_CLEANUP_ANNOTATION}="true" is set')
    kstatus, argocd = health.of(api.PLURAL, "cleanup-fails")
    assert kstatus == ("Terminating", "Resource scheduled for deletion") and argocd == ("Degraded", stalled)
    take_off_the_hook_finalizer(flowruns, "cleanup-fails")
    kstatus, argocd = health.of(api.PLURAL, "cleanup-fails")
    assert kstatus == ("Terminating", "Resource scheduled for deletion") and argocd == (
        "Progressing",
        "Pending deletion",
    )
    assert true_health(health.live(api.PLURAL, "cleanup-fails"))[:2] == ("Stalled", api.CLEANUP_BLOCKED)
    # Released by hand, as documented: the finalizer goes without further cleanup.
    flowruns.patch("cleanup-fails", {"metadata": {"annotations": {api.SKIP_CLEANUP_ANNOTATION: "true"}}})

    # The lock freed, the waiting run runs and succeeds.
    flowruns.patch("holds-lock", {"spec": {"cancel": True}})
    kstatus, argocd = health.until(api.PLURAL, "waits-for-lock", "Current", "Healthy")
    assert argocd == ("Healthy", "1 succeeded")


def test_flows_and_cron_flow_runs_read_right_to_kstatus_and_argocd(
    kube_cluster: KubeCluster,
    start_operator: StartOperator,
    flows: Objects,
    crons: Objects,
    flowruns: FlowRuns,
    health: Health,
) -> None:
    template = {"spec": {"flowRef": {"name": "valid"}}}
    flows.create({"metadata": {"name": "valid"}, "spec": {"tasks": [sim_task("work")]}})
    flows.create({"metadata": {"name": "invalid"}, "spec": {"tasks": [sim_task("use", run_after=["lod"])]}})
    daily = {"schedule": "0 2 * * *", "flowRunTemplate": template}
    crons.create({"metadata": {"name": "scheduling"}, "spec": daily})
    crons.create({"metadata": {"name": "suspended"}, "spec": {**daily, "suspend": True}})
    crons.create({"metadata": {"name": "invalid"}, "spec": {**daily, "timeZone": "Mars/Olympus"}})
    # A run the API server refuses: no FlowRun may be created in this namespace.
    quota = client.V1ResourceQuota(
        metadata=client.V1ObjectMeta(name="no-runs"),
        spec=client.V1ResourceQuotaSpec(hard={f"count/{api.PLURAL}.{api.GROUP}": "0"}),
    )
    kube_cluster.core().create_namespaced_resource_quota(flowruns.namespace, quota)
    crons.create({"metadata": {"name": "refused"}, "spec": {**daily, "schedule": "* * * * *"}})
    # Its last run two minutes ago: a run is due at once.
    crons.patch_status("refused", {"lastScheduleTime": format_time(datetime.now(UTC) - timedelta(minutes=2))})

    for plural, name in ((api.FLOW_PLURAL, "valid"), (api.CRON_PLURAL, "scheduling")):
        kstatus, argocd = health.of(plural, name)
        assert kstatus[0] == "InProgress" and argocd[0] == "Progressing", (name, kstatus, argocd)

    operator = start_operator()
    kstatus, argocd = health.until(api.FLOW_PLURAL, "valid", "Current", "Healthy")
    assert argocd == ("Healthy", "the Flow passes every check of a run's spec")
    kstatus, argocd = health.until(api.FLOW_PLURAL, "invalid", "Failed", "Degraded")
    assert kstatus[1] == argocd[1] == "spec.tasks[0].runAfter[0]: unknown task 'lod'"

    kstatus, argocd = health.until(api.CRON_PLURAL, "scheduling", "Current", "Healthy")
    assert argocd[1].startswith("next run at ")
    kstatus, argocd = health.until(api.CRON_PLURAL, "suspended", "Current", "Suspended")
    assert argocd == ("Suspended", "suspended")
    kstatus, argocd = health.until(api.CRON_PLURAL, "invalid", "Failed", "Degraded")
    assert kstatus[1] == argocd[1] and argocd[1].startswith("spec.timeZone: 'Mars/Olympus'")
    kstatus, argocd = health.until(api.CRON_PLURAL, "refused", "Failed", "Degraded")
    assert kstatus[1] == argocd[1] and "exceeded quota: no-runs" in argocd[1], argocd
    assert argocd[1].startswith("creating FlowRun refused-") and argocd[1].endswith("trying again in 60s")

    # Fixed (the quota goes): the next pass creates the run and the CronFlowRun is Ready again.
    # Left alone, that pass comes within 60 s; any change to the CronFlowRun brings it at once.
    kube_cluster.core().delete_namespaced_resource_quota("no-runs", flowruns.namespace)
    crons.patch("refused", {"metadata": {"annotations": {"example.com/quota": "raised"}}})
    health.until(api.CRON_PLURAL, "refused", "Current", "Healthy", timeout=90)

    # A generation the operator has not looked at yet is in progress (here: changed while it is
    # down), then Current once it has.
    operator.kill()
    flows.patch("valid", {"spec": {"tasks": [sim_task("work"), sim_task("more")]}})
    kstatus, argocd = health.of(api.FLOW_PLURAL, "valid")
    assert kstatus == ("InProgress", "Flow generation is 2, but latest observed generation is 1")
    assert argocd == ("Progressing", "Waiting for the flowrun-operator to validate this generation")
    operator.start()
    health.until(api.FLOW_PLURAL, "valid", "Current", "Healthy")

    crons.patch("refused", {"spec": {"suspend": True}})
    health.until(api.CRON_PLURAL, "refused", "Current", "Suspended")
    listed = flowruns.custom.list_namespaced_custom_object(api.GROUP, api.VERSION, flowruns.namespace, api.PLURAL)
    assert listed["items"], "the run created once the quota went"
    for run in listed["items"]:
        flowruns.delete_and_check_nothing_leaked(run["metadata"]["name"])
    for name in ("scheduling", "suspended", "invalid", "refused"):
        crons.delete(name)
    flows.delete("valid")
    flows.delete("invalid")
