"""What the three kinds' declarations share: the limits of the spec's numbers, the named string
formats, the pod template outline, and the status parts every kind has."""

from __future__ import annotations

from typing import Any

from flowrun.schema.nodes import Arr, Format, Int, Map, Obj, Opaque, Rule, Str

# Upper bounds of the spec's numbers: large enough for any real run, small enough that no
# arithmetic on them can overflow a date or a Kubernetes int32.
MAX_SECONDS = 31_536_000  # one year: every duration (deadlines, timeouts, backoff, TTL)
MAX_RETRIES = 100  # retries.limit, cleanup.retries, setup.job.backoffLimit
MAX_COUNT = 10_000  # parallelism, replicas, history limits
# Characters of a param value (or a Flow's default), as much as a task result may carry: it is
# copied into every pod that references it, and pods have a size limit of their own.
MAX_PARAM_VALUE = 4096
MAX_NAME = 63  # a DNS-1123 label: task, resource, deployment and container names
MAX_OBJECT_NAME = 253  # a DNS-1123 subdomain: names of objects

LABEL = Format(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
    "{value} is not a DNS-1123 label (lower-case letters, digits, '-', at most 63)",
    name="DNS-1123 label",
)
SUBDOMAIN = Format(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
    "{value} is not a DNS-1123 subdomain (lower-case letters, digits, '-' and '.', at most 253)",
    name="DNS-1123 subdomain",
)
# A key of a ConfigMap's data (as the API server allows: letters, digits, '-', '_' and '.').
CONFIG_MAP_KEY = Format(
    r"^[-._a-zA-Z0-9]+$",
    "{value} is not a ConfigMap key (letters, digits, '-', '_' and '.')",
    name="ConfigMap key",
)
PARAM_NAME = Format(
    r"^[A-Za-z_][A-Za-z0-9_-]*$",
    "{value} is not a valid param name (a letter or '_', then letters, digits, '_' or '-')",
)
# An IANA service name, as a container port's name: at least one letter, no leading or trailing '-'.
PORT_NAME = Format(
    r"^([a-z]([-a-z0-9]*[a-z0-9])?|[0-9][-a-z0-9]*[a-z]([-a-z0-9]*[a-z0-9])?)$",
    "{value} is not a port name (at most 15 lower-case letters, digits, '-')",
)
# A Service's targetPort by name: the CRD lets any label through, the API server's dry run the rest.
TARGET_PORT_NAME = Format(LABEL.pattern, PORT_NAME.message)
# A replica count as a string: digits, or text with a reference the run resolves (model/graph.py).
REPLICAS = Format(
    r"^([0-9]{1,4}|10000|.*\$\((params|tasks|resources|flowrun)[.)].*)$",
    "must be an integer or a $(...) reference, not {value}",
)


def name_of(description: str) -> Str:
    """A task, resource or deployment name: a DNS-1123 label (it becomes part of object names)."""
    return Str(description, format=LABEL, min_length=1, max_length=MAX_NAME)


def object_name(description: str) -> Str:
    return Str(description, format=SUBDOMAIN, min_length=1, max_length=MAX_OBJECT_NAME)


# --- pod templates -------------------------------------------------------------------------------

# The CRD describes `containers` only; the operator checks init containers the same way.
CONTAINER = Obj(
    "A core/v1 Container.",
    required=("name",),
    preserve_unknown=True,
    fields={
        "name": Str("Container name (DNS-1123 label).", min_length=1, max_length=MAX_NAME),
        "command": Arr("Entrypoint; $(...) references are substituted.", items=Str()),
        "args": Arr("Arguments; $(...) references are substituted.", items=Str()),
        "env": Arr(
            "Environment variables; $(...) references are substituted in value. The operator appends "
            "FLOWRUN_RESOURCE_<NAME> variables (see the docs).",
            items=Obj(
                required=("name",),
                preserve_unknown=True,
                fields={
                    "name": Str("Variable name."),
                    "value": Str("Variable value; $(...) references are substituted."),
                },
            ),
        ),
    },
)
# Several containers: the result is the termination message of the one named "main".
_MAIN_CONTAINER = Rule(
    "self.spec.containers.size() == 1 || self.spec.containers.exists(c, c.name == 'main')",
    message='a pod template with several containers must have one named "main": its termination message is the result',
)


def labels_and_annotations(description: str, labels: str, annotations: str) -> Obj:
    return Obj(
        description,
        preserve_unknown=True,
        fields={"labels": Map(labels, values=Str()), "annotations": Map(annotations, values=Str())},
    )


def pod_template(description: str, restart_policy: Str, *, needs_main: bool) -> Obj:
    """The outline of a core/v1 PodTemplateSpec (what the operator reads or rewrites); the API
    server's dry run judges the rest. `needs_main`: the result is read from the pod."""
    return Obj(
        description,
        required=("spec",),
        fields={
            "metadata": labels_and_annotations(
                "Labels and annotations copied onto the pod. The operator adds its own flowrun.dev/* and "
                "app.kubernetes.io/managed-by labels; name and namespace are set by the operator and ignored here.",
                "Labels for the pod.",
                "Annotations for the pod.",
            ),
            "spec": Obj(
                "A core/v1 PodSpec. Only the fields below are described here; every other PodSpec field is "
                "accepted as is and validated by the API server (the operator dry-runs each child before creating "
                "the first one).",
                required=("containers",),
                preserve_unknown=True,
                fields={
                    "containers": Arr(
                        "The pod's containers (at least one). $(...) references are substituted in command, args "
                        "and env[].value.",
                        min_items=1,
                        max_items=20,
                        items=CONTAINER,
                        noun="container",
                    ),
                    "restartPolicy": restart_policy,
                },
            ),
        },
        rules=(_MAIN_CONTAINER,) if needs_main else (),
    )


# A Job's pod is never restarted in place: a failed attempt is a new pod.
JOB_RESTART_POLICY = Str(
    "Only Never is allowed, and the operator sets it when unset (a failed pod is retried as a new pod).",
    enum=("Never",),
)


# --- status parts --------------------------------------------------------------------------------


def conditions(types: str, type_description: str = "Condition type.") -> Arr:
    return Arr(
        types,
        list_type="map",
        keys=("type",),
        items=Obj(
            "A metav1.Condition.",
            required=("type", "status"),
            fields={
                "type": Str(type_description),
                "status": Str("True, False or Unknown.", enum=("True", "False", "Unknown")),
                "reason": Str("Machine-readable reason (CamelCase)."),
                "message": Str("Human-readable detail."),
                "lastTransitionTime": Str("When status last changed.", date_time=True),
                "observedGeneration": Int("metadata.generation the condition was set for.", format="int64"),
            },
        ),
    )


def observed_generation() -> Int:
    return Int("metadata.generation last processed (0 before the operator's first look).", format="int64")


# The default of each kind's status: before the operator has written one, it reads
# observedGeneration 0, which kstatus-based tools (Flux, kpt) take for "not observed yet": in
# progress rather than current.
NOT_OBSERVED = {"observedGeneration": 0}


def ready_column(priority: int = 0) -> dict[str, Any]:
    """The printer column of the Ready condition."""
    column: dict[str, Any] = {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "The Ready condition.",
    }
    return {**column, "priority": priority} if priority else column


def kopf() -> Opaque:
    return Opaque("Operator framework bookkeeping; not an API.")
