"""The flowrun.dev API, declared once: every field of FlowRun, Flow and CronFlowRun, with its type,
bounds, default, description and CEL rules. From these declarations come the three CRDs (and the
chart's copies), the model's field checks and the field tables of docs/api.md (`scripts/generate`
writes the files). CONTRIBUTING.md says how to add a field.

Modules: nodes (the vocabulary: a node renders its OpenAPI schema and checks a value), common
(limits, name formats, pod templates, status parts), flowrun, flow and cronflowrun (each kind's
own fields), kinds (the schemas derived from them, and the CRDs: `SCHEMAS`).
"""

from __future__ import annotations

from flowrun.schema.kinds import SCHEMAS, Kind, Schemas, derive
from flowrun.schema.nodes import SpecError

__all__ = ["SCHEMAS", "Kind", "Schemas", "SpecError", "derive"]
