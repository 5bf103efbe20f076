from datetime import timedelta

from flowrun.observed import (
    ContainerStatus,
    DeploymentCondition,
    JobCondition,
    ObservedObject,
    ObservedService,
    Terminated,
    observed_from_objects,
)
from tests.unit.builders import T0

LABELS = {"flowrun.dev/flowrun-uid": "u"}


def test_sorts_raw_objects_by_kind_and_reads_their_status() -> None:
    observed = observed_from_objects(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "labels": LABELS, "deletionTimestamp": "2024-05-01T12:00:00Z"},
                "status": {
                    "phase": "Failed",
                    "reason": "DeadlineExceeded",
                    "message": "too slow",
                    "startTime": "2024-05-01T12:00:00Z",
                    "containerStatuses": [
                        {
                            "name": "main",
                            "state": {
                                "terminated": {
                                    "exitCode": 2,
                                    "reason": "Error",
                                    "message": "boom",
                                    "startedAt": "2024-05-01T12:00:00Z",
                                    "finishedAt": "2024-05-01T12:00:05Z",
                                }
                            },
                        },
                        {"name": "side", "state": {"running": {"startedAt": "2024-05-01T12:00:01Z"}}},
                    ],
                },
            },
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "j", "labels": LABELS},
                "status": {
                    "conditions": [
                        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "m"}
                    ],
                    "failed": 1,
                },
            },
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "d", "labels": LABELS},
                "spec": {"replicas": 3},
                "status": {
                    "availableReplicas": 2,
                    "readyReplicas": 2,
                    "updatedReplicas": 3,
                    "conditions": [{"type": "Available", "status": "False"}],
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "s", "labels": LABELS},
                "spec": {"clusterIP": "10.0.0.1"},
            },
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": LABELS}},
        ]
    )
    pod = observed.pods[0]
    assert (pod.name, pod.phase, pod.deleting, pod.reason, pod.message, pod.start_time) == (
        "p",
        "Failed",
        True,
        "DeadlineExceeded",
        "too slow",
        T0,
    )
    assert pod.finished
    assert pod.containers == (
        ContainerStatus("main", Terminated(2, "Error", "boom", T0, T0 + timedelta(seconds=5))),
        ContainerStatus("side", None, T0 + timedelta(seconds=1)),
    )
    job = observed.jobs[0]
    assert (
        job.failed_condition == JobCondition("Failed", "True", "BackoffLimitExceeded", "m")
        and not job.complete
        and job.failed == 1
    )
    deployment = observed.deployments[0]
    assert (
        deployment.replicas,
        deployment.available_replicas,
        deployment.ready_replicas,
        deployment.updated_replicas,
    ) == (3, 2, 2, 3)
    assert deployment.conditions == (DeploymentCondition("Available", "False"),)
    assert observed.services == (ObservedService("s", LABELS, "10.0.0.1", run="u"),)
    assert observed.others == (ObservedObject("v1", "ConfigMap", "c", LABELS, run="u"),)


def test_missing_fields_get_defaults() -> None:
    observed = observed_from_objects(
        [
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}},
            {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"}},
        ]
    )
    assert observed.pods[0].phase == "Pending" and observed.pods[0].labels == {} and not observed.pods[0].finished
    assert observed.deployments[0].replicas == 1  # the API's default


def test_garbage_is_tolerated() -> None:
    observed = observed_from_objects(
        [None, 3, {"kind": "Pod", "apiVersion": "v1", "metadata": [], "status": {"containerStatuses": "x"}}]
    )
    assert len(observed.pods) == 1 and observed.pods[0].containers == ()
