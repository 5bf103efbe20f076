"""Seeded random workloads for the fault soak: `generate(seed, index)` gives the same workload for
the same seed and index, byte for byte (one `random.Random` seeded from both; no set or hash order
anywhere), with every run's expected outcome from `model.expect`.

A workload is one of (`Workload.kind`):

- `flowrun`: a FlowRun with its own tasks (most workloads);
- `flow`: a Flow and a FlowRun that runs it (`spec.flowRef`, params given, some overrides);
- `rerun`: a FlowRun that fails (own tasks, or a Flow's), and `Workload.rerun`, a FlowRun with
  `spec.rerunOf` to create once the original has ended;
- `cron`: a CronFlowRun scheduled every minute (each concurrency policy, history limits) whose
  template has tasks or a flowRef (then with its Flow);
- `real` (only with `real_node_image`): a FlowRun whose tasks run real shell scripts on the dev
  cluster's real node, passing results on through arguments the operator substitutes;
- `huge`: a FlowRun of 150 to 200 tasks that each fail with a 4,000-byte termination message: a
  status written naively outgrows the object's size limit.

Runs are DAGs of 1 to 40 tasks (chains, fan-out and fan-in, diamonds, layers, random DAGs) with
every trigger, retries that win or run out, task deadlines that are clearly hit (a pod that would
run an hour against 2-3 s) or clearly not (10 minutes and more against seconds), 0-4 resource
blocks of every kind (setup Job whose result is the block's value, Deployments with and without
ports, ConfigMap manifests, cleanup Jobs that succeed, succeed on retry or fail for good), blocks
nested in others and blocks that wait for tasks (`runAfter`), setups that fail or time out, params
and results passed on (`$(tasks.X.result)` in a downstream task's args, which then writes a
message that echoes it, so the result shows whether it went through), and now and then a run
deadline: clearly not hit, or hit while every task waits on a block that never becomes Ready (the
only way a run deadline's outcome does not depend on timing). Pods run 100 ms to 3 s, so a run
ends well under a minute absent faults; a draw the model cannot predict (Undetermined) or that
would take longer is drawn again from the same generator.

Pods are the dev cluster's KWOK pods, told what to do by `sim.flowrun.dev/*` annotations
(devcluster/stages.yaml); a real-node pod carries `soak.flowrun.dev/*` annotations that say what
its script does, which is what the model reads.

What a runner must know:

- Every object, and each setup manifest, carries the label `soak.flowrun.dev/workload: <name>`;
  setup manifests are ConfigMaps named `<name>-<block>-cm<k>` (a rerun creates them again, once
  the original's cleanup deleted them). Workloads of one seed never share a name.
- A run whose expectation has a `CleanupFailed` block keeps its finalizer when deleted, by design
  (docs/semantics.md, "Deletion and the finalizer"): annotate it `flowrun.dev/skip-cleanup: "true"`.
- `expected["*"]` holds for each run a CronFlowRun creates (one per scheduled minute, named
  `<cron>-<minutes>`), but a run that `Replace` cancelled (its `spec.cancel` set by the operator,
  Event `RunReplaced`) ends `Cancelled`, and `Forbid` skips or delays a minute while a run is
  active: runs overlap only when faults stretch one past a minute. The history limits (1-3
  succeeded, 1-2 failed) delete older runs: read outcomes as the runs finish. A CronFlowRun runs
  until it is deleted or suspended.
- The model assumes faults delay things and no more: a fault that deletes a task pod (PodDeleted,
  a retry), a Ready block's object (ObjectDeleted) or a setup Job changes outcomes by design.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from random import Random
from typing import Any

from bench.soak import model
from devcluster import node as devcluster_node
from flowrun import api

WORKLOAD_LABEL = "soak.flowrun.dev/workload"  # on every object a workload creates
IMAGE = "busybox"  # KWOK pods never run it; the operator's dry run wants an image
NEVER_SECONDS = 3600.0  # a pod that runs for good as far as any bound of the soak goes
MAX_NOMINAL_SECONDS = 45.0  # a run's nominal play must end within this (well under a minute)
DRAWS = 60  # draws per workload before falling back to a plain chain
KIND_WEIGHTS = {"flowrun": 60, "flow": 12, "rerun": 16, "cron": 8, "huge": 3}
# A huge run: this many tasks, each failing with a termination message of MESSAGE_BYTES (KWOK
# repeats a short text: sim.flowrun.dev/message-repeat), whose status alone would outgrow the
# object's limit (1 MiB) unless the operator keeps it under its budget.
HUGE_TASKS = (150, 200)  # the CRD allows 200 tasks at most
MESSAGE_BYTES = 4000
REAL_SHARE = 0.04  # of workloads, when a real node image is given
CRON_WAIT_SECONDS = 60.0  # a CronFlowRun's first run is due within a minute of its creation


@dataclass(frozen=True)
class Workload:
    name: str  # DNS label, unique for (seed, index); every object it creates is named from it
    kind: str  # "flowrun" | "flow" | "rerun" | "cron" | "real" | "huge"
    objects: tuple[dict[str, Any], ...]  # manifests to create, in order, without metadata.namespace
    expected: Mapping[str, model.Expected]  # FlowRun name -> its expected outcome ("*": a cron's runs)
    # The bound absent faults, from the first create to the end of the last run: a rerun's
    # included (created as soon as the original ended), for a cron its first run (due within 60 s).
    max_seconds: float
    rerun: dict[str, Any] | None = None  # kind "rerun": the rerun FlowRun, created once the original ended


class Redraw(Exception):
    """This draw is not a workload the soak can check: draw again."""


def generate(seed: int, index: int, *, real_node_image: str | None = None) -> Workload:
    """Workload `index` of the soak seeded `seed`."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be non-negative, not {seed} and {index}")
    rng = Random(f"flowrun-soak/{seed}/{index}")
    name = f"soak-{seed}-{index}"
    kind = _kind(rng, real_node_image)
    for _ in range(DRAWS):
        try:
            return BUILDERS[kind](rng, name, real_node_image or "")
        except (Redraw, model.Undetermined):
            continue
    return _fallback(name)


