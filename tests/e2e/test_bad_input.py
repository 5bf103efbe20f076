"""Bad input, table-driven (docs/reliability.md "Bad input"): malformed FlowRuns, each refused at
apply time by the CRD with a message naming the field, or accepted by the CRD and reported by
the operator as SpecValid=False naming the field, with nothing created, one InvalidSpec event,
and a bounded number of API requests per bad object (no retry storm).

The apply-time cases are server-side dry runs (`dryRun=All`, strict field validation, as
`kubectl apply --dry-run=server` sends them): nothing is stored and no operator is involved. The
operator-time cases are created together, as one batch, against one operator."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from prometheus_client.parser import text_string_to_metric_families

from devcluster.pytest_plugin import wait_for
from flowrun import api
from tests.e2e.helpers import FlowRuns, Operator, Watch, deployment, sim_task, sim_template

pytestmark = pytest.mark.e2e

Spec = dict[str, Any]
Edit = Callable[[Spec], None]

# The operator's count of its own API requests, by verb and resource (when it serves it).
API_REQUESTS = "flowrun_api_requests_total"
# Requests the operator may make for one bad FlowRun from its creation until it is reported:
# reads of the run, the finalizer patch, the status patch, the InvalidSpec event, the children
# list (one per kind), and the dry runs of its children. A retry storm is far above this.
MAX_REQUESTS_PER_BAD_RUN = 30
# Requests in the 3 s after every bad run was reported, all runs together.
MAX_REQUESTS_WHEN_SETTLED = 5


def base() -> Spec:
    """A valid spec: param n, block r (a Deployment with a Service) used by task a, then b."""
    return {
        "params": [{"name": "n", "value": "2"}],
        "resources": [{"name": "r", "setup": {"deployments": [deployment("db", ports=True)]}}],
        "tasks": [sim_task("a", resources=["r"]), sim_task("b", run_after=["a"])],
    }


def put(path: str, value: Any) -> Edit:
    """Set spec[path] (dots between keys, list indexes as numbers)."""

    def edit(spec: Spec) -> None:
        *parents, last = path.split(".")
        node: Any = spec
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


def both(first: Edit, second: Edit) -> Edit:
    def edit(spec: Spec) -> None:
        first(spec)
        second(spec)

    return edit


def add_task(task: dict[str, Any]) -> Edit:
    return lambda spec: spec["tasks"].append(task)


def manifest(obj: dict[str, Any]) -> Edit:
    return put("resources.0.setup.manifests", [obj])


def args(*values: str) -> Edit:
    return put("tasks.1.template.spec.containers.0.args", list(values))


CONFIG = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
TWO_CONTAINERS = {"spec": {"containers": [{"name": "x", "image": "busybox"}, {"name": "y", "image": "busybox"}]}}

# (case, edit of the base spec, what the API server's message must contain: the field and why)
APPLY_TIME: list[tuple[str, Edit, tuple[str, ...]]] = [
    ("tasks-not-a-list", put("tasks", "a"), ("spec.tasks", "must be of type array")),
    ("unknown-spec-field", put("colour", "red"), ('unknown field "spec.colour"',)),
    ("unknown-task-field", put("tasks.0.color", "red"), ('unknown field "spec.tasks[0].color"',)),
    ("unknown-resource-field", put("resources.0.size", 3), ('unknown field "spec.resources[0].size"',)),
    ("task-name-uppercase", put("tasks.0.name", "Load_Data"), ("spec.tasks[0].name",)),
    ("task-name-non-ascii", put("tasks.0.name", "tâche"), ("spec.tasks[0].name",)),
    ("task-name-over-63", put("tasks.0.name", "t" * 64), ("spec.tasks[0].name", "63")),
    ("resource-name-bad", put("resources.0.name", "my_db"), ("spec.resources[0].name",)),
    ("deployment-name-bad", put("resources.0.setup.deployments.0.name", "DB"), ("deployments[0].name",)),
    ("duplicate-task", add_task(sim_task("a")), ("spec.tasks[2]", "Duplicate value")),
    (
        "duplicate-resource",
        lambda s: s["resources"].append(copy.deepcopy(s["resources"][0])),
        ("spec.resources[1]", "Duplicate value"),
    ),
    ("duplicate-param", lambda s: s["params"].append({"name": "n", "value": "3"}), ("spec.params[1]", "Duplicate")),
    ("self-dependency", put("tasks.1.runAfter", ["b"]), ("spec.tasks[1]", "runAfter")),
    ("empty-setup", put("resources.0.setup", {}), ("spec.resources[0].setup",)),
    ("trigger-not-an-enum", put("tasks.1.trigger", "sometimes"), ("spec.tasks[1].trigger", "Unsupported value")),
    ("negative-parallelism", put("parallelism", -1), ("spec.parallelism",)),
    ("huge-deadline", put("activeDeadlineSeconds", 2**63 - 1), ("spec.activeDeadlineSeconds",)),
    ("negative-ttl", put("ttlSecondsAfterFinished", -1), ("spec.ttlSecondsAfterFinished",)),
    ("huge-retries", put("tasks.0.retries", {"limit": 1000}), ("spec.tasks[0].retries.limit",)),
    ("negative-backoff", put("tasks.0.retries", {"limit": 1, "backoffSeconds": -5}), ("backoffSeconds",)),
    ("port-over-65535", put("resources.0.setup.deployments.0.ports.0.port", 70000), ("ports[0].port",)),
    ("replicas-not-a-number", put("resources.0.setup.deployments.0.replicas", "two"), ("deployments[0].replicas",)),
    ("201-tasks", lambda s: s["tasks"].extend(sim_task(f"t{i}") for i in range(199)), ("spec.tasks", "200")),
    ("1-mib-param", put("params.0.value", "x" * (1 << 20)), ("spec.params[0].value", "4096")),
    ("manifest-without-name", manifest({"apiVersion": "v1", "kind": "ConfigMap"}), ("manifests[0]", "name")),
    ("manifest-without-kind", manifest({"apiVersion": "v1", "metadata": {"name": "c"}}), ("manifests[0]", "kind")),
    ("two-containers-without-main", put("tasks.0.template", TWO_CONTAINERS), ("spec.tasks[0].template", "main")),
    (
        "task-restart-policy-always",
        put("tasks.0.template.spec.restartPolicy", "Always"),
        ("spec.tasks[0].template.spec.restartPolicy", "Never"),
    ),
    ("template-without-spec", put("tasks.0.template", {"metadata": {}}), ("spec.tasks[0].template",)),
]

# (case, edit, what status.message must contain): accepted by the CRD, refused by the operator.
OPERATOR_TIME: list[tuple[str, Edit, tuple[str, ...]]] = [
    ("cycle", put("tasks.0.runAfter", ["b"]), ("spec.tasks[", "dependency cycle")),
    ("unknown-upstream", put("tasks.1.runAfter", ["lod"]), ("spec.tasks[1].runAfter[0]: unknown task 'lod'",)),
    ("unknown-resource", put("tasks.1.resources", ["dsak"]), ("spec.tasks[1].resources[0]: unknown resource 'dsak'",)),
    (
        "resource-after-unknown-task",
        put("resources.0.runAfter", ["x"]),
        ("spec.resources[0].runAfter[0]: unknown task 'x'",),
    ),
    ("block-waits-on-its-task", put("resources.0.runAfter", ["a"]), ("spec.resources[0].runAfter[0]", "cycle")),
    ("unknown-param", args("$(params.nope)"), ("spec.tasks[1].template.spec.containers[0].args[0]", "nope")),
    ("malformed-reference", args("$(tasks.a.output)"), ("containers[0].args[0]: malformed reference",)),
    ("unclosed-reference", args("$(params.n"), ("containers[0].args[0]", "$(params.n")),
    ("result-not-upstream", put("tasks.0.template", sim_template(args=["$(tasks.b.result)"])), ("'b'", "upstream")),
    (
        "service-without-ports",
        both(
            lambda s: s["resources"][0]["setup"]["deployments"].append(deployment("cache")),
            args("$(resources.r.services.cache)"),
        ),
        ("spec.tasks[1].template.spec.containers[0].args[0]", "cache"),
    ),
    (
        "replicas-resolving-to-a-word",
        both(put("params.0.value", "two"), put("resources.0.setup.deployments.0.replicas", "$(params.n)")),
        ("spec.resources[0].setup.deployments[0].replicas", "'two'"),
    ),
    (
        "manifest-unknown-kind",
        manifest({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}),
        ("spec.resources[0].setup.manifests[0]", "Widget"),
    ),
    (
        "manifest-other-namespace",
        manifest({**CONFIG, "metadata": {"name": "c", "namespace": "kube-system"}}),
        ("spec.resources[0].setup.manifests[0].metadata.namespace", "'kube-system'"),
    ),
    (
        # The run's name is the case's: the manifest takes the name of task a's first pod.
        "manifest-named-like-a-pod",
        manifest({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "manifest-named-like-a-pod-a-1"}}),
        ("spec.resources[0].setup.manifests[0].metadata.name", "is the name of attempt 1 of task a"),
    ),
    (
        "manifest-cluster-scoped",
        manifest({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "made-by-a-flowrun"}}),
        ("spec.resources[0].setup.manifests[0]", "cluster-scoped"),
    ),
    (
        "container-without-image",
        put("tasks.0.template", {"spec": {"containers": [{"name": "main"}]}}),
        ("spec.tasks[0].template", "image: Required value"),
    ),
    ("missing-service-account", put("serviceAccountName", "nobody"), ("spec.tasks[0].template", "nobody")),
    (
        "invalid-pod-field-value",
        put("tasks.0.template.spec.containers.0.imagePullPolicy", "Sometimes"),
        ("spec.tasks[0].template", "imagePullPolicy"),
    ),
    (
        # The template is schemaless in the CRD; the operator's dry run validates strictly, so a
        # misspelt field is refused instead of dropped.
        "unknown-pod-template-field",
        put("tasks.0.template.spec.containers.0.imagePulPolicy", "Always"),
        ("spec.tasks[0].template", 'unknown field "spec.containers[0].imagePulPolicy"'),
    ),
]


@pytest.mark.parametrize(("case", "edit", "expected"), APPLY_TIME, ids=[c[0] for c in APPLY_TIME])
def test_a_malformed_flowrun_is_refused_at_apply_time_naming_the_field(
    flowruns: FlowRuns, case: str, edit: Edit, expected: tuple[str, ...]
) -> None:
    spec = base()
    edit(spec)
    body = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": {"name": case}, "spec": spec}
    with pytest.raises(ApiException) as refused:
        flowruns.custom.create_namespaced_custom_object(
            api.GROUP, api.VERSION, flowruns.namespace, api.PLURAL, body, dry_run="All", field_validation="Strict"
        )
    assert refused.value.status in (400, 422), refused.value.body
    message = json.loads(refused.value.body)["message"]
    for text in expected:
        assert text in message, f"{case}: {text!r} not in {message[:2000]}"


def api_requests(operator: Operator) -> float | None:
    """The operator's API requests so far (every verb and resource), or None if it does not count them."""
    for family in text_string_to_metric_families(operator.scrape_metrics()):
        if family.name == API_REQUESTS.removesuffix("_total"):
            return sum(s.value for s in family.samples if s.name == API_REQUESTS)
    return None


