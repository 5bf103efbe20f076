"""Random damage to valid specs: the engine answers every one with a status (a spec error naming
a field, or a run), never an internal error, and creates nothing for a spec it refuses."""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowrun.engine import CreateObject, RunInput, TakeLock, decide
from flowrun.locks import LockView, wanted_locks
from flowrun.observed import Observed, observed_from_objects

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
NOW = datetime(2026, 1, 1, tzinfo=UTC)
ODD_VALUES: tuple[Any, ...] = (
    None,
    "",
    0,
    -1,
    2**40,
    1.5,
    True,
    [],
    {},
    "x" * 300,
    "$(",
    "$(params.)",
    "$(tasks.a.result",
    "$(resources.nope.value)",
    "$(tasks.generate.result)",
    "$(params.n-workers)",
    "$(flowrun.uid)",
    "Always",
    "a\nb",
    "UPPER",
    "-leading",
    [None],
    {"name": None},
    "²",
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _damage(spec: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    damaged = copy.deepcopy(spec)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(damaged)[1:])
        parent: Any = damaged  # a dict or a list, by the path
        for step in path[:-1]:
            parent = parent[step]
        key = path[-1]
        action = rng.random()
        if action < 0.3 and isinstance(parent, dict):
            del parent[key]
        elif action < 0.4 and isinstance(parent, list):
            parent.append(copy.deepcopy(parent[key]))  # a duplicate entry (same name)
        else:
            parent[key] = rng.choice(ODD_VALUES)
    return damaged


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_damaged_specs_never_cause_an_internal_error(example: Path) -> None:
    spec = yaml.safe_load(example.read_text())["spec"]
    rng = random.Random(example.stem)  # the same cases on every run
    refused = accepted = 0
    for case in range(300):
        damaged = _damage(spec, rng)
        # The locks it names are free (a semaphore's limit: 1).
        locks = {lock.id: LockView(lock) for lock in wanted_locks(damaged)}
        outcome = decide(RunInput("fuzz", "default", "uid-1", damaged, created_at=NOW), Observed(locks=locks), NOW)
        assert not any(event.reason == "InternalError" for event in outcome.events), (case, damaged, outcome.events)
        conditions = {c["type"]: c for c in outcome.status.get("conditions") or []}
        if conditions["SpecValid"]["status"] == "False":
            refused += 1
            assert conditions["SpecValid"]["message"].startswith("spec"), conditions["SpecValid"]
            assert not outcome.actions
            continue
        # Accepted: carry the run on for a few passes, every created child observed as existing.
        status = outcome.status
        existing = [action.manifest for action in outcome.actions if isinstance(action, (CreateObject, TakeLock))]
        assert existing, "an accepted run starts something (or takes its lock first)"
        for _ in range(3):
            outcome = decide(
                RunInput("fuzz", "default", "uid-1", damaged, status=status, created_at=NOW),
                replace(observed_from_objects(existing), locks=locks),
                NOW,
            )
            assert not any(event.reason == "InternalError" for event in outcome.events), (case, damaged, outcome.events)
            existing += [a.manifest for a in outcome.actions if isinstance(a, (CreateObject, TakeLock))]
            status = outcome.status
        accepted += 1
    assert refused > 0 and accepted > 0  # the damage reaches the validation, and runs still start
