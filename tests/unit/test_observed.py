from datetime import timedelta

from flowrun.observed import (
    ContainerStatus,
    DeploymentCondition,
    JobCondition,
    ObservedEndpointSlice,
    ObservedObject,
    ObservedService,
    Terminated,
    Waiting,
    child_key,
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
        ContainerStatus("side", None, T0 + timedelta(seconds=1), running=True),
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


def test_a_pending_pod_carries_why_it_waits_and_when_it_was_created() -> None:
    pod = observed_from_objects(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "creationTimestamp": "2024-05-01T12:00:00Z"},
                "status": {
                    "phase": "Pending",
                    "conditions": [
                        {"type": "Initialized", "status": "False", "reason": "ContainersNotInitialized"},
                        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"},
                    ],
                    "initContainerStatuses": [
                        {"name": "fetch", "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}}}
                    ],
                    "containerStatuses": [{"name": "main", "state": {"waiting": {"reason": "PodInitializing"}}}],
                },
            }
        ]
    ).pods[0]
    assert pod.created_at == T0
    assert pod.not_scheduled == Waiting("Unschedulable", "0/3 nodes")
    assert pod.init_containers == (ContainerStatus("fetch", waiting=Waiting("ErrImagePull", "not found")),)
    assert pod.containers == (ContainerStatus("main", waiting=Waiting("PodInitializing")),)
    assert not any(c.started for c in (*pod.init_containers, *pod.containers))


def test_a_scheduled_pod_is_not_marked_unscheduled_and_a_running_container_has_started() -> None:
    pod = observed_from_objects(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p"},
                "status": {
                    "phase": "Running",
                    "conditions": [{"type": "PodScheduled", "status": "True"}],
                    "containerStatuses": [{"name": "main", "state": {"running": {}}}],
                },
            }
        ]
    ).pods[0]
    assert pod.not_scheduled is None and pod.created_at is None
    assert pod.containers[0].started and pod.containers[0].running_started_at is None


def test_malformed_waiting_states_and_conditions_are_tolerated() -> None:
    pod = observed_from_objects(
        [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "p", "creationTimestamp": "yesterday"},
                "status": {
                    "conditions": ["x", {"type": "PodScheduled", "status": "False", "reason": 3}],
                    "initContainerStatuses": {"not": "a list"},
                    "containerStatuses": [{"name": "main", "state": {"waiting": "x"}}],
                },
            }
        ]
    ).pods[0]
    assert pod.created_at is None and pod.init_containers == ()
    assert pod.not_scheduled == Waiting("", "")
    assert pod.containers == (ContainerStatus("main", waiting=Waiting()),)


def test_an_endpoint_slice_names_its_service_and_counts_its_ready_endpoints() -> None:
    labels = {**LABELS, "kubernetes.io/service-name": "run-r-db"}
    ready, not_ready = {"ready": True, "serving": True}, {"ready": False, "serving": True, "terminating": True}
    observed = observed_from_objects(
        [
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "run-r-db-x7k2p",
                    "labels": labels,
                    "deletionTimestamp": "2024-05-01T12:00:00Z",
                    # Its owner is its Service: whose run it is, its Service's labels say.
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Service", "name": "run-r-db", "controller": True}
                    ],
                },
                "addressType": "IPv4",
                "endpoints": [
                    {"addresses": ["10.0.0.1"], "conditions": ready},
                    {"addresses": ["10.0.0.2"], "conditions": not_ready},
                    {"addresses": ["10.0.0.3"], "conditions": {"serving": True}},
                    {"addresses": ["10.0.0.4"]},
                ],
            }
        ]
    )
    assert observed.endpoint_slices == (ObservedEndpointSlice("run-r-db-x7k2p", labels, "run-r-db", 3, True, "u"),)
    assert child_key(observed.endpoint_slices[0]) == ("discovery.k8s.io/v1", "EndpointSlice", "run-r-db-x7k2p")


def test_an_endpoint_slice_without_endpoints_or_with_garbage_has_no_ready_endpoint() -> None:
    kind = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice"}
    observed = observed_from_objects(
        [
            {**kind, "metadata": {"name": "a"}},  # the controller writes `endpoints: null` while it has none
            {**kind, "metadata": {"name": "b", "labels": {"kubernetes.io/service-name": 7}}, "endpoints": "x"},
            {**kind, "metadata": {"name": "c"}, "endpoints": [3, {"conditions": [True]}, {"conditions": {"ready": 1}}]},
        ]
    )
    assert [(s.name, s.service, s.ready_endpoints) for s in observed.endpoint_slices] == [
        ("a", "", 0),
        ("b", "", 0),
        ("c", "", 1),  # conditions that are not a mapping count as absent: ready, as the API reads it
    ]