def test_malformed_flowruns_the_crd_accepts_are_reported_by_the_operator_naming_the_field(
    start_operator: Callable[..., Operator], flowruns: FlowRuns, watch: Watch
) -> None:
    operator = start_operator(metrics=True)
    wait_for("the operator's metrics endpoint", lambda: scrape_or_none(operator))
    recorders = [watch(kind) for kind in ("pods", "jobs", "deployments", "services")]
    before = api_requests(operator)
    uids: dict[str, str] = {}
    for case, edit, _ in OPERATOR_TIME:
        spec = base()
        edit(spec)
        uids[case] = flowruns.create({"metadata": {"name": case}, "spec": spec})["metadata"]["uid"]

    for case, _, expected in OPERATOR_TIME:
        run = flowruns.wait_status(case, "SpecValid=False", spec_invalid, timeout=60)
        status = run["status"]
        assert status["phase"] == "Failed", (case, status)
        for text in expected:
            assert text in status["message"], f"{case}: {text!r} not in {status['message']!r}"
        assert not flowruns.children(uids[case]), case
    # Settled: a few seconds later no run was written again, and each has exactly one event.
    versions = {case: (flowruns.get(case) or {})["metadata"]["resourceVersion"] for case in uids}
    counted = api_requests(operator)
    time.sleep(3)  # a window in which nothing may happen: there is no condition to poll for
    for case in uids:
        assert (flowruns.get(case) or {})["metadata"]["resourceVersion"] == versions[case], f"{case} rewritten"
        events = flowruns.events_when(case, lambda found: len(found) >= 1)
        assert [(e.type, e.reason) for e in events] == [("Warning", "InvalidSpec")], (case, events)
    # No child of any kind was ever created (a watch saw every object of the namespace).
    created = [o["metadata"]["name"] for r in recorders for kind, o in r.snapshot() if kind == "ADDED"]
    assert created == [], created
    if before is not None and counted is not None:
        per_run = (counted - before) / len(uids)
        assert per_run <= MAX_REQUESTS_PER_BAD_RUN, f"{per_run:.1f} API requests per bad FlowRun"
        # A few requests of the operator's own (a watch renewed) may fall in the window; a storm would not.
        after = api_requests(operator) or 0.0
        assert after - counted <= MAX_REQUESTS_WHEN_SETTLED, f"{after - counted:.0f} API requests once settled"

    # An edit of the spec after creation is refused by the CRD, naming spec.
    with pytest.raises(ApiException) as refused:
        flowruns.patch("cycle", {"spec": {"parallelism": 3}})
    assert refused.value.status == 422 and "spec" in str(refused.value.body), refused.value.body

    for case in uids:
        flowruns.delete_and_check_nothing_leaked(case, timeout=30)
    assert operator.running(), operator.log_tail()


def scrape_or_none(operator: Operator) -> str | None:
    try:
        return operator.scrape_metrics()
    except OSError:  # not listening yet
        return None


def spec_invalid(status: dict[str, Any]) -> bool:
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    return (conditions.get("SpecValid") or {}).get("status") == "False"


def test_a_termination_message_over_the_4_kib_limit_is_cut_to_it_and_said_so(
    operator: Operator, flowruns: FlowRuns
) -> None:
    # The kubelet keeps at most 4 KiB of a termination message; the dev cluster's simulated pods
    # report whatever they are told, so the operator's own cap is what is tested here.
    flowruns.create(
        {"metadata": {"name": "big-result"}, "spec": {"tasks": [sim_task("a", message="é" * 2500), sim_task("b")]}}
    )
    run = flowruns.wait_phase("big-result", "Succeeded")
    a = run["status"]["tasks"]["a"]
    assert a["result"] == "é" * 2048 and len(a["result"].encode()) == 4096, len(a["result"])
    assert a["message"] == "result reached the 4 KiB termination-message limit and may be truncated"
    flowruns.delete_and_check_nothing_leaked("big-result")
