"""Conditions (`tasks[].when`): checked by the model, evaluated by the engine when the task is
ready; a false one skips the task (WhenFalse), which its dependants take as done; one that cannot
be evaluated fails it (WhenError). docs/semantics.md, "Conditions: when"."""

from __future__ import annotations

from typing import Any

import pytest

from flowrun import when
from flowrun.model import SpecError, parse_spec
from flowrun.references import Context
from tests.unit.builders import Sim, at, creates, fail, flow, phases, resource, succeed, task

PARAMS = [{"name": "env", "value": "prod"}]


def run(sim: Sim, *results: tuple[str, str], start: int = 0) -> None:
    """Pass, succeeding the named tasks' pods with the given results, until the run finishes."""
    given = dict(results)
    for second in range(start, start + 20):
        sim.step(at(second))
        for name in sim.cluster.names("Pod"):
            pod = sim.cluster.get("Pod", name)
            task_name = pod["metadata"]["labels"].get("flowrun.dev/task")
            if task_name and not pod.get("status"):
                sim.cluster.set_pod(name, "Succeeded", message=given.get(task_name, ""))
        for name in sim.cluster.names("Deployment"):
            sim.cluster.make_available(name)
        if sim.status["phase"] in ("Succeeded", "Failed", "Cancelled"):
            return
    raise AssertionError(sim.status["message"])


# --- branching ------------------------------------------------------------------------------------


def branching(env: str) -> dict[str, Any]:
    """check -> deploy-prod (env prod) | deploy-dev (env not prod) -> notify; audit reads
    deploy-prod's result."""
    return flow(
        task("check"),
        task("deploy-prod", "check", when=["$(params.env) == 'prod'"]),
        task("deploy-dev", "check", when=["$(params.env) != 'prod'", "$(tasks.check.result) == 'ok'"]),
        task("notify", "deploy-prod", "deploy-dev"),
        task("audit", "deploy-prod", args=["$(tasks.deploy-prod.result)"]),
        params=[{"name": "env", "value": env}],
    )


def test_a_false_condition_skips_the_task_and_its_dependants_still_run() -> None:
    sim = Sim(branching("prod"))
    run(sim, ("check", "ok"), ("deploy-prod", "v42"))
    assert sim.status["phase"] == "Succeeded", sim.status["message"]
    dev = sim.task("deploy-dev")
    assert (dev["phase"], dev["reason"]) == ("Skipped", "WhenFalse")
    assert dev["message"] == "when[0] is false: $(params.env) != 'prod'", "it quotes the condition"
    assert dev["attempts"] == 0 and not sim.cluster.has("Pod", "demo-deploy-dev-1")
    assert phases(sim)["notify"] == "Succeeded", "allSucceeded takes a branch not taken as done"
    assert sim.cluster.get("Pod", "demo-audit-1")["spec"]["containers"][0]["args"] == ["v42"]
    assert sim.status["message"] == "4 succeeded, 1 skipped"
    assert "TaskSkipped" not in sim.event_reasons(), "a branch not taken is no news"


def test_a_task_that_reads_the_result_of_a_task_skipped_by_its_condition_is_skipped_too() -> None:
    sim = Sim(branching("dev"))
    run(sim, ("check", "ok"))
    assert sim.status["phase"] == "Succeeded", sim.status["message"]
    assert phases(sim) == {
        "check": "Succeeded",
        "deploy-prod": "Skipped",
        "deploy-dev": "Succeeded",
        "notify": "Succeeded",
        "audit": "Skipped",
    }
    audit = sim.task("audit")
    assert audit["reason"] == "TriggerNotMet" and "uses the result of deploy-prod" in audit["message"], audit


def test_every_condition_must_hold_and_the_first_false_one_is_quoted() -> None:
    sim = Sim(branching("dev"))
    run(sim, ("check", "not ok"))
    dev = sim.task("deploy-dev")
    assert (dev["phase"], dev["message"]) == ("Skipped", "when[1] is false: $(tasks.check.result) == 'ok'")


def test_a_condition_is_checked_once_the_task_is_ready_not_before() -> None:
    sim = Sim(flow(task("a"), task("b", "a", when=["$(tasks.a.result) == 'go'"])))
    sim.step(at(0))
    assert sim.task("b")["reason"] == "WaitingForUpstream"
    succeed(sim, "a", "go")
    assert creates(sim.step(at(1))) == ["Pod/demo-b-1"]


def test_a_condition_on_an_upstream_phase_handles_a_failure() -> None:
    handler = task("alert", "load", trigger="allDone", when=["$(tasks.load.phase) == 'Failed'"])
    sim = Sim(flow(task("load"), handler))
    sim.step(at(0))
    fail(sim, "load")
    assert creates(sim.step(at(1))) == ["Pod/demo-alert-1"]
    quiet = Sim(flow(task("load"), handler))
    quiet.step(at(0))
    succeed(quiet, "load")
    quiet.step(at(1))
    assert quiet.task("alert")["reason"] == "WhenFalse" and quiet.status["phase"] == "Succeeded"


