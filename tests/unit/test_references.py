import re

import pytest

from flowrun.references import (
    Context,
    Reference,
    ReferenceSyntaxError,
    RefKind,
    UnresolvedReference,
    find_references,
    substitute,
)

CONTEXT = Context(
    params={"n-workers": "3", "out_path": "/data/x.csv"},
    flowrun={"name": "demo", "namespace": "team", "uid": "u-1"},
    task_results={"load": "s3://bucket/part"},
    resource_values={"dask": "tcp://sched:8786"},
    services={("dask", "scheduler"): "demo-dask-scheduler.team.svc"},
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(params.n-workers)", [Reference("$(params.n-workers)", RefKind.PARAM, "n-workers")]),
        ("$(params.out_path)", [Reference("$(params.out_path)", RefKind.PARAM, "out_path")]),
        ("$(tasks.load.result)", [Reference("$(tasks.load.result)", RefKind.TASK_RESULT, "load")]),
        ("$(resources.dask.value)", [Reference("$(resources.dask.value)", RefKind.RESOURCE_VALUE, "dask")]),
        (
            "$(resources.dask.services.scheduler)",
            [Reference("$(resources.dask.services.scheduler)", RefKind.SERVICE, "dask", "scheduler")],
        ),
        ("$(flowrun.uid)", [Reference("$(flowrun.uid)", RefKind.FLOWRUN, "uid")]),
        (
            "a $(flowrun.name) b $(flowrun.namespace)",
            [
                Reference("$(flowrun.name)", RefKind.FLOWRUN, "name"),
                Reference("$(flowrun.namespace)", RefKind.FLOWRUN, "namespace"),
            ],
        ),
    ],
)
def test_finds_well_formed_references(text: str, expected: list[Reference]) -> None:
    assert find_references(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "echo $(date)",  # shell command substitution
        "$(HOME)/bin",  # Kubernetes' own env expansion
        "$(param.x)",  # not one of our prefixes
        "$(paramsx)",
        "$$(params.x)",  # Kubernetes' escape for a literal $(
        "plain text",
        "$ (params.x)",
    ],
)
def test_text_that_is_not_a_reference_is_left_alone(text: str) -> None:
    assert find_references(text) == []
    assert substitute(text, CONTEXT) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(params.x.y)", "expected $(params.NAME)"),
        ("$(params)", "expected $(params.NAME)"),
        ("$(params.9x)", "expected $(params.NAME)"),
        ("$(tasks.load)", "expected $(tasks.NAME.result)"),
        ("$(tasks.Load.result)", "expected $(tasks.NAME.result)"),
        ("$(tasks.load.output)", "expected $(tasks.NAME.result)"),
        ("$(resources.dask)", "$(resources.NAME.services.DEPLOYMENT)"),
        ("$(resources.dask.services)", "$(resources.NAME.services.DEPLOYMENT)"),
        ("$(resources.dask.value.x)", "$(resources.NAME.services.DEPLOYMENT)"),
        ("$(flowrun.id)", "$(flowrun.uid)"),
        ("$(params.a b)", "expected $(params.NAME)"),
        ("x $(tasks.load.result", "unterminated reference"),
    ],
)
def test_malformed_references_are_errors(text: str, expected: str) -> None:
    with pytest.raises(ReferenceSyntaxError, match=re.escape(expected)):
        find_references(text)


def test_substitute_replaces_every_reference_and_keeps_the_rest() -> None:
    text = "--in=$(tasks.load.result) --n=$(params.n-workers) $(date) tcp://$(resources.dask.services.scheduler):8786"
    assert substitute(text, CONTEXT) == "--in=s3://bucket/part --n=3 $(date) tcp://demo-dask-scheduler.team.svc:8786"


def test_escaped_reference_is_kept_for_kubernetes_to_unescape() -> None:
    assert substitute("$$(params.n-workers)=$(params.n-workers)", CONTEXT) == "$$(params.n-workers)=3"


def test_three_dollars_are_an_escaped_dollar_then_a_reference() -> None:
    assert substitute("$$$(params.n-workers)", CONTEXT) == "$$3"


def test_a_reference_without_a_value_raises() -> None:
    with pytest.raises(UnresolvedReference):
        substitute("$(params.missing)", CONTEXT)
