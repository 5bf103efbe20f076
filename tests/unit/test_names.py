import re
from collections.abc import Callable

import pytest

from flowrun import names

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LONG_RUN = "nightly-summary-of-every-customer-account-in-the-eu-region"  # 57 chars
LONG_TASK = "aggregate-the-results-of-all-partitions"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (names.task_pod_name("demo", "load", 1), "demo-load-1"),
        (names.task_pod_name("demo", "load", 12), "demo-load-12"),
        (names.setup_job_name("demo", "dask"), "demo-dask-setup"),
        (names.deployment_name("demo", "dask", "scheduler"), "demo-dask-scheduler"),
        (names.cleanup_job_name("demo", "dask", 2), "demo-dask-cleanup-2"),
        (names.service_dns_name("demo", "dask", "scheduler", "team"), "demo-dask-scheduler.team.svc"),
    ],
)
def test_short_names_follow_the_design_pattern(name: str, expected: str) -> None:
    assert name == expected


def test_long_pod_name_is_shortened_with_hash_and_keeps_the_attempt() -> None:
    name = names.task_pod_name(LONG_RUN, LONG_TASK, 3)
    assert len(name) <= 63
    assert name.startswith("nightly-summary-of-every-customer-account-in")
    assert re.search(r"-[0-9a-f]{8}-3$", name)


def test_shortened_names_are_stable_and_distinct() -> None:
    first = names.task_pod_name(LONG_RUN, LONG_TASK, 1)
    assert first == names.task_pod_name(LONG_RUN, LONG_TASK, 1)
    assert first != names.task_pod_name(LONG_RUN, LONG_TASK + "x", 1)
    assert first[:-2] != names.task_pod_name(LONG_RUN + "x", LONG_TASK, 1)[:-2]


@pytest.mark.parametrize(
    "make",
    [
        lambda: names.task_pod_name(LONG_RUN, LONG_TASK, 100),
        lambda: names.setup_job_name(LONG_RUN, LONG_TASK),
        lambda: names.cleanup_job_name(LONG_RUN, LONG_TASK, 7),
        lambda: names.deployment_name(LONG_RUN, LONG_TASK, "workers"),
    ],
)
def test_every_generated_name_fits_63_chars(make: Callable[[], str]) -> None:
    assert len(make()) <= 63


@pytest.mark.parametrize("run", ["demo.v2", "2024-run", "a" * 80, "x.y.z-" + "b" * 70])
def test_deployment_and_service_names_are_dns1035_labels(run: str) -> None:
    name = names.deployment_name(run, "dask", "scheduler")
    assert DNS1035.match(name) and len(name) <= 63


def test_rewritten_service_names_do_not_collide() -> None:
    assert names.deployment_name("a.b", "r", "d") != names.deployment_name("a-b", "r", "d")


def test_label_value_shortens_long_flowrun_names_only() -> None:
    assert names.label_value("demo") == "demo"
    long = "x" * 100
    assert len(names.label_value(long)) <= 63
    assert names.label_value(long) == names.label_value(long)
