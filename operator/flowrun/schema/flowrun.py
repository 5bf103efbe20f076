"""The FlowRun: its spec and status, field by field. The one place a field of a run is declared:
the CRDs of all three kinds, the model's field checks and docs/api.md's tables come from here
(a Flow's spec and a CronFlowRun's template are this spec, derived in flowrun.schema.kinds).

A field of the spec itself marked `setting=True` is a run's setting: a Flow holds it, a run with
flowRef may override it, a rerun takes the original's (so it may not be set beside rerunOf).
"""

from __future__ import annotations

from flowrun import api
from flowrun.schema.common import (
    CONFIG_MAP_KEY,
    JOB_RESTART_POLICY,
    MAX_COUNT,
    MAX_PARAM_VALUE,
    MAX_RETRIES,
    MAX_SECONDS,
    NOT_OBSERVED,
    PARAM_NAME,
    PORT_NAME,
    REPLICAS,
    SUBDOMAIN,
    TARGET_PORT_NAME,
    conditions,
    kopf,
    name_of,
    object_name,
    observed_generation,
    pod_template,
    ready_column,
)
from flowrun.schema.nodes import Arr, Bool, Int, IntOrStr, Map, Obj, Opaque, Rule, Str

TRIGGERS = ("allSucceeded", "allDone", "anyFailed")
PROTOCOLS = ("TCP", "UDP", "SCTP")
DEFAULT_SETUP_TIMEOUT = 600
DEFAULT_CLEANUP_TIMEOUT = 600
DEFAULT_CLEANUP_RETRIES = 3
DEFAULT_BACKOFF_SECONDS = 10
MAX_CONDITIONS = 20  # conditions in a task's `when`
MAX_CONDITION = 1024  # characters of one condition
# Why a forEach task may not name a lock: its instances would each be a holder, outside the line
# that runs read from the spec's tasks (docs/semantics.md, "Locks across runs").
LOCK_WITH_FOR_EACH = "a forEach task may not hold a lock: put it on the run (spec.synchronization)"
# A forEach task's name, so that an instance's name, NAME-INDEX (INDEX < api.MAX_ITEMS), is a DNS-1123 label.
MAX_FOR_EACH_NAME = 63 - len(f"-{api.MAX_ITEMS - 1}")
# Fields a rerun may set beside rerunOf: everything else is the original's.
BESIDE_RERUN_OF = ("cancel", "ttlSecondsAfterFinished")

# --- spec ----------------------------------------------------------------------------------------

PARAM_NAME_FIELD = Str(
    "Parameter name, unique in the run. A letter or '_', then letters, digits, '_' or '-'; at most 63 characters.",
    format=PARAM_NAME,
    min_length=1,
    max_length=63,
)

PARAMS = Arr(
    "Run parameters (Prefect Parameters), referenced as $(params.NAME). Names are unique.",
    max_items=100,
    list_type="map",
    keys=("name",),
    noun="param",
    items=Obj(
        required=("name", "value"),
        fields={
            "name": PARAM_NAME_FIELD,
            "value": Str(
                "Parameter value (always a string; may be empty; at most 4096 characters, as a task result). "
                "Substituted verbatim; a param value is not itself searched for references.",
                max_length=MAX_PARAM_VALUE,
            ),
        },
    ),
)


def _names(description: str, noun: str, max_items: int) -> Arr:
    """A list of names of tasks or resources of the run (each at most once)."""
    return Arr(description, max_items=max_items, list_type="set", items=name_of(""), noun=noun)


