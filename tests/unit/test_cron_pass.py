"""The CronFlowRun pass and the Flow check against fake Kubes: what is created, cancelled, deleted
and written, in which case the status is not written (a failed action), which runs count."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from flowrun import api
from flowrun.controller.cron_pass import REFUSAL_REQUEUE_SECONDS, CronPass
from flowrun.controller.failures import FAILURE_REQUEUE_SECONDS
from flowrun.controller.flow_check import FlowCheck, checked
from flowrun.cron import OwnedRun
from tests.unit.fakes import NS, FakeKube, api_error, pod_task

NOW = datetime(2026, 12, 1, 12, 0, 30, tzinfo=UTC)
MINUTE = int(datetime(2026, 12, 1, 12, 0, tzinfo=UTC).timestamp()) // 60


class FakeCronKube:
    """What CronPass calls."""

    def __init__(self, policy: str = "Allow", **spec: Any) -> None:
        self.cron: dict[str, Any] | None = {
            "apiVersion": api.API_VERSION,
            "kind": "CronFlowRun",
            "metadata": {
                "name": "nightly",
                "namespace": NS,
                "uid": "cron-uid",
                "generation": 1,
                "creationTimestamp": "2026-12-01T11:00:00Z",
            },
            "spec": {
                "schedule": "* * * * *",
                "concurrencyPolicy": policy,
                "flowRunTemplate": {"spec": {"flowRef": {"name": "etl"}}},
                **spec,
            },
            "status": {"lastScheduleTime": "2026-12-01T11:59:00Z"},
        }
        self.created: list[dict[str, Any]] = []
        self.create_error: ApiException | None = None
        self.exists = False
        self.patched: list[tuple[str, Mapping[str, Any]]] = []
        self.deleted: list[str] = []
        self.statuses: list[dict[str, Any]] = []
        self.events: list[tuple[str, str]] = []

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.cron)

    def create_flowrun(self, manifest: Mapping[str, Any]) -> bool:
        if self.create_error is not None:
            raise self.create_error
        self.created.append(dict(manifest))
        return not self.exists

    def patch_flowrun(self, namespace: str, name: str, patch: Mapping[str, Any]) -> None:
        self.patched.append((name, patch))

    def delete_flowrun(self, namespace: str, name: str) -> None:
        self.deleted.append(name)

    def patch_object_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        assert self.cron is not None
        self.statuses.append(dict(status))
        merged = {**(self.cron.get("status") or {}), **status}  # a merge patch
        self.cron["status"] = {k: v for k, v in merged.items() if v is not None}

    def post_event(self, involved: Mapping[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason))


def crons(kube: FakeCronKube) -> CronPass:
    return CronPass(kube, clock=lambda: NOW)


def owned(name: str, phase: str, minute: int, owner: str = "cron-uid") -> tuple[str, OwnedRun]:
    return owner, OwnedRun(name, phase, datetime.fromtimestamp(minute * 60, UTC))


def test_a_due_run_is_created_recorded_and_not_created_again() -> None:
    kube = FakeCronKube()
    result = crons(kube).run(NS, "nightly", [])
    assert [m["metadata"]["name"] for m in kube.created] == [f"nightly-{MINUTE}"]
    assert kube.created[0]["metadata"]["ownerReferences"][0]["uid"] == "cron-uid"
    assert kube.statuses[-1]["lastScheduleTime"] == "2026-12-01T12:00:00Z"
    assert kube.events == [("Normal", "RunCreated")]
    assert result.requeue_after == 30.0  # the next minute
    crons(kube).run(NS, "nightly", [owned(f"nightly-{MINUTE}", "Running", MINUTE)])
    assert len(kube.created) == 1 and kube.events == [("Normal", "RunCreated")]


def test_already_exists_is_success() -> None:
    kube = FakeCronKube()
    kube.exists = True  # created by a pass whose status write was lost
    crons(kube).run(NS, "nightly", [])
    assert kube.statuses[-1]["lastScheduleTime"] == "2026-12-01T12:00:00Z"


def test_a_failed_create_writes_no_status_and_is_reported_once() -> None:
    kube = FakeCronKube()
    kube.create_error = api_error(500, "Internal Server Error", "etcd is slow")
    passes = crons(kube)
    assert passes.run(NS, "nightly", []).requeue_after == FAILURE_REQUEUE_SECONDS
    assert passes.run(NS, "nightly", []).requeue_after == FAILURE_REQUEUE_SECONDS
    assert kube.statuses == [] and kube.events == [("Warning", "ActionFailed")]
    kube.create_error = api_error(403, "Forbidden", "flowruns is forbidden")
    assert passes.run(NS, "nightly", []).requeue_after == REFUSAL_REQUEUE_SECONDS
    kube.create_error = None
    passes.run(NS, "nightly", [])
    assert kube.statuses and kube.events[-1] == ("Normal", "RunCreated")


def health(status: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    kinds = ("Ready", "Reconciling", "Stalled")
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"] if c["type"] in kinds}


def test_a_refused_run_stalls_the_cron_flow_run_saying_why_until_a_run_is_created() -> None:
    kube = FakeCronKube()
    assert kube.cron is not None
    kube.create_error = api_error(403, "Forbidden", 'flowruns.flowrun.dev is forbidden: exceeded quota "runs"')
    passes = crons(kube)
    assert passes.run(NS, "nightly", []).requeue_after == REFUSAL_REQUEUE_SECONDS
    status = kube.cron["status"]
    assert health(status) == {
        "Ready": ("False", "RunRefused"),
        "Reconciling": ("False", "RunRefused"),
        "Stalled": ("True", "RunRefused"),
    }
    stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
    assert (
        stalled["message"]
        == status["message"]
        == (
            f'creating FlowRun nightly-{MINUTE}: 403 flowruns.flowrun.dev is forbidden: exceeded quota "runs"; '
            "trying again in 60s"
        )
    )
    assert status["lastScheduleTime"] == "2026-12-01T11:59:00Z", "no run exists for 12:00: nothing else is written"
    assert kube.events == [("Warning", "ActionFailed")]
    passes.run(NS, "nightly", [])
    assert len(kube.statuses) == 1, "the same refusal writes nothing new"
    kube.create_error = None
    passes.run(NS, "nightly", [])
    assert health(kube.cron["status"])["Ready"] == ("True", "Scheduling")
    assert kube.cron["status"]["lastScheduleTime"] == "2026-12-01T12:00:00Z"


def test_a_transient_failure_to_create_does_not_stall() -> None:
    kube = FakeCronKube()
    kube.create_error = api_error(500, "Internal Server Error", "etcd is slow")
    crons(kube).run(NS, "nightly", [])
    assert kube.statuses == []


def test_replace_cancels_the_active_run_and_history_deletes_only_owned_runs() -> None:
    kube = FakeCronKube("Replace", successfulRunsHistoryLimit=1)
    runs = [
        owned("nightly-1", "Succeeded", MINUTE - 3),
        owned("nightly-2", "Succeeded", MINUTE - 2),
        owned("nightly-3", "Succeeded", MINUTE - 4, owner="someone-else"),  # labelled by hand
        owned(f"nightly-{MINUTE - 1}", "Running", MINUTE - 1),
    ]
    crons(kube).run(NS, "nightly", runs)
    assert [m["metadata"]["name"] for m in kube.created] == [f"nightly-{MINUTE}"]
    assert kube.patched == [(f"nightly-{MINUTE - 1}", {"spec": {"cancel": True}})]
    assert kube.deleted == ["nightly-1"]


def test_a_cron_flow_run_gone_or_being_deleted_ends_its_passes() -> None:
    kube = FakeCronKube()
    assert kube.cron is not None
    kube.cron["metadata"]["deletionTimestamp"] = "2026-12-01T12:00:00Z"
    assert crons(kube).run(NS, "nightly", []).gone
    kube.cron = None
    assert crons(kube).run(NS, "nightly", []).gone
    assert kube.created == [] and kube.statuses == []


# --- the Flow check ----------------------------------------------------------------------------


class FakeFlowKube(FakeKube):
    def __init__(self, flow_spec: dict[str, Any], dry_run_error: ApiException | None = None) -> None:
        super().__init__({}, {})
        self.flow_object: dict[str, Any] = {
            "apiVersion": api.API_VERSION,
            "kind": "Flow",
            "metadata": {"name": "etl", "namespace": NS, "uid": "flow-uid", "generation": 3},
            "spec": flow_spec,
        }
        self.dry_run_error = dry_run_error
        self.dry_runs: list[str] = []

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.flow_object)

    def dry_run_create(self, manifest: Mapping[str, Any]) -> None:
        self.dry_runs.append(manifest["metadata"]["name"])
        if self.dry_run_error is not None:
            raise self.dry_run_error

    def patch_object_status(self, kind: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.calls.append("patch_object_status")
        self.flow_object["status"] = dict(status)


def checker(kube: FakeFlowKube) -> FlowCheck:
    return FlowCheck(kube, kube.passes())


def test_a_valid_flow_is_dry_run_and_marked_valid_once_per_generation() -> None:
    kube = FakeFlowKube({"params": [{"name": "n"}], "tasks": [pod_task("a")]})
    assert checker(kube).check(NS, "etl") is False  # written; checked again next time
    assert kube.dry_runs == ["etl-a-1"]
    status = kube.flow_object["status"]
    assert (status["observedGeneration"], status["taskCount"], status["conditions"][0]["status"]) == (3, 1, "True")
    assert health(status) == {
        "Ready": ("True", "Valid"),
        "Reconciling": ("False", "Valid"),
        "Stalled": ("False", "Valid"),
    }
    assert next(c for c in status["conditions"] if c["type"] == "Ready")["message"] == (
        "the Flow passes every check of a run's spec"
    )
    assert checked(kube.flow_object)
    assert checker(kube).check(NS, "etl") is True
    assert kube.dry_runs == ["etl-a-1"] and kube.calls == ["patch_object_status"] and kube.events == []


def test_a_flow_the_api_server_refuses_is_invalid_naming_the_field_with_one_warning() -> None:
    kube = FakeFlowKube({"tasks": [pod_task("a")]}, api_error(422, "Unprocessable Entity", "volumeMounts: Not found"))
    checker(kube).check(NS, "etl")
    condition = kube.flow_object["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    assert condition["message"].startswith("spec.tasks[0]") and "Not found" in condition["message"]
    assert health(kube.flow_object["status"])["Stalled"] == ("True", "InvalidSpec")
    stalled = next(c for c in kube.flow_object["status"]["conditions"] if c["type"] == "Stalled")
    assert stalled["message"] == condition["message"]
    assert [e[1] for e in kube.events] == ["InvalidSpec"]
    kube.flow_object["metadata"]["generation"] = 4  # edited, still refused: no second warning
    checker(kube).check(NS, "etl")
    assert kube.flow_object["status"]["observedGeneration"] == 4 and [e[1] for e in kube.events] == ["InvalidSpec"]


def test_a_flow_an_older_operator_checked_is_checked_again_for_its_ready_condition() -> None:
    kube = FakeFlowKube({"tasks": [pod_task("a")]})
    older = {"type": "SpecValid", "status": "True", "reason": "Valid", "message": "", "observedGeneration": 3}
    kube.flow_object["status"] = {"observedGeneration": 3, "conditions": [older]}
    assert not checked(kube.flow_object)
    checker(kube).check(NS, "etl")
    assert health(kube.flow_object["status"])["Ready"] == ("True", "Valid") and checked(kube.flow_object)


def test_a_flow_not_checked_yet_reads_generation_0() -> None:
    kube = FakeFlowKube({"tasks": [pod_task("a")]})
    kube.flow_object["status"] = {"observedGeneration": 0}  # the CRD's default before the first check
    assert not checked(kube.flow_object)


def test_a_flow_with_a_spec_error_is_not_dry_run() -> None:
    kube = FakeFlowKube({"tasks": [pod_task("a", runAfter=["nope"])]})
    checker(kube).check(NS, "etl")
    assert kube.dry_runs == []
    assert kube.flow_object["status"]["message"].startswith("spec.tasks[0].runAfter[0]")


def test_a_cronflowrun_or_a_flow_deleted_while_its_pass_runs_ends_the_pass_quietly() -> None:
    kube = FakeCronKube()

    def gone(*_: Any) -> None:
        raise api_error(404, "Not Found", "not found")

    kube.patch_object_status = gone  # type: ignore[method-assign,assignment]
    assert crons(kube).run(NS, "nightly", []).gone
    flow_kube = FakeFlowKube({"tasks": [pod_task("a")]})
    flow_kube.patch_object_status = gone  # type: ignore[method-assign,assignment]
    assert checker(flow_kube).check(NS, "etl") is True  # nothing left to do
