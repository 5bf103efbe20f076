"""Whether an object is declared in Git: applied by Flux or Argo CD (the label or annotation each
puts on what it applies, api.GITOPS_MARKS), or annotated flowrun.dev/declared-in-git="true" by
whatever else applies it. A FlowRun declared in Git is never deleted by its TTL: the tool would
create it again, and it would run again, for ever (engine/run.py). Pure. The users' contract:
docs/install.md ("GitOps") and docs/semantics.md ("TTL")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flowrun import api
from flowrun.lenient import as_map


def declared_in_git(metadata: Mapping[str, Any]) -> str | None:
    """What says the object is declared in Git, for people (e.g. `Flux: label
    kustomize.toolkit.fluxcd.io/name=apps`); None when nothing does."""
    labels, annotations = as_map(metadata.get("labels")), as_map(metadata.get("annotations"))
    for tool, key, where in api.GITOPS_MARKS:
        found = (labels if where == "label" else annotations).get(key)
        if isinstance(found, str) and found:
            return f"{tool}: {where} {key}={found}"
    if annotations.get(api.DECLARED_IN_GIT_ANNOTATION) == "true":
        return f'annotation {api.DECLARED_IN_GIT_ANNOTATION}="true"'
    return None