def synchronization(description: str, *, setting: bool = False) -> Obj:
    """A lock across the runs of the namespace (docs/semantics.md, "Locks"): a mutex or a semaphore."""
    return Obj(
        description,
        fields={
            "mutex": Obj(
                "A lock one holder at a time holds: the runs and tasks of the namespace that name the same mutex "
                "take turns, first come (by the FlowRun's creation) first served.",
                required=("name",),
                fields={"name": name_of("Mutex name (DNS-1123 label), shared by every run of the namespace.")},
            ),
            "semaphore": Obj(
                "A lock that up to a limit of holders hold at once; the limit is the integer value of a key of a "
                "ConfigMap of the namespace, read whenever a holder is chosen (an edit applies at once to those "
                "waiting). While the ConfigMap or its key is missing, or its value is not an integer from 0 to "
                f"{api.MAX_SEMAPHORE_LIMIT}, nobody new gets the semaphore: waiters wait, saying why.",
                required=("configMapKeyRef",),
                fields={
                    "configMapKeyRef": Obj(
                        "The ConfigMap key holding the limit.",
                        required=("name", "key"),
                        fields={
                            "name": object_name("ConfigMap name, in the FlowRun's namespace."),
                            "key": Str(
                                "Key of the ConfigMap's data.", format=CONFIG_MAP_KEY, min_length=1, max_length=253
                            ),
                        },
                    ),
                },
            ),
        },
        rules=(
            Rule("has(self.mutex) != has(self.semaphore)", message="synchronization needs one of mutex or semaphore"),
        ),
        setting=setting,
    )


_SETUP_JOB = Obj(
    "An imperative setup step run as a batch/v1 Job <flowrun>-<resource>-setup (e.g. create a VM). Its result (the "
    'termination message of its "main" or only container) is the resource\'s value unless value is set. Setup is '
    "not Ready before the Job has succeeded; the Job failing (backoffLimit exhausted) fails setup (reason "
    "SetupJobFailed).",
    required=("template",),
    fields={
        "template": pod_template(
            "Pod template (core/v1 PodTemplateSpec) of the setup Job.", JOB_RESTART_POLICY, needs_main=True
        ),
        "backoffLimit": Int(
            "Retries of the setup Job's pod (the Job's backoffLimit, with the Job controller's backoff). Default: 0.",
            minimum=0,
            maximum=MAX_RETRIES,
            default=0,
        ),
    },
)

_PORT = Obj(
    required=("name", "port"),
    fields={
        "name": Str(
            "Port name, unique in the deployment (IANA service name style: lower-case letters, digits, '-', at "
            "least one letter, at most 15 characters).",
            format=PORT_NAME,
            min_length=1,
            max_length=15,
        ),
        "port": Int("Service port.", minimum=1, maximum=65535),
        "targetPort": IntOrStr(
            "Container port number or name the Service forwards to. Default: port.",
            minimum=1,
            maximum=65535,
            format=TARGET_PORT_NAME,
            max_length=15,
        ),
        "protocol": Str("Protocol.", enum=PROTOCOLS, default="TCP"),
    },
)

_DEPLOYMENT = Obj(
    required=("name", "template"),
    fields={
        "name": name_of("Deployment name within the resource (DNS-1123 label)."),
        "replicas": IntOrStr(
            "Number of pods: an integer from 0 to 10000, or a string of digits, or a string with $(...) references "
            '(e.g. "$(params.n-workers)") that must resolve to an integer from 0 to 10000 (params are checked before '
            "the run starts; a task result or resource value that does not resolve fails setup with reason "
            "InvalidValue). Default: 1.",
            minimum=0,
            maximum=MAX_COUNT,
            format=REPLICAS,
            max_length=200,
            default=1,
        ),
        "template": pod_template(
            "Pod template (core/v1 PodTemplateSpec) of the deployment's pods.",
            Str("Must be Always (the default) for a Deployment.", enum=("Always",)),
            needs_main=False,
        ),
        "ports": Arr(
            "Ports to expose. If set, the operator creates a ClusterIP Service with the deployment's name, reachable "
            "as $(resources.RESOURCE.services.DEPLOYMENT). The block is Ready only once that Service has a ready "
            "endpoint (unless replicas is 0).",
            max_items=20,
            list_type="map",
            keys=("name",),
            noun="port",
            items=_PORT,
        ),
    },
)

