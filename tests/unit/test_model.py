import copy
from typing import Any

import pytest

from flowrun.model import Cleanup, Port, Retries, SpecError, parse_spec
from tests.unit.builders import container, deployment, flow, job, resource, task, template

# The Dask flow of examples/dask-flowrun.yaml, with every run-level field set as well.
DASK = {
    "params": [{"name": "n-workers", "value": "2"}, {"name": "out-path", "value": "/data/summary.csv"}],
    "serviceAccountName": "flow-runner",
    "parallelism": 10,
    "activeDeadlineSeconds": 3600,
    "ttlSecondsAfterFinished": 86400,
    "cancel": False,
    "resources": [
        {
            "name": "dask",
            "setup": {
                "deployments": [
                    {
                        "name": "scheduler",
                        "replicas": 1,
                        "template": template(container("scheduler", "dask", "scheduler")),
                        "ports": [{"name": "comm", "port": 8786}],
                    },
                    {
                        "name": "workers",
                        "replicas": "$(params.n-workers)",
                        "template": template(
                            container("worker", "dask", "worker", "tcp://$(resources.dask.services.scheduler):8786")
                        ),
                    },
                ],
                "timeoutSeconds": 600,
            },
            "value": "tcp://$(resources.dask.services.scheduler):8786",
            "cleanup": {"timeoutSeconds": 600, "retries": 3},
        }
    ],
    "tasks": [
        task("load-data", resources=["dask"], args=["load"]),
        task(
            "summarize",
            "load-data",
            resources=["dask"],
            args=["summarize", "--input", "$(tasks.load-data.result)"],
            retries={"limit": 2, "backoffSeconds": 10},
            activeDeadlineSeconds=600,
        ),
        task(
            "write-csv",
            "summarize",
            trigger="allSucceeded",
            args=["write", "$(tasks.summarize.result)", "$(params.out-path)"],
        ),
    ],
}


def test_parses_the_design_example() -> None:
    spec = parse_spec(DASK, "analytics")
    assert [t.name for t in spec.tasks] == ["load-data", "summarize", "write-csv"]
    assert spec.param_values == {"n-workers": "2", "out-path": "/data/summary.csv"}
    assert (spec.service_account_name, spec.parallelism, spec.active_deadline_seconds) == ("flow-runner", 10, 3600)
    assert spec.ttl_seconds_after_finished == 86400 and spec.cancel is False
    summarize = spec.task("summarize")
    assert summarize.run_after == ("load-data",) and summarize.resources == ("dask",)
    assert summarize.retries == Retries(limit=2, backoff_seconds=10) and summarize.active_deadline_seconds == 600
    dask = spec.resource("dask")
    assert [d.name for d in dask.setup.deployments] == ["scheduler", "workers"]
    assert dask.setup.deployments[0].ports == (Port("comm", 8786),)
    assert dask.setup.deployments[1].replicas == "$(params.n-workers)"
    assert dask.value == "tcp://$(resources.dask.services.scheduler):8786"
    assert dask.uses == ()


def test_defaults() -> None:
    spec = parse_spec(flow(task("a"), resources=[resource("r", setup={"job": job()})]))
    a = spec.task("a")
    assert (a.trigger, a.run_after, a.resources, a.retries, a.active_deadline_seconds) == (
        "allSucceeded",
        (),
        (),
        Retries(0, 10),
        None,
    )
    r = spec.resource("r")
    assert r.setup.timeout_seconds == 600 and r.setup.job is not None and r.setup.job.backoff_limit == 0
    assert r.cleanup == Cleanup(job_template=None, timeout_seconds=600, retries=3)
    assert (spec.parallelism, spec.active_deadline_seconds, spec.ttl_seconds_after_finished, spec.cancel) == (
        None,
        None,
        None,
        False,
    )


def test_task_order_is_topological_with_spec_order_among_equals() -> None:
    spec = parse_spec(flow(task("d", "b", "c"), task("b", "a"), task("c", "a"), task("a")))
    assert [t.name for t in spec.task_order()] == ["a", "b", "c", "d"]


