"""The flowrun.dev API's vocabulary, in one place for the engine, the controllers and the plugin:
group, version, kinds and plurals; the labels, annotations and finalizer the operator puts on
objects; the phases and reasons a status uses (docs/semantics.md describes each); and the engine's
fixed limits."""

from __future__ import annotations

GROUP = "flowrun.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "FlowRun"
PLURAL = "flowruns"
FLOW_KIND = "Flow"
FLOW_PLURAL = "flows"
CRON_KIND = "CronFlowRun"
CRON_PLURAL = "cronflowruns"

FINALIZER = "flowrun.dev/cleanup"
LEASE_NAME = "flowrun-operator"  # the Lease of leader election, by default (in the operator's namespace)
SKIP_CLEANUP_ANNOTATION = "flowrun.dev/skip-cleanup"
SCHEDULED_TIME_ANNOTATION = "flowrun.dev/scheduled-time"  # on a CronFlowRun's run: the time it is for

LABEL_FLOWRUN = "flowrun.dev/flowrun"
LABEL_UID = "flowrun.dev/flowrun-uid"
LABEL_ROLE = "flowrun.dev/role"
LABEL_TASK = "flowrun.dev/task"
LABEL_RESOURCE = "flowrun.dev/resource"
LABEL_ATTEMPT = "flowrun.dev/attempt"
LABEL_DEPLOYMENT = "flowrun.dev/deployment"
LABEL_INSTANCE_OF = "flowrun.dev/instance-of"  # on an instance's pod of a forEach task: the task's name
LABEL_CRON = "flowrun.dev/cron"  # on a CronFlowRun's run: the CronFlowRun's name (as a label value)
LABEL_LOCK = "flowrun.dev/lock"  # on a lock's Lease: its lock, as a label value (names.lock_label)
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "flowrun-operator"

# --- objects declared in Git (gitops.py) ---------------------------------------------------------

# What a GitOps tool puts on every object it applies: (tool, label or annotation, which of the two).
# A FlowRun carrying one is never deleted by its TTL (the tool would create it again and it would
# run again), nor is one carrying DECLARED_IN_GIT_ANNOTATION="true" (any other tool).
GITOPS_MARKS = (
    ("Flux", "kustomize.toolkit.fluxcd.io/name", "label"),
    ("Flux", "helm.toolkit.fluxcd.io/name", "label"),
    ("Argo CD", "argocd.argoproj.io/tracking-id", "annotation"),
    ("Argo CD", "argocd.argoproj.io/instance", "label"),
)
DECLARED_IN_GIT_ANNOTATION = "flowrun.dev/declared-in-git"
# The EndpointSlice controller's slices of a Service's endpoints: they carry the Service's labels
# and name it in this one.
ENDPOINT_SLICE = ("discovery.k8s.io/v1", "EndpointSlice")
LABEL_SERVICE_NAME = "kubernetes.io/service-name"

ROLE_TASK = "task"
ROLE_SETUP = "setup"
ROLE_CLEANUP = "cleanup"
ROLE_RESULT = "result"  # a ConfigMap holding a task's result that the full status could not hold
ROLE_LOCK = "lock"  # a Lease holding one slot of a lock across runs (docs/semantics.md, "Locks")
# The kind of the objects a task's result moves to when the status cannot hold it (engine/budget.py)
CONFIG_MAP = ("v1", "ConfigMap")

# --- locks across runs (docs/semantics.md, "Locks") ---------------------------------------------

# One coordination.k8s.io Lease per held slot, in the run's namespace, labelled with the role `lock`
# (never mistaken for the Lease of the operator's own leader election, which has no such label).
LEASE = ("coordination.k8s.io/v1", "Lease")
LOCK_ANNOTATION = "flowrun.dev/lock"  # on a lock's Lease: the lock, e.g. mutex/nightly
SLOT_ANNOTATION = "flowrun.dev/slot"  # on a lock's Lease: its slot, 0 to the limit - 1
MUTEX, SEMAPHORE = "mutex", "semaphore"
# The state of a lock in status.locks
HOLDING, WAITING = "Holding", "Waiting"
MAX_SEMAPHORE_LIMIT = 10_000  # a semaphore's limit (its ConfigMap's value) is an integer from 0 to this

# The stored FlowRun (metadata, spec and status, as JSON) never exceeds this (engine/budget.py):
# well under etcd's default request limit of 1.5 MiB.
OBJECT_LIMIT = 1_048_576

# --- phases and reasons of a FlowRun's status --------------------------------------------------

# Task phases (the run's phase is one of PENDING, RUNNING and RUN_FINAL)
PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELLED = (
    "Pending",
    "Running",
    "Succeeded",
    "Failed",
    "Skipped",
    "Cancelled",
)
TASK_PHASES = (PENDING, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELLED)
TERMINAL = (SUCCEEDED, FAILED, SKIPPED, CANCELLED)
RUN_FINAL = (SUCCEEDED, FAILED, CANCELLED)
RERUNNABLE = (FAILED, CANCELLED)  # a run may be rerun (spec.rerunOf) once it has finished without succeeding

# Resource phases
SETTING_UP, READY, SETUP_FAILED = "SettingUp", "Ready", "SetupFailed"
CLEANING_UP, CLEANED_UP, CLEANUP_FAILED = "CleaningUp", "CleanedUp", "CleanupFailed"
RESOURCE_PHASES = (PENDING, SETTING_UP, READY, SETUP_FAILED, CLEANING_UP, CLEANED_UP, CLEANUP_FAILED)