_SETUP = Obj(
    "How the resource is created: any combination of job, deployments and manifests (at least one), all started "
    "together.",
    fields={
        "job": _SETUP_JOB,
        "deployments": Arr(
            "Long-running parts of the resource (e.g. a Dask scheduler and workers). Each becomes an apps/v1 "
            "Deployment named <flowrun>-<resource>-<name>; setup is Ready when every one is fully available.",
            min_items=1,
            max_items=20,
            list_type="map",
            keys=("name",),
            noun="deployment",
            items=_DEPLOYMENT,
        ),
        "manifests": Arr(
            "Any other namespaced objects setup creates (a PVC, a ConfigMap, a DaskCluster custom resource, ...), in "
            "the FlowRun's namespace (metadata.namespace unset or equal to it), with the operator's labels and an "
            "owner reference added. Each needs apiVersion, kind and metadata.name; the name is kept as given. Ready "
            "once they exist. An object of that kind and name that this run did not create is never adopted, changed "
            "nor deleted; setup fails at once (reason CreateRefused). A kind the API server does not serve, or a "
            "cluster-scoped kind (Namespace, ClusterRole, ...), is a spec error and nothing is created. No $(...) "
            "substitution.",
            min_items=1,
            max_items=50,
            noun="manifest",
            items=Opaque(
                "A complete Kubernetes object.",
                embedded=True,
                rules=(
                    Rule("has(self.metadata) && has(self.metadata.name)", message="a manifest needs metadata.name"),
                ),
            ),
        ),
        "timeoutSeconds": Int(
            "Setup must be Ready within this many seconds of starting, else the resource is SetupFailed (reason "
            "SetupTimeout) and cleaned up. Default: 600.",
            minimum=1,
            maximum=MAX_SECONDS,
            format="int64",
            default=DEFAULT_SETUP_TIMEOUT,
        ),
    },
    rules=(
        Rule(
            "has(self.job) || has(self.deployments) || has(self.manifests)",
            message="setup must set at least one of job, deployments or manifests",
        ),
    ),
)

_CLEANUP = Obj(
    "How the resource is torn down. Cleanup always runs once setup has started: it stops a still-running setup job, "
    "runs the cleanup job (if any), then deletes everything setup created and waits until it is gone.",
    default={},
    fields={
        "job": Obj(
            "An imperative teardown step (e.g. delete a VM), run as one batch/v1 Job per attempt, "
            "<flowrun>-<resource>-cleanup-<attempt> (attempt 1, 2, ...), with backoffLimit 0. Its containers get the "
            "env FLOWRUN_RESOURCE_VALUE and FLOWRUN_RESOURCE_<NAME> with the resource's value.",
            required=("template",),
            fields={
                "template": pod_template(
                    "Pod template (core/v1 PodTemplateSpec) of the cleanup Job.", JOB_RESTART_POLICY, needs_main=False
                ),
            },
        ),
        "timeoutSeconds": Int(
            "Cleanup's own deadline in seconds, counted from the start of cleanup and independent of "
            "spec.activeDeadlineSeconds. Past it the resource is CleanupFailed (reason CleanupTimeout). Default: 600.",
            minimum=1,
            maximum=MAX_SECONDS,
            format="int64",
            default=DEFAULT_CLEANUP_TIMEOUT,
        ),
        "retries": Int(
            "Retries of a failed cleanup job: up to retries + 1 attempts, each a new Job, 10 seconds apart. When every "
            "attempt failed, what setup created is still deleted and the resource ends CleanupFailed (reason "
            "CleanupJobFailed). Default: 3.",
            minimum=0,
            maximum=MAX_RETRIES,
            default=DEFAULT_CLEANUP_RETRIES,
        ),
    },
)