def test_a_branch_not_taken_is_no_failure_for_any_failed() -> None:
    sim = Sim(flow(task("a", when=["1 > 2"]), task("handler", "a", trigger="anyFailed")))
    sim.step(at(0))
    assert sim.task("handler")["reason"] == "TriggerNotMet" and sim.status["phase"] == "Succeeded"


@pytest.mark.parametrize(
    ("condition", "error"),
    [
        ("int($(tasks.a.result)) > 3", "spec.tasks[1].when[0]: Function 'int' error: string parse error"),
        ("$(tasks.a.result)", "spec.tasks[1].when[0]: must be true or false, not str 'x'"),
        ("$(tasks.a.result) + 1 == 2", "spec.tasks[1].when[0]: Unsupported operation: string + int"),
    ],
)
def test_a_condition_that_cannot_be_evaluated_fails_the_task_naming_it(condition: str, error: str) -> None:
    sim = Sim(flow(task("a"), task("b", "a", when=[condition]), task("c", "b")))
    sim.step(at(0))
    succeed(sim, "a", "x")
    sim.step(at(1))
    b = sim.task("b")
    assert (b["phase"], b["reason"]) == ("Failed", "WhenError") and b["message"].startswith(error), b["message"]
    assert sim.task("c")["reason"] == "UpstreamFailed" and sim.status["phase"] == "Failed"
    assert "TaskFailed" in sim.event_reasons()


def test_a_result_is_compared_as_a_string_whatever_it_holds() -> None:
    """A result is bound to a variable, never pasted into the expression: quotes or `||` in it
    cannot change what the condition says."""
    sneaky = "x' || 'a' == 'a"
    assert when.evaluate("$(tasks.a.result) == 'y'", Context(task_results={"a": sneaky})) is False
    assert when.evaluate("$(tasks.a.result) == \"x' || 'a' == 'a\"", Context(task_results={"a": sneaky}))


def test_conditions_read_numbers_lists_and_json_results_with_cel_functions() -> None:
    values = Context(task_results={"n": "12", "l": '["a","b"]'}, params={"env": "prod"}, task_results_lists={})
    assert when.evaluate("int($(tasks.n.result)) >= 10 && $(params.env) in ['prod', 'staging']", values)
    assert when.evaluate("$(tasks.l.result).startsWith('[') && size($(tasks.l.result)) == 9", values)


def test_a_block_whose_tasks_are_all_skipped_by_their_conditions_is_never_set_up() -> None:
    spec = flow(
        task("a", resources=["db"], when=["$(params.env) == 'dev'"]),
        task("b", resources=["db"], when=["$(params.env) == 'dev'"]),
        task("c", resources=["other"]),
        resources=[resource("db"), resource("other")],
        params=PARAMS,
    )
    sim = Sim(spec)
    run(sim)
    assert sim.status["phase"] == "Succeeded", sim.status["message"]
    assert (sim.res("db")["phase"], sim.res("db")["reason"]) == ("Pending", "NotNeeded")
    assert not any("-db-" in name for name in sim.cluster.created), sim.cluster.created
    assert sim.res("other")["phase"] == "CleanedUp", "a block with a task to run is set up"


def test_a_block_after_a_task_skipped_by_its_condition_is_set_up() -> None:
    spec = flow(
        task("prep", when=["$(params.env) == 'dev'"]),
        task("use", resources=["db"]),
        resources=[resource("db", runAfter=["prep"])],
        params=PARAMS,
    )
    sim = Sim(spec)
    run(sim)
    assert sim.status["phase"] == "Succeeded" and sim.res("db")["phase"] == "CleanedUp", sim.status["message"]


def test_restart_mid_branch_creates_nothing_twice() -> None:
    sim = Sim(branching("prod"))
    sim.step(at(0))
    succeed(sim, "check", "ok")
    sim.step(at(1))
    sim.update(status={})
    outcome = sim.step(at(2))
    assert not set(creates(outcome)) & set(sim.cluster.created)
    assert sim.task("deploy-dev")["reason"] == "WhenFalse"


# --- refused at validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("$(params.env) ==", "not a valid CEL expression: Syntax error"),
        ("'$(params.env)' == 'prod'", "$(params.env) is inside a string literal: write it without quotes"),
        ("env == 'prod'", "unknown name 'env': a condition reads values through $(...) references only"),
        ("$(params.nope) == ''", "$(params.nope) refers to unknown param 'nope'"),
        ("$(tasks.x.result) == ''", "task 'x' is not upstream of 'b'"),
        ("$(resources.db.value) == ''", "a task's when is resolved before its resources are set up"),
        ("$(item) == ''", "a condition is checked once for the task, before its instances"),
        ("$(tasks.a.output) == ''", "malformed reference"),
    ],
)
def test_a_condition_that_is_not_one_is_refused_naming_it(condition: str, message: str) -> None:
    spec = flow(
        task("a"),
        task("x"),
        task("b", "a", when=["true", condition], resources=["db"]),
        resources=[resource("db")],
        params=PARAMS,
    )
    with pytest.raises(SpecError) as error:
        parse_spec(spec)
    assert error.value.field == "spec.tasks[2].when[1]" and message in error.value.message, error.value


def test_a_macro_variable_is_no_unknown_name() -> None:
    assert when.problem("['a', 'b'].exists(e, e == $(params.env))") is None
