"""Leader election's pure decisions (lease.py): what a replica does with the Lease it read, and the
Lease it writes, in every case."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from flowrun.lease import Record, Step, micro_time, next_step, record_of, released, written

ME, OTHER = "operator-a", "operator-b"
NOW = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)


def held_by(holder: str, lease_seconds: int = 15, transitions: int = 2) -> Record:
    return Record(holder, lease_seconds, "2026-03-01T11:00:00.000000Z", "2026-03-01T11:59:59.000000Z", transitions, "7")


@pytest.mark.parametrize(
    ("record", "since", "now", "last", "step"),
    [
        # No Lease: create it, unless another replica held it a moment ago (it may still act).
        (None, 0.0, 100.0, None, Step.CREATE),
        (None, 100.0, 114.9, held_by(OTHER), Step.WAIT),
        (None, 100.0, 115.0, held_by(OTHER), Step.CREATE),
        (None, 100.0, 100.0, held_by(ME), Step.CREATE),
        (None, 100.0, 100.0, held_by(""), Step.CREATE),
        # Held by this replica: renewed, even if this replica's clock says it expired.
        (held_by(ME), 100.0, 100.0, None, Step.RENEW),
        (held_by(ME), 100.0, 500.0, None, Step.RENEW),
        # Held by another: waited for until it has been unchanged for its leaseDurationSeconds.
        (held_by(OTHER), 100.0, 100.0, None, Step.WAIT),
        (held_by(OTHER), 100.0, 114.999, None, Step.WAIT),
        (held_by(OTHER), 100.0, 115.0, None, Step.TAKE),
        (held_by(OTHER, lease_seconds=60), 100.0, 159.0, None, Step.WAIT),
        (held_by(OTHER, lease_seconds=0), 100.0, 100.0, None, Step.TAKE),  # no duration: expired
        # Released (no holder): taken at once.
        (held_by(""), 100.0, 100.0, None, Step.TAKE),
    ],
)
def test_next_step(record: Record | None, since: float, now: float, last: Record | None, step: Step) -> None:
    assert next_step(record, ME, since, now, last) is step


def test_a_lease_is_read_leniently() -> None:
    lease = {
        "metadata": {"name": "l", "namespace": "ops", "resourceVersion": "42"},
        "spec": {
            "holderIdentity": OTHER,
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-03-01T11:00:00.000000Z",
            "renewTime": "2026-03-01T11:59:59.000000Z",
            "leaseTransitions": 3,
        },
    }
    assert record_of(lease) == Record(OTHER, 15, "2026-03-01T11:00:00.000000Z", "2026-03-01T11:59:59.000000Z", 3, "42")
    assert record_of({"metadata": {}}) == Record("", 0, None, None, 0, "")
    garbage = {"spec": {"holderIdentity": None, "leaseDurationSeconds": -5, "leaseTransitions": "x"}}
    assert record_of(garbage) == Record("", 0, None, None, 0, "")


def test_a_renewal_changes_the_version_a_standby_watches() -> None:
    before = held_by(OTHER)
    after = Record(OTHER, 15, before.acquired, "2026-03-01T12:00:01.000000Z", 2, "8")
    assert before.version() != after.version()
    # A write that changes nothing leader election reads (a label, say) is not a renewal.
    assert before.version() == Record(*before.version(), "9").version()


def test_micro_time() -> None:
    assert micro_time(NOW) == "2026-03-01T12:00:00.250000Z"


def test_a_created_lease_is_held_by_this_replica_with_no_transition() -> None:
    body = written(Step.CREATE, None, "ops", "flowrun-operator", ME, 15, NOW)
    assert body == {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "flowrun-operator", "namespace": "ops"},
        "spec": {
            "holderIdentity": ME,
            "leaseDurationSeconds": 15,
            "acquireTime": "2026-03-01T12:00:00.250000Z",
            "renewTime": "2026-03-01T12:00:00.250000Z",
            "leaseTransitions": 0,
        },
    }


def test_a_renewal_keeps_the_acquire_time_and_the_transitions_and_is_conditional() -> None:
    body = written(Step.RENEW, held_by(ME), "ops", "flowrun-operator", ME, 15, NOW)
    assert body["metadata"]["resourceVersion"] == "7"
    assert body["spec"] == {
        "holderIdentity": ME,
        "leaseDurationSeconds": 15,
        "acquireTime": "2026-03-01T11:00:00.000000Z",
        "renewTime": "2026-03-01T12:00:00.250000Z",
        "leaseTransitions": 2,
    }


@pytest.mark.parametrize("holder", [OTHER, ""])
def test_a_take_over_counts_a_transition_and_is_conditional(holder: str) -> None:
    body = written(Step.TAKE, held_by(holder), "ops", "flowrun-operator", ME, 15, NOW)
    assert body["metadata"]["resourceVersion"] == "7"
    assert body["spec"]["holderIdentity"] == ME
    assert body["spec"]["acquireTime"] == body["spec"]["renewTime"] == "2026-03-01T12:00:00.250000Z"
    assert body["spec"]["leaseTransitions"] == 3


def test_a_released_lease_has_no_holder_and_keeps_the_transitions() -> None:
    body = released(held_by(ME), "ops", "flowrun-operator", NOW)
    assert body["metadata"] == {"name": "flowrun-operator", "namespace": "ops", "resourceVersion": "7"}
    assert "holderIdentity" not in body["spec"]
    assert body["spec"]["leaseDurationSeconds"] == 1 and body["spec"]["leaseTransitions"] == 2
    assert next_step(record_of(body), OTHER, 100.0, 100.0) is Step.TAKE