RESOURCE = Obj(
    required=("name", "setup"),
    fields={
        "name": name_of(
            "Resource (block) name, unique in the run (DNS-1123 label). Referenced by tasks[].resources and "
            "$(resources.NAME.*)."
        ),
        "runAfter": _names(
            "Tasks that must have succeeded before setup starts (their results may be referenced in setup, value and "
            "the cleanup job). If one does not succeed, the resource is never set up (it stays Pending, reason "
            "NotNeeded) and its tasks are Skipped (UpstreamFailed, or TriggerNotMet if that task was itself skipped "
            "by its trigger).",
            "task",
            200,
        ),
        "setup": _SETUP,
        "value": Str(
            "What the block's tasks receive as $(resources.NAME.value) and FLOWRUN_RESOURCE_<NAME>. $(...) references "
            "are substituted (it may not reference the resource's own value). Default: the setup job's result, else "
            "the Service DNS name of the first deployment with ports, else the resource name. Fixed when the "
            "resource becomes Ready."
        ),
        "cleanup": _CLEANUP,
    },
)

TASK = Obj(
    required=("name", "template"),
    fields={
        "name": name_of("Task name, unique in the run (DNS-1123 label)."),
        "runAfter": _names("Tasks that must be terminal before this one can start (not the task itself).", "task", 200),
        "trigger": Str(
            "When the task runs once every runAfter task is terminal: allSucceeded (every one Succeeded), allDone "
            "(any terminal state), anyFailed (at least one failed: Failed, Cancelled, or Skipped for a reason other "
            "than TriggerNotMet). If it cannot hold the task is Skipped.",
            enum=TRIGGERS,
            default="allSucceeded",
        ),
        "resources": _names(
            "Resource blocks the task is inside: it starts only when each is Ready, gets FLOWRUN_RESOURCE_<NAME>, and "
            "holds the block's cleanup until it is terminal.",
            "resource",
            50,
        ),
        "template": pod_template(
            "Pod template (core/v1 PodTemplateSpec) of the task's pod, named <flowrun>-<task>-<attempt>. The result "
            'is the termination message (/dev/termination-log, at most 4096 bytes) of the container named "main", or '
            "of the only container.",
            Str("Must be Never (the default): retries are new pods.", enum=("Never",)),
            needs_main=True,
        ),
        "retries": Obj(
            "Retries of a failed attempt; each attempt is a new pod.",
            fields={
                "limit": Int(
                    "Retries after the first attempt (attempts = limit + 1). Default: 0.",
                    minimum=0,
                    maximum=MAX_RETRIES,
                    default=0,
                ),
                "backoffSeconds": Int(
                    "Delay between a failed attempt and the next. Default: 10.",
                    minimum=0,
                    maximum=MAX_SECONDS,
                    default=DEFAULT_BACKOFF_SECONDS,
                ),
            },
        ),
        "activeDeadlineSeconds": Int(
            "Deadline of each attempt, in seconds from the pod's start; an attempt past it fails (reason "
            "DeadlineExceeded) and is retried if retries remain.",
            minimum=1,
            maximum=MAX_SECONDS,
            format="int64",
        ),
        "synchronization": synchronization(
            "A lock across runs the task holds from the start of its first attempt until it is terminal (its retries "
            "included) and its pod has stopped: the task waits for it (Pending, reason WaitingForLock, the message "
            "names the holders) once nothing else holds it back. It may not be the run's own lock "
            "(spec.synchronization), nor be a forEach task's.",
        ),
        "when": Arr(
            "Conditions, all of which must hold for the task to run, checked when it is ready to start (its runAfter "
            "tasks terminal and its trigger holding): else it is Skipped (reason WhenFalse), which its dependants take "
            "as done (see the docs). Each is a CEL expression (as in Kubernetes' validation rules) that must be true "
            "or false; $(params.NAME), $(tasks.NAME.result), $(tasks.NAME.results), $(tasks.NAME.phase) and "
            "$(flowrun.*) stand in it for CEL strings holding their values (written without quotes), e.g. "
            '"$(params.env) == \'prod\'", "int($(tasks.count.result)) > 0", "$(tasks.load.phase) == \'Failed\'". '
            "A task referenced must be upstream (runAfter, directly or not). A condition that is not valid CEL is a "
            "spec error; one that cannot be evaluated (int('x')) or is not true or false fails the task (reason "
            "WhenError).",
            max_items=MAX_CONDITIONS,
            noun="condition",
            items=Str(min_length=1, max_length=MAX_CONDITION),
        ),
        "forEach": Str(
            'Run the task once per item of a JSON list: a param ("$(params.files)" holding ["a.csv","b.csv"]), '
            'an upstream task\'s result ("$(tasks.list.result)"), the results of an upstream forEach task '
            '("$(tasks.map.results)"), or a list written here. Each item is an instance NAME-INDEX (0, 1, ...) '
            "with its own pod (NAME-INDEX-ATTEMPT), attempts, retries, result and status entry, and $(item) (the item: "
            "a string as it is, anything else as JSON) and $(item.FIELD) substituted in its template. The task is "
            "done once every instance is terminal; dependants read $(tasks.NAME.results), the JSON list of the "
            "instances' results in item order. At most 1000 items, and 1000 instances in a run. A list that is not "
            "JSON, is too long, or lacks a field an $(item.FIELD) reads fails the task (reason ForEachInvalid) before "
            "any instance is created; an empty list succeeds it (reason NoItems). The name of a forEach task has at "
            f"most {MAX_FOR_EACH_NAME} characters.",
            max_length=MAX_PARAM_VALUE,
        ),
        "parallelism": Int(
            "With forEach: the most instances of this task whose pods run at once (spec.parallelism still bounds all "
            "the run's task pods). Default: unlimited.",
            minimum=1,
            maximum=MAX_COUNT,
        ),
        "pendingTimeoutSeconds": Int(
            "Time each attempt's pod has to start its main container, in seconds from the pod's creation (scheduling, "
            "image pulls and init containers count). An attempt whose pod has not started by then fails (reason "
            "PendingTimeout, the message quotes why it waits: e.g. ErrImagePull, Unschedulable), its pod is deleted, "
            "and it is retried if retries remain. Default: spec.pendingTimeoutSeconds, else none (wait for ever).",
            minimum=1,
            maximum=MAX_SECONDS,
            format="int64",
        ),
    },
    rules=(
        Rule(
            "!has(self.runAfter) || !(self.name in self.runAfter)",
            message_expression="'task ' + self.name + ' cannot run after itself'",
            field_path=".runAfter",
        ),
        Rule(
            "!has(self.parallelism) || has(self.forEach)",
            message="parallelism bounds the instances of a forEach task: set forEach, or use spec.parallelism",
            field_path=".parallelism",
        ),
        Rule(
            "!has(self.synchronization) || !has(self.forEach)",
            message=LOCK_WITH_FOR_EACH,
            field_path=".synchronization",
        ),
        Rule(
            f"!has(self.forEach) || size(self.name) <= {MAX_FOR_EACH_NAME}",
            message=f"the name of a forEach task may have at most {MAX_FOR_EACH_NAME} characters (its instances are "
            "named NAME-INDEX)",
            field_path=".name",
        ),
    ),
)