def test_a_resource_referencing_another_uses_it() -> None:
    inner = resource("inner", setup={"job": job("--cluster=$(resources.outer.value)")})
    spec = parse_spec(flow(task("a", resources=["outer", "inner"]), resources=[resource("outer"), inner]))
    assert spec.resource("inner").uses == ("outer",)


def _with(path: list[Any], value: Any) -> dict[str, Any]:
    """DASK with the field at `path` set to `value` (or removed when value is ...)."""
    spec = copy.deepcopy(DASK)
    target: Any = spec
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return spec


def _containers(*args: str) -> dict[str, Any]:
    return template(container("main", *args))


ONE_TASK_ERRORS: list[tuple[str, Any, str, str]] = [
    # (what, spec, field, message fragment)
    ("spec not an object", [], "spec", "must be an object"),
    ("no tasks", {"tasks": []}, "spec.tasks", "at least one task"),
    ("tasks missing", {}, "spec.tasks", "must be a list"),
    ("unknown spec field", flow(task("a"), runafter=[]), "spec.runafter", "unknown field"),
    ("bad task name", flow(task("A_b")), "spec.tasks[0].name", "DNS-1123"),
    ("duplicate task", flow(task("a"), task("a")), "spec.tasks[1].name", "duplicate task name 'a'"),
    ("unknown runAfter", flow(task("a", "lod")), "spec.tasks[0].runAfter[0]", "unknown task 'lod'"),
    ("self runAfter", flow(task("a", "a")), "spec.tasks[0].runAfter[0]", "cannot refer to itself"),
    ("runAfter twice", flow(task("a"), task("b", "a", "a")), "spec.tasks[1].runAfter[1]", "listed twice"),
    ("runAfter not a list", flow(task("a", runAfter="b")), "spec.tasks[0].runAfter", "must be a list"),
    (
        "bad trigger",
        flow(task("a"), task("b", "a", trigger="always")),
        "spec.tasks[1].trigger",
        "unknown trigger 'always'",
    ),
    ("unknown resource", flow(task("a", resources=["db"])), "spec.tasks[0].resources[0]", "unknown resource 'db'"),
    ("negative retries", flow(task("a", retries={"limit": -1})), "spec.tasks[0].retries.limit", "must be >= 0"),
    (
        "negative backoff",
        flow(task("a", retries={"backoffSeconds": -5})),
        "spec.tasks[0].retries.backoffSeconds",
        "must be >= 0",
    ),
    ("boolean retries", flow(task("a", retries={"limit": True})), "spec.tasks[0].retries.limit", "must be an integer"),
    (
        "zero task deadline",
        flow(task("a", activeDeadlineSeconds=0)),
        "spec.tasks[0].activeDeadlineSeconds",
        "must be >= 1",
    ),
    (
        "no containers",
        flow(task("a", template={"spec": {"containers": []}})),
        "spec.tasks[0].template.spec.containers",
        "at least one container",
    ),
    ("no template", flow({"name": "a"}), "spec.tasks[0].template", "must be an object"),
    (
        "two containers without main",
        flow(task("a", template=template(container("x"), container("y")))),
        "spec.tasks[0].template.spec.containers",
        "one must be named 'main'",
    ),
    (
        "args not strings",
        flow(task("a", template=template({"name": "main", "args": [1]}))),
        "spec.tasks[0].template.spec.containers[0].args[0]",
        "must be a string",
    ),
    (
        "env value not a string",
        flow(task("a", template=template({"name": "main", "env": [{"name": "X", "value": 3}]}))),
        "spec.tasks[0].template.spec.containers[0].env[0].value",
        "must be a string",
    ),
    (
        "label not a string",
        flow(task("a", template={"metadata": {"labels": {"x": 1}}, "spec": {"containers": [container()]}})),
        "spec.tasks[0].template.metadata.labels.x",
        "must be a string",
    ),
    ("parallelism zero", flow(task("a"), parallelism=0), "spec.parallelism", "must be >= 1"),
    ("run deadline zero", flow(task("a"), activeDeadlineSeconds=0), "spec.activeDeadlineSeconds", "must be >= 1"),
    ("negative ttl", flow(task("a"), ttlSecondsAfterFinished=-1), "spec.ttlSecondsAfterFinished", "must be >= 0"),
    ("cancel not boolean", flow(task("a"), cancel="yes"), "spec.cancel", "must be a boolean"),
    (
        "service account not string",
        flow(task("a"), serviceAccountName=3),
        "spec.serviceAccountName",
        "must be a string",
    ),
    (
        "param value not a string",
        flow(task("a"), params=[{"name": "n", "value": 2}]),
        "spec.params[0].value",
        "must be a string",
    ),
    (
        "bad param name",
        flow(task("a"), params=[{"name": "a.b", "value": ""}]),
        "spec.params[0].name",
        "not a valid param name",
    ),
    (
        "duplicate param",
        flow(task("a"), params=[{"name": "n", "value": ""}, {"name": "n", "value": ""}]),
        "spec.params[1].name",
        "duplicate param name 'n'",
    ),
    # references
    (
        "unknown param",
        flow(task("a", args=["$(params.nope)"])),
        "spec.tasks[0].template.spec.containers[0].args[0]",
        "unknown param 'nope'",
    ),
    (
        "malformed reference",
        flow(task("a", args=["$(tasks.b)"])),
        "spec.tasks[0].template.spec.containers[0].args[0]",
        "malformed reference",
    ),
    (
        "unknown task result",
        flow(task("a", args=["$(tasks.zz.result)"])),
        "spec.tasks[0].template.spec.containers[0].args[0]",
        "unknown task 'zz'",
    ),
    (
        "result not upstream",
        flow(task("a"), task("b", args=["$(tasks.a.result)"])),
        "spec.tasks[1].template.spec.containers[0].args[0]",
        "task 'a' is not upstream of 'b'",
    ),
    (
        "own result",
        flow(task("a", args=["$(tasks.a.result)"])),
        "spec.tasks[0].template.spec.containers[0].args[0]",
        "is not upstream",
    ),
    (
        "reference in init container env",
        flow(
            task(
                "a",
                template={
                    "spec": {
                        "containers": [container()],
                        "initContainers": [container("init", env={"X": "$(params.q)"})],
                    }
                },
            )
        ),
        "spec.tasks[0].template.spec.initContainers[0].env[0].value",
        "unknown param 'q'",
    ),
    (
        "reference in command",
        flow(task("a", template=template({"name": "main", "command": ["$(flowrun.id)"]}))),
        "spec.tasks[0].template.spec.containers[0].command[0]",
        "malformed reference",
    ),
    (
        "unknown resource value",
        flow(task("a", args=["$(resources.db.value)"])),
        "spec.tasks[0].template.spec.containers[0].args[0]",
        "unknown resource 'db'",
    ),
    (
        "resource not listed by the task",
        flow(task("a", args=["$(resources.r.value)"]), resources=[resource("r")]),
        "spec.tasks[0].template.spec.containers[0].args[0]",
        "must list resource 'r' in its resources",
    ),
    (
        "unknown service deployment",
        flow(task("a", resources=["r"], args=["$(resources.r.services.web)"]), resources=[resource("r")]),
        "spec.tasks[0].template.spec.containers[0].args[0]",
        "has no deployment 'web'",
    ),
    (
        "service of a deployment without ports",
        flow(
            task("a", resources=["r"], args=["$(resources.r.services.db)"]),
            resources=[resource("r", setup={"deployments": [deployment("db", ports=False)]})],
        ),
        "spec.tasks[0].template.spec.containers[0].args[0]",
        "has no ports",
    ),
    # cycles
    (
        "two-task cycle",
        flow(task("a", "b"), task("b", "a")),
        "spec.tasks[1].runAfter[0]",
        "dependency cycle: a -> b -> a",
    ),
    (
        "three-task cycle",
        flow(task("a", "c"), task("b", "a"), task("c", "b")),
        "spec.tasks[1].runAfter[0]",
        "dependency cycle: a -> c -> b -> a",
    ),
    (
        "task uses a resource that runs after it",
        flow(task("a", resources=["r"]), resources=[resource("r", runAfter=["a"])]),
        "spec.resources[0].runAfter[0]",
        "dependency cycle: a -> resource r -> a",
    ),
    (
        "task uses a resource that runs after its downstream",
        flow(task("a", resources=["r"]), task("b", "a"), resources=[resource("r", runAfter=["b"])]),
        "spec.tasks[1].runAfter[0]",
        "dependency cycle: a -> resource r -> b -> a",
    ),
    (
        "resources using each other",
        flow(
            task("a", resources=["p", "q"]),
            resources=[
                resource("p", setup={"job": job("$(resources.q.value)")}),
                resource("q", setup={"job": job("$(resources.p.value)")}),
            ],
        ),
        "spec.resources[1].setup.job.template.spec.containers[0].args[0]",
        "dependency cycle: resource p -> resource q -> resource p",
    ),
    # resources
    ("bad resource name", flow(task("a"), resources=[resource("DB")]), "spec.resources[0].name", "DNS-1123"),
    (
        "duplicate resource",
        flow(task("a"), resources=[resource("r"), resource("r")]),
        "spec.resources[1].name",
        "duplicate resource name 'r'",
    ),
    (
        "unknown resource runAfter",
        flow(task("a"), resources=[resource("r", runAfter=["x"])]),
        "spec.resources[0].runAfter[0]",
        "unknown task 'x'",
    ),
    (
        "empty setup",
        flow(task("a"), resources=[resource("r", setup={})]),
        "spec.resources[0].setup",
        "at least one of job, deployments, manifests",
    ),
    ("setup missing", flow(task("a"), resources=[{"name": "r"}]), "spec.resources[0].setup", "must be an object"),
    (
        "setup timeout zero",
        flow(task("a"), resources=[resource("r", setup={"job": job(), "timeoutSeconds": 0})]),
        "spec.resources[0].setup.timeoutSeconds",
        "must be >= 1",
    ),
    (
        "negative backoffLimit",
        flow(task("a"), resources=[resource("r", setup={"job": {**job(), "backoffLimit": -1}})]),
        "spec.resources[0].setup.job.backoffLimit",
        "must be >= 0",
    ),
    (
        "setup job without main",
        flow(
            task("a"), resources=[resource("r", setup={"job": {"template": template(container("x"), container("y"))}})]
        ),
        "spec.resources[0].setup.job.template.spec.containers",
        "one must be named 'main'",
    ),
    (
        "duplicate deployment",
        flow(task("a"), resources=[resource("r", setup={"deployments": [deployment("d"), deployment("d")]})]),
        "spec.resources[0].setup.deployments[1].name",
        "duplicate deployment name 'd'",
    ),
    (
        "negative replicas",
        flow(task("a"), resources=[resource("r", setup={"deployments": [deployment("d", -1)]})]),
        "spec.resources[0].setup.deployments[0].replicas",
        "must be >= 0",
    ),
    (
        "replicas text",
        flow(task("a"), resources=[resource("r", setup={"deployments": [deployment("d", "many")]})]),
        "spec.resources[0].setup.deployments[0].replicas",
        "must be an integer or a $(...) reference",
    ),
    (
        "replicas param not a number",
        flow(
            task("a"),
            params=[{"name": "n", "value": "two"}],
            resources=[resource("r", setup={"deployments": [deployment("d", "$(params.n)")]})],
        ),
        "spec.resources[0].setup.deployments[0].replicas",
        "resolves to 'two'",
    ),
    (
        "port out of range",
        flow(
            task("a"),
            resources=[
                resource("r", setup={"deployments": [{**deployment("d"), "ports": [{"name": "p", "port": 70000}]}]})
            ],
        ),
        "spec.resources[0].setup.deployments[0].ports[0].port",
        "<= 65535",
    ),
    (
        "bad protocol",
        flow(
            task("a"),
            resources=[
                resource(
                    "r",
                    setup={
                        "deployments": [{**deployment("d"), "ports": [{"name": "p", "port": 1, "protocol": "HTTP"}]}]
                    },
                )
            ],
        ),
        "spec.resources[0].setup.deployments[0].ports[0].protocol",
        "one of TCP",
    ),
    (
        "manifest without kind",
        flow(
            task("a"), resources=[resource("r", setup={"manifests": [{"apiVersion": "v1", "metadata": {"name": "x"}}]})]
        ),
        "spec.resources[0].setup.manifests[0].kind",
        "must be a string",
    ),
    (
        "manifest without name",
        flow(
            task("a"),
            resources=[resource("r", setup={"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}]})],
        ),
        "spec.resources[0].setup.manifests[0].metadata.name",
        "must be a string",
    ),
    (
        "manifest in another namespace",
        flow(
            task("a"),
            resources=[
                resource(
                    "r",
                    setup={
                        "manifests": [
                            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "other"}}
                        ]
                    },
                )
            ],
        ),
        "spec.resources[0].setup.manifests[0].metadata.namespace",
        "must be the FlowRun's namespace 'team'",
    ),
    (
        "colliding deployment names",
        flow(
            task("a"),
            resources=[
                resource("a-b", setup={"deployments": [deployment("c")]}),
                resource("a", setup={"deployments": [deployment("b-c")]}),
            ],
        ),
        "spec.resources[1].setup.deployments[0].name",
        "<flowrun>-a-b-c are also made by spec.resources[0].setup.deployments[0]",
    ),
    (
        "same manifest twice",
        flow(
            task("a"),
            resources=[
                resource(
                    "r", setup={"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]}
                ),
                resource(
                    "s", setup={"manifests": [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}]}
                ),
            ],
        ),
        "spec.resources[1].setup.manifests[0]",
        "ConfigMap/x is also made by spec.resources[0].setup.manifests[0]",
    ),
    (
        "cleanup retries negative",
        flow(task("a"), resources=[resource("r", cleanup={"retries": -1})]),
        "spec.resources[0].cleanup.retries",
        "must be >= 0",
    ),
    (
        "cleanup timeout zero",
        flow(task("a"), resources=[resource("r", cleanup={"timeoutSeconds": 0})]),
        "spec.resources[0].cleanup.timeoutSeconds",
        "must be >= 1",
    ),
    (
        "value not a string",
        flow(task("a"), resources=[resource("r", value=3)]),
        "spec.resources[0].value",
        "must be a string",
    ),
    (
        "own value in setup",
        flow(task("a"), resources=[resource("r", setup={"job": job("$(resources.r.value)")})]),
        "spec.resources[0].setup.job.template.spec.containers[0].args[0]",
        "only known in its cleanup",
    ),
    (
        "own value in value",
        flow(task("a"), resources=[resource("r", value="x$(resources.r.value)")]),
        "spec.resources[0].value",
        "only known in its cleanup",
    ),
    (
        "resource uses result of a task not in runAfter",
        flow(task("a"), resources=[resource("r", setup={"job": job("$(tasks.a.result)")})]),
        "spec.resources[0].setup.job.template.spec.containers[0].args[0]",
        "not in the runAfter of resource 'r'",
    ),
    (
        "resource references unknown resource",
        flow(task("a"), resources=[resource("r", value="$(resources.q.value)")]),
        "spec.resources[0].value",
        "unknown resource 'q'",
    ),
    (
        "unknown resource field",
        flow(task("a"), resources=[resource("r", teardown={})]),
        "spec.resources[0].teardown",
        "unknown field",
    ),
]


@pytest.mark.parametrize(("what", "spec", "field", "message"), ONE_TASK_ERRORS, ids=[c[0] for c in ONE_TASK_ERRORS])
def test_every_validation_error_names_its_field(what: str, spec: Any, field: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec, "team")
    assert caught.value.field == field
    assert message in caught.value.message
    assert str(caught.value) == f"{field}: {caught.value.message}"


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (["tasks", 1, "runAfter", 0], "load", "spec.tasks[1].runAfter[0]"),
        (
            ["resources", 0, "setup", "deployments", 0, "ports", 0, "name"],
            "Comm_Port",
            "spec.resources[0].setup.deployments[0].ports[0].name",
        ),
        (
            ["tasks", 2, "template", "spec", "containers", 0, "args", 2],
            "$(params.out)",
            "spec.tasks[2].template.spec.containers[0].args[2]",
        ),
    ],
)
def test_errors_in_the_design_example_name_the_nested_field(path: list[Any], value: Any, field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(_with(path, value))
    assert caught.value.field == field


def test_accepted_reference_forms() -> None:
    spec = flow(
        task("a", args=["$(flowrun.name)", "$(flowrun.namespace)", "$(flowrun.uid)", "$(date)", "$(HOME)"]),
        task(
            "b", "a", resources=["r"], args=["$(tasks.a.result)", "$(resources.r.value)", "$(resources.r.services.db)"]
        ),
        task("c", "b", args=["$(tasks.a.result)"]),  # a transitive upstream
        resources=[
            resource(
                "r",
                runAfter=["a"],
                setup={"deployments": [deployment("db", "$(tasks.a.result)")]},
                cleanup={"job": job("$(resources.r.value)", "$(resources.r.services.db)")},
            )
        ],
    )
    parse_spec(spec, "team")


def test_names_with_a_trailing_newline_are_refused() -> None:
    with pytest.raises(SpecError) as error:
        parse_spec({"tasks": [{"name": "a\n", "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}}]})
    assert error.value.field == "spec.tasks[0].name"


def test_replicas_of_non_ascii_digits_are_refused() -> None:
    spec = {
        "resources": [
            {
                "name": "r",
                "setup": {
                    "deployments": [
                        {
                            "name": "d",
                            "replicas": "²",
                            "template": {"spec": {"containers": [{"name": "c", "image": "x"}]}},
                        }
                    ]
                },
            }
        ],
        "tasks": [
            {"name": "a", "resources": ["r"], "template": {"spec": {"containers": [{"name": "main", "image": "x"}]}}}
        ],
    }
    with pytest.raises(SpecError) as error:
        parse_spec(spec)
    assert "replicas" in error.value.field


@pytest.mark.parametrize("reference", ["$(tasks.a.result)", "$(flowrun.name)", "$(resources.r.value)"])
def test_an_image_may_only_use_params(reference: str) -> None:
    spec = flow(
        task("a"),
        task("b", "a", resources=["r"], template=template({"name": "main", "image": f"x/{reference}"})),
        resources=[resource("r", setup={"deployments": [deployment("db", 1)]})],
    )
    with pytest.raises(SpecError) as error:
        parse_spec(spec)
    assert error.value.field == "spec.tasks[1].template.spec.containers[0].image"
    assert "an image may only use $(params.NAME)" in str(error.value)


def test_an_image_may_use_a_declared_param_and_an_unknown_one_is_an_error() -> None:
    image = template({"name": "main", "image": "$(params.image)"})
    parse_spec(flow(task("a", template=image), params=[{"name": "image", "value": "busybox:1"}]))
    with pytest.raises(SpecError) as error:
        parse_spec(flow(task("a", template=image)))
    assert error.value.field == "spec.tasks[0].template.spec.containers[0].image"


def test_a_param_value_over_4096_characters_is_refused_naming_it() -> None:
    param = {"name": "n", "value": "x" * 4097}
    spec = {"params": [param], "tasks": [{"name": "a", "template": TEMPLATE_FOR_PARAMS}]}
    with pytest.raises(SpecError) as refused:
        parse_spec(spec, "team")
    assert str(refused.value) == "spec.params[0].value: may have at most 4096 characters, not 4097"
    param["value"] = "x" * 4096
    assert parse_spec(spec, "team").param_values == {"n": "x" * 4096}


TEMPLATE_FOR_PARAMS = {"spec": {"containers": [{"name": "main", "image": "busybox"}]}}


def test_pending_timeout_is_the_tasks_own_else_the_runs_else_none() -> None:
    spec = parse_spec(flow(task("own", pendingTimeoutSeconds=5), task("default"), pendingTimeoutSeconds=60))
    assert (spec.pending_timeout(spec.task("own")), spec.pending_timeout(spec.task("default"))) == (5, 60)
    unset = parse_spec(flow(task("a")))
    assert unset.pending_timeout(unset.task("a")) is None and unset.pending_timeout_seconds is None


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (flow(task("a", pendingTimeoutSeconds=0)), "spec.tasks[0].pendingTimeoutSeconds"),
        (flow(task("a", pendingTimeoutSeconds="60")), "spec.tasks[0].pendingTimeoutSeconds"),
        (flow(task("a"), pendingTimeoutSeconds=0), "spec.pendingTimeoutSeconds"),
        (flow(task("a"), pendingTimeoutSeconds=True), "spec.pendingTimeoutSeconds"),
    ],
)
def test_a_bad_pending_timeout_is_refused_naming_the_field(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as error:
        parse_spec(spec)
    assert error.value.field == field
