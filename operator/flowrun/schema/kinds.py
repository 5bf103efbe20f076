"""The three kinds' schemas, derived from the declarations, and their CRDs.

A Flow's spec is a FlowRun spec kept for reuse (without cancel, flowRef and rerunOf; its params
declare a default instead of a value). A CronFlowRun's flowRunTemplate.spec is the spec of the
FlowRuns it creates (without cancel and rerunOf). The spec the model parses (`run_spec`) is a
FlowRun spec once flowRef and rerunOf are resolved: tasks required, neither of the two present.
The FlowRun spec's CEL rules that name its fields (what rerunOf excludes, what is immutable) are
written here from the fields, so that a new field is covered without being named twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from flowrun import api
from flowrun.schema import cronflowrun, flow, flowrun
from flowrun.schema.nodes import Obj, Rule

# Fields only a FlowRun has: where its spec comes from, and cancel (a run's, never a template's).
RUN_ONLY = ("flowRef", "rerunOf", "cancel")


@dataclass(frozen=True)
class Kind:
    """One kind's names, schemas and printer columns."""

    kind: str
    plural: str
    short: str
    description: str
    spec: Obj
    status: Obj
    columns: tuple[dict[str, Any], ...]
    root_rules: tuple[Rule, ...] = ()

    def schema(self) -> dict[str, Any]:
        """The openAPIV3Schema of the CRD."""
        root: dict[str, Any] = {"type": "object", "description": self.description, "required": ["spec"]}
        if self.root_rules:
            root["x-kubernetes-validations"] = [rule.render() for rule in self.root_rules]
        root["properties"] = {
            "apiVersion": {"type": "string", "description": f"APIVersion of this object ({api.API_VERSION})."},
            "kind": {"type": "string", "description": f"Kind of this object ({self.kind})."},
            "metadata": {"type": "object"},
            "spec": self.spec.render(),
            "status": self.status.render(),
        }
        return root

    def crd(self) -> dict[str, Any]:
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {
                "name": f"{self.plural}.{api.GROUP}",
                "labels": {"app.kubernetes.io/name": "flowrun-operator"},
            },
            "spec": {
                "group": api.GROUP,
                "names": {
                    "kind": self.kind,
                    "listKind": f"{self.kind}List",
                    "plural": self.plural,
                    "singular": self.kind.lower(),
                    "shortNames": [self.short],
                },
                "scope": "Namespaced",
                "versions": [
                    {
                        "name": api.VERSION,
                        "served": True,
                        "storage": True,
                        "subresources": {"status": {}},
                        "additionalPrinterColumns": [dict(column) for column in self.columns],
                        "schema": {"openAPIV3Schema": self.schema()},
                    }
                ],
            },
        }


@dataclass(frozen=True)
class Schemas:
    flowrun: Kind
    flow: Kind
    cronflowrun: Kind
    run_spec: Obj  # the spec the model parses: resolved, without flowRef and rerunOf
    settings: tuple[str, ...]  # a run's settings: a run with flowRef overrides the Flow's

    @property
    def kinds(self) -> tuple[Kind, ...]:
        return (self.flowrun, self.flow, self.cronflowrun)


def and_list(words: Iterable[str]) -> str:
    """ "a, b and c"."""
    items = list(words)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _immutable(name: str) -> Rule:
    return Rule(
        f"has(self.{name}) == has(oldSelf.{name}) && (!has(self.{name}) || self.{name} == oldSelf.{name})",
        message=f"spec.{name} is immutable: only spec.cancel may change after creation",
        field_path=f".{name}",
        reason="FieldValueForbidden",
    )


_CANCEL_STAYS = Rule(
    "!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",
    message="spec.cancel cannot be set back to false once true",
    field_path=".cancel",
    reason="FieldValueForbidden",
)