# `{settings}`: the run's settings, named when the spec is derived (flowrun.schema.kinds).
FLOW_REF_DESCRIPTION = (
    "Run a Flow of the same namespace instead of listing tasks and resources here. The first pass copies the Flow's "
    "spec, with the params resolved, into status.resolvedSpec: editing or deleting the Flow later never changes this "
    "run. params give values to the Flow's params; {settings} override the Flow's. A Flow that does not exist keeps "
    "the run Pending (reason FlowNotFound) for 60 seconds, then fails it."
)

SPEC = Obj(
    "The run: parameters, resource blocks and tasks, given here (tasks), taken from a Flow (flowRef) or from an "
    "earlier run (rerunOf). Immutable after creation except cancel.",
    fields={
        "flowRef": Obj(
            FLOW_REF_DESCRIPTION,
            required=("name",),
            fields={"name": object_name("Name of the Flow, in the FlowRun's namespace.")},
        ),
        "rerunOf": Obj(
            "Continue a finished run that did not succeed (Failed or Cancelled), in the same namespace: this run takes "
            "its resolved spec; tasks that Succeeded there are Succeeded here with reason Reused and their result (no "
            "pod), every other task runs again from attempt 1, and every resource block with a task that runs again "
            "is set up anew. The first pass copies what it needs into status, so the original may be deleted. Only "
            "cancel and ttlSecondsAfterFinished may be set beside it.",
            required=("name",),
            fields={"name": object_name("Name of the FlowRun to rerun, in the same namespace.")},
        ),
        "params": PARAMS,
        "serviceAccountName": Str(
            "ServiceAccount for every pod the run creates whose template does not name one. Default: the namespace's "
            "default ServiceAccount.",
            format=SUBDOMAIN,
            max_length=253,
            setting=True,
        ),
        "parallelism": Int(
            "Maximum number of task pods running at once. Default: unlimited.",
            minimum=1,
            maximum=MAX_COUNT,
            setting=True,
        ),
        "activeDeadlineSeconds": Int(
            "Deadline for the run's tasks, in seconds from the run's start (status.startedAt, or the FlowRun's "
            "creation while nothing has started). When it passes, running tasks fail, pending ones are skipped, "
            "nothing new starts and the run fails; cleanup is never cut short (it has its own deadline, "
            "resources[].cleanup.timeoutSeconds).",
            minimum=1,
            maximum=MAX_SECONDS,
            format="int64",
            setting=True,
        ),
        "pendingTimeoutSeconds": Int(
            "Default of tasks[].pendingTimeoutSeconds for every task that does not set its own. Default: none, a pod "
            "may wait to start for ever (why it waits is in the task's message).",
            minimum=1,
            maximum=MAX_SECONDS,
            format="int64",
            setting=True,
        ),
        "synchronization": synchronization(
            "A lock across runs the whole run holds: nothing of the run starts (no task, no resource setup) before "
            "it has the lock, and the lock is released once the run has finished (cleanup included) and its pods have "
            "stopped. While it waits the run is Pending (condition Succeeded reason WaitingForLock, the message names "
            "the holders); its activeDeadlineSeconds counts the wait.",
            setting=True,
        ),
        "ttlSecondsAfterFinished": Int(
            "Delete the FlowRun this many seconds after it finished (finished includes cleanup), unless it is "
            "declared in Git (then never: condition TTLHeld). Default: keep it.",
            minimum=0,
            maximum=MAX_SECONDS,
            setting=True,
        ),
        "cancel": Bool(
            "Set true to cancel: running task pods are deleted, pending tasks are Cancelled, every started resource "
            "is cleaned up, the phase becomes Cancelled. Cannot be set back to false. Default: false."
        ),
        "resources": Arr(
            "Temporary resources (blocks) that tasks need: set up when first needed, cleaned up as soon as every task "
            "inside is terminal, always.",
            max_items=50,
            list_type="map",
            keys=("name",),
            noun="resource",
            items=RESOURCE,
        ),
        "tasks": Arr(
            "The tasks: pods forming a DAG through runAfter.",
            min_items=1,
            max_items=200,
            list_type="map",
            keys=("name",),
            noun="task",
            items=TASK,
        ),
    },
)

