"""Parse and validate a FlowRun `spec` into frozen dataclasses. The spec's fields are the users'
contract: docs/api.md; what the operator refuses and how it says so: docs/semantics.md, "Bad
input".

`parse_spec` checks everything the engine relies on, including what the CRD schema may have
missed, so the engine never meets input it cannot handle. The first problem found is raised as a
`SpecError` naming the offending field, e.g. `spec.tasks[2].runAfter[0]: unknown task 'lod'`.
Each field's own checks come from its declaration in flowrun.schema (the one definition of the
API, which the CRDs are generated from); the model adds what no single field can say. Pod
templates and manifests are kept as plain dicts: only the parts the operator reads or rewrites are
checked here; the API server's dry run judges the rest.

The modules: spec.py (the dataclasses), checks.py (pod templates and manifests beyond their
declaration), parse.py (parse_spec), graph.py (the dependency graph and every `$(...)`
reference), fanout.py (what is checked of forEach tasks beyond their references).
"""

from __future__ import annotations

from flowrun.model.parse import parse_spec
from flowrun.model.spec import (
    Cleanup,
    DeploymentSpec,
    FlowSpec,
    Instance,
    Lock,
    Param,
    Port,
    ResourceSpec,
    Retries,
    RunIdentity,
    Setup,
    SetupJob,
    TaskSpec,
    instance_name,
    main_container_name,
    pod_template_strings,
)
from flowrun.schema.common import MAX_COUNT, MAX_RETRIES, MAX_SECONDS
from flowrun.schema.flowrun import (
    DEFAULT_BACKOFF_SECONDS,
    DEFAULT_CLEANUP_RETRIES,
    DEFAULT_CLEANUP_TIMEOUT,
    DEFAULT_SETUP_TIMEOUT,
    PROTOCOLS,
    TRIGGERS,
)
from flowrun.schema.nodes import SpecError

__all__ = [
    "DEFAULT_BACKOFF_SECONDS",
    "DEFAULT_CLEANUP_RETRIES",
    "DEFAULT_CLEANUP_TIMEOUT",
    "DEFAULT_SETUP_TIMEOUT",
    "MAX_COUNT",
    "MAX_RETRIES",
    "MAX_SECONDS",
    "PROTOCOLS",
    "TRIGGERS",
    "Cleanup",
    "DeploymentSpec",
    "FlowSpec",
    "Instance",
    "Lock",
    "Param",
    "Port",
    "ResourceSpec",
    "Retries",
    "RunIdentity",
    "Setup",
    "SetupJob",
    "SpecError",
    "TaskSpec",
    "instance_name",
    "main_container_name",
    "parse_spec",
    "pod_template_strings",
]