def _rerun_excludes(spec: Obj) -> Rule:
    excluded = [name for name in spec.fields if name != "rerunOf" and name not in flowrun.BESIDE_RERUN_OF]
    return Rule(
        "!has(self.rerunOf) || (" + " && ".join(f"!has(self.{name})" for name in excluded) + ")",
        message=f"only {and_list(f'spec.{name}' for name in flowrun.BESIDE_RERUN_OF)} may be set beside "
        "spec.rerunOf (the run takes the rest from the original)",
        field_path=".rerunOf",
    )


def _flowrun_spec(spec: Obj, settings: tuple[str, ...]) -> Obj:
    flow_ref = spec.fields["flowRef"]
    assert isinstance(flow_ref, Obj)
    described = replace(flow_ref, description=flow_ref.description.format(settings=and_list(settings)))
    spec = spec.with_field("flowRef", described)
    rules = (
        *flowrun.SPEC_RULES,
        _rerun_excludes(spec),
        *(_immutable(name) for name in spec.fields if name != "cancel"),
        _CANCEL_STAYS,
    )
    return replace(spec, rules=rules)


def _flow_spec(spec: Obj) -> Obj:
    without = spec.without(*RUN_ONLY).with_field("params", flow.PARAMS_OF_FLOW)
    return replace(without, description=flow.SPEC_DESCRIPTION, required=("tasks",), rules=())


def _cron_spec(flowrun_spec: Obj) -> Obj:
    # A template's spec is a new run's: the FlowRun spec's rules that hold on create and do not
    # concern rerunOf (which a template cannot set).
    kept = tuple(r for r in flowrun_spec.rules if "oldSelf" not in r.rule and "rerunOf" not in r.rule)
    template_spec = replace(
        flowrun_spec.without("cancel", "rerunOf"),
        description=cronflowrun.TEMPLATE_SPEC_DESCRIPTION,
        rules=(*cronflowrun.TEMPLATE_SPEC_RULES, *kept),
    )
    template = Obj(
        cronflowrun.TEMPLATE_DESCRIPTION,
        required=("spec",),
        fields={"metadata": cronflowrun.TEMPLATE_METADATA, "spec": template_spec},
    )
    return Obj(
        cronflowrun.SPEC_DESCRIPTION,
        required=("schedule", "flowRunTemplate"),
        fields={**cronflowrun.FIELDS, "flowRunTemplate": template},
    )


def derive(spec: Obj = flowrun.SPEC, status: Obj = flowrun.STATUS) -> Schemas:
    """Every schema from the FlowRun's `spec` and `status` (a test derives them from a changed copy)."""
    settings = tuple(name for name, node in spec.fields.items() if node.setting)
    flowrun_spec = _flowrun_spec(spec, settings)
    return Schemas(
        flowrun=Kind(
            api.KIND,
            api.PLURAL,
            "fr",
            "A FlowRun runs a DAG of task pods and the temporary resources (blocks) they need, and always cleans the "
            "resources up.",
            flowrun_spec,
            status,
            flowrun.PRINTER_COLUMNS,
        ),
        flow=Kind(
            api.FLOW_KIND,
            api.FLOW_PLURAL,
            "fl",
            "A Flow is a FlowRun spec kept for reuse (as in Git); FlowRuns run it with spec.flowRef.",
            _flow_spec(spec),
            flow.STATUS,
            flow.PRINTER_COLUMNS,
        ),
        cronflowrun=Kind(
            api.CRON_KIND,
            api.CRON_PLURAL,
            "cfr",
            "A CronFlowRun creates FlowRuns on a cron schedule, as a CronJob creates Jobs.",
            _cron_spec(flowrun_spec),
            cronflowrun.STATUS,
            cronflowrun.PRINTER_COLUMNS,
            cronflowrun.ROOT_RULES,
        ),
        run_spec=replace(spec.without("flowRef", "rerunOf"), required=("tasks",)),
        settings=settings,
    )


SCHEMAS = derive()