# Rules of the spec that are no field's own: what a spec must have, what excludes what.
SPEC_RULES = (
    Rule("has(self.tasks) || has(self.flowRef) || has(self.rerunOf)", message="spec needs tasks, flowRef or rerunOf"),
    Rule(
        "!has(self.flowRef) || (!has(self.tasks) && !has(self.resources))",
        message="spec.flowRef excludes spec.tasks and spec.resources (the Flow supplies them)",
        field_path=".flowRef",
    ),
)

# --- status --------------------------------------------------------------------------------------

_TASK_STATUS = Obj(
    "State of one task.",
    fields={
        "phase": Str("Task state.", enum=api.TASK_PHASES),
        "reason": Str(
            "Machine-readable reason for the phase (e.g. WaitingForUpstream, WaitingForLock, PodPending, PodRunning, "
            "RetryBackoff, Reused, Succeeded, Error, PodDeleted, DeadlineExceeded, PendingTimeout, "
            "RunDeadlineExceeded, UpstreamFailed, SetupFailed, TriggerNotMet, Cancelled, FlowRunDeleted)."
        ),
        "message": Str(
            "Human-readable detail. While an attempt's pod waits to start, why: its containers' waiting reasons and "
            'messages (e.g. "container main: ErrImagePull: ..."), or "unschedulable: ..." with the scheduler\'s '
            "message."
        ),
        "attempts": Int("Attempts started so far (one pod each); equals the number in the latest pod's name."),
        "podName": Str("Pod of the latest attempt."),
        "exitCode": Int("Exit code of the main container of the latest finished attempt."),
        "startedAt": Str("When the first attempt started.", date_time=True),
        "finishedAt": Str("When the task became terminal.", date_time=True),
        "result": Str(
            "The task's result: the termination message of its main container, set when the task Succeeded. Unset "
            "when the status is full (see resultFrom and the message)."
        ),
        "resultFrom": Str(
            "Where the task's result is when the run's status could not hold it (the stored FlowRun is kept under 1 "
            "MiB), as ConfigMap/NAME (key result); the ConfigMap is the run's and goes with it."
        ),
        "logs": Str(
            "The last 100 log lines of the main container of the latest attempt, kept when the task failed or was "
            "cancelled (or a note saying why they are unavailable)."
        ),
        "nextAttemptAt": Str(
            "While the task waits between attempts (reason RetryBackoff), when the next attempt may start.",
            date_time=True,
        ),
        "lastFailure": Str(
            'Why the latest failed attempt failed, as "attempt N failed (REASON: detail)". The message repeats it '
            "while the next attempt runs, unless that attempt's pod has something of its own to say (why it waits)."
        ),
        "instances": Int(
            "Of a forEach task: how many instances its list gave (each has an entry NAME-INDEX of its own); set once "
            "the list is known."
        ),
        "instanceOf": Str("Of an instance of a forEach task: the task (its entry is named TASK-INDEX)."),
        "index": Int("Of an instance of a forEach task: the index of its item in the list, from 0."),
    },
)