# Reasons a task is skipped or stopped
UPSTREAM_FAILED, TRIGGER_NOT_MET = "UpstreamFailed", "TriggerNotMet"
WHEN_FALSE = "WhenFalse"  # a condition of the task's `when` is false: skipped, not a failure
# A task that fails before it creates a pod: a condition of its `when` cannot be evaluated, its
# forEach list is not a JSON list (or is too long), an item lacks a field a reference reads.
WHEN_ERROR, FOR_EACH_INVALID = "WhenError", "ForEachInvalid"
# A forEach task: its instances run (Running), none to run (Succeeded), some failed (Failed).
INSTANCES_RUNNING, NO_ITEMS, INSTANCES_FAILED = "InstancesRunning", "NoItems", "InstancesFailed"
STOP_CANCELLED, STOP_DELETED, STOP_DEADLINE = "Cancelled", "FlowRunDeleted", "RunDeadlineExceeded"

# Reasons of a task that is not terminal. Running/PodCreating: created, not observed yet.
# Running/RetryBackoff: between attempts, no pod should run.
POD_CREATING, POD_PENDING, POD_RUNNING = "PodCreating", "PodPending", "PodRunning"
RETRY_BACKOFF = "RetryBackoff"
WAITING_UPSTREAM, WAITING_RESOURCES, WAITING_PARALLELISM = (
    "WaitingForUpstream",
    "WaitingForResources",
    "WaitingForParallelism",
)
# A task (or the whole run, in its condition Succeeded) waits for a lock across runs.
WAITING_LOCK = "WaitingForLock"

# Steps of a block in CleaningUp, kept in its `reason`; cleanup.CLEANUP_ORDER says what each
# step does and in which order.
STOPPING_SETUP, CLEANUP_JOB_RUNNING, CLEANUP_JOB_BACKOFF, DELETING_OBJECTS = (
    "StoppingSetup",
    "CleanupJobRunning",
    "CleanupJobBackoff",
    "DeletingObjects",
)
CLEANUP_STEPS = (STOPPING_SETUP, CLEANUP_JOB_RUNNING, CLEANUP_JOB_BACKOFF, DELETING_OBJECTS)
NOT_NEEDED = "NotNeeded"
# While SettingUp: the setup Job has been seen (running, then complete). A setup Job that vanishes
# after that is not created again (it may have done part of its work): SETUP_JOB_DELETED.
SETUP_JOB_RUNNING, SETUP_JOB_COMPLETE = "SetupJobRunning", "SetupJobComplete"
SETUP_JOB_DELETED = "SetupJobDeleted"
OBJECT_DELETED = "ObjectDeleted"  # a Ready block's Deployment, Service or manifest was deleted
PODS_REFUSED = "PodsRefused"  # a setup Deployment's or Job's pods are refused by admission
NAMESPACE_DELETED = "NamespaceDeleted"  # the cleanup job could not run: the namespace is terminating
CREATE_REFUSED = "CreateRefused"  # the API server refused to create a child, for good
RESULT_LOST = "ResultLost"  # an upstream result the task uses is nowhere any more
PENDING_TIMEOUT = "PendingTimeout"  # a task pod did not start within pendingTimeoutSeconds
INVALID_SPEC = "InvalidSpec"
CLEANUP_BLOCKED = "CleanupBlocked"  # deleting, a cleanup failed: the finalizer stays

CLEANUP_BACKOFF_SECONDS = 10
# While a setup or cleanup Job has no pod, passes come this often, so a refused pod (known only
# from an Event, which a pass reads at most this often per Job) is acted on soon.
POD_REFUSAL_RECHECK_SECONDS = 10
RESULT_LIMIT = 4096  # bytes: the kubelet's limit on a termination message
MAX_REQUEST_BYTES = 3 * 1024 * 1024  # the API server refuses a request body larger than this
LOG_TAIL_LINES = 100
# forEach: items of one task, and instances of all the forEach tasks of a run (the status holds
# an entry for each: engine/budget.py keeps a run of this many under the object's limit).
MAX_ITEMS = 1000
MAX_INSTANCES = 1000
DRY_RUN_PLACEHOLDER = "flowrun-dry-run-placeholder"
SPEC_VALID_PARSED, SPEC_VALID_VALIDATED = "Parsed", "Validated"

# --- the conditions kstatus reads (conditions.py), on every kind --------------------------------

# Exactly one is True: Ready (the object is what it should be), Reconciling (the operator is
# working towards it) or Stalled (it will not get there without a change). sigs.k8s.io/cli-utils'
# kstatus, which Flux, kpt and kubectl-style waiters use, reads Reconciling and Stalled; Argo CD's
# health checks (gitops/argocd/) read all three.
CONDITION_READY, CONDITION_RECONCILING, CONDITION_STALLED = "Ready", "Reconciling", "Stalled"
# A FlowRun declared in Git whose ttlSecondsAfterFinished is not applied (engine/run.py).
CONDITION_TTL_HELD = "TTLHeld"
DECLARED_IN_GIT = "DeclaredInGit"
# A Flow's and a CronFlowRun's Ready reasons; a CronFlowRun whose run was refused is Stalled.
FLOW_VALID = "Valid"
CRON_SCHEDULING, CRON_SUSPENDED, CRON_RUN_REFUSED = "Scheduling", "Suspended", "RunRefused"
