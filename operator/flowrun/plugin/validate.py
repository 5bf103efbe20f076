"""`validate`: the operator's own checks of a FlowRun, offline (the same parse_spec), and on
request a server-side dry run, with the user's credentials, of the FlowRun (the CRD's schema and
rules) and of every child the operator would create (built and dry-run by the operator's own
engine and API code: invalid pod templates, kinds the server does not serve or the user may not
create, admission policies)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException

from flowrun import api, engine
from flowrun.engine import ValidateObjects
from flowrun.kube import PERMANENT_REJECTIONS, REQUEST_TIMEOUT, UnknownKind, api_message
from flowrun.model import SpecError, parse_spec
from flowrun.observed import observed_from_objects
from flowrun.plugin.client import Connection, PluginError
from flowrun.plugin.documents import Document, too_large


def offline_errors(body: object, namespace: str | None) -> list[str]:
    """What the operator would refuse in this FlowRun before creating anything, field named."""
    if not isinstance(body, Mapping):
        return ["must be an object (a FlowRun)"]
    if body.get("apiVersion") != api.API_VERSION:
        return [f"apiVersion: must be {api.API_VERSION}, not {body.get('apiVersion')!r}"]
    if body.get("kind") != api.KIND:
        return [f"kind: must be {api.KIND}, not {body.get('kind')!r} (validate checks FlowRuns)"]
    metadata = body.get("metadata")
    if not isinstance(metadata, Mapping) or not (metadata.get("name") or metadata.get("generateName")):
        return ["metadata.name: required (or metadata.generateName)"]
    try:
        parse_spec(body.get("spec"), namespace or metadata.get("namespace") or None)
    except SpecError as error:
        return [str(error)]
    return []


def _namespace(body: Mapping[str, Any], connection: Connection, explicit: bool) -> str:
    given = (body.get("metadata") or {}).get("namespace")
    if given and explicit and given != connection.namespace:
        raise PluginError(
            f"the namespace of the object ({given}) does not match the namespace given with -n ({connection.namespace})"
        )
    return str(given or connection.namespace)


@dataclass(frozen=True)
class ServerCheck:
    rejected: list[str]  # each names the spec field the refused object comes from
    children: int  # children the API server accepted
    notes: list[str]


def _dry_run_flowrun(connection: Connection, namespace: str, manifest: Mapping[str, Any]) -> Any:
    # Strict, as kubectl: an unknown field is an error rather than silently dropped.
    return connection.custom.create_namespaced_custom_object(
        api.GROUP,
        api.VERSION,
        namespace,
        api.PLURAL,
        dict(manifest),
        dry_run="All",
        field_validation="Strict",
        _request_timeout=REQUEST_TIMEOUT,
    )


def server_check(body: Mapping[str, Any], connection: Connection, explicit_namespace: bool) -> ServerCheck:
    """Dry-run the FlowRun, then every child the operator would create for it."""
    namespace = _namespace(body, connection, explicit_namespace)
    manifest = copy.deepcopy(dict(body))
    manifest.setdefault("metadata", {})["namespace"] = namespace
    size = len(json.dumps(manifest).encode())
    if size > api.MAX_REQUEST_BYTES:
        # Said before it is sent: the API server would close the connection on it.
        return ServerCheck([f"not sent: {too_large(size)}"], 0, [])
    notes: list[str] = []
    try:
        created = _dry_run_flowrun_under_free_name(connection, namespace, manifest, notes)
    except ApiException as error:
        if error.status in PERMANENT_REJECTIONS:
            return ServerCheck([f"the API server rejected the FlowRun: {api_message(error)}"], 0, notes)
        raise
    action = _children(created)
    if action is None:
        return ServerCheck([], 0, notes)
    rejected = _rejected_children(connection, action)
    return ServerCheck(rejected, len(action.manifests) - len(rejected), notes)


def _dry_run_flowrun_under_free_name(
    connection: Connection, namespace: str, manifest: dict[str, Any], notes: list[str]
) -> Any:
    """The dry-run FlowRun; if its name is taken, dry-run again under a generated name (noted in
    `notes`), so that the rest is still checked."""
    metadata = manifest["metadata"]
    try:
        return _dry_run_flowrun(connection, namespace, manifest)
    except ApiException as error:
        if error.status != 409 or not metadata.get("name"):
            raise
        # The name is taken (by this very run, applied before, perhaps): check the rest
        # under a generated name.
        notes.append(f"a FlowRun named {metadata['name']} already exists: one of that name cannot be created")
        metadata["generateName"] = f"{metadata.pop('name')}-"
        return _dry_run_flowrun(connection, namespace, manifest)


def _rejected_children(connection: Connection, action: ValidateObjects) -> list[str]:
    """Dry-run each child; what the API server refused, each named by the spec field it comes from."""
    rejected: list[str] = []
    for child, field in zip(action.manifests, action.fields, strict=True):
        try:
            connection.kube.dry_run_create(child)
        except UnknownKind as error:
            rejected.append(f"the API server rejected a child: {field}: {error}")
        except ApiException as error:
            if error.status in PERMANENT_REJECTIONS:
                rejected.append(f"the API server rejected a child: {field}: {api_message(error)}")
            elif error.status != 409:  # a name already taken is the operator's to report, at run time
                raise
    return rejected


def _children(accepted: Mapping[str, Any]) -> ValidateObjects | None:
    """The operator's first pass over the dry-run FlowRun (it has a UID and a name): its dry-run
    action lists every child the run may create, as the operator would send it."""
    run = copy.deepcopy(dict(accepted))
    run["status"] = {}
    # A run that asks to be cancelled creates nothing; its children are still worth checking.
    run.setdefault("spec", {})["cancel"] = False
    outcome = engine.decide(engine.run_input_from_object(run), observed_from_objects([]), datetime.now(UTC))
    return next((a for a in outcome.actions if isinstance(a, ValidateObjects)), None)


@dataclass(frozen=True)
class Verdict:
    document: Document
    errors: list[str]
    summary: str  # what was found valid
    notes: list[str]


def verdicts(
    documents: list[Document], namespace: str | None, connection: Connection | None, explicit_namespace: bool
) -> Iterator[Verdict]:
    """Each document checked offline, then, if valid and with a connection, by the server."""
    for document in documents:
        errors = offline_errors(document.body, namespace)
        if errors or connection is None:
            yield Verdict(document, errors, "valid", [])
            continue
        check = server_check(document.body, connection, explicit_namespace)
        children = f"{check.children} {'child' if check.children == 1 else 'children'}"
        summary = f"valid; the API server accepted the FlowRun and its {children} in a dry run"
        yield Verdict(document, check.rejected, summary, check.notes)