_RESOURCE_STATUS = Obj(
    "State of one resource block.",
    fields={
        "phase": Str("Resource state.", enum=api.RESOURCE_PHASES),
        "reason": Str(
            "Machine-readable reason for the phase (e.g. NotNeeded; while SettingUp SettingUp, SetupJobRunning or "
            "SetupJobComplete; SetupTimeout, SetupJobFailed, DeploymentFailed, InvalidValue, CreateRefused, "
            "PodsRefused, SetupJobDeleted, ObjectDeleted; while CleaningUp the step StoppingSetup, CleanupJobRunning, "
            "CleanupJobBackoff or DeletingObjects; CleanedUp, SetupFailed, CleanupTimeout, CleanupJobFailed, "
            "NamespaceDeleted)."
        ),
        "message": Str(
            "Human-readable detail. While SettingUp, why pods of its Deployments or setup Job wait to start, if any "
            'does (e.g. "deployment db: pod NAME: unschedulable: ...").'
        ),
        "value": Str(
            "The resolved value given to the block's tasks (for a block that never became Ready, the value handed to "
            "its cleanup)."
        ),
        "objects": Arr("Objects setup created, as KIND/NAME (e.g. Deployment/run1-dask-scheduler).", items=Str()),
        "setupStartedAt": Str("When setup started.", date_time=True),
        "readyAt": Str("When the resource became Ready.", date_time=True),
        "cleanupStartedAt": Str("When cleanup started.", date_time=True),
        "cleanedUpAt": Str("When cleanup finished successfully (CleanedUp).", date_time=True),
        "cleanupAttempts": Int("Cleanup job attempts (Jobs <flowrun>-<resource>-cleanup-<attempt>) started so far."),
        "nextCleanupAttemptAt": Str(
            "While a failed cleanup job waits to be retried (reason CleanupJobBackoff), when the next attempt starts.",
            date_time=True,
        ),
        "setupError": Str("Why setup failed (reason and message), kept through cleanup."),
        "cleanupError": Str(
            "Why cleanup failed (every cleanup job attempt failed, or the cleanup timed out), as soon as it is known."
        ),
    },
)

