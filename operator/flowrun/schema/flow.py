"""The Flow's own fields: its params (declared with defaults, where a run gives values) and its
status. The rest of its spec is the FlowRun's (flowrun.schema.kinds derives it)."""

from __future__ import annotations

from dataclasses import replace

from flowrun.schema.common import (
    MAX_PARAM_VALUE,
    NOT_OBSERVED,
    conditions,
    kopf,
    observed_generation,
    ready_column,
)
from flowrun.schema.flowrun import PARAM_NAME_FIELD, PARAMS
from flowrun.schema.nodes import Int, Obj, Str

SPEC_DESCRIPTION = (
    "A FlowRun spec kept for reuse (without cancel): params with defaults, settings a run may override, resource "
    "blocks and tasks. FlowRuns run it through spec.flowRef; each copies it when it starts, so editing the Flow "
    "changes only runs that start later."
)

PARAMS_OF_FLOW = replace(
    PARAMS,
    description="The Flow's params, referenced as $(params.NAME). A run gives their values in its spec.params; a "
    "param without default must be given by every run. Names are unique.",
    items=Obj(
        required=("name",),
        fields={
            "name": PARAM_NAME_FIELD,
            "default": Str(
                "The value when a run gives none (may be empty; at most 4096 characters, as a run's value). Without "
                "it, every run must give the param.",
                max_length=MAX_PARAM_VALUE,
            ),
            "description": Str(
                "What the param means, for people (the operator does not read it).",
                max_length=1000,
            ),
        },
    ),
)

STATUS = Obj(
    "Observed state, written by the operator: the result of validating the Flow.",
    default=NOT_OBSERVED,
    fields={
        "observedGeneration": observed_generation(),
        "taskCount": Int("Number of tasks."),
        "resourceCount": Int("Number of resource blocks."),
        "message": Str("Why the Flow is invalid, naming the field; empty if valid."),
        "conditions": conditions(
            "SpecValid: whether the Flow passes the checks a run's spec passes; Ready (valid) or Stalled (invalid), "
            "with Reconciling (never True: a Flow is checked at once)."
        ),
        "kopf": kopf(),
    },
)

PRINTER_COLUMNS = (
    {"name": "Tasks", "type": "integer", "jsonPath": ".status.taskCount", "description": "Number of tasks."},
    {
        "name": "Resources",
        "type": "integer",
        "jsonPath": ".status.resourceCount",
        "description": "Number of resource blocks.",
    },
    {
        "name": "Valid",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="SpecValid")].status',
        "description": "Whether the Flow passed validation.",
    },
    ready_column(),
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Message",
        "type": "string",
        "jsonPath": ".status.message",
        "priority": 1,
        "description": "Why it is invalid.",
    },
)