def _kind(rng: Random, real_node_image: str | None) -> str:
    if real_node_image and rng.random() < REAL_SHARE:
        return "real"
    kinds = list(KIND_WEIGHTS)
    return rng.choices(kinds, weights=[KIND_WEIGHTS[k] for k in kinds])[0]


def bound(nominal: float) -> float:
    """The bound absent faults on a run whose nominal play takes `nominal` seconds: half again,
    plus 15 s for a cluster busy with the rest of the soak."""
    return round(1.5 * nominal + 15.0, 1)


# --- manifests -----------------------------------------------------------------------------------


def metadata(name: str, workload: str) -> dict[str, Any]:
    return {"name": name, "labels": {WORKLOAD_LABEL: workload}}


def flowrun(name: str, workload: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": metadata(name, workload), "spec": spec}


def millis(seconds: float) -> str:
    """A Go duration KWOK reads (sim.flowrun.dev/duration)."""
    return f"{round(seconds * 1000)}ms"


def sim_template(
    seconds: float,
    *,
    outcome: str | None = "succeed",
    message: str | None = None,
    fail_attempts: int = 0,
    ready: bool = True,
    container: str = "main",
    args: list[str] | None = None,
    env: list[dict[str, Any]] | None = None,
    image: str = IMAGE,
) -> dict[str, Any]:
    """A pod template the dev cluster's KWOK finishes as told (devcluster/stages.yaml); no outcome
    and no duration: the pod runs until deleted (Deployments)."""
    notes: dict[str, str] = {}
    if outcome is not None:
        notes[model.SIM + "outcome"] = outcome
        notes[model.SIM + "duration"] = millis(seconds)
    if message is not None:
        notes[model.SIM + "message"] = message
    if fail_attempts:
        notes[model.SIM + "fail-attempts"] = str(fail_attempts)
    if not ready:
        notes[model.SIM + "ready"] = "false"
    main: dict[str, Any] = {"name": container, "image": image}
    if args:
        main["args"] = args
    if env:
        main["env"] = env
    template: dict[str, Any] = {"spec": {"containers": [main]}}
    if notes:
        template["metadata"] = {"annotations": notes}
    return template


def real_template(
    image: str, seconds: float, text: str, *, fail_attempts: int = 0, fails: bool = False
) -> dict[str, Any]:
    """A pod for the real node (its node selector and toleration, a local image) whose script
    sleeps, writes its argument (references substituted by the operator) as its termination
    message, and exits 3 on attempts up to `fail_attempts` (read from the pod's attempt label), or
    always with `fails`. The soak.flowrun.dev/* annotations say the same for the model."""
    script = f"sleep {seconds:.1f}; printf '%s' \"$1\" > /dev/termination-log"
    notes = {model.REAL + "result": text, model.REAL + "duration": millis(seconds)}
    if fails:
        script += "; exit 3"
        notes[model.REAL + "outcome"] = "fail"
    elif fail_attempts:
        script += f'; [ "$ATTEMPT" -gt {fail_attempts} ] || exit 3'
        notes[model.REAL + "fail-attempts"] = str(fail_attempts)
    attempt = {"fieldRef": {"fieldPath": f"metadata.labels['{api.LABEL_ATTEMPT}']"}}
    main = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", script, "soak"],
        "args": [text],
        "env": [{"name": "ATTEMPT", "valueFrom": attempt}],
    }
    toleration = {"key": devcluster_node.LABEL, "operator": "Exists", "effect": devcluster_node.TAINT["effect"]}
    spec = {
        "nodeSelector": {devcluster_node.LABEL: "true"},
        "tolerations": [toleration],
        "terminationGracePeriodSeconds": 10,
        "containers": [main],
    }
    return {"metadata": {"annotations": notes}, "spec": spec}


# --- drawing a run's tasks -----------------------------------------------------------------------