STATUS = Obj(
    "Observed state, written by the operator as a JSON merge patch; a field that does not apply is absent (the "
    "operator writes null to remove it). A FlowRun the operator has not passed yet reads observedGeneration 0 (this "
    "default), so kstatus-based tools see it in progress.",
    default=NOT_OBSERVED,
    fields={
        "phase": Str("Run state.", enum=(api.PENDING, api.RUNNING, *api.RUN_FINAL)),
        "startedAt": Str("When the run started (its first task pod or resource setup was created).", date_time=True),
        "finishedAt": Str(
            "When the run finished (every task terminal and every started resource cleaned up or failed to).",
            date_time=True,
        ),
        "duration": Str(
            'finishedAt - startedAt, e.g. "1m23s"; written once the run has finished (unset while it runs).'
        ),
        "observedGeneration": observed_generation(),
        "progress": Str(
            'Terminal tasks / all tasks, e.g. "3/5"; a forEach task counts as its instances once its list is known.'
        ),
        "message": Str("Human-readable summary (e.g. why the run failed)."),
        "conditions": conditions(
            "Succeeded (Unknown while running), ResourcesReleased, SpecValid; Ready, Reconciling and Stalled (exactly "
            "one True, read by kstatus and Argo CD); TTLHeld when the TTL of a run declared in Git is not applied.",
            "Condition type: Succeeded, ResourcesReleased, SpecValid, Ready, Reconciling, Stalled or TTLHeld.",
        ),
        "tasks": Map(
            "Per-task state, keyed by task name; each instance of a forEach task has an entry too, TASK-INDEX.",
            values=_TASK_STATUS,
        ),
        "resources": Map("Per-resource state, keyed by resource name.", values=_RESOURCE_STATUS),
        "locks": Arr(
            "The locks across runs (spec.synchronization, tasks[].synchronization) the run holds or waits for now; "
            "unset when none. Each held slot is a coordination.k8s.io Lease of the namespace owned by the run.",
            items=Obj(
                fields={
                    "lock": Str("The lock: mutex/NAME, or semaphore/CONFIGMAP/KEY."),
                    "task": Str("The task that holds or wants it; unset for the run's own lock."),
                    "state": Str("Holding or Waiting.", enum=(api.HOLDING, api.WAITING)),
                    "lease": Str("While Holding: the Lease of the slot held."),
                    "message": Str("While Waiting: why (who holds the lock, who is ahead in line, a bad limit)."),
                },
            ),
        ),
        "resolvedSpec": Opaque(
            "For a run with spec.flowRef or spec.rerunOf, the spec it runs (tasks, resources, params with their "
            "values, settings; spec.cancel is always read from spec), copied on the first pass. From then on the run "
            "uses this copy only."
        ),
        "resolvedFrom": Obj(
            "Where status.resolvedSpec was copied from.",
            fields={
                "kind": Str("Flow (spec.flowRef) or FlowRun (spec.rerunOf).", enum=(api.FLOW_KIND, api.KIND)),
                "name": Str("Its name."),
                "uid": Str("Its metadata.uid."),
                "resourceVersion": Str("Its metadata.resourceVersion when it was copied."),
            },
        ),
        "kopf": kopf(),
    },
)

PRINTER_COLUMNS = (
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Run state."},
    {
        "name": "Progress",
        "type": "string",
        "jsonPath": ".status.progress",
        "description": "Terminal tasks / all tasks.",
    },
    {
        "name": "Duration",
        "type": "string",
        "jsonPath": ".status.duration",
        "description": "Run time, written by the operator once the run has finished.",
    },
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ready_column(priority=1),  # beside Phase, which says the same
    {"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1, "description": "Summary."},
)
