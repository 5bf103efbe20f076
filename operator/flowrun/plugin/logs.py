"""`logs`: the logs of a run's task pods (every attempt), each line prefixed by its task (`task`
for attempt 1, `task#N` for attempt N). The log of a pod that is gone comes from the tail the
operator keeps in status for a failed or cancelled task. With `follow`, lines are streamed as
pods write them, pods of later tasks and attempts are picked up as they start, and it ends when
the run has finished."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.client.exceptions import ApiException
from rich.console import Console
from rich.text import Text

from flowrun import names
from flowrun.api import RUN_FINAL
from flowrun.kube import REQUEST_TIMEOUT
from flowrun.lenient import as_map, as_str, count
from flowrun.model import main_container_name
from flowrun.plugin.client import Connection, PluginError, api_error
from flowrun.plugin.tree import run_spec

POLL_SECONDS = 1.0
# A real kubelet ends a followed log when the container exits; some (simulated) nodes keep the
# stream open. A stream whose pod has finished is abandoned after this grace.
FINISHED_GRACE_SECONDS = 3.0
PREFIX_STYLES = ("cyan", "magenta", "green", "yellow", "blue", "bright_cyan", "bright_magenta", "bright_green")


@dataclass(frozen=True)
class Attempt:
    task: str
    number: int
    pod: str
    latest: bool
    kept_logs: str  # the tail in status (for the latest attempt of a failed or cancelled task)

    @property
    def prefix(self) -> str:
        return self.task if self.number == 1 else f"{self.task}#{self.number}"


def prefixes(run: Mapping[str, Any], only: str | None) -> list[str]:
    """The longest prefix each task (or `only`) can have, to align the lines."""
    spec = run_spec(run)
    limits = {t.name: t.retries.limit for t in spec.tasks} if spec is not None else {}
    status = as_map(as_map(run.get("status")).get("tasks"))
    for name, entry in status.items():
        owner = as_map(entry).get("instanceOf")
        if isinstance(owner, str) and owner in limits:
            limits[name] = limits[owner]
    chosen = [only] if only is not None else task_names(run)
    return [f"{t}#{limits[t] + 1}" if limits.get(t) else t for t in chosen]


def task_names(run: Mapping[str, Any]) -> list[str]:
    """The run's tasks in dependency order, a forEach task followed by its instances (status order
    if the spec cannot be read)."""
    spec = run_spec(run)
    tasks = as_map(as_map(run.get("status")).get("tasks"))
    if spec is None:
        return list(tasks)
    found: list[str] = []
    for task in spec.task_order():
        found.append(task.name)
        instances = [(as_map(e).get("index"), n) for n, e in tasks.items() if as_map(e).get("instanceOf") == task.name]
        found += [name for _, name in sorted(instances, key=lambda pair: count(pair[0]))]
    return found


def pod_name(run: str, task: str, entry: Mapping[str, Any], number: int) -> str:
    """The pod of attempt `number` of a task, or of an instance (its entry says of which task)."""
    owner, index = entry.get("instanceOf"), entry.get("index")
    if isinstance(owner, str) and isinstance(index, int):
        return names.task_pod_name(run, owner, number, index)
    return names.task_pod_name(run, task, number)


def attempts(run: Mapping[str, Any], only: str | None) -> list[Attempt]:
    """Every attempt started so far, of every task (or of `only`), in order."""
    tasks = as_map(as_map(run.get("status")).get("tasks"))
    known = task_names(run)
    if only is not None and only not in known:
        name = as_str(as_map(run.get("metadata")).get("name"))
        raise PluginError(f"FlowRun {name} has no task {only!r} (tasks: {', '.join(known) or 'none'})")
    run_name = as_str(as_map(run.get("metadata")).get("name"))
    found: list[Attempt] = []
    for task in [only] if only is not None else known:
        entry = as_map(tasks.get(task))
        total = count(entry.get("attempts"))
        for number in range(1, total + 1):
            latest = number == total
            pod = as_str(entry.get("podName")) if latest and entry.get("podName") else None
            found.append(
                Attempt(
                    task,
                    number,
                    pod or pod_name(run_name, task, entry, number),
                    latest,
                    as_str(entry.get("logs")) if latest else "",
                )
            )
    return found


class Printer:
    """Prefixed lines, one at a time (streams write from several threads), a colour per task."""

    def __init__(self, out: Console, err: Console, tasks: list[str], widest: list[str] | None = None) -> None:
        self.out, self.err = out, err
        self.width = max((len(p) for p in widest or tasks), default=0)
        self.styles = {t: PREFIX_STYLES[i % len(PREFIX_STYLES)] for i, t in enumerate(tasks)}
        self.lock = threading.Lock()

    def line(self, attempt: Attempt, text: str) -> None:
        prefix = attempt.prefix.ljust(self.width)
        rendered = Text.assemble((prefix, self.styles.get(attempt.task, "")), (" | ", "dim"), text)
        with self.lock:
            self.out.print(rendered, soft_wrap=True, highlight=False)

    def lines(self, attempt: Attempt, text: str) -> None:
        for line in text.splitlines():
            self.line(attempt, line)

    def note(self, text: str) -> None:
        with self.lock:
            self.err.print(Text(text, style="dim"), soft_wrap=True, highlight=False)


def _pod(connection: Connection, name: str) -> dict[str, Any] | None:
    try:
        pod = connection.core.read_namespaced_pod(name, connection.namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as error:
        if error.status == 404:
            return None
        raise api_error(error, f"reading pod {name}") from None
    sanitize: Any = connection.api_client.sanitize_for_serialization  # untyped in some client releases
    body: dict[str, Any] = sanitize(pod)
    return body


def _phase(run: Mapping[str, Any]) -> str:
    return as_str(as_map(run.get("status")).get("phase"))


def _started(pod: Mapping[str, Any]) -> bool:
    """The main container has started (or finished): there is a log to read."""
    phase = as_str(as_map(pod.get("status")).get("phase"))
    return phase in ("Running", "Succeeded", "Failed")


def _finished(pod: Mapping[str, Any]) -> bool:
    return as_str(as_map(pod.get("status")).get("phase")) in ("Succeeded", "Failed")


def _container(pod: Mapping[str, Any]) -> str:
    return main_container_name(pod)


def _gone(printer: Printer, attempt: Attempt) -> None:
    if attempt.kept_logs:
        printer.note(f"pod {attempt.pod} is gone: the last lines of {attempt.prefix} kept in the FlowRun's status")
        printer.lines(attempt, attempt.kept_logs)
    else:
        printer.note(f"pod {attempt.pod} is gone and no log of {attempt.prefix} was kept")


def _read_once(connection: Connection, attempt: Attempt, pod: Mapping[str, Any], printer: Printer) -> None:
    try:
        text = connection.core.read_namespaced_pod_log(
            attempt.pod, connection.namespace, container=_container(pod), _request_timeout=REQUEST_TIMEOUT
        )
    except ApiException as error:
        if error.status == 404:
            _gone(printer, attempt)
            return
        raise api_error(error, f"reading the log of pod {attempt.pod}") from None
    printer.lines(attempt, text)


def show(connection: Connection, run: Mapping[str, Any], only: str | None, printer: Printer) -> None:
    """The logs of every attempt so far, once."""
    chosen = attempts(run, only)
    if not chosen:
        printer.note("no task has started yet")
    for attempt in chosen:
        pod = _pod(connection, attempt.pod)
        if pod is None:
            _gone(printer, attempt)
        elif not _started(pod):
            printer.note(f"{attempt.prefix}: pod {attempt.pod} has not started yet")
        else:
            _read_once(connection, attempt, pod, printer)


class _Stream:
    """One followed log, read by a daemon thread of its own. A stream that outlives its pod's end
    by the grace is abandoned: its thread is left blocked (closing a socket another thread reads
    can block too) and anything it still reads is dropped."""

    def __init__(self, connection: Connection, attempt: Attempt, container: str, printer: Printer) -> None:
        self.attempt = attempt
        self.finished_at: float | None = None  # when its pod was first seen finished
        self.error: str | None = None
        self._abandoned = threading.Event()
        self.thread = threading.Thread(
            target=self._read, args=(connection, container, printer), name=f"log-{attempt.pod}", daemon=True
        )
        self.thread.start()

    def _read(self, connection: Connection, container: str, printer: Printer) -> None:
        try:
            # Not preloaded, the call returns the raw response (typed as its preloaded str).
            response: Any = connection.core.read_namespaced_pod_log(
                self.attempt.pod, connection.namespace, container=container, follow=True, _preload_content=False
            )
            pending = b""
            for chunk in response.stream(4096):  # chunked: each chunk as soon as the server sends it
                if self._abandoned.is_set():
                    return
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    printer.line(self.attempt, line.decode(errors="replace"))
            if pending and not self._abandoned.is_set():
                printer.line(self.attempt, pending.decode(errors="replace"))
        except ApiException as error:
            self.error = f"{error.status} {error.reason}"
        except Exception as error:  # the connection was cut
            self.error = str(error)

    def abandon(self) -> None:
        self._abandoned.set()

    @property
    def done(self) -> bool:
        return not self.thread.is_alive()


def follow(
    connection: Connection,
    name: str,
    only: str | None,
    printer: Printer,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Stream the logs of every attempt until the run has finished and every stream has ended."""
    follower = _Follower(connection, only, printer, clock)
    while True:
        run = connection.get_flowrun(name)
        follower.pick_up(run)
        follower.drop_ended_streams()
        if follower.finished(run):
            return
        time.sleep(POLL_SECONDS)