Echo = tuple[str, str]  # ("task" | "block" | "param", name): a value a task's message repeats


@dataclass
class TaskDraft:
    """A task while it is drawn: its place in the DAG, what its pod does and what it passes on."""

    name: str
    after: list[str]
    seconds: float = 1.0
    behaviour: str = "ok"  # ok | flaky | exhausted | fail | deadline | deadline-ok
    fail_attempts: int = 0
    limit: int = 0
    backoff: int = 0
    deadline: int | None = None
    trigger: str | None = None  # None: the default (allSucceeded), not written
    resources: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    env: list[dict[str, Any]] = field(default_factory=list)
    token: str = ""
    echoes: list[Echo] = field(default_factory=list)
    image: str = IMAGE
    fixed_message: str | None = None  # a message written for a block's replicas: echoes nothing


def token(rng: Random) -> str:
    return f"{rng.getrandbits(32):08x}"


def shape(rng: Random, count: int) -> list[list[int]]:
    """runAfter of each task, as indices of earlier tasks (so the graph has no cycle)."""
    kinds: dict[str, Callable[[Random, int], list[list[int]]]] = {
        "chain": lambda _, n: [[i - 1] if i else [] for i in range(n)],
        "fan": _fan,
        "diamonds": _diamonds,
        "layers": _layers,
        "random": _random_dag,
    }
    return kinds[rng.choice(sorted(kinds))](rng, count)


def _fan(rng: Random, count: int) -> list[list[int]]:
    """One root, a fan-out, and (with 3 tasks or more) a task after all of the fan."""
    if count < 3:
        return [[i - 1] if i else [] for i in range(count)]
    return [[], *[[0] for _ in range(count - 2)], list(range(1, count - 1))]


def _diamonds(rng: Random, count: int) -> list[list[int]]:
    """Diamonds in a row: a, then b and c after a, then d after both, then the next diamond."""
    after: list[list[int]] = [[]]
    join = 0
    while len(after) < count:
        left = len(after)
        after += [[join], [join]]
        after.append([left, left + 1])
        join = left + 2
    return after[:count]


def _layers(rng: Random, count: int) -> list[list[int]]:
    """Layers of 1-4 tasks, each after one or two tasks of the layer before."""
    after: list[list[int]] = []
    previous: list[int] = []
    while len(after) < count:
        layer = list(range(len(after), min(count, len(after) + rng.randint(1, 4))))
        for _ in layer:
            after.append(sorted(rng.sample(previous, min(len(previous), rng.randint(1, 2)))) if previous else [])
        previous = layer
    return after


def _random_dag(rng: Random, count: int) -> list[list[int]]:
    """Each task after up to three of the six tasks before it."""
    after: list[list[int]] = []
    for i in range(count):
        window = list(range(max(0, i - 6), i))
        after.append(sorted(rng.sample(window, rng.randint(0, min(3, len(window))))))
    return after


def depth(after: list[list[int]]) -> int:
    """The number of tasks on the longest path."""
    longest: list[int] = []
    for ups in after:
        longest.append(1 + max((longest[u] for u in ups), default=0))
    return max(longest, default=0)


@dataclass(frozen=True)
class Options:
    manifests: bool = True  # ConfigMaps of fixed names (not in a cron's template: its runs overlap)
    gate: bool = True  # may draw a run deadline that is hit
    must_fail: bool = False  # at least one task fails for good (a rerun's original)
    max_tasks: int = 40


