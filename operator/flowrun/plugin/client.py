"""Connecting as kubectl does (`--kubeconfig`, `--context`, `-n`, `-A`) and the FlowRun calls the
plugin makes. Every failure becomes a PluginError with one line that says what went wrong."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import urllib3
from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from flowrun import api
from flowrun.kube import REQUEST_TIMEOUT, Kube, api_message

DEFAULT_NAMESPACE = "default"

# Some releases of the Kubernetes client have type hints and some have none: call the untyped
# parts through Any, so that both type-check.
_config: Any = config
_watch: Any = watch


class PluginError(Exception):
    """A failure to report as one line on stderr, with a non-zero exit."""


def api_error(error: ApiException, doing: str) -> PluginError:
    """`doing: 404 Not Found: <the API server's message>`."""
    return PluginError(f"{doing}: {error.status} {error.reason}: {api_message(error)}")


def kubeconfig_files(explicit: str | None) -> str:
    """What kubectl reads: --kubeconfig, else $KUBECONFIG (a list of files), else ~/.kube/config."""
    return explicit or os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")


@dataclass(frozen=True)
class Target:
    """The connection flags of a command, as given."""

    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


@dataclass
class Connection:
    api_client: client.ApiClient
    namespace: str  # -n, else the context's namespace, else "default"
    server: str
    _kube: Kube | None = field(default=None, repr=False)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api_client)

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api_client)

    @property
    def kube(self) -> Kube:
        """The operator's own API code (discovery, dry runs), with the user's credentials."""
        if self._kube is None:
            self._kube = Kube(self.api_client)
        return self._kube

    # --- FlowRuns ----------------------------------------------------------------------------

    def get_flowrun(self, name: str) -> dict[str, Any]:
        try:
            run = cast(
                dict[str, Any],
                self.custom.get_namespaced_custom_object(
                    api.GROUP, api.VERSION, self.namespace, api.PLURAL, name, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiException as error:
            if error.status == 404:
                raise PluginError(f'FlowRun "{name}" not found in namespace "{self.namespace}"') from None
            raise api_error(error, f"reading FlowRun {name}") from None
        return run

    def list_flowruns(self, all_namespaces: bool) -> list[dict[str, Any]]:
        try:
            if all_namespaces:
                listed = cast(
                    dict[str, Any],
                    self.custom.list_cluster_custom_object(
                        api.GROUP, api.VERSION, api.PLURAL, _request_timeout=REQUEST_TIMEOUT
                    ),
                )
            else:
                listed = cast(
                    dict[str, Any],
                    self.custom.list_namespaced_custom_object(
                        api.GROUP, api.VERSION, self.namespace, api.PLURAL, _request_timeout=REQUEST_TIMEOUT
                    ),
                )
        except ApiException as error:
            raise api_error(error, "listing FlowRuns") from None
        items: list[dict[str, Any]] = listed.get("items", [])
        return items

    def create_flowrun(self, body: Mapping[str, Any]) -> dict[str, Any]:
        what = (body.get("metadata") or {}).get("name") or "FlowRun"
        try:
            created = cast(
                dict[str, Any],
                self.custom.create_namespaced_custom_object(
                    api.GROUP, api.VERSION, self.namespace, api.PLURAL, dict(body), _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiException as error:
            raise api_error(error, f"creating {what}") from None
        return created

    def patch_flowrun(self, name: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        try:
            patched = cast(
                dict[str, Any],
                self.custom.patch_namespaced_custom_object(
                    api.GROUP,
                    api.VERSION,
                    self.namespace,
                    api.PLURAL,
                    name,
                    dict(patch),
                    _request_timeout=REQUEST_TIMEOUT,
                ),
            )
        except ApiException as error:
            raise api_error(error, f"patching FlowRun {name}") from None
        return patched

    def watch_flowrun(self, name: str, resource_version: str, timeout_seconds: int) -> Iterator[dict[str, Any]]:
        """Watch events ({type, object}) of one FlowRun from `resource_version`, for at most
        `timeout_seconds` (the caller starts again from the last version it saw)."""
        stream: Iterator[dict[str, Any]] = _watch.Watch().stream(
            self.custom.list_namespaced_custom_object,
            api.GROUP,
            api.VERSION,
            self.namespace,
            api.PLURAL,
            field_selector=f"metadata.name={name}",
            resource_version=resource_version,
            timeout_seconds=timeout_seconds,
            _request_timeout=timeout_seconds + REQUEST_TIMEOUT,
        )
        yield from stream

    def get_flow(self, name: str) -> dict[str, Any]:
        try:
            flow = cast(
                dict[str, Any],
                self.custom.get_namespaced_custom_object(
                    api.GROUP, api.VERSION, self.namespace, api.FLOW_PLURAL, name, _request_timeout=REQUEST_TIMEOUT
                ),
            )
        except ApiException as error:
            if error.status == 404:
                raise PluginError(f'Flow "{name}" not found in namespace "{self.namespace}"') from None
            raise api_error(error, f"reading Flow {name}") from None
        return flow


def connect(target: Target) -> Connection:
    """A client for the chosen context, and the namespace commands default to."""
    files = kubeconfig_files(target.kubeconfig)
    try:
        contexts, current = _config.list_kube_config_contexts(config_file=files)
    except (ConfigException, OSError) as error:
        raise PluginError(f"kubeconfig {files}: {_first_line(error)}") from None
    by_name = {c.get("name"): c for c in contexts or []}
    chosen = target.context or (current or {}).get("name")
    if chosen not in by_name:
        known = ", ".join(sorted(str(n) for n in by_name)) or "none"
        which = f"context {chosen!r}" if chosen else "no current context"
        raise PluginError(f"kubeconfig {files}: {which} not found (contexts: {known}); use --context")
    try:
        api_client: client.ApiClient = _config.new_client_from_config(
            config_file=files, context=chosen, persist_config=False
        )
    except (ConfigException, OSError) as error:
        raise PluginError(f"kubeconfig {files}, context {chosen}: {_first_line(error)}") from None
    namespace = target.namespace or (by_name[chosen].get("context") or {}).get("namespace") or DEFAULT_NAMESPACE
    return Connection(api_client, namespace, str(api_client.configuration.host))


def connection_error(error: urllib3.exceptions.HTTPError) -> PluginError:
    """An API server that cannot be reached, in one line: where, and the innermost reason."""
    pool = getattr(error, "pool", None)
    where = f" at {pool.scheme}://{pool.host}:{pool.port}" if pool is not None else ""
    reason = str(getattr(error, "reason", None) or error)
    # urllib3 nests its reasons ("<connection object>: Failed to establish ...: [Errno 111] ...").
    short = reason.split(">: ", 1)[-1].strip("()'\" ")
    return PluginError(f"cannot reach the API server{where}: {_first_line(short)}")


def _first_line(error: object) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