class _Follower:
    """What `follow` keeps from one poll to the next: the streams being read, and the pods already
    dealt with (read, streamed, or reported gone), each handled once."""

    def __init__(self, connection: Connection, only: str | None, printer: Printer, clock: Callable[[], float]) -> None:
        self.connection, self.only, self.printer, self.clock = connection, only, printer, clock
        self.streams: dict[str, _Stream] = {}
        self.handled: set[str] = set()

    def pick_up(self, run: Mapping[str, Any]) -> None:
        """Handle every attempt not handled yet whose pod has started or is gone for good."""
        for attempt in attempts(run, self.only):
            if attempt.pod not in self.handled:
                self._pick_up_attempt(run, attempt)

    def _pick_up_attempt(self, run: Mapping[str, Any], attempt: Attempt) -> None:
        pod = _pod(self.connection, attempt.pod)
        if pod is None:
            # Gone for good, unless it is a latest attempt's pod not created yet: that one is waited
            # for while the run goes on and no log of it was kept.
            if not attempt.latest or _phase(run) in RUN_FINAL or attempt.kept_logs:
                _gone(self.printer, attempt)
                self.handled.add(attempt.pod)
            return
        if not _started(pod):
            return
        self.handled.add(attempt.pod)
        if _finished(pod):
            _read_once(self.connection, attempt, pod, self.printer)
        else:
            self.streams[attempt.pod] = _Stream(self.connection, attempt, _container(pod), self.printer)

    def drop_ended_streams(self) -> None:
        """Forget the streams that ended (noting why, on an error) and abandon those that outlived
        their pod's end by the grace."""
        for pod_name, stream in list(self.streams.items()):
            if stream.done:
                if stream.error:
                    self.printer.note(f"{stream.attempt.prefix}: log stream of pod {pod_name} ended: {stream.error}")
                del self.streams[pod_name]
            elif self._outlived_pod(pod_name, stream):
                stream.abandon()
                del self.streams[pod_name]

    def _outlived_pod(self, pod_name: str, stream: _Stream) -> bool:
        """The stream's pod ended (finished or gone) longer than the grace ago; its end is timed from
        the first poll that sees it."""
        pod = _pod(self.connection, pod_name)
        if pod is None or _finished(pod):
            stream.finished_at = stream.finished_at or self.clock()
            return self.clock() - stream.finished_at >= FINISHED_GRACE_SECONDS
        return False

    def finished(self, run: Mapping[str, Any]) -> bool:
        """The run has finished, no stream is left and every attempt has been dealt with."""
        return (
            _phase(run) in RUN_FINAL
            and not self.streams
            and all(a.pod in self.handled for a in attempts(run, self.only))
        )
