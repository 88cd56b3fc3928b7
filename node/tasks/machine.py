"""The task state machine, as one transition table (pure).

A task goes submitted → ordered → provisioning → deploying → running → succeeded | failed |
stopped → released. Rules, as for every state machine of the node: the delivery that drives it
stores a transition before it acts on the new state, and each state's action is idempotent, so a
restarted node resumes every task from its stored state.

    state         what delivery does there                    events → next state
    submitted     match the demand (or take the offer), order order_placed → ordered
                                                              order_refused → failed, stop → stopped
    ordered       create the pool's instance                  provision → provisioning
                                                              provision_failed → failed, stop → stopped
    provisioning  wait for the instance                       provisioned → deploying
                                                              provision_failed → failed, stop → stopping
    deploying     deploy and start the program (inputs        started → running, deploy_failed → failed,
                  fetched and checked)                        a run that already ended (below), stop → stopping
    running       follow the run                              succeeded, failed, timed_out | stopped → stopped,
                                                              lost → failed, stop → stopping
    stopping      stop the run or tear down what exists       stopped → stopped, or how the run ended
    succeeded, failed, stopped   keep outputs, settle, delete  release → released
    released      final

`event_for_instance` turns what a pool reports about the task's instance into the event it means.
"""

from __future__ import annotations

from typing import Literal, get_args

from connectors.contract import Instance
from node.errors import CodedError

TaskState = Literal[
    "submitted",
    "ordered",
    "provisioning",
    "deploying",
    "running",
    "stopping",
    "succeeded",
    "failed",
    "stopped",
    "released",
]
TaskEvent = Literal[
    "order_placed",
    "order_refused",
    "provision",
    "provisioned",
    "provision_failed",
    "started",
    "deploy_failed",
    "succeeded",
    "failed",
    "timed_out",
    "lost",
    "stop",
    "stopped",
    "release",
]
STATES: tuple[TaskState, ...] = get_args(TaskState)
EVENTS: tuple[TaskEvent, ...] = get_args(TaskEvent)
INITIAL: TaskState = "submitted"
FINAL: frozenset[TaskState] = frozenset({"released"})
ENDED: frozenset[TaskState] = frozenset({"succeeded", "failed", "stopped"})

# How a run ended, from any state where the program may be running.
_RUN_ENDS: dict[TaskEvent, TaskState] = {
    "succeeded": "succeeded",
    "failed": "failed",
    "timed_out": "stopped",
    "stopped": "stopped",
    "lost": "failed",
}

TRANSITIONS: dict[tuple[TaskState, TaskEvent], TaskState] = {
    ("submitted", "order_placed"): "ordered",
    ("submitted", "order_refused"): "failed",
    ("submitted", "stop"): "stopped",
    ("ordered", "provision"): "provisioning",
    ("ordered", "provision_failed"): "failed",
    ("ordered", "stop"): "stopped",
    ("provisioning", "provisioned"): "deploying",
    ("provisioning", "provision_failed"): "failed",
    ("provisioning", "stop"): "stopping",
    ("deploying", "started"): "running",
    ("deploying", "deploy_failed"): "failed",
    ("deploying", "stop"): "stopping",
    **{("deploying", event): state for event, state in _RUN_ENDS.items()},
    ("running", "stop"): "stopping",
    **{("running", event): state for event, state in _RUN_ENDS.items()},
    **{("stopping", event): state for event, state in _RUN_ENDS.items()},
    ("succeeded", "release"): "released",
    ("failed", "release"): "released",
    ("stopped", "release"): "released",
}


class TaskTransitionError(CodedError, ValueError, code="invalid_task_transition"):
    """An event the task's current state does not take."""


def next_state(state: TaskState, event: TaskEvent) -> TaskState:
    """The state `event` moves a task in `state` to; TaskTransitionError if it does not apply."""
    try:
        return TRANSITIONS[(state, event)]
    except KeyError:
        raise TaskTransitionError(f"a task that is {state} does not take {event!r}") from None


def events_from(state: TaskState) -> list[TaskEvent]:
    """The events a task in `state` takes, in table order."""
    return [event for (source, event) in TRANSITIONS if source == state]


def is_final(state: TaskState) -> bool:
    """Whether nothing more happens to a task in `state`."""
    return state in FINAL


def event_for_instance(instance: Instance) -> TaskEvent | None:
    """What the pool's report of the task's instance means for the task (None: nothing new yet)."""
    if instance.state == "running":
        return "started"
    if instance.state == "deleted":
        return "lost"
    if instance.state == "failed":
        return "lost" if instance.reason == "lost" else "failed"
    if instance.state == "stopped" and instance.ended_ms is not None:
        if instance.reason == "max_duration":
            return "timed_out"
        if instance.reason == "stopped":
            return "stopped"
        return "succeeded" if instance.exit_code == 0 else "failed"
    return None  # creating, starting, or stopped before any run
