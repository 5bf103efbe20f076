"""The pure, level-triggered engine of a FlowRun: it decides; a pass of the FlowRun controller
applies what it decided (controller/flowrun_pass.py). What it decides is the users' contract:
docs/semantics.md (the state machines, triggers, retries, deadlines, cleanup, deletion, restart
safety) and docs/api.md (the spec and status fields, events).

`decide(run, observed, now)` derives everything from the FlowRun (spec and its own previous
status) and the children that exist now; it does no I/O and reads no clock (same inputs, same
outcome). It never raises.

How a pass works (one_pass.py):

1. The previous status is read leniently and merged with what is observed (attempt numbers come
   from pod labels too, a block whose objects exist is at least SettingUp), so a lost or garbage
   status never makes the engine reuse a name or create a duplicate.
2. State transitions are applied until nothing changes any more (a fixpoint), so one pass takes
   every decision the inputs allow and a repeated pass with the recorded status takes none.
3. Actions are then derived from the final state and the observed children only ("this pod
   should exist and does not: create it"; "this pod should not run and does: delete it"), which
   makes every action idempotent and safe to repeat after a crash.
4. Events are the differences between the previous and the new status: one per transition, and
   none on a repeated pass.

The modules, each plain functions over one frozen PassContext (context.py) and the mutable
RunState of the pass (state.py):

- interface.py: RunInput, the actions, Event and Outcome: what a pass exchanges with the engine
- children.py: the observed children of the run, indexed
- dag.py: triggers, skip reasons, when a block is needed or done with
- tasks.py: attempts of tasks (and instances): start, observe, retry, stop; their pods; conditions
- fanout.py: a forEach task's items and instances, and its phase from theirs; instances.py: a
  forEach task through a step (recovered, expanded, its instances advanced)
- locks.py: locks across runs: who takes a free slot, the Leases taken and released, who waits for whom
- blocks.py: resource blocks: setup, readiness, values; cleanup.py: their cleanup, step by step
- run.py: the run as a whole: stop reasons, final phase, TTL, finalizer
- plan.py: the actions of a pass, the dry run, the requeue
- status.py, events.py: the status written and the events posted; budget.py: the status kept
  under the object's size limit
- clashes.py: manifests named like generated children; vanished.py: children the status vouches
  for that are not observed (the controller looks them up before they count as gone); clock.py:
  moments a duration later, never overflowing
"""

from __future__ import annotations

from datetime import datetime

from flowrun.engine import one_pass
from flowrun.engine.interface import (
    Action,
    CaptureLogs,
    CreateObject,
    DeleteFlowRun,
    DeleteObject,
    Event,
    Outcome,
    RunInput,
    TakeLock,
    ValidateObjects,
    run_input_from_object,
)
from flowrun.engine.one_pass import FixpointNotReached
from flowrun.engine.status import only_pods_started, with_pods_created
from flowrun.engine.vanished import Vouched, missing_children
from flowrun.lenient import as_map
from flowrun.observed import Observed

__all__ = [
    "Action",
    "CaptureLogs",
    "CreateObject",
    "DeleteFlowRun",
    "DeleteObject",
    "Event",
    "FixpointNotReached",
    "Outcome",
    "RunInput",
    "TakeLock",
    "ValidateObjects",
    "Vouched",
    "decide",
    "missing_children",
    "only_pods_started",
    "run_input_from_object",
    "with_pods_created",
]

INTERNAL_ERROR_REQUEUE_SECONDS = 60.0


def decide(run: RunInput, observed: Observed, now: datetime) -> Outcome:
    """One level-triggered pass: see the module docstring. Never raises: an internal error (a bug,
    or FixpointNotReached) keeps the previous status with the error as its message, posts a
    Warning event InternalError, applies nothing, and asks to be called again a minute later."""
    try:
        return one_pass.decide(run, observed, now)
    except Exception as err:
        message = f"internal error in the flowrun engine: {type(err).__name__}: {err}"
        status = {**as_map(run.status), "message": message}
        return Outcome(
            status=status,
            events=(Event("Warning", "InternalError", message),),
            requeue_after=INTERNAL_ERROR_REQUEUE_SECONDS,
        )