class RunDraw:
    """Draws one run's spec: tasks, behaviours, triggers, params, blocks, echoes, settings."""

    def __init__(self, rng: Random, workload: str, options: Options) -> None:
        self.rng = rng
        self.workload = workload
        self.options = options
        self.tasks: list[TaskDraft] = []
        self.blocks: list[dict[str, Any]] = []
        self.block_echoes: dict[str, str | None] = {}  # block -> its value as known in advance
        self.block_uses: dict[str, list[str]] = {}  # block -> the block it nests in
        self.params: dict[str, str] = {}
        self.settings: dict[str, Any] = {}

    def spec(self) -> dict[str, Any]:
        self.draw_tasks()
        self.draw_params()
        for index in range(self.rng.choices([0, 1, 2, 3, 4], weights=[40, 25, 17, 11, 7])[0]):
            self.draw_block(index)
        self.draw_echoes()
        self.draw_settings()
        return self.render()

    # -- tasks --

    def draw_tasks(self) -> None:
        limit = self.options.max_tasks
        sizes = [(1, 4), (5, 12), (13, 25), (26, limit)]
        low, high = self.rng.choices(sizes, weights=[35, 40, 15, 10])[0]
        after = shape(self.rng, self.rng.randint(min(low, limit), min(high, limit)))
        longest = min(3.0, max(0.1, 20.0 / depth(after)))
        failing = self.rng.choice([0.0, 0.0, 0.08, 0.2])
        for i, ups in enumerate(after):
            task = TaskDraft(f"t{i}", [f"t{u}" for u in ups], token=token(self.rng))
            task.seconds = round(self.rng.uniform(0.1, longest), 1)
            self.draw_behaviour(task, failing)
            self.draw_trigger(task, failing)
            self.tasks.append(task)
        if self.options.must_fail and not any(t.behaviour in ("fail", "exhausted", "deadline") for t in self.tasks):
            self.make_fail(self.rng.choice(self.tasks))

    def draw_behaviour(self, task: TaskDraft, failing: float) -> None:
        roll = self.rng.random()
        if roll < failing:
            self.make_fail(task)
        elif roll < failing + 0.15:
            task.behaviour, task.fail_attempts = "flaky", self.rng.randint(1, 2)
            task.limit, task.backoff = self.rng.randint(task.fail_attempts, 3), self.rng.randint(0, 2)
        elif roll < failing + 0.2:
            task.behaviour, task.deadline = "deadline-ok", self.rng.choice([600, 900, 1800])

    def make_fail(self, task: TaskDraft) -> None:
        """A task that fails for good: by exit code, by running out of retries, or past its deadline."""
        task.behaviour = self.rng.choices(["fail", "exhausted", "deadline"], weights=[5, 3, 2])[0]
        task.backoff = self.rng.randint(0, 1)
        if task.behaviour == "exhausted":
            task.fail_attempts = self.rng.randint(2, 3)
            task.limit = self.rng.randint(0, task.fail_attempts - 1)
        else:
            task.limit = self.rng.choice([0, 0, 1])
        if task.behaviour == "deadline":
            task.seconds, task.deadline = NEVER_SECONDS, self.rng.randint(2, 3)

    def draw_trigger(self, task: TaskDraft, failing: float) -> None:
        roll = self.rng.random()
        handlers = 0.3 if failing else 0.12
        if not task.after:
            task.trigger = "anyFailed" if roll < 0.02 else ("allDone" if roll < 0.06 else None)
        elif roll < handlers / 2:
            task.trigger = "anyFailed"
        elif roll < handlers:
            task.trigger = "allDone"
        elif roll < handlers + 0.1:
            task.trigger = "allSucceeded"  # written out: the default must mean the same

    # -- params --

    def draw_params(self) -> None:
        for i in range(self.rng.choice([0, 0, 1, 2, 3])):
            self.params[f"p{i}"] = f"v{token(self.rng)}"
        for task in self.tasks:
            if self.params and self.rng.random() < 0.2:
                name = self.rng.choice(sorted(self.params))
                task.args.append(f"--{name}=$(params.{name})")
                task.echoes.append(("param", name))
            if self.rng.random() < 0.05:
                task.args.append("--run=$(flowrun.name)")
        if self.params and self.rng.random() < 0.2:
            self.params["image"] = IMAGE
            self.rng.choice(self.tasks).image = "$(params.image)"

    # -- blocks --

    def ancestors(self, name: str) -> set[str]:
        """The task and every task upstream of it."""
        found, todo = {name}, [name]
        while todo:
            current = todo.pop()
            for up in next(t for t in self.tasks if t.name == current).after:
                if up not in found:
                    found.add(up)
                    todo.append(up)
        return found

    def cyclic(self) -> bool:
        """Whether the tasks and blocks wait for each other in a circle: a task waits for its
        runAfter tasks and its blocks, a block for its runAfter tasks and the blocks it uses."""
        waits: dict[str, list[str]] = {
            f"t/{t.name}": [f"t/{u}" for u in t.after] + [f"b/{r}" for r in t.resources] for t in self.tasks
        }
        for block in self.blocks:
            waits[f"b/{block['name']}"] = [f"t/{x}" for x in block.get("runAfter", [])]
            waits[f"b/{block['name']}"] += [f"b/{u}" for u in self.block_uses.get(block["name"], [])]
        state: dict[str, int] = {}  # 1: on the current path, 2: done

        def visit(node: str) -> bool:
            state[node] = 1
            for nxt in waits.get(node, []):
                if state.get(nxt) == 1 or (nxt not in state and visit(nxt)):
                    return True
            state[node] = 2
            return False

        return any(node not in state and visit(node) for node in waits)

    def draw_block(self, index: int) -> None:
        """A block `r<index>`: its setup, cleanup, maybe a runAfter task and a block it nests in,
        maybe a value, and 1-4 member tasks that cannot close a cycle through its runAfter."""
        name = f"r{index}"
        block: dict[str, Any] = {"name": name, "setup": {}}
        forbidden: set[str] = set()
        if self.rng.random() < 0.25:
            waits_for = self.rng.choice(self.tasks).name
            block["runAfter"] = [waits_for]
            forbidden = self.ancestors(waits_for)
        nests_in = self.nested_parent()
        self.draw_setup(block, nests_in)
        self.draw_value(block, nests_in)
        self.draw_cleanup(block)
        self.block_uses[name] = [nests_in] if nests_in is not None else []
        self.blocks.append(block)
        allowed = [t for t in self.tasks if t.name not in forbidden]
        members = self.rng.sample(allowed, min(len(allowed), self.rng.randint(1, 4))) if allowed else []
        if self.rng.random() < 0.05:
            members = []  # a block no task uses: never set up
        for task in list(members):
            task.resources.append(name)
            if self.cyclic():  # through other blocks' runAfter: the operator refuses cycles
                task.resources.remove(name)
                members.remove(task)
        self.block_echoes[name] = self.known_value(block)
        for task in members:
            if self.block_echoes[name] is not None and self.rng.random() < 0.5:
                task.args.append(f"--{name}=$(resources.{name}.value)")
                task.echoes.append(("block", name))

    def nested_parent(self) -> str | None:
        """An earlier block without runAfter this one may nest in (a used block with a runAfter
        would leave its nested block's skip reason to the model's guess: docs/semantics.md names
        none)."""
        candidates = [b["name"] for b in self.blocks if "runAfter" not in b and b["name"] != "gate"]
        return self.rng.choice(candidates) if candidates and self.rng.random() < 0.25 else None

    def draw_setup(self, block: dict[str, Any], nests_in: str | None) -> None:
        setup = block["setup"]
        parts = [
            part
            for part, share in (("job", 0.6), ("deployments", 0.5), ("manifests", 0.3))
            if self.rng.random() < share
        ]
        if not self.options.manifests and "manifests" in parts:
            parts.remove("manifests")
        for part in parts or ["job"]:
            {"job": self.draw_setup_job, "deployments": self.draw_deployments, "manifests": self.draw_manifests}[part](
                block, nests_in
            )
        if self.rng.random() < 0.04 and "deployments" in setup:
            for deployment in setup["deployments"]:
                deployment["template"].setdefault("metadata", {}).setdefault("annotations", {})[model.SIM + "ready"] = (
                    "false"
                )
            setup["timeoutSeconds"] = self.rng.randint(2, 3)  # clearly hit: never Ready
        elif self.rng.random() < 0.2:
            setup["timeoutSeconds"] = self.rng.choice([300, 900])

    def draw_setup_job(self, block: dict[str, Any], nests_in: str | None) -> None:
        args = [f"--block={block['name']}"]
        if nests_in is not None:
            args.append(f"--in=$(resources.{nests_in}.value)")
        if "runAfter" in block and self.rng.random() < 0.5:
            args.append(f"--id=$(tasks.{block['runAfter'][0]}.result)")
        seconds = round(self.rng.uniform(0.2, 2.0), 1)
        job: dict[str, Any]
        if self.rng.random() < 0.08:
            job = {"template": sim_template(seconds, outcome="fail", message="setup failed", args=args)}
        else:
            job = {"template": sim_template(seconds, message=f"{block['name']}-{token(self.rng)}", args=args)}
            if self.rng.random() < 0.1:
                job["backoffLimit"] = 1
        block["setup"]["job"] = job

    def draw_deployments(self, block: dict[str, Any], nests_in: str | None) -> None:
        deployments = []
        for j in range(self.rng.choice([1, 1, 2])):
            deployment: dict[str, Any] = {"name": f"d{j}", "template": sim_template(0, outcome=None, container=f"d{j}")}
            deployment["replicas"] = self.draw_replicas(block)
            if self.rng.random() < 0.5:
                deployment["ports"] = [{"name": "http", "port": 8080}]
            if nests_in is not None and j == 0:
                deployment["template"]["spec"]["containers"][0]["args"] = [f"--in=$(resources.{nests_in}.value)"]
            deployments.append(deployment)
        block["setup"]["deployments"] = deployments

    def draw_replicas(self, block: dict[str, Any]) -> int | str:
        """1 or 2, a param holding one, or (rarely, with a runAfter task) that task's result, which
        the task writes as "1" or as "two" (setup then fails: InvalidValue)."""
        roll = self.rng.random()
        if roll < 0.15:
            self.params.setdefault("n", str(self.rng.randint(1, 2)))
            return "$(params.n)"
        if roll < 0.2 and "runAfter" in block:
            source = next(t for t in self.tasks if t.name == block["runAfter"][0])
            if source.fixed_message is None:
                source.fixed_message = self.rng.choice(["1", "two"])
            return f"$(tasks.{source.name}.result)"
        choices: list[int | str] = [1, 1, 2, "1"]  # "1": digits in a string are a count too
        return self.rng.choice(choices)

    def draw_manifests(self, block: dict[str, Any], nests_in: str | None) -> None:
        block["setup"]["manifests"] = [
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"{self.workload}-{block['name']}-cm{k}",
                    "labels": {WORKLOAD_LABEL: self.workload},
                },
                "data": {"token": token(self.rng)},
            }
            for k in range(self.rng.randint(1, 2))
        ]

    def draw_value(self, block: dict[str, Any], nests_in: str | None) -> None:
        roll = self.rng.random()
        if nests_in is not None and ("job" not in block["setup"] or roll < 0.3):
            block["value"] = f"in-$(resources.{nests_in}.value)"
        elif roll < 0.1:
            block["value"] = f"val-{token(self.rng)}"
        elif roll < 0.2 and self.params:
            block["value"] = f"v-$(params.{self.rng.choice(sorted(self.params))})"
        elif roll < 0.3 and "runAfter" in block:
            block["value"] = f"$(tasks.{block['runAfter'][0]}.result)"

    def draw_cleanup(self, block: dict[str, Any]) -> None:
        roll = self.rng.random()
        seconds = round(self.rng.uniform(0.2, 1.5), 1)
        if roll < 0.4:
            return
        cleanup: dict[str, Any] = {"job": {"template": sim_template(seconds)}}
        if roll < 0.5:  # fails, then succeeds on a retry
            cleanup["job"]["template"] = sim_template(seconds, fail_attempts=1)
            cleanup["retries"] = self.rng.randint(1, 2)
        elif roll < 0.55:  # fails for good
            cleanup["job"]["template"] = sim_template(seconds, outcome="fail")
            cleanup["retries"] = self.rng.randint(0, 1)
        elif roll < 0.7:
            cleanup["retries"] = self.rng.randint(0, 3)
        if self.rng.random() < 0.1:
            cleanup["timeoutSeconds"] = 300
        block["cleanup"] = cleanup

    def known_value(self, block: dict[str, Any]) -> str | None:
        """The block's value as far as the draw knows it in advance (docs/api.md, "Resource
        value"); None where it holds the namespace (a Service name). A value from a task's result
        is not echoed: it would tie the member's message to that task's draw."""
        if "value" in block:
            text = str(block["value"])
            if "$(tasks." in text:
                return None
            if "$(resources." in text:
                parent = text.split("$(resources.")[1].split(".")[0]
                return None if self.block_echoes.get(parent) is None else f"in-{self.block_echoes[parent]}"
            if "$(params." in text:
                return "v-" + self.params[text.split("$(params.")[1].rstrip(")")]
            return text
        job = block["setup"].get("job")
        if job is not None:
            notes: dict[str, str] = job["template"]["metadata"]["annotations"]
            return notes.get(model.SIM + "message")
        if any(d.get("ports") for d in block["setup"].get("deployments") or []):
            return None
        return str(block["name"])

    # -- results passed on --

    def draw_echoes(self) -> None:
        """Some allSucceeded tasks take an upstream's result in their args and echo it (the task
        runs only if that upstream Succeeded, so the echoed value is its message)."""
        for task in self.tasks:
            if task.fixed_message is not None:
                continue  # it writes a block's replicas, nothing else
            if task.trigger in (None, "allSucceeded") and task.after and self.rng.random() < 0.3:
                source = self.rng.choice(task.after)
                if self.rng.random() < 0.8:
                    task.args.append(f"--from-{source}=$(tasks.{source}.result)")
                else:
                    task.env.append({"name": "FROM", "value": f"$(tasks.{source}.result)"})
                task.echoes.append(("task", source))

    def message(self, name: str) -> str:
        """The task's termination message: its own text, then "<" and each value it echoes."""
        task = next(t for t in self.tasks if t.name == name)
        if task.fixed_message is not None:
            return task.fixed_message
        text = f"{name}:{task.token}"
        for kind, source in task.echoes:
            if kind == "task":
                text += "<" + self.message(source)
            elif kind == "param":
                text += "<" + self.params[source]
            else:
                text += "<" + str(self.block_echoes[source])
        return text

    # -- settings and the gate --

    def draw_settings(self) -> None:
        roll = self.rng.random()
        if self.options.gate and roll < 0.05:
            self.add_gate()
        elif roll < 0.12:
            self.settings["activeDeadlineSeconds"] = self.rng.choice([1800, 3600])  # clearly not hit
        if self.rng.random() < 0.2:
            self.settings["parallelism"] = self.rng.randint(1, 4)

    def add_gate(self) -> None:
        """A run deadline that is hit whatever the timing: every root task waits on a block that
        never becomes Ready (so no task ever starts), and the deadline is seconds."""
        deployment = {"name": "d0", "template": sim_template(0, outcome=None, ready=False, container="d0")}
        self.blocks.append({"name": "gate", "setup": {"deployments": [deployment], "timeoutSeconds": 3600}})
        for task in self.tasks:
            if not task.after:
                task.resources.append("gate")
        self.settings["activeDeadlineSeconds"] = self.rng.randint(2, 4)

    # -- the spec --

    def render_task(self, task: TaskDraft) -> dict[str, Any]:
        message = self.message(task.name)
        outcome = "fail" if task.behaviour in ("fail", "deadline") else "succeed"
        template = sim_template(
            task.seconds,
            outcome=outcome,
            message=message,
            fail_attempts=task.fail_attempts,
            args=task.args,
            env=task.env,
            image=task.image,
        )
        out: dict[str, Any] = {"name": task.name, "template": template}
        if task.after:
            out["runAfter"] = task.after
        if task.trigger is not None:
            out["trigger"] = task.trigger
        if task.resources:
            out["resources"] = task.resources
        if task.limit or task.fail_attempts or task.behaviour != "ok":
            out["retries"] = {"limit": task.limit, "backoffSeconds": task.backoff}
        if task.deadline is not None:
            out["activeDeadlineSeconds"] = task.deadline
        return out

    def render(self) -> dict[str, Any]:
        spec: dict[str, Any] = {}
        if self.params:
            spec["params"] = [{"name": k, "value": v} for k, v in self.params.items()]
        spec.update(self.settings)
        if self.blocks:
            spec["resources"] = self.blocks
        spec["tasks"] = [self.render_task(task) for task in self.tasks]
        return spec


