"""The status byte budget (engine/budget.py), over random runs: a status that fits is left as it
is; one that does not is made to fit whenever the least status fits, by cutting logs, then
messages of finished tasks, then unused results, then moving used results to ConfigMaps, never
cutting a result another task uses; deterministically, the tasks that finished first first."""

from __future__ import annotations

import copy
import random
from typing import Any

import pytest

from flowrun.engine.budget import LOG_KEEP, fit, minimal_weight, referenced_results, weight

RUN = "run"


def status_of(rng: random.Random, tasks: int) -> dict[str, Any]:
    entries = {}
    for i in range(tasks):
        phase = rng.choice(["Succeeded", "Failed", "Running", "Pending", "Skipped"])
        finished = f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z" if phase in ("Succeeded", "Failed", "Skipped") else None
        entries[f"t{i}"] = {
            "phase": phase,
            "reason": "Error" if phase == "Failed" else phase,
            "message": "m" * rng.choice([0, 40, 4000, 8000]),
            "attempts": 1,
            "podName": f"{RUN}-t{i}-1",
            "exitCode": 1 if phase == "Failed" else 0,
            "startedAt": "2026-01-01T00:00:00Z",
            "finishedAt": finished,
            "result": "r" * rng.choice([0, 10, 4096]) if phase == "Succeeded" else None,
            "resultFrom": None,
            "logs": "l" * rng.choice([0, 4096]) if phase == "Failed" else None,
            "nextAttemptAt": None,
        }
    return {"phase": "Running", "message": "running", "conditions": [], "tasks": entries, "resources": {}}


@pytest.mark.parametrize("seed", range(40))
def test_random_statuses_fit_their_budget_and_never_lose_a_used_result(seed: int) -> None:
    rng = random.Random(seed)
    tasks = rng.choice([1, 20, 200, 1000])
    status = status_of(rng, tasks)
    referenced = frozenset(f"t{i}" for i in range(tasks) if rng.random() < 0.3)
    budget = rng.randint(minimal_weight(tasks, 0) + 5000 * (tasks > 100) * 0, max(minimal_weight(tasks, 0), 1_000_000))
    budget = max(budget, minimal_weight(tasks, 0))
    before = copy.deepcopy(status)
    fitted = fit(status, budget, RUN, referenced)
    assert status == before  # the input is not changed
    assert fitted.fits, (seed, weight(fitted.status), budget)
    assert weight(fitted.status) <= budget
    assert fit(before, budget, RUN, referenced) == fitted  # deterministic
    for name, entry in fitted.status["tasks"].items():
        original = before["tasks"][name]
        if name in referenced and original["result"]:
            kept = entry["result"] == original["result"]
            moved = fitted.moved.get(name) == (f"{RUN}-{name}-result", original["result"])
            assert kept or (moved and entry["resultFrom"] == f"ConfigMap/{RUN}-{name}-result"), name
        for key in ("phase", "reason", "attempts", "podName", "startedAt", "finishedAt", "exitCode"):
            assert entry[key] == original[key]


def test_a_status_that_fits_is_left_as_it_is() -> None:
    status = status_of(random.Random(1), 10)
    fitted = fit(status, 10_000_000, RUN, frozenset())
    assert fitted.status == status and fitted.moved == {}


def test_logs_are_cut_first_the_earliest_finished_first() -> None:
    status = status_of(random.Random(2), 0)
    for i in range(3):
        status["tasks"][f"t{i}"] = {
            "phase": "Failed",
            "message": "",
            "finishedAt": f"2026-01-01T00:00:0{i}Z",
            "logs": "l" * 4096,
            "result": None,
        }
    budget = weight(status) - 2000  # one cut is enough
    fitted = fit(status, budget, RUN, frozenset())
    logs = [fitted.status["tasks"][f"t{i}"]["logs"] for i in range(3)]
    assert logs[0].startswith(f"(cut to the last {LOG_KEEP} bytes: the status is kept under 1 MiB;")
    assert logs[0].endswith("l" * LOG_KEEP) and logs[1] == logs[2] == "l" * 4096


def test_an_unused_result_is_dropped_with_a_note_and_a_used_one_moves() -> None:
    entry = {
        "phase": "Succeeded",
        "message": "",
        "finishedAt": "2026-01-01T00:00:00Z",
        "podName": "p",
        "result": "x" * 4000,
    }
    status = {
        "phase": "Running",
        "tasks": {"unused": dict(entry), "used": dict(entry, finishedAt="2026-01-01T00:00:01Z")},
    }
    fitted = fit(status, weight(status) - 7000, RUN, frozenset({"used"}))
    unused, used = fitted.status["tasks"]["unused"], fitted.status["tasks"]["used"]
    assert unused["result"] is None
    assert unused["message"] == (
        "result of 4000 bytes not kept (the status is kept under 1 MiB, no task uses it): see the termination"
        " message of pod p"
    )
    assert (used["result"], used["resultFrom"]) == (None, f"ConfigMap/{RUN}-used-result")
    assert fitted.moved == {"used": (f"{RUN}-used-result", "x" * 4000)}


def test_the_results_a_spec_references() -> None:
    spec = {
        "tasks": [
            {
                "name": "b",
                "template": {
                    "spec": {"containers": [{"args": ["$(tasks.a.result)", "$(tasks.c-1.result) $(params.x)"]}]}
                },
            }
        ]
    }
    assert referenced_results(spec) == frozenset({"a", "c-1"})


def test_logs_cut_once_are_dropped_when_the_status_still_does_not_fit() -> None:
    """Cutting every log to its last LOG_KEEP bytes is not always enough: the second step drops
    what the first kept (it used to leave a log it had cut alone)."""
    status = status_of(random.Random(3), 0)
    for i in range(3):
        status["tasks"][f"t{i}"] = {"phase": "Failed", "message": "", "finishedAt": "2026-01-01T00:00:00Z"}
        status["tasks"][f"t{i}"]["logs"] = "l" * 4096
    fitted = fit(status, weight(status) - 3 * 4096 + 600, RUN, frozenset())
    assert fitted.fits
    kept = [fitted.status["tasks"][f"t{i}"]["logs"] for i in range(3)]
    assert all(k.startswith("(cut to none of them: ") for k in kept), kept


def test_an_instances_result_moves_to_a_configmap_of_its_own_when_its_task_results_are_used() -> None:
    entry = {"phase": "Succeeded", "message": "", "finishedAt": "2026-01-01T00:00:00Z", "result": "x" * 4000}
    status = {"tasks": {"work-3": {**entry, "instanceOf": "work", "index": 3}, "other": dict(entry)}}
    fitted = fit(status, weight(status) - 7000, RUN, referenced_results({"args": ["$(tasks.work.results)"]}))
    assert fitted.moved == {"work-3": (f"{RUN}-work-3-result", "x" * 4000)}
    assert fitted.status["tasks"]["other"]["result"] is None, "no task uses it: dropped"
