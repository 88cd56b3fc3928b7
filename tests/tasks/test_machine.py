"""The task state machine: every state reachable, final states final, a way out of every other state,
and pool reports mapped to the events they mean."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest

from connectors.contract import Instance
from node.http.statuses import status_for
from node.tasks.machine import (
    EVENTS,
    FINAL,
    INITIAL,
    STATES,
    TRANSITIONS,
    TaskState,
    TaskTransitionError,
    event_for_instance,
    events_from,
    is_final,
    next_state,
)


def _reachable(start: TaskState) -> set[TaskState]:
    seen, queue = {start}, deque([start])
    while queue:
        state = queue.popleft()
        for event in events_from(state):
            target = TRANSITIONS[(state, event)]
            if target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


def test_every_state_is_reachable_from_submitted() -> None:
    """Starting from `submitted`, some sequence of events reaches every state of the table."""
    assert _reachable(INITIAL) == set(STATES)


def test_final_states_are_final() -> None:
    """No event leaves a final state, and `released` is the only one."""
    assert {"released"} == FINAL
    for state in FINAL:
        assert events_from(state) == []
        assert is_final(state)
        for event in EVENTS:
            with pytest.raises(TaskTransitionError):
                next_state(state, event)


def test_every_other_state_has_a_way_out() -> None:
    """From every non-final state some path reaches `released`, and `stop` (or the run's end) is taken
    wherever the task may still hold resources."""
    for state in STATES:
        if is_final(state):
            continue
        assert "released" in _reachable(state), state
    for state in ("submitted", "ordered", "provisioning", "deploying", "running"):
        assert next_state(state, "stop") in ("stopped", "stopping")


def test_the_table_uses_every_event_and_only_known_names() -> None:
    """Every declared event is used by some transition; sources and targets are declared states."""
    assert {event for _state, event in TRANSITIONS} == set(EVENTS)
    assert {state for state, _event in TRANSITIONS} | set(TRANSITIONS.values()) <= set(STATES)


@pytest.mark.parametrize(
    ("state", "event", "target"),
    [
        ("submitted", "order_placed", "ordered"),
        ("submitted", "order_refused", "failed"),
        ("ordered", "provision", "provisioning"),
        ("provisioning", "provisioned", "deploying"),
        ("provisioning", "provision_failed", "failed"),
        ("deploying", "started", "running"),
        ("deploying", "deploy_failed", "failed"),
        ("deploying", "failed", "failed"),
        ("running", "succeeded", "succeeded"),
        ("running", "timed_out", "stopped"),
        ("running", "lost", "failed"),
        ("running", "stop", "stopping"),
        ("stopping", "stopped", "stopped"),
        ("stopping", "succeeded", "succeeded"),
        ("failed", "release", "released"),
    ],
)
def test_transitions(state: TaskState, event: Any, target: TaskState) -> None:
    """The table's main paths, as delivery will take them."""
    assert next_state(state, event) == target


def test_an_event_out_of_place_is_refused() -> None:
    """`started` before provisioning, or `release` of a running task, is a 409 transition error."""
    for state, event in (("submitted", "started"), ("running", "release"), ("succeeded", "stop")):
        with pytest.raises(TaskTransitionError) as caught:
            next_state(state, event)  # type: ignore[arg-type]
        assert (status_for(caught.value), caught.value.code) == (409, "invalid_task_transition")


def _instance(state: str, **run: Any) -> Instance:
    return Instance(id="i-1", name="t", region_id="r", flavor_id="f", state=state, created_ms=0, **run)


@pytest.mark.parametrize(
    ("instance", "event"),
    [
        (_instance("creating"), None),
        (_instance("stopped"), None),
        (_instance("starting"), None),
        (_instance("running", started_ms=1), "started"),
        (_instance("stopped", started_ms=1, ended_ms=2, exit_code=0), "succeeded"),
        (_instance("stopped", started_ms=1, ended_ms=2, exit_code=-15, reason="max_duration"), "timed_out"),
        (_instance("stopped", started_ms=1, ended_ms=2, exit_code=-15, reason="stopped"), "stopped"),
        (_instance("failed", ended_ms=2, reason="input_mismatch"), "failed"),
        (_instance("failed", started_ms=1, ended_ms=2, exit_code=3, reason="exit_nonzero"), "failed"),
        (_instance("failed", started_ms=1, ended_ms=2, reason="lost"), "lost"),
        (_instance("deleted"), "lost"),
    ],
)
def test_pool_reports_map_to_events(instance: Instance, event: str | None) -> None:
    """What a pool says about the task's instance becomes the event it means (or nothing yet)."""
    assert event_for_instance(instance) == event