def draw_spec(rng: Random, workload: str, options: Options) -> dict[str, Any]:
    return RunDraw(rng, workload, options).spec()


def checked(
    spec: Mapping[str, Any], reused: Mapping[str, str] | None = None, samples: int = model.SAMPLES
) -> tuple[model.Expected, float]:
    """The expected outcome and the bound of a run; Redraw when its nominal play is too long."""
    nominal = model.nominal_seconds(spec, reused=reused)
    if nominal > MAX_NOMINAL_SECONDS:
        raise Redraw(f"nominal {nominal:.0f}s")
    return model.expect(spec, reused=reused, samples=samples), bound(nominal)


# --- the kinds of workloads ----------------------------------------------------------------------


def _flowrun_workload(rng: Random, name: str, image: str) -> Workload:
    spec = draw_spec(rng, name, Options())
    expected, seconds = checked(spec)
    return Workload(name, "flowrun", (flowrun(name, name, spec),), {name: expected}, seconds)


def flow_objects(rng: Random, name: str, spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A Flow holding `spec`'s tasks and blocks, and the run spec (flowRef) that resolves to
    `spec` (docs/semantics.md, "Flows"): each param the Flow's default, or with another default
    or none, the run's value; parallelism and the run deadline in the Flow or overriding it."""
    flow_spec: dict[str, Any] = {key: value for key, value in spec.items() if key != "params"}
    run_spec: dict[str, Any] = {"flowRef": {"name": name}}
    declared, given = [], []
    for param in spec.get("params") or []:
        roll = rng.random()
        if roll < 0.4:
            declared.append({"name": param["name"], "default": param["value"], "description": "drawn by the soak"})
            continue
        other = {"n": "2", "image": IMAGE}.get(param["name"], f"other-{token(rng)}")  # a Flow valid on its own
        declared.append({"name": param["name"], "default": other} if roll < 0.7 else {"name": param["name"]})
        given.append({"name": param["name"], "value": param["value"]})
    if declared:
        flow_spec["params"] = declared
    if given:
        run_spec["params"] = given
    for override in ("parallelism", "activeDeadlineSeconds"):
        if override in spec and rng.random() < 0.5:
            run_spec[override] = spec[override]
            flow_spec[override] = 1 if override == "parallelism" else 7200
    flow = {"apiVersion": api.API_VERSION, "kind": api.FLOW_KIND, "metadata": metadata(name, name), "spec": flow_spec}
    return flow, run_spec


def _huge_workload(rng: Random, name: str, image: str) -> Workload:
    unit = f"{token(rng)}-"
    tasks = []
    for index in range(rng.randint(*HUGE_TASKS)):
        template = sim_template(round(rng.uniform(0.2, 1.0), 1), outcome="fail", message=unit)
        template["metadata"]["annotations"][model.SIM + "message-repeat"] = str(MESSAGE_BYTES // len(unit))
        tasks.append({"name": f"t{index}", "template": template})
    spec = {"parallelism": 50, "tasks": tasks}
    expected, seconds = checked(spec, samples=1)  # independent tasks: no timing changes their outcome
    return Workload(name, "huge", (flowrun(name, name, spec),), {name: expected}, seconds)


def _flow_workload(rng: Random, name: str, image: str) -> Workload:
    spec = draw_spec(rng, name, Options())
    expected, seconds = checked(spec)
    flow, run_spec = flow_objects(rng, name, spec)
    return Workload(name, "flow", (flow, flowrun(name, name, run_spec)), {name: expected}, seconds)


def reused_of(expected: model.Expected) -> dict[str, str]:
    """What a rerun takes over: each task that Succeeded, with its result (docs, "Reruns")."""
    reused = {}
    for task, outcome in expected.tasks.items():
        if outcome.phase == api.SUCCEEDED:
            if outcome.result is None:
                raise Redraw(f"task {task}'s result is not known, so neither is the rerun's")
            reused[task] = outcome.result
    return reused


def _rerun_workload(rng: Random, name: str, image: str) -> Workload:
    spec = draw_spec(rng, name, Options(must_fail=True))
    expected, seconds = checked(spec)
    if expected.phase != api.FAILED:
        raise Redraw("the original must fail")
    again, seconds_again = checked(spec, reused_of(expected))
    if rng.random() < 0.3:
        flow, run_spec = flow_objects(rng, name, spec)
        objects: tuple[dict[str, Any], ...] = (flow, flowrun(name, name, run_spec))
    else:
        objects = (flowrun(name, name, spec),)
    rerun = flowrun(f"{name}-rerun", name, {"rerunOf": {"name": name}})
    outcomes = {name: expected, f"{name}-rerun": again}
    return Workload(name, "rerun", objects, outcomes, seconds + seconds_again, rerun=rerun)


def _cron_workload(rng: Random, name: str, image: str) -> Workload:
    """A CronFlowRun every minute. No manifests in its runs: they would carry one fixed name for
    every run (no substitution in manifests), and overlapping runs would fight over it."""
    spec = draw_spec(rng, name, Options(manifests=False, gate=False, max_tasks=12))
    expected, seconds = checked(spec)
    objects: list[dict[str, Any]] = []
    template_spec: dict[str, Any] = spec
    if rng.random() < 0.4:
        flow, template_spec = flow_objects(rng, name, spec)
        objects.append(flow)
    cron_spec: dict[str, Any] = {
        "schedule": "* * * * *",
        "concurrencyPolicy": rng.choice(["Allow", "Forbid", "Replace"]),
        "successfulRunsHistoryLimit": rng.randint(1, 3),
        "failedRunsHistoryLimit": rng.randint(1, 2),
        "flowRunTemplate": {"metadata": {"labels": {WORKLOAD_LABEL: name}}, "spec": template_spec},
    }
    if rng.random() < 0.3:
        cron_spec["startingDeadlineSeconds"] = rng.choice([30, 120])
    objects.append(
        {"apiVersion": api.API_VERSION, "kind": api.CRON_KIND, "metadata": metadata(name, name), "spec": cron_spec}
    )
    return Workload(name, "cron", tuple(objects), {"*": expected}, seconds + CRON_WAIT_SECONDS)


def real_spec(rng: Random, image: str) -> dict[str, Any]:
    """2-5 real tasks (a chain or a fan), each writing its own text and every upstream result
    (substituted by the operator; empty for an upstream that did not succeed), a param, maybe a
    task that fails with a handler after it, maybe one that succeeds on a retry, and maybe a block
    (a KWOK setup job) whose value, the job's result, the first task writes too."""
    count = rng.randint(2, 5)
    after = _fan(rng, count) if rng.random() < 0.5 else [[i - 1] if i else [] for i in range(count)]
    spec: dict[str, Any] = {"params": [{"name": "who", "value": f"v{token(rng)}"}]}
    if rng.random() < 0.5:
        job = {"template": sim_template(round(rng.uniform(0.2, 1.0), 1), message=f"r0-{token(rng)}")}
        spec["resources"] = [{"name": "r0", "setup": {"job": job}}]
    failing = rng.randrange(count - 1) if rng.random() < 0.3 else None
    tasks = []
    for i, ups in enumerate(after):
        text = f"t{i}:{token(rng)}" + "".join(f"<$(tasks.t{u}.result)" for u in ups)
        if i == 0:
            text += "<$(params.who)" + ("<$(resources.r0.value)" if "resources" in spec else "")
        seconds = round(rng.uniform(0.1, 1.0), 1)
        flaky = rng.randint(1, 2) if failing is None and rng.random() < 0.2 else 0
        task: dict[str, Any] = {
            "name": f"t{i}",
            "template": real_template(image, seconds, text, fail_attempts=flaky, fails=i == failing),
        }
        if ups:
            task["runAfter"] = [f"t{u}" for u in ups]
        if failing is not None and failing in ups:
            task["trigger"] = rng.choice(["anyFailed", "allDone"])
        if flaky:
            task["retries"] = {"limit": flaky, "backoffSeconds": 0}
        if i == 0 and "resources" in spec:
            task["resources"] = ["r0"]
        tasks.append(task)
    spec["tasks"] = tasks
    return spec


def _real_workload(rng: Random, name: str, image: str) -> Workload:
    spec = real_spec(rng, image)
    expected, seconds = checked(spec)
    return Workload(name, "real", (flowrun(name, name, spec),), {name: expected}, seconds)


def _fallback(name: str) -> Workload:
    """A two-task chain (kind flowrun): what any kind falls back to if none of its DRAWS draws
    could be checked (none does in the tests' thousands of workloads)."""
    spec = {"tasks": [{"name": "t0", "template": sim_template(0.5, message="t0")}]}
    spec["tasks"].append({"name": "t1", "runAfter": ["t0"], "template": sim_template(0.5, message="t1")})
    expected, seconds = checked(spec)
    return Workload(name, "flowrun", (flowrun(name, name, spec),), {name: expected}, seconds)


BUILDERS: dict[str, Callable[[Random, str, str], Workload]] = {
    "flowrun": _flowrun_workload,
    "huge": _huge_workload,
    "flow": _flow_workload,
    "rerun": _rerun_workload,
    "cron": _cron_workload,
    "real": _real_workload,
}
